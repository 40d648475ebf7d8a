"""`nw view` shows Snakemake and Luigi runs like `nw run`'s: real `snakemake --executor nixworkflow` and `luigi`
command lines journal their jobs and tasks (snakemake_executor_nixworkflow/journal.py, luigi_nixworkflow/journal.py),
and the real `nw view` server lists each run with its steps, their upstream and their states (done, cached,
failed), live while the run is in progress. Expected names and edges are written from the workflows below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.test_view import api, graph, view_server, wait_for

pytest.importorskip("snakemake")
pytest.importorskip("luigi")

SNAKEFILE = """
rule all:
    input: "results/combined.txt"

rule gen:
    output: "data/{s}.txt"
    shell: "echo gen {wildcards.s} > {output}"

rule combine:
    input: "data/a.txt", "data/b.txt"
    output: "results/combined.txt"
    shell: "cat {input} > {output}"

rule bad:
    input: "data/a.txt"
    output: "results/bad.txt"
    shell: "echo about to fail; exit 3"

rule gated:
    input: "results/combined.txt"
    output: "results/gated.txt"
    shell: "echo waiting; while [ ! -e go ]; do sleep 0.05; done; cat {input} > {output}"
"""


def snakemake(cwd: Path, *targets: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "snakemake", "-c", "2", "--nocolor", "--executor", "nixworkflow", *targets]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if not wait:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def runs_of(base: str, tool: str) -> list[dict]:
    return [r for r in api(base + "api/runs") if r.get("label") == tool]


def test_snakemake_runs_appear_with_their_jobs_and_states(isolated: Path) -> None:
    cwd = Path.cwd()
    (cwd / "Snakefile").write_text(SNAKEFILE)
    first = snakemake(cwd)
    assert first.returncode == 0, first.stderr
    for f in ("data/a.txt", "data/b.txt", "results/combined.txt"):
        (cwd / f).unlink()  # gone from the working directory: the next run restores them from the store
    second = snakemake(cwd, "results/combined.txt", "results/bad.txt", "--keep-going")
    assert second.returncode != 0
    with view_server(cwd) as base:
        newest, oldest = runs_of(base, "snakemake")
        assert oldest["counts"] == {"done": 3} and oldest["live"] is False
        assert newest["counts"] == {"cached": 3, "failed": 1}
        nodes = graph(base, oldest["id"])
        assert {n: sorted(v["upstream"]) for n, v in nodes.items()} == {
            "gen[s=a]": [], "gen[s=b]": [], "combine": ["gen[s=a]", "gen[s=b]"]}
        step = api(f"{base}api/step?key={nodes['combine']['resolved_key']}")
        assert step["command"].startswith("cat data/a.txt data/b.txt >") and step["provenance"]["rule"] == "combine"
        again = graph(base, newest["id"])
        assert {n: v["status"] for n, v in again.items()} == {
            "gen[s=a]": "cached", "gen[s=b]": "cached", "combine": "cached", "bad": "failed"}
        assert again["bad"]["upstream"] == ["gen[s=a]"] and "exit status 3" in again["bad"]["error"]
        assert again["combine"]["resolved_key"] == nodes["combine"]["resolved_key"]


def test_snakemake_job_goes_from_running_to_done_live(isolated: Path) -> None:
    cwd = Path.cwd()
    (cwd / "Snakefile").write_text(SNAKEFILE)
    run = snakemake(cwd, "results/gated.txt", wait=False)
    try:
        with view_server(cwd) as base:
            run_id = wait_for(lambda: next((r["id"] for r in runs_of(base, "snakemake") if r["live"]), None), 120)
            nodes = wait_for(lambda: (g := graph(base, run_id))["gated"]["status"] == "running" and g, 120)
            assert nodes["combine"]["status"] == "done" and nodes["gated"]["upstream"] == ["combine"]
            (cwd / "go").touch()
            assert run.wait(120) == 0, run.stderr.read()
            final = graph(base, run_id)
            assert final["gated"]["status"] == "done" and final["gated"]["resolved_key"]
            assert api(f"{base}api/run?id={run_id}")["live"] is False
    finally:
        (cwd / "go").touch()
        run.wait(120)


LUIGI = str(Path(sys.executable).with_name("luigi"))
TASKS = '''
import luigi
from luigi_nixworkflow import NixTask


class Part(NixTask):
    i = luigi.IntParameter()

    def command(self):
        return f"echo part {self.i} > {self.output()}/v"


class Whole(NixTask):
    def requires(self):
        return [Part(i=0), Part(i=1)]

    def command(self):
        return "cat " + " ".join(f"{t}/v" for t in self.input()) + f" > {self.output()}/all"


class Broken(NixTask):
    def requires(self):
        return Part(i=0)

    def command(self):
        return "echo about to fail; exit 3"


class Lazy(luigi.Task):
    """A plain task whose run() forgets to write its output."""

    def output(self):
        return luigi.LocalTarget("never-written.txt")

    def run(self):
        pass


class Unready(NixTask):
    def requires(self):
        return Lazy()

    def command(self):
        return f"cat {self.input().path} > {self.output()}/v"


class Gated(NixTask):
    def requires(self):
        return Whole()

    def command(self):
        return f"echo waiting; while [ ! -e {GO} ]; do sleep 0.05; done; cat {self.input()}/all > {self.output()}/x"
'''


def luigi(cwd: Path, *args: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    """The real `luigi` command line with two worker processes (tasks run in forked processes)."""
    (cwd / "viewtasks.py").write_text(f"GO = {str(cwd / 'go')!r}\n" + TASKS)
    argv = [LUIGI, "--module", "viewtasks", *args, "--local-scheduler", "--workers", "2", "--no-lock"]
    env = dict(os.environ, PYTHONPATH=f"{cwd}{os.pathsep}{REPO}")
    if not wait:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def by_family(nodes: dict[str, dict]) -> dict[str, tuple[str, list[str]]]:
    """task_id -> its family's name and parameters (task ids end in a hash): 'Part(i=0)'-like names."""
    def short(task_id: str) -> str:
        return task_id.rsplit("_", 1)[0].rstrip("_")
    return {short(n): (v["status"], sorted(short(u) for u in v["upstream"])) for n, v in nodes.items()}


def test_luigi_runs_appear_with_their_tasks_and_states(isolated: Path) -> None:
    cwd = Path.cwd()
    first = luigi(cwd, "Whole")
    assert first.returncode == 0 and "This progress looks :)" in first.stderr + first.stdout, first.stderr
    luigi(cwd, "Whole")  # all complete: served from the store
    luigi(cwd, "Broken")
    with view_server(cwd) as base:
        broken, cached, ran = runs_of(base, "luigi")
        assert by_family(graph(base, ran["id"])) == {
            "Part_0": ("done", []), "Part_1": ("done", []), "Whole": ("done", ["Part_0", "Part_1"])}
        assert by_family(graph(base, cached["id"])) == {
            "Part_0": ("cached", []), "Part_1": ("cached", []), "Whole": ("cached", ["Part_0", "Part_1"])}
        nodes = graph(base, broken["id"])
        assert by_family(nodes) == {"Part_0": ("cached", []), "Broken": ("failed", ["Part_0"])}
        assert all(r["live"] is False for r in (broken, cached, ran))
        whole = next(v for n, v in graph(base, ran["id"]).items() if n.startswith("Whole"))
        assert api(f"{base}api/step?key={whole['resolved_key']}")["command"].startswith("cat ")


def test_a_luigi_task_failing_before_its_realisation_is_shown_failed(isolated: Path) -> None:
    """Luigi finds Unready's dependency missing when it is about to run it (Lazy wrote nothing), in a worker
    process: the engine never sees the task, yet the journal shows it failed, with Luigi's reason."""
    cwd = Path.cwd()
    run = luigi(cwd, "Unready")
    assert run.returncode == 0 and ":(" in run.stderr + run.stdout  # Luigi's exit code says "scheduled", not "done"
    with view_server(cwd) as base:
        (only,) = runs_of(base, "luigi")
        nodes = graph(base, only["id"])
        assert by_family(nodes) == {"Unready": ("failed", [])}
        (unready,) = nodes.values()
        assert "Unfulfilled dependency" in unready["error"], unready


def test_luigi_task_in_a_worker_process_goes_from_running_to_done_live(isolated: Path) -> None:
    cwd = Path.cwd()
    run = luigi(cwd, "Gated", wait=False)
    try:
        with view_server(cwd) as base:
            run_id = wait_for(lambda: next((r["id"] for r in runs_of(base, "luigi") if r["live"]), None), 120)

            def gated() -> dict | None:
                return next((v for n, v in graph(base, run_id).items() if n.startswith("Gated_")), None)

            wait_for(lambda: (g := gated()) is not None and g["status"] == "running", 120)
            assert "waiting" in wait_for(lambda: api(f"{base}api/log?key={gated()['resolved_key']}")["text"])
            (cwd / "go").touch()
            assert run.wait(120) == 0, run.stderr.read()
            assert gated()["status"] == "done"
            assert api(f"{base}api/run?id={run_id}")["live"] is False
    finally:
        (cwd / "go").touch()
        run.wait(120)
