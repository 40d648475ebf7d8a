"""Probe 25: a process a local Snakemake job left running that also cleared its environment (`setsid env -i …`).

It carries none of the job's markers, so the per-job reaping by marker (probe 24b) missed it, and it wrote into
the job's outputs after they were stored: the working directory then held what the store does not (copy mode), or,
hard-linked, the stored object itself changed. It is still a descendant of the executor (a child subreaper), and it
holds open, or works in, one of the job's outputs: it is killed before the outputs are staged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import left_running
from tests.test_snakemake_probe24b import local, outputs, stored_objects, workflow

# A file output written through a descriptor opened before (from /), a directory output by name from inside it.
# Each daemon touches FLAG-<rule> once it runs without the job's marker; the job's shell waits for that. It writes
# only once the test opens its gate (FLAG-gate, an absolute path: the daemons work elsewhere), after the run ended:
# one that wrote while its job still ran (a loaded machine can take seconds to end a job) wrote into the job's
# outputs, which is no escape; only one that outlived its job can.
NO_MARKER = """
rule all:
    input: "out/v.txt", "out/d"

rule v:
    output: "out/v.txt"
    shell: "echo early > {output}; exec 3>>{output}; "
           "setsid /usr/bin/env -i /bin/sh -c 'cd /; touch FLAG-v; until [ -e FLAG-gate ]; do /bin/sleep 0.1; done; "
           "echo late >&3' "
           "> /dev/null 2>&1 < /dev/null & "
           "while [ ! -e FLAG-v ]; do /bin/sleep 0.005; done"

rule d:
    output: directory("out/d")
    shell: "mkdir -p {output}; echo early > {output}/a; cd {output}; "
           "setsid /usr/bin/env -i /bin/sh -c 'touch FLAG-d; until [ -e FLAG-gate ]; do /bin/sleep 0.1; done; "
           "echo evil > w' "
           "> /dev/null 2>&1 < /dev/null & "
           "while [ ! -e FLAG-d ]; do /bin/sleep 0.005; done"
"""


def open_gate(flags: Path) -> None:
    """Let every daemon still alive write (see NO_MARKER) and end, and give it the time to."""
    (flags / "gate").touch()
    time.sleep(1.5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_local_a_daemon_without_the_jobs_marker_never_changes_its_outputs_or_the_store(
        tmp_path: Path, isolated: Path, mode: str) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    wf = workflow(tmp_path / "wf", NO_MARKER.replace("FLAG-", f"{flags}/"))
    proc = local(wf, "--nixworkflow-link-mode", mode)
    assert proc.returncode == 0, proc.stderr
    survivors = left_running(str(flags))
    open_gate(flags)
    assert survivors == []
    expected = {"out/v.txt": b"early\n", "out/d/a": b"early\n"}
    assert outputs(wf) == expected
    assert stored_objects(isolated) == expected
