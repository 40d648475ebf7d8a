"""Slurm probe (wave 14), against the real one-node test Slurm (tests/slurm_cluster.py): `nw run --slurm` and
`snakemake --executor nixworkflow --nixworkflow-backend slurm`.

- A step's last output line without a newline (often the error message) was copied to its log but never shown
  with the step's output, as a local run shows it.
- `--slurm-step NAME=ARG` could not name a step whose name holds `=` (a sweep's `sweep.lr=0.1`).
- A job over its partition's time limit stayed pending for ever (Slurm's default EnforcePartLimits=NO keeps it
  queued with reason PartitionTimeLimit): `nw run` waited for ever. It now fails the step saying why.
- Snakemake's `slurm_extra="--requeue"` (or `--array=…`) reached sbatch after the `--no-requeue` the backend sets,
  so the job was requeueable (or ran as several array tasks writing the same outputs), although `--slurm-requeue`
  is refused for that very reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import slurm_cluster as cluster_fixtures
from tests.helpers import REPO, nw, tree_snapshot
from tests.slurm_cluster import SbatchCounter

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter

SNAKEMAKE = ["--executor", "nixworkflow", "--nixworkflow-backend", "slurm", "-j", "4", "--slurm-no-account",
             "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1"]


def _experiment(tmp_path: Path, text: str) -> Path:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n" + text)
    return exp


def _stored(store: Path, before: dict) -> set[str]:
    return {p for p in tree_snapshot(store) if p not in before and p.startswith(("store/", "realisations/"))}


def test_the_last_output_line_without_a_newline_is_shown_with_the_steps_output(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    """A tool that prints its error without a trailing newline: locally `[bad] no such sample: s7` is shown;
    on Slurm only the log had it."""
    exp = _experiment(tmp_path, "bad = output('echo loading; printf \"no such sample: s7\" >&2; exit 1')\n")
    proc = nw("run", str(exp), "--slurm", env=sbatch_counter.env)
    assert proc.returncode == 1 and sbatch_counter.count() == 1, proc.stderr
    assert "[bad] loading\n" in proc.stdout, proc.stdout
    assert "[bad] no such sample: s7\n" in proc.stdout, proc.stdout
    log = nw("log", "bad", check=True).stdout
    assert "no such sample: s7" in log, log


def test_slurm_step_reaches_a_step_whose_name_holds_an_equals_sign(
        tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    """Steps of a sweep in a dict are named `sweep.lr=0.1`; `--slurm-step sweep.lr=0.1=--mem=300` was refused
    ("expected STEP=SBATCH_OPTION"), so such a step could not be given its own resources on the command line."""
    exp = _experiment(tmp_path, "sweep = {f'lr={lr}': output(f'echo {lr} > $out/v; "
                                "echo ${{SLURM_MEM_PER_NODE:-none}} >> $out/v') for lr in ('0.1', '0.2')}\n")
    proc = nw("run", str(exp), "--slurm", "--slurm-step", "sweep.lr=0.1=--mem=300", env=sbatch_counter.env)
    assert proc.returncode == 0, proc.stderr
    assert sbatch_counter.count() == 2, proc.stderr
    assert Path("nix-workflow-output/sweep.lr=0.1/v").read_text() == "0.1\n300\n"
    assert Path("nix-workflow-output/sweep.lr=0.2/v").read_text().startswith("0.2\n")
    assert Path("nix-workflow-output/sweep.lr=0.2/v").read_text() != "0.2\n300\n"  # the option was for one step


@pytest.fixture
def short_partition(slurm_cluster: cluster_fixtures.SlurmCluster) -> Iterator[str]:
    """A partition whose jobs may run one minute at most (the cluster keeps EnforcePartLimits=NO, Slurm's default)."""
    name = "short14"
    made = slurm_cluster.client("scontrol", "create", f"PartitionName={name}", f"Nodes={cluster_fixtures.NODE}",
                                "MaxTime=1", "State=UP")
    assert made.returncode == 0, made.stderr
    try:
        yield name
    finally:
        slurm_cluster.client("scancel", "-p", name)
        slurm_cluster.client("scontrol", "delete", f"PartitionName={name}")


def test_a_job_over_its_partitions_time_limit_fails_instead_of_waiting_for_ever(
        tmp_path: Path, sbatch_counter: SbatchCounter, short_partition: str, isolated: Path) -> None:
    """Slurm keeps such a job pending (reason PartitionTimeLimit) until an administrator changes the limit:
    `nw run` printed `is pending (PartitionTimeLimit)` and waited for ever."""
    exp = _experiment(tmp_path, f"t = output('echo t > $out/v', resources={{'partition': '{short_partition}', "
                                "'time': '10'})\n")
    before = tree_snapshot(isolated) if isolated.exists() else {}
    try:
        proc = nw("run", str(exp), "--slurm", env=sbatch_counter.env, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("nw run --slurm kept waiting for a job Slurm can never start (PartitionTimeLimit)")
    assert proc.returncode == 1 and sbatch_counter.count() == 1, proc.stderr
    assert "step 't' failed: Slurm job" in proc.stderr, proc.stderr
    assert "can never start (Slurm's reason: PartitionTimeLimit): its time limit (00:10:00) is longer than " \
        f"partition {short_partition} allows" in proc.stderr, proc.stderr
    assert "lower `time`" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    job = proc.stderr.split("Slurm job ", 1)[1].split()[0]
    state = sbatch_counter.cluster.client("scontrol", "show", "job", "-o", job).stdout
    assert "JobState=CANCELLED" in state, state  # not left in the queue
    assert not _stored(isolated, before)
    assert "PartitionTimeLimit" in nw("log", "t", check=True).stdout


@pytest.fixture
def snakemake_slurm(sbatch_counter: SbatchCounter) -> SbatchCounter:
    """As tests/test_snakemake_slurm.py: an `srun` that finds the test cluster (the plugin's jobstep clears SLURM_*)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    srun = shutil.which("srun")
    assert srun is not None
    wrapper = sbatch_counter.bin / "srun"
    wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={sbatch_counter.cluster.conf} exec {srun} "$@"\n')
    wrapper.chmod(0o755)
    return sbatch_counter


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
@pytest.mark.parametrize("extra", ["--requeue", "--array=0-2"])
def test_slurm_extra_that_would_run_a_second_copy_is_refused(tmp_path: Path, snakemake_slurm: SbatchCounter,
                                                            isolated: Path, extra: str) -> None:
    """The plugin puts slurm_extra after the `--no-requeue` the backend sets: `--requeue` made the job requeueable
    (Requeue=1) and `--array=0-2` ran three tasks writing one output, while `--slurm-requeue` is refused."""
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text('rule a:\n    output: "out/a.txt"\n'
                                  f'    resources: slurm_extra="{extra}"\n'
                                  '    shell: "echo ${{SLURM_JOB_ID:-none}} >> {output}"\n')
    env = dict(os.environ, PYTHONPATH=str(REPO), **snakemake_slurm.env)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *SNAKEMAKE], cwd=wf, env=env, text=True,
                          capture_output=True, timeout=240)
    assert proc.returncode != 0, proc.stderr
    assert snakemake_slurm.count() == 0, proc.stderr  # nothing was submitted
    assert f"nixworkflow: rule a: resources slurm_extra: '{extra}' cannot be used:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (wf / "out" / "a.txt").exists()
    assert not (isolated / "realisations").exists() or not os.listdir(isolated / "realisations")
    ok = 'rule a:\n    output: "out/a.txt"\n    shell: "echo ${{SLURM_JOB_ID:-none}} >> {output}"\n'
    (wf / "Snakefile").write_text(ok)  # without it, the job runs once and is stored
    again = subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", *SNAKEMAKE], cwd=wf, env=env, text=True,
                           capture_output=True, timeout=240)
    assert again.returncode == 0, again.stderr
    job = json.loads(nw("show", "out/a.txt", "--json", cwd=wf, check=True).stdout)["provenance"]["slurm"]["job_id"]
    assert (wf / "out" / "a.txt").read_text() == f"{job}\n"
