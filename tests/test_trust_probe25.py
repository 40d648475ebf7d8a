"""Trust probe (wave 25): reaping what a step left running must be quick on a busy node.

Real processes, the real shell lines a Slurm job script runs (nixlib.slurm.reap_script). The rule probed: a
daemon the step left behind is killed before it can write into what is about to be stored."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from nixlib.slurm import reap_script

MARKER = "NWREAP_PROBE25"


def test_the_slurm_job_scripts_reaping_kills_a_daemon_before_it_writes_on_a_node_with_many_processes(
        tmp_path: Path) -> None:
    """The clean-clone CI saw the Slurm daemon tests fail (the daemon wrote after the step ended): the job script
    ran two greps per process of the node, ~2 s a scan with a few hundred processes on a loaded machine, so a
    daemon sleeping 1-2 s wrote before it was reached. Here 800 unmarked processes stand beside one marked daemon
    that writes after 1 s; the reaping must kill it first (one grep over every environment takes milliseconds)."""
    late = tmp_path / "late"
    decoys = [subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL) for _ in range(800)]
    try:
        daemon = subprocess.Popen(["sh", "-c", f"sleep 1; echo late > {late}"], start_new_session=True,
                                  env={**os.environ, MARKER: "1"}, stdin=subprocess.DEVNULL)
        time.sleep(0.1)  # (its environment is readable once it has exec'd)
        subprocess.run(["sh", "-c", reap_script(MARKER)], check=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != MARKER})
        daemon.wait(timeout=5)
        time.sleep(1.5)  # (had it lived, it wrote by now)
        assert daemon.returncode == -9 and not late.exists()
        assert all(d.poll() is None for d in decoys), "an unmarked process was killed"
    finally:
        for d in decoys:
            d.kill()
            d.wait()
