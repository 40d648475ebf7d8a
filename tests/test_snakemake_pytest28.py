"""Found by running Snakemake's own pytest tests with the executor (tests/snakemake_pytest_compat.py, wave 28).

test_github_issue3913 reads the run's log and counts the jobs started (`    resources:` lines) and finished
(`Finished jobid:` lines): 3 of 4 with `--executor nixworkflow`. A target rule with nothing to run (`rule all`, no
output) that becomes ready is finished by the executor's restoring pass, which printed nothing for it, so tools that
read the log (log handler plugins, Snakemake's tests) saw one job never start or finish. It is now printed as the
scheduler prints it, start and finish, whether the jobs before it ran or were restored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytest.importorskip("snakemake")

SNAKEFILE = """
rule all:
    input: "a.txt", "b.txt"

rule make:
    output: "{name}.txt"
    shell: "echo {wildcards.name} > {output}"
"""


def run(wf: Path) -> str:
    """`snakemake --executor nixworkflow` (the real CLI) in `wf`; the text of the log it wrote."""
    logs = wf / ".snakemake" / "log"
    before = set(logs.glob("*.log")) if logs.exists() else set()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-c", "2", "--nocolor", "--executor", "nixworkflow"],
                          cwd=wf, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    (log,) = set(logs.glob("*.log")) - before
    return log.read_text()


def test_a_target_rule_with_nothing_to_run_is_logged_as_started_and_finished(tmp_path: Path, isolated: Path) -> None:
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)
    ran = run(wf)
    assert ran.count("localrule make:") == 2
    assert ran.count("localrule all:") == 1, ran
    assert ran.count("Finished jobid: 0 (Rule: all)") == 1, ran
    shutil.rmtree(wf / ".snakemake" / "metadata")
    for name in ("a", "b"):
        (wf / f"{name}.txt").unlink()
    restored = run(wf)
    assert "localrule make:" not in restored  # both served from the store
    assert restored.count("localrule all:") == 1, restored
    assert restored.count("Finished jobid: 0 (Rule: all)") == 1, restored
