"""Slurm probe (wave 16), against the real one-node test Slurm (tests/slurm_cluster.py).

- `snakemake --executor nixworkflow --nixworkflow-backend slurm`: a job Slurm can never start as submitted (over its
  partition's time limit: Slurm's default EnforcePartLimits=NO keeps it pending with reason PartitionTimeLimit)
  was waited for for ever, silently; `nw run --slurm` already failed such a step. The backend now looks at the
  run's pending jobs with one batched squeue every few seconds, cancels such a job and fails it with the same
  message, in Snakemake's terms.
- The PartitionTimeLimit message names the partition's MaxTime (it pointed to `sinfo` only)."""

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


@pytest.fixture
def short_partition(slurm_cluster: cluster_fixtures.SlurmCluster) -> Iterator[str]:
    """A partition whose jobs may run one minute at most (the cluster keeps EnforcePartLimits=NO, Slurm's default)."""
    name = "short16"
    made = slurm_cluster.client("scontrol", "create", f"PartitionName={name}", f"Nodes={cluster_fixtures.NODE}",
                                "MaxTime=1", "State=UP")
    assert made.returncode == 0, made.stderr
    try:
        yield name
    finally:
        slurm_cluster.client("scancel", "-p", name)
        slurm_cluster.client("scontrol", "delete", f"PartitionName={name}")


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


def _job_state(counter: SbatchCounter, job: str) -> str:
    return counter.cluster.client("scontrol", "show", "job", "-o", job).stdout


@pytest.mark.parametrize("cache", [  # uncached: in `make test-long` (make test keeps the suite under 20 min)
    "", pytest.param(", nix_cache=0", marks=pytest.mark.long)], ids=["cached", "uncached"])
def test_snakemake_job_over_its_partitions_time_limit_fails_instead_of_waiting_for_ever(
        tmp_path: Path, snakemake_slurm: SbatchCounter, short_partition: str, isolated: Path, cache: str) -> None:
    """`slurm_partition=short16, runtime=10` on a partition with MaxTime=1: Slurm keeps the job pending (reason
    PartitionTimeLimit) until an administrator changes the limit; Snakemake waited for ever with no message. The
    other job of the run (-k) still runs and is stored. A rule with nix_cache=0 is submitted by the plugin alone
    (no recipe lock): it fails the same way."""
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text('rule all:\n    input: "out/a.txt", "out/b.txt"\n'
                                  'rule a:\n    output: "out/a.txt"\n'
                                  f'    resources: slurm_partition="{short_partition}", runtime=10{cache}\n'
                                  '    shell: "echo a > {output}"\n'
                                  'rule b:\n    output: "out/b.txt"\n'
                                  '    shell: "echo b > {output}"\n')
    env = dict(os.environ, PYTHONPATH=str(REPO), **snakemake_slurm.env)
    try:
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--nocolor", "-k", *SNAKEMAKE], cwd=wf, env=env,
                              text=True, capture_output=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("snakemake --nixworkflow-backend slurm kept waiting for a job Slurm can never start "
                    "(PartitionTimeLimit)")
    assert proc.returncode != 0, proc.stderr
    assert snakemake_slurm.count() == 2, proc.stderr  # a and b, each once
    err = proc.stderr
    assert "nixworkflow: rule a (jobid " in err, err
    assert "can never start (Slurm's reason: PartitionTimeLimit): its time limit (00:10:00) is longer than " \
        f"partition {short_partition} allows (MaxTime 00:01:00): lower `runtime`" in err, err
    assert "--set-resources a:runtime=" in err and "`slurm_partition`" in err, err
    assert "Traceback" not in err, err
    job = err.split("nixworkflow: rule a (jobid ", 1)[1].split("Slurm job ", 1)[1].split()[0]
    assert "JobState=CANCELLED" in _job_state(snakemake_slurm, job)  # not left in the queue
    assert not (wf / "out" / "a.txt").exists()
    assert (wf / "out" / "b.txt").read_text() == "b\n"  # the other job ran and was stored
    shown = json.loads(nw("show", "out/b.txt", "--json", cwd=wf, check=True).stdout)
    assert shown["provenance"]["slurm"]["job_id"] != job
    assert nw("show", "out/a.txt", "--json", cwd=wf).returncode != 0  # nothing stored for a


def test_nw_run_names_the_partitions_max_time(tmp_path: Path, sbatch_counter: SbatchCounter, short_partition: str,
                                              isolated: Path) -> None:
    """The PartitionTimeLimit failure of `nw run --slurm` said the job's limit but not the partition's."""
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   f"t = output('echo t > $out/v', resources={{'partition': '{short_partition}', 'time': '10'}})\n")
    before = tree_snapshot(isolated) if isolated.exists() else {}
    proc = nw("run", str(exp), "--slurm", env=sbatch_counter.env, timeout=90)
    assert proc.returncode == 1 and sbatch_counter.count() == 1, proc.stderr
    assert f"its time limit (00:10:00) is longer than partition {short_partition} allows (MaxTime 00:01:00): " \
        "lower `time`" in proc.stderr, proc.stderr
    assert not {p for p in tree_snapshot(isolated) if p not in before and p.startswith(("store/", "realisations/"))}
