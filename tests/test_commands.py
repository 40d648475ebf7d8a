"""The commands a user reaches for: `nw run --dry-run`, `status`, `dag`, `why`, `diff`, `run --force`, `check`
and `--version`, all through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.helpers import REPO, nw, tree_snapshot

# `a` reads a static file, `b` uses `a`; MARKS (an absolute directory) gets one file per execution.
EXPERIMENT = """from pathlib import Path
from nixlib import output, static
raw = static(Path(__file__).with_name('raw.txt'))
a = output(f'sort {raw} > $out/a.txt; touch MARKS/a.$$')
b = output(f'tr a-z A-Z < {a}/a.txt > $out/b.txt; touch MARKS/b.$$')
"""


def write(tmp_path: Path, text: str = EXPERIMENT, raw: str = "b\na\n") -> Path:
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    (tmp_path / "raw.txt").write_text(raw)
    exp = tmp_path / "exp.py"
    exp.write_text(text.replace("MARKS", str(marks)))
    return exp


def runs_of(tmp_path: Path, step: str) -> int:
    return sum(1 for p in (tmp_path / "marks").iterdir() if p.name.startswith(f"{step}."))


def link_hash(name: str) -> str:
    return os.readlink(f"nix-workflow-output/{name}").rsplit("/", 1)[1]


def test_version_is_the_package_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    proc = nw("--version", check=True)
    assert proc.stdout.strip() == f"nw (nixworkflow) {version}"


@pytest.mark.parametrize("cmd", ["dag", "status", "why", "diff", "check", "run"])
def test_help_teaches_with_an_example(cmd: str) -> None:
    out = nw(cmd, "--help", check=True).stdout
    assert "example" in out and f"nw {cmd}" in out


def test_dry_run_says_what_would_run_is_cached_and_pinned_and_changes_nothing(tmp_path: Path,
                                                                               store_root: Path) -> None:
    exp = write(tmp_path)
    nw("run", str(exp), "a", check=True)
    pinned = f"p = output('exit 1', hash='{link_hash('a')}')\n"
    exp.write_text(exp.read_text() + pinned)
    (tmp_path / "raw.txt").write_text("new content, never ingested by a dry run\n")
    before = tree_snapshot(store_root)
    proc = nw("run", "-n", str(exp), check=True)
    lines = proc.stdout.splitlines()
    assert any(line.startswith("would run") and " a " in line for line in lines), proc.stdout
    assert any(line.startswith("would run") and " b " in line for line in lines), proc.stdout
    assert any(line.startswith("pinned") and " p " in line for line in lines), proc.stdout
    assert "nothing was run" in proc.stderr
    assert tree_snapshot(store_root) == before
    assert runs_of(tmp_path, "a") == 1 and runs_of(tmp_path, "b") == 0
    (tmp_path / "raw.txt").write_text("b\na\n")
    plan = {s["name"]: s["state"] for s in json.loads(nw("run", "--dry-run", "--json", str(exp), check=True).stdout)}
    assert plan == {"a": "cached", "b": "to run", "p": "pinned"}
    assert tree_snapshot(store_root) == before


def test_status_shows_cached_to_run_and_failed_last_time(tmp_path: Path) -> None:
    exp = write(tmp_path, EXPERIMENT + "bad = output('echo trying; exit 3')\n")
    assert nw("run", "-k", str(exp)).returncode == 1
    out = nw("status", str(exp), check=True).stdout
    states = {re.split(r"\s{2,}", line)[1]: re.split(r"\s{2,}", line)[0] for line in out.splitlines()}
    assert states == {"a": "cached", "b": "cached", "bad": "to run (failed last time)"}, out
    assert "exited with status 3" in out
    doc = {s["name"]: s for s in json.loads(nw("status", "--json", str(exp), check=True).stdout)}
    assert doc["bad"]["last_status"] == "failed" and doc["bad"]["state"] == "to run"


def test_status_sees_a_step_another_process_is_running(tmp_path: Path) -> None:
    go, started = tmp_path / "GO", tmp_path / "STARTED"
    exp = write(tmp_path, EXPERIMENT + f"slow = output('touch {started}; while [ ! -e {go} ]; do sleep 0.05; done; "
                                       "echo done > $out/x')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runner = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "slow"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline and runner.poll() is None:
            time.sleep(0.05)
        assert started.exists()
        out = nw("status", str(exp), "slow", check=True).stdout
        assert out.startswith("running elsewhere") and "slow" in out, out
    finally:
        go.touch()
        assert runner.wait(timeout=60) == 0
    assert nw("status", str(exp), "slow", check=True).stdout.startswith("cached")


def test_mermaid_labels_escape_what_mermaid_reads_as_html(tmp_path: Path) -> None:
    """Mermaid renders a label as HTML: a step named `a<b>&c` was passed as is, a tag to the browser."""
    exp = tmp_path / "exp.py"
    exp.write_text('from nixlib import output\nx = output("echo 1 > $out/v", name="a<b>&c #1")\n')
    mermaid = nw("dag", str(exp), "--format", "mermaid", check=True).stdout
    assert 's0["a#lt;b#gt;#amp;c #35;1<br/>to run"]:::torun' in mermaid, mermaid


def test_dag_marks_cached_and_to_run_steps_in_every_format(tmp_path: Path) -> None:
    exp = write(tmp_path)
    nw("run", str(exp), "a", check=True)
    dot = nw("dag", str(exp), check=True).stdout
    assert dot.startswith("digraph") and '"a" -> "b";' in dot
    assert '"a" [label="a\\ncached"' in dot and '"b" [label="b\\nto run"' in dot
    mermaid = nw("dag", str(exp), "--format", "mermaid", check=True).stdout
    assert mermaid.startswith("flowchart LR") and "s0 --> s1" in mermaid
    assert 's0["a<br/>cached"]:::cached' in mermaid and 's1["b<br/>to run"]:::torun' in mermaid
    graph = json.loads(nw("dag", str(exp), "--format", "json", check=True).stdout)
    assert graph["edges"] == [{"from": "a", "to": "b"}]
    assert {n["name"]: n["state"] for n in graph["nodes"]} == {"a": "cached", "b": "to run"}
    assert runs_of(tmp_path, "b") == 0


def test_why_names_a_changed_input_file(tmp_path: Path) -> None:
    exp = write(tmp_path)
    nw("run", str(exp), check=True)
    assert "would not run" in nw("why", "b", check=True).stdout
    (tmp_path / "raw.txt").write_text("c\nb\na\n")
    out = nw("why", "a", check=True).stdout
    assert "'a' would run" in out and f"input 1 ({tmp_path / 'raw.txt'}): content differs" in out, out
    out = nw("why", "b", check=True).stdout
    assert "input 1 (step 'a') is not realised yet" in out, out


def test_why_names_a_changed_command_and_parameter_and_explains_a_re_run(tmp_path: Path) -> None:
    exp = write(tmp_path)
    nw("run", str(exp), check=True)
    exp.write_text(exp.read_text().replace("tr a-z A-Z", "tr a-z A-Z | rev"))
    out = nw("why", "b", check=True).stdout
    lines = out.splitlines()
    assert "  command differs:" in lines, out
    assert any(x.strip().startswith("-tr a-z A-Z") and "rev" not in x for x in lines), out
    assert any(x.strip().startswith("+tr a-z A-Z") and "rev" in x for x in lines), out
    assert "input" not in out.replace("@{input 1}", ""), out  # the input is unchanged: not reported
    nw("run", str(exp), check=True)
    out = nw("why", "b", check=True).stdout
    assert "re-ran in the last run because its recipe differed" in out and "command differs:" in out, out
    exp.write_text(exp.read_text().replace("/b.$$')", "/b.$$', allow_empty=True)"))
    out = nw("why", "b", check=True).stdout
    assert "parameter 'allow_empty' differs: null → true" in out and "command differs" not in out, out


def test_why_of_a_step_that_never_ran_and_a_typo(tmp_path: Path) -> None:
    exp = write(tmp_path)
    nw("run", str(exp), "a", check=True)
    out = nw("why", "b", "--file", str(exp), check=True).stdout
    assert "no realisation of a step named 'b'" in out
    proc = nw("why", "bb", "--file", str(exp))
    assert proc.returncode == 1 and "Did you mean 'b'?" in proc.stderr


def test_diff_of_two_steps_shows_command_and_a_text_diff_of_outputs(tmp_path: Path) -> None:
    exp = write(tmp_path, "from nixlib import output\nx = output('printf \"one\\\\ntwo\\\\n\" > $out/f.txt')\n"
                          "y = output('printf \"one\\\\n2\\\\n\" > $out/f.txt')\n")
    nw("run", str(exp), check=True)
    out = nw("diff", "x", "y", check=True).stdout
    assert "command differs:" in out
    assert "f.txt (content differs)" in out
    assert "--- x/f.txt" in out and "+++ y/f.txt" in out and "-two" in out and "+2" in out, out
    doc = json.loads(nw("diff", "x", "y", "--json", check=True).stdout)
    assert doc["a"]["name"] == "x" and doc["b"]["name"] == "y"


def test_diff_of_a_step_across_two_runs_by_key(tmp_path: Path) -> None:
    exp = write(tmp_path)
    nw("run", str(exp), check=True)
    first = json.loads(nw("show", "a", "--json", check=True).stdout)["resolved_key"]
    (tmp_path / "raw.txt").write_text("c\nb\na\n")
    nw("run", str(exp), check=True)
    out = nw("diff", first, "a", check=True).stdout
    assert "input 1 differs" not in out and "input 1 (a static file): content differs" in out, out
    assert "+c" in out, out


def test_force_re_runs_a_cached_step_and_reports_non_determinism(tmp_path: Path, store_root: Path) -> None:
    exp = write(tmp_path, EXPERIMENT + "noisy = output(f'cat {a}/a.txt > $out/n.txt; head -c 16 /dev/urandom "
                                       "| od -An -tx1 > $out/noise.txt; touch MARKS/noisy.$$')\n")
    nw("run", str(exp), check=True)
    old = link_hash("noisy")
    proc = nw("run", "--force", str(exp), "noisy", "b", check=True)
    assert runs_of(tmp_path, "noisy") == 2 and runs_of(tmp_path, "b") == 2 and runs_of(tmp_path, "a") == 1
    assert "step 'noisy' is not deterministic" in proc.stderr and "noise.txt (content differs)" in proc.stderr
    assert "n.txt" not in proc.stderr.replace("noise.txt", "")
    assert "b: forced re-run reproduced the recorded output (deterministic)" in proc.stderr
    new = link_hash("noisy")
    assert new != old
    doc = json.loads(nw("show", "noisy", "--json", check=True).stdout)
    record = json.loads((store_root / "realisations" / f"{doc['resolved_key']}.json").read_text())
    assert record["outputs"]["out"] == new  # the new realisation replaced the old record
    assert "forced" in nw("why", "noisy", check=True).stdout


def test_force_needs_steps(tmp_path: Path) -> None:
    proc = nw("run", "--force", str(write(tmp_path)))
    assert proc.returncode == 1 and "--force needs the steps" in proc.stderr


def test_check_compares_a_re_run_with_the_stored_bytes_without_changing_the_store(tmp_path: Path,
                                                                                  store_root: Path) -> None:
    exp = write(tmp_path, EXPERIMENT + "noisy = output('echo same > $out/same.txt; head -c 16 /dev/urandom "
                                       "| od -An -tx1 > $out/noise.txt')\n")
    nw("run", str(exp), check=True)
    before = tree_snapshot(store_root)
    ok = nw("check", "a", "b", check=True)
    assert ok.stdout.splitlines() == ["a: deterministic", "b: deterministic"]
    assert runs_of(tmp_path, "a") == 2 and runs_of(tmp_path, "b") == 2
    bad = nw("check", "noisy")
    assert bad.returncode == 1 and "noisy: NOT deterministic" in bad.stdout
    assert "noise.txt (content differs)" in bad.stdout and "same.txt" not in bad.stdout
    doc = json.loads(nw("check", "noisy", "--json").stdout)
    assert doc["noisy"]["deterministic"] is False
    assert tree_snapshot(store_root) == before
