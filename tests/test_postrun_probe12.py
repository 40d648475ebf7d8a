"""Wave 12 probes of what Snakemake and Luigi check AFTER a job or task has run, and can turn into a failure.
The invariant: the store never holds (nor serves on the next run) the products of a job or task that its tool
then calls failed. Each test is a bug the probe found, checked to fail on the code before its fix."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.test_snakemake import snakemake
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


def stored(store: Path) -> tuple[list[str], list[str]]:
    """The realisation records and the store objects in `store`."""
    records = sorted(str(p.relative_to(store)) for p in (store / "realisations").rglob("*") if p.is_file()) \
        if (store / "realisations").exists() else []
    objects = sorted(p.name for p in (store / "store").iterdir()) if (store / "store").exists() else []
    return records, objects


@pytest.mark.parametrize("flag", ["", "touch"])
def test_snakemake_output_that_is_a_dangling_link_is_not_stored(tmp_path: Path, flag: str) -> None:
    """Snakemake waits for a job's outputs with os.path.exists, which follows links: an output that is a symbolic
    link to a file that does not exist is missing, and the job fails (MissingOutputException; with touch(), its
    touch of the link does not create the target and an assertion fails). The executor checked outputs with
    lexists only, so it stored the link and recorded a realisation of a job Snakemake called failed."""
    output = 'touch("a.txt")' if flag else '"a.txt"'
    wf = write(tmp_path / "wf", {"Snakefile": f'''
rule a:
    output: {output}
    shell: "ln -s nowhere/x.txt {{output}}"
'''})
    store = tmp_path / "store"
    env = {"NIX_WORKFLOW_STORE": str(store)}
    for _ in range(2):
        proc = snakemake(wf, "--latency-wait", "0", env=env)
        assert proc.returncode != 0, proc.stderr
        assert stored(store) == ([], [])
        assert "restored the outputs" not in proc.stderr
        assert "a.txt (a link to nowhere/x.txt, which does not exist)" in proc.stderr, proc.stderr


def test_snakemake_job_whose_input_is_newer_than_now_is_not_stored(tmp_path: Path) -> None:
    """After a job ran, Snakemake touches its outputs and fails the job if one is older than its newest input
    (check_output_mtime: clock skew). With an input modified in the future, Snakemake fails the job every time,
    but the executor had stored its products first: the store held a realisation of a failed job (and served it
    on the next run, where Snakemake failed the restored job again)."""
    wf = write(tmp_path / "wf", {"Snakefile": '''
rule a:
    input: "in.txt"
    output: "a.txt"
    shell: "cat {input} > {output}"
''', "in.txt": "data\n"})
    later = time.time() + 2 * 86400
    os.utime(wf / "in.txt", (later, later))
    store = tmp_path / "store"
    env = {"NIX_WORKFLOW_STORE": str(store)}
    for _ in range(2):
        proc = snakemake(wf, env=env)
        assert proc.returncode != 0, proc.stderr
        assert "has older modification time" in proc.stderr, proc.stderr  # Snakemake's own verdict
        assert stored(store) == ([], [])
        assert "restored the outputs" not in proc.stderr
        assert "its outputs are not stored" in proc.stderr, proc.stderr


LUIGI_TASKS = '''
import os
import luigi
from luigi_nixworkflow import NixTask


class Marked(NixTask):
    """Its complete() also wants a _SUCCESS marker, which run() forgets to write."""
    def output(self):
        return luigi.LocalTarget("out/a.txt")

    def complete(self):
        return os.path.exists("out/a.txt") and os.path.exists("out/_SUCCESS")

    def run(self):
        with self.output().open("w") as f:
            f.write("a\\n")


class Checked(NixTask):
    """Its complete() asks the store too (super()) and checks its file: complete once run."""
    def output(self):
        return luigi.LocalTarget("out/b.txt")

    def complete(self):
        return super().complete() and os.path.exists("out/b.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write("b\\n")
'''


def luigi(where: Path, task: str, store: Path) -> str:
    env = dict(os.environ, PYTHONPATH=f"{where}{os.pathsep}{REPO}", NIX_WORKFLOW_STORE=str(store),
               LUIGI_CONFIG_PATH=str(where / "luigi.cfg"))
    proc = subprocess.run([str(Path(sys.executable).with_name("luigi")), "--module", "tasks", task,
                           "--local-scheduler"], cwd=where, env=env, text=True, capture_output=True, timeout=300)
    return proc.stdout + proc.stderr


def test_luigi_check_complete_on_run_failure_is_not_stored(tmp_path: Path) -> None:
    """With `[worker] check_complete_on_run = true`, Luigi fails a task whose complete() still says False after
    run() (TaskException). A legacy NixTask's products were stored before Luigi asked: the store held a realisation
    of a task Luigi called failed. A complete() override that agrees (calling super().complete() too) still
    passes, and its result is stored."""
    wf = write(tmp_path / "wf", {"tasks.py": LUIGI_TASKS, "luigi.cfg": "[worker]\ncheck_complete_on_run = true\n"})
    store = tmp_path / "store"
    for _ in range(2):
        out = luigi(wf, "Marked", store)
        assert "This progress looks :(" in out, out[-3000:]
        assert stored(store) == ([], [])
        assert "check_complete_on_run" in out, out[-3000:]
    out = luigi(wf, "Checked", store)
    assert "This progress looks :)" in out, out[-3000:]
    records, objects = stored(store)
    assert len(records) == 1 and len(objects) == 1
    assert (wf / "out" / "b.txt").read_text() == "b\n"
