"""Probe 26: a process a Snakemake job on Slurm (`--nixworkflow-backend slurm`, the real one-node cluster) left
running that also cleared its environment (`setsid env -i …`).

It carries no marker, so the node-side reaping by marker (probe 24b) missed it: under proctrack/linuxproc the job
ended COMPLETED while it lived on, and it wrote into the job's outputs in the shared working directory after the
submitting process had stored them (hard-linked: into the stored object itself). Now the Snakemake the Slurm plugin
starts on the node also kills, once the job's srun has ended, every process of the user started since the job began
that works in, holds open or maps one of the job's outputs, as `nw run --slurm`'s job script does for $out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import slurm_cluster as cluster_fixtures
from tests.slurm_cluster import SbatchCounter
from tests.test_snakemake_probe24b import outputs, stored_objects
from tests.test_snakemake_probe25 import NO_MARKER, left_running, open_gate
from tests.test_snakemake_slurm import slurm, snakemake, workflow

pytest.importorskip("snakemake_executor_plugin_slurm")

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter
__all__ = ["slurm"]


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_slurm_a_daemon_without_the_jobs_marker_never_changes_its_outputs_or_the_store(
        tmp_path: Path, slurm: SbatchCounter, isolated: Path, mode: str) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    wf = workflow(tmp_path / "wf", NO_MARKER.replace("FLAG-", f"{flags}/"))
    proc = snakemake(wf, slurm, "--nixworkflow-link-mode", mode)
    assert proc.returncode == 0, proc.stderr
    assert slurm.count() == 2, proc.stderr
    survivors = left_running(str(flags))  # (the node is this machine)
    open_gate(flags)
    assert survivors == []
    expected = {"out/v.txt": b"early\n", "out/d/a": b"early\n"}
    assert outputs(wf) == expected
    assert stored_objects(isolated) == expected
