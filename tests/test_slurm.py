"""`nw run --slurm` against a real one-node Slurm (tests/slurm_cluster.py): misses become Slurm jobs, hits
never reach Slurm, the store's lock (not Slurm) dedupes, failures and interrupts leave nothing stored.

Submissions are counted by an `sbatch` first on PATH that logs each call and runs the real one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import slurm_cluster as cluster_fixtures
from tests.helpers import REPO, nw, tree_snapshot
from tests.slurm_cluster import SbatchCounter

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter

# Each step writes the id of the Slurm job it runs in: proof that it ran there, and which job it was.
EXPERIMENT = """from nixlib import output
a = output('echo "$SLURM_JOB_ID" > $out/job; echo alpha > $out/v')
b = output(f'cat {a}/v > $out/v; echo beta >> $out/v; echo "$SLURM_JOB_ID" > $out/job')
c = output('echo "$SLURM_JOB_ID" > $out/job; echo gamma > $out/v')
"""
STEPS = ("a", "b", "c")


def _experiment(tmp_path: Path, text: str = EXPERIMENT) -> Path:
    exp = tmp_path / "exp.py"
    exp.write_text(text)
    return exp


def _record(name: str, cwd: Path | None = None) -> dict:
    return json.loads(nw("show", name, "--json", cwd=cwd, check=True).stdout)


def _objects(store: Path) -> set[str]:
    d = store / "store"
    return set(os.listdir(d)) if d.exists() else set()


def test_cold_run_submits_every_step_once_and_a_rerun_none(tmp_path: Path, sbatch_counter: SbatchCounter,
                                                            isolated: Path) -> None:
    exp = _experiment(tmp_path)
    proc = nw("run", str(exp), "--slurm", "-j", "2", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 3, proc.stderr
    out = Path("nix-workflow-output")
    assert (out / "b" / "v").read_text() == "alpha\nbeta\n"
    jobs = set()
    for name in STEPS:
        job = _record(name)["provenance"]["slurm"]["job_id"]
        assert (out / name / "job").read_text().strip() == job  # the command ran inside the recorded job
        state = sbatch_counter.cluster.client("scontrol", "show", "job", "-o", job).stdout
        assert f"JobName=nw-{name} " in state and "JobState=COMPLETED" in state
        jobs.add(job)
    assert len(jobs) == 3

    objects = _objects(isolated)
    shutil.rmtree(out)
    again = nw("run", str(exp), "--slurm", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 3, again.stderr  # every step was a hit: no sbatch at all
    assert "cached 3" in again.stderr
    assert (out / "b" / "v").read_text() == "alpha\nbeta\n" and _objects(isolated) == objects


def test_a_failing_job_stores_nothing_and_reports_like_a_local_failure(tmp_path: Path, sbatch_counter: SbatchCounter,
                                                                        isolated: Path) -> None:
    exp = _experiment(tmp_path, "from nixlib import output\n"
                                "bad = output('echo partial > $out/v; echo \"$undefined_variable\"')\n")
    before = tree_snapshot(isolated)
    proc = nw("run", str(exp), "--slurm", env=sbatch_counter.env)
    assert proc.returncode == 1 and sbatch_counter.count() == 1
    assert "step 'bad' failed: command exited with status 1 (Slurm job" in proc.stderr, proc.stderr
    after = tree_snapshot(isolated)
    added = {p for p in after if p not in before}
    assert not any(p.startswith(("store/", "realisations/")) for p in added), added
    log = next(isolated.glob("logs/**/*.log"), None) or next(p for p in isolated.rglob("*.log"))
    assert "undefined_variable: unbound variable" in log.read_text()  # strict bash, as locally; output in the log


def test_two_concurrent_runs_submit_each_step_once(tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    exp = _experiment(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), **sbatch_counter.env)
    runs = []
    for i in (1, 2):
        cwd = tmp_path / f"run{i}"
        cwd.mkdir()
        runs.append((cwd, subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "--slurm"], cwd=cwd,
                                           env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for _, p in runs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert sbatch_counter.count() == 3
    for name in STEPS:
        assert os.readlink(runs[0][0] / "nix-workflow-output" / name) == \
            os.readlink(runs[1][0] / "nix-workflow-output" / name)


def test_jobs_in_flight_are_bounded_by_j(tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    """Each step counts the nixworkflow jobs Slurm has queued or running while it runs: with -j 1, only itself."""
    count = "squeue -h -o %j | grep -c ^nw- > $out/n; sleep 0.3"
    exp = _experiment(tmp_path, "from nixlib import output\n"
                      + "".join(f"s{i} = output('{count}; echo {i} >> $out/n')\n" for i in range(2)))
    nw("run", str(exp), "--slurm", "-j", "1", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 2
    for i in range(2):
        assert Path(f"nix-workflow-output/s{i}/n").read_text() == f"1\n{i}\n"


def test_ctrl_c_cancels_the_submitted_jobs(tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    exp = _experiment(tmp_path, "from nixlib import output\nslow = output('echo started > $out/v; sleep 61.25')\n")
    before = tree_snapshot(isolated)
    env = dict(os.environ, PYTHONPATH=str(REPO), **sbatch_counter.env)
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "--slurm"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cluster = sbatch_counter.cluster
    job = _wait_for(lambda: cluster.client("squeue", "-h", "-t", "RUNNING", "-n", "nw-slow", "-o", "%i").stdout.strip())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode != 0 and "interrupted" in err, err
    state = cluster.client("scontrol", "show", "job", "-o", job).stdout
    assert "JobState=CANCELLED" in state, state
    assert not _processes_with("61.25")  # the job's processes are gone, not only its record
    after = tree_snapshot(isolated)
    assert not any(p.startswith(("store/", "realisations/")) for p in after if p not in before)


def test_resources_per_run_and_per_step_reach_the_job(tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    """The job sees its own allocation (SLURM_CPUS_PER_TASK), and --slurm-step overrides the run's option."""
    step = "s{i} = output('echo \"$SLURM_CPUS_PER_TASK\" > $out/cpus; echo {i} > $out/i')\n"
    exp = _experiment(tmp_path, "from nixlib import output\n" + "".join(step.format(i=i) for i in range(2)))
    nw("run", str(exp), "--slurm", "--slurm-cpus", "1", "--slurm-step", "s0=--cpus-per-task=2",
       env=sbatch_counter.env, check=True)
    assert Path("nix-workflow-output/s0/cpus").read_text() == "2\n"
    assert Path("nix-workflow-output/s1/cpus").read_text() == "1\n"


def test_slurm_step_naming_no_step_is_refused(tmp_path: Path) -> None:
    proc = nw("run", str(_experiment(tmp_path)), "--slurm", "--slurm-step", "trian=--gpus=1")
    assert proc.returncode == 1 and "this run has no step 'trian' (its steps: a, b, c)" in proc.stderr, proc.stderr
    assert not Path("nix-workflow-output/a").exists()


def test_slurm_options_without_slurm_are_refused(tmp_path: Path) -> None:
    proc = nw("run", str(_experiment(tmp_path)), "--slurm-partition", "gpu")
    assert proc.returncode == 1 and "add --slurm" in proc.stderr and not Path("nix-workflow-output/a").exists()


def test_slurm_without_the_client_commands_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = nw("run", str(_experiment(tmp_path)), "--slurm", env={"PATH": str(empty)})
    assert proc.returncode == 1 and "`sbatch` is not on PATH" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not Path("nix-workflow-output/a").exists()


def _wait_for(probe, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail("timed out waiting for the Slurm job to run")


def _processes_with(marker: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "pytest" not in cmd:
            found.append(cmd)
    return found
