"""Trust probe (wave 25): reaping what a step left running must be quick on a busy node.

Real processes, the real `nw` CLI and the real shell lines a Slurm job script runs (nixlib.slurm.reap_script).
The rule probed: a daemon the step left behind is killed before it can write into what is about to be stored."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixlib import nar
from nixlib.slurm import reap_script
from tests import slurm_cluster as cluster_fixtures
from tests.helpers import left_running, nw
from tests.slurm_cluster import SbatchCounter

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter

MARKER = "NWREAP_PROBE25"


def open_gate(gate: Path) -> list[str]:
    """The daemons still alive once the run has ended (escaped ones); then lets them write (they wait for `gate`,
    which the test makes only now: one that wrote while its step still ran, on a loaded machine that takes long to
    end it, wrote into the step's output, which is no escape) and end, and gives them the time to."""
    survivors = left_running(str(gate))
    gate.touch()
    time.sleep(1.5)
    return survivors


def test_the_slurm_job_scripts_reaping_kills_a_daemon_before_it_writes_on_a_node_with_many_processes(
        tmp_path: Path) -> None:
    """The clean-clone CI saw the Slurm daemon tests fail (the daemon wrote after the step ended): the job script
    ran two greps per process of the node, ~2 s a scan with a few hundred processes on a loaded machine, so a
    daemon sleeping 1-2 s wrote before it was reached. Here 800 unmarked processes stand beside one marked daemon
    that would write once the test opens its gate; the reaping must find and kill it among them (one grep over every
    environment takes milliseconds; how fast is not asserted: a test never asserts timings)."""
    late, gate = tmp_path / "late", tmp_path / "gate"
    decoys = [subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL) for _ in range(800)]
    try:
        daemon = subprocess.Popen(["sh", "-c", f"until [ -e {gate} ]; do sleep 0.1; done; echo late > {late}"],
                                  start_new_session=True, env={**os.environ, MARKER: "1"}, stdin=subprocess.DEVNULL)
        time.sleep(0.1)  # (its environment is readable once it has exec'd)
        subprocess.run(["sh", "-c", reap_script(MARKER)], check=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != MARKER})
        gate.touch()
        try:
            daemon.wait(timeout=5)
        except subprocess.TimeoutExpired:  # (it escaped and is stuck? never left running)
            daemon.kill()
            daemon.wait()
        assert daemon.returncode == -9 and not late.exists()
        assert all(d.poll() is None for d in decoys), "an unmarked process was killed"
    finally:
        for d in decoys:
            d.kill()
            d.wait()


# The daemon shows no environment for 30 ms (a real exec shows none for an instant; here it runs `env -i sh`),
# then exec's itself with the step's marker again and writes into $out (its working directory) by name once the
# test opens its gate (after the run). The step's shell exits while it shows none.
MID_EXEC = ("echo early > $out/v; m=$(/usr/bin/env | /bin/sed -n 's/^\\(NW_STEP_[0-9a-f]*\\)=.*/\\1/p'); "
            "/usr/bin/setsid /usr/bin/env -i /bin/sh -c "
            "\"touch {flag}; /bin/sleep 0.03; exec /usr/bin/env $m=1 /bin/sh -c '"
            "until [ -e {gate} ]; do /bin/sleep 0.1; done; echo late >> v'\" "
            "</dev/null >/dev/null 2>&1 & "
            "while [ ! -e {flag} ]; do /bin/sleep 0.005; done")


def test_nw_run_kills_a_daemon_its_step_left_that_shows_no_environment_when_the_step_ends(
        tmp_path: Path, isolated: Path) -> None:
    """nw run's reaping took a process adopted from the step that showed no environment (as one in the middle of
    an exec does) for one without the step's marker, found the step clear and stored its $out; the daemon then
    wrote into the stored object. It now looks again while such a process is there (~0.1 s at most)."""
    exp = tmp_path / "exp.py"
    gate = tmp_path / "gate"
    exp.write_text("from nixlib import output\n"
                   f"d = output({MID_EXEC.format(flag=tmp_path / 'flag', gate=gate)!r}, name='d')\n")
    nw("run", str(exp), "-q", check=True)
    obj = Path("nix-workflow-output/d").resolve()
    assert open_gate(gate) == []
    assert (obj / "v").read_text() == "early\n"
    assert nar.nar_hash(obj) == obj.name  # the stored object is exactly what was hashed


# Daemons that clear their environment (no marker) and leave the step's session, then write into $out once the
# test opens {gate} (after the run): by name in their working directory, through a descriptor opened before (from
# /), through a shared mapping. Each touches {flag} once it runs without the marker, and the step's shell waits for
# that before it exits.
NO_MARKER = {
    "cwd": "setsid /usr/bin/env -i /bin/sh -c 'touch {flag}; until [ -e {gate} ]; do /bin/sleep 0.1; done; "
           "echo late >> v'",
    "open-fd": "exec 3>>v; setsid /usr/bin/env -i /bin/sh -c 'cd /; touch {flag}; "
               "until [ -e {gate} ]; do /bin/sleep 0.1; done; echo late >&3'",
    "mmap": ("setsid /usr/bin/env -i {python} -c 'import mmap, os, time; f = open(\"v\", \"r+b\"); "
             "m = mmap.mmap(f.fileno(), 0); f.close(); os.chdir(\"/\"); open(\"{flag}\", \"w\").close()\n"
             "while not os.path.exists(\"{gate}\"): time.sleep(0.1)\n"
             "m[0:5] = b\"late\\n\"'"),
}


@pytest.mark.parametrize("how", sorted(NO_MARKER))
def test_nw_run_kills_a_daemon_without_the_steps_marker_that_works_in_or_holds_its_output(
        tmp_path: Path, isolated: Path, how: str) -> None:
    """`setsid env -i …` carries none of the step's markers, so the reaping by marker missed it and it wrote into
    the stored object (as root a read-only object is no obstacle). It is still a descendant of `nw run` (the
    subreaper), and it works in, holds open or maps the step's build directory: it is killed before storing."""
    flag, gate = tmp_path / "flag", tmp_path / "gate"
    daemon = NO_MARKER[how].format(python=sys.executable, flag=flag, gate=gate)
    command = (f"echo early > v; {daemon} </dev/null >/dev/null 2>&1 & "
               f"while [ ! -e {flag} ]; do /bin/sleep 0.005; done")
    exp = tmp_path / "exp.py"
    exp.write_text(f"from nixlib import output\nd = output({command!r}, name='d')\n")
    nw("run", str(exp), "-q", check=True)
    obj = Path("nix-workflow-output/d").resolve()
    assert open_gate(gate) == []
    assert (obj / "v").read_text() == "early\n"
    assert nar.nar_hash(obj) == obj.name  # the stored object is exactly what was hashed


def test_slurm_kills_daemons_without_the_steps_marker_that_work_in_or_hold_its_output(
        tmp_path: Path, sbatch_counter: SbatchCounter, isolated: Path) -> None:
    """nw run --slurm: the job script killed what still carried the step's marker; two daemons that cleared their
    environment (one writing by name in $out, one through a descriptor from /) lived on and wrote into the stored
    object. The job script now also kills what works in or holds open $out on the node."""
    flags, gate = [tmp_path / "flag-cwd", tmp_path / "flag-fd"], tmp_path / "gate"
    daemons = [NO_MARKER[how].format(flag=flag, gate=gate) for how, flag in zip(["cwd", "open-fd"], flags, strict=True)]
    command = "echo early > v; " + "".join(f"{d} </dev/null >/dev/null 2>&1 & " for d in daemons) + \
        " ".join(f"while [ ! -e {f} ]; do /bin/sleep 0.005; done;" for f in flags)
    exp = tmp_path / "exp.py"
    exp.write_text(f"from nixlib import output\nd = output({command!r}, name='d')\n")
    nw("run", str(exp), "-q", "--slurm", env=sbatch_counter.env, check=True)
    obj = Path("nix-workflow-output/d").resolve()
    assert open_gate(gate) == []  # (the node is this machine)
    assert (obj / "v").read_text() == "early\n"
    assert nar.nar_hash(obj) == obj.name
