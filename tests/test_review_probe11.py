"""Review (wave 11) of the day's changes: each a regression test that failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import nw


def test_why_never_says_an_unset_variable_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command edited to expand `${SEED:-1}`, run without SEED: `nw why` said "environment variable $SEED the
    command uses is set now (it was not)", the opposite of the truth (the record before did not key SEED at all,
    the new recipe keys it as unset)."""
    monkeypatch.delenv("SEED", raising=False)
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\na = output('echo 1 > a')\n")
    assert nw("run", str(exp), cwd=tmp_path).returncode == 0
    exp.write_text("from nixlib import output\na = output('echo ${SEED:-1} > a')\n")
    why = nw("why", "-f", str(exp), "a", cwd=tmp_path)
    assert why.returncode == 0, why.stderr
    assert "command differs" in why.stdout, why.stdout
    assert "is set now" not in why.stdout, why.stdout
    assert "environment variable $SEED the step uses is keyed now (not set; it was not keyed before)" \
        in why.stdout, why.stdout


def test_a_variable_read_in_arithmetic_is_keyed(tmp_path: Path) -> None:
    """`echo $((SEED * 2))` names SEED without a `$` of its own: it was not keyed, so `SEED=2 nw run` served the
    SEED=1 result (2, not 4). Bare names inside `$((…))` and `((…))` are keyed as `$SEED` is."""
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "doubled = output('echo $((SEED * 2)) > d.txt')\n"
                   "counted = output('for ((i = 0; i < COUNT; i++)); do echo $i; done > c.txt')\n")
    out = tmp_path / "nix-workflow-output"
    first = nw("run", str(exp), cwd=tmp_path, env={"SEED": "1", "COUNT": "2"})
    assert first.returncode == 0, first.stderr
    assert (out / "doubled" / "d.txt").read_text() == "2\n"
    assert (out / "counted" / "c.txt").read_text() == "0\n1\n"
    second = nw("run", str(exp), cwd=tmp_path, env={"SEED": "2", "COUNT": "3"})
    assert second.returncode == 0, second.stderr
    assert "doubled: done" in second.stderr and "counted: done" in second.stderr, second.stderr
    assert (out / "doubled" / "d.txt").read_text() == "4\n"
    assert (out / "counted" / "c.txt").read_text() == "0\n1\n2\n"


def test_a_static_path_in_a_keyed_value_keys_alike_under_every_store_root() -> None:
    """A Luigi module-level or class attribute `LOOKUP = static("lookup.csv")` holds `<store root>/store/<hash>`:
    its value digest held the root, so two hosts with different store roots (sharing a remote cache) never shared
    that task's results. The object's name is its content; the root is where it lies."""
    from nixlib import pycode

    h = "1jfryxl0rqp8hzfism6rrn2hb1fh7hzx56x8s9vbgk8rj0fa9k64"
    other = "0" + h[1:]
    assert pycode.value_digest(f"/nix-workflow/store/{h}") == pycode.value_digest(f"/scratch/me/nw/store/{h}")
    assert pycode.value_digest({"t": f"/a/store/{h}/x.csv"}) == pycode.value_digest({"t": f"/b/store/{h}/x.csv"})
    assert pycode.value_digest(f"/a/store/{h}") != pycode.value_digest(f"/a/store/{other}")
    assert pycode.value_digest("/a/store/not-an-object") != pycode.value_digest("/b/store/not-an-object")
