"""`nw why` of a step whose upstream's recipe changed but produced the same bytes: it listed "input 1 (step
'data'): its recipe differs" among the reasons the step re-ran, although the same content cannot re-run it (keys
resolve through upstream content). It now says the input's content is the same, so that line is no reason."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import nw


def test_an_upstream_recipe_change_with_the_same_output_is_not_given_as_a_reason(tmp_path: Path) -> None:
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "data = output('echo 1 > $out/d; true')\n"
                   "use = output(f'cat {data}/d > $out/x; true')\n")
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0
    exp.write_text(exp.read_text().replace("; true", "; :"))  # both commands change; data's bytes do not
    ran = nw("run", str(exp), cwd=tmp_path)
    assert "done 2" in ran.stderr, ran.stderr
    why = nw("why", "use", cwd=tmp_path)
    assert why.returncode == 0, why.stderr
    assert "command differs" in why.stdout, why.stdout  # (the true reason)
    line = next(x for x in why.stdout.splitlines() if "input 1 (step 'data')" in x)
    assert "same content" in line and "not a reason" in line, why.stdout
