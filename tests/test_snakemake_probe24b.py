"""Probe 24b: a process a Snakemake job left running (`setsid … &`) under `--executor nixworkflow`, on Slurm
(`--nixworkflow-backend slurm`, the real one-node cluster) and locally.

The bug (the Slurm test failed before the fix): the test cluster, like many small ones, uses proctrack/linuxproc,
which does not track a `setsid` daemon, so the job ended COMPLETED while the daemon lived on. It then wrote into the
job's outputs in the shared working directory after the submitting process had stored them: the run left outputs
that are not what the store holds (`nw show` no longer knew them), and with `--nixworkflow-link-mode hardlink`
(the stored object is the output's inode) it changed the stored object itself. Now the Snakemake the Slurm plugin
starts on the node (slurm-jobstep) marks the job's processes and kills every one still marked when the job's srun
has ended, before that Snakemake (and so the Slurm job) ends, as `nw run --slurm`'s job script does. The local
executor had the same bug (its tests failed before the fix, see below)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import slurm_cluster as cluster_fixtures
from tests.helpers import REPO
from tests.slurm_cluster import SbatchCounter
from tests.test_snakemake_slurm import slurm, snakemake, workflow

pytest.importorskip("snakemake_executor_plugin_slurm")

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter
__all__ = ["slurm"]

# A file output and a directory output; each job leaves a daemon (its own session) that writes once the test opens
# its gate (`../gate`, made after the run ended): a daemon that wrote while its job still ran (a loaded machine can
# take seconds to end a job) wrote into the job's outputs, which is no escape; only one that outlived its job can.
DAEMONS = """
rule all:
    input: "out/v.txt", "out/d"

rule v:
    output: "out/v.txt"
    shell: "echo early > {output}; setsid sh -c 'until [ -e ../gate ]; do sleep 0.1; done; echo late >> {output}' "
           "> /dev/null 2>&1 < /dev/null &"

rule d:
    output: directory("out/d")
    shell: "mkdir -p {output}; echo early > {output}/a; "
           "setsid sh -c 'until [ -e ../gate ]; do sleep 0.1; done; echo evil > {output}/w' "
           "> /dev/null 2>&1 < /dev/null &"
"""

EXPECTED = {"out/v.txt": b"early\n", "out/d/a": b"early\n"}


def outputs(wf: Path) -> dict[str, bytes]:
    """The files under out/ (without Snakemake's timestamp marker of a directory output)."""
    return {str(p.relative_to(wf)): p.read_bytes() for p in sorted((wf / "out").rglob("*"))
            if p.is_file() and p.name != ".snakemake_timestamp"}


def stored_objects(store: Path) -> dict[str, bytes]:
    """Every file of every object the store's realisation records name, by `output[/inside]`."""
    found: dict[str, bytes] = {}
    for record in (store / "realisations").glob("*.json"):
        for name, h in json.loads(record.read_text())["outputs"].items():
            obj = store / "store" / h
            files = [obj] if obj.is_file() else [p for p in sorted(obj.rglob("*")) if p.is_file()]
            for f in files:
                inside = "" if f == obj else "/" + str(f.relative_to(obj))
                if not inside.startswith("/.snakemake"):
                    found[name + inside] = f.read_bytes()
    return found


def left_running(wf: Path) -> list[str]:
    """The command lines of live processes working in `wf` (a daemon of one of its jobs that outlived the run)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/cwd").startswith(str(wf)):
                found.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # gone meanwhile
    return found


def open_gate(wf: Path) -> None:
    """Let every daemon still alive write (see DAEMONS) and end, and give it the time to."""
    (wf.parent / "gate").touch()
    time.sleep(1.5)


@pytest.mark.long
@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_slurm_a_daemon_a_job_left_behind_never_changes_its_outputs_or_the_store(
        tmp_path: Path, slurm: SbatchCounter, isolated: Path, mode: str) -> None:
    wf = workflow(tmp_path / "wf", DAEMONS)
    proc = snakemake(wf, slurm, "--nixworkflow-link-mode", mode)
    assert proc.returncode == 0, proc.stderr
    assert slurm.count() == 2, proc.stderr
    survivors = left_running(wf)
    open_gate(wf)
    assert survivors == []
    assert stored_objects(isolated) == EXPECTED
    assert outputs(wf) == EXPECTED

    shutil.rmtree(wf / "out")
    again = snakemake(wf, slurm, "--nixworkflow-link-mode", mode)
    assert again.returncode == 0, again.stderr
    assert slurm.count() == 2, again.stderr  # both restored: nothing submitted
    assert outputs(wf) == EXPECTED


def local(wf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The local `snakemake --executor nixworkflow` (real CLI) in `wf`."""
    argv = [sys.executable, "-m", "snakemake", "-c", "2", "--nocolor", "--executor", "nixworkflow", *args]
    return subprocess.run(argv, cwd=wf, env=dict(os.environ, PYTHONPATH=str(REPO)), text=True,
                          capture_output=True, timeout=240)


def job_logs(store: Path) -> str:
    """The jobs' logs in the store (`nw log`), all of them."""
    return "".join(p.read_text() for p in sorted((store / "logs").glob("*.log")))


# The local executor used to leave these daemons alive: they wrote into the outputs after they were stored (copy
# mode: the working directory no longer held what the store did) or, hard-linked, into the stored object (later
# found corrupt and quarantined). Jobs ran through Snakemake's shell() in threads sharing one run-wide marker, reaped
# only on Ctrl-C. Now every job's wrapper gives its processes a marker of their own, killed when the job ends.
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_local_a_daemon_a_job_left_behind_never_changes_its_outputs_or_the_store(
        tmp_path: Path, isolated: Path, mode: str) -> None:
    wf = workflow(tmp_path / "wf", DAEMONS)
    proc = local(wf, "--nixworkflow-link-mode", mode)
    assert proc.returncode == 0, proc.stderr
    survivors = left_running(wf)
    open_gate(wf)
    assert survivors == []
    assert stored_objects(isolated) == EXPECTED
    assert outputs(wf) == EXPECTED
    assert job_logs(isolated).count("left running when its command exited") == 2  # noted, as `nw run` does


# script:, run: (its own Snakemake process) and shell: jobs, in the host env and in pure mode (which clears the
# environment: the markers must survive it). Pure mode has no PATH: tools by absolute path.
OTHER_KINDS = """
rule all:
    input: "out/s.txt", "out/r.txt", "out/p.txt"

rule s:
    output: "out/s.txt"
    script: "daemon.py"

rule r:
    output: "out/r.txt"
    run:
        shell("echo early > {output}; /usr/bin/setsid /bin/sh -c 'until [ -e ../gate ]; do /bin/sleep 0.1; done; "
              "echo late >> {output}' > /dev/null 2>&1 < /dev/null &")

rule p:
    output: "out/p.txt"
    shell: "echo early > {output}; /usr/bin/setsid /bin/sh -c 'until [ -e ../gate ]; do /bin/sleep 0.1; done; "
           "echo late >> {output}' > /dev/null 2>&1 < /dev/null &"
"""

DAEMON_SCRIPT = """
import subprocess, sys
out = snakemake.output[0]
with open(out, "w") as f:
    f.write("early\\n")
code = ("import os, time\\nwhile not os.path.exists('../gate'): time.sleep(0.1)\\n"
        f"open({out!r}, 'a').write('late\\\\n')")
subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
@pytest.mark.slow
@pytest.mark.parametrize("pure", [False, True])
def test_local_daemons_of_script_run_and_pure_jobs_are_killed_when_their_job_ends(
        tmp_path: Path, isolated: Path, pure: bool) -> None:
    wf = workflow(tmp_path / "wf", OTHER_KINDS)
    (wf / "daemon.py").write_text(DAEMON_SCRIPT)
    proc = local(wf, "--nixworkflow-link-mode", "hardlink", *(["--nixworkflow-pure"] if pure else []))
    assert proc.returncode == 0, proc.stderr
    survivors = left_running(wf)
    open_gate(wf)
    assert survivors == []
    expected = {f"out/{name}.txt": b"early\n" for name in "prs"}
    assert stored_objects(isolated) == expected
    assert outputs(wf) == expected
    assert job_logs(isolated).count("left running when its command exited") == 3


def test_a_jobs_shell_wrapper_is_no_executable_written_for_it(tmp_path: Path) -> None:
    """Each job's wrapper (its `shell_exec`, carrying its own reaper marker) was an executable file written per
    job while other jobs' threads forked: a child forked meanwhile holds the file open for writing until it execs,
    and Snakemake's exec of that wrapper then failed the job with "[Errno 26] Text file busy" (seen in CI). A job's
    wrapper is now a symlink to a script shared by its env and shell, written once, with the job's variables in a
    plain file it reads; run here for real, it sets the job's marker and `$state`."""
    from nixlib.env import HOST
    from nixlib.recipe import RunOptions
    from snakemake_executor_nixworkflow.runtime import Runtime

    runtime = Runtime(None, None, RunOptions(), str(tmp_path), tmp_path / "store")
    try:
        paths = [Path(runtime.shell(HOST, RunOptions(), "/bin/sh", tmp_path / f"job{i}",
                                    {f"NW_STEP_{i}": "1", "state": f"/s/{i}"})) for i in range(2)]
        assert all(p.is_symlink() for p in paths)
        assert paths[0].resolve() == paths[1].resolve()  # one script, written once
        for i, path in enumerate(paths):
            out = subprocess.run([str(path), "-c", 'echo "$NW_STEP_' + str(i) + ' $state"'], capture_output=True,
                                 text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
            assert out.stdout == f"1 /s/{i}\n", out.stderr
    finally:
        runtime.close()
