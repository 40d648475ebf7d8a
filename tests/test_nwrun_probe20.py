"""nw run probe 20 (lead): Ctrl-C while a step waits for another host's lease on the remote cache. Through the real
`nw` CLI and a file:// remote (the wait is the same for S3: tests/test_remote.py runs leases on both)."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, nw, tree_snapshot
from tests.test_nwrun_probe18 import quick_then_slow_run
from tests.test_remote import (
    Host,
    Remote,
    keys,  # noqa: F401 - a fixture used here
    lease_experiment,
    put_lease,
    ran,
    resolved_key,
)


@pytest.fixture
def file_remote(tmp_path: Path) -> Remote:
    return Remote("file", tmp_path, None)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_a_wait_for_another_hosts_lease(tmp_path: Path, file_remote: Remote, keys: dict[str, str],  # noqa: F811
                                                    jobs: str) -> None:
    """A step whose key another host has leased waits for that host's result (up to NIX_WORKFLOW_LEASE_WAIT, an hour
    by default, asking every NIX_WORKFLOW_LEASE_POLL seconds). Ctrl-C then kept nw waiting, with `-j 2` until the lease
    expired: the waiting thread slept through the stop. It must end nw at once, run nothing and store nothing."""
    exp, count, go = lease_experiment(tmp_path)
    go.touch()
    rk = resolved_key(Host(tmp_path, "scratch", file_remote, keys["k1.pub"]), exp)
    put_lease(file_remote, rk, time.time() + 3600)  # a live lease whose holder never delivers
    b = Host(tmp_path, "b", file_remote, keys["k1.pub"])
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp), "-j", jobs, "--remote",
                             file_remote.url], cwd=b.cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO), **b.env, NIX_WORKFLOW_LEASE_POLL="120"))
    assert proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    said = ""
    try:
        while "waiting for its result" not in said:
            said += lines.get(timeout=60)
        before = tree_snapshot(b.store)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)  # (the next poll would be 120 s away, the lease's end an hour)
        except subprocess.TimeoutExpired:
            pytest.fail(f"nw -j {jobs} still waited for the lease 30 s after Ctrl-C:\n{said}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.2)  # (the reader thread drains the rest of stderr)
    while not lines.empty():
        said += lines.get()
    assert proc.returncode != 0, said
    assert "interrupted" in said and "Traceback" not in said, said
    assert ran(count) == ["data"]  # only the scratch host's run: b ran nothing
    assert tree_snapshot(b.store) == before  # and stored nothing


def test_show_of_a_step_finished_in_a_run_that_has_not_ended(tmp_path: Path) -> None:
    """`nw show quick` while the run that made it goes on (its slow step still running), and after that run was
    killed, said "no step or path named 'quick'": the summary it reads is written when a run ends. quick is done and
    linked by then; it is now shown from the store's record under the key the run's journal names."""
    proc, group = quick_then_slow_run(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:  # (the run's journal is written by a thread, a moment after the step is done)
            show = nw("show", "quick")
            if show.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert show.returncode == 0, show.stderr
        assert "step:         quick" in show.stdout and "still going on" in show.stdout, show.stdout
        command = next(line for line in show.stdout.splitlines() if line.startswith("command:"))
        assert "echo q" in command and "$out/q" in command, show.stdout  # its record: the command that made it
        slow = nw("show", "slow")  # not finished: still says why it is not found
        assert slow.returncode == 1 and "has not ended yet" in slow.stderr, slow.stderr
        proc.kill()  # SIGKILL: no summary
        proc.wait()
    finally:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
        proc.kill()
    show = nw("show", "quick")
    assert show.returncode == 0 and "killed before it ended" in show.stdout, (show.stdout, show.stderr)
    log = nw("log", "quick")
    assert log.returncode == 0, log.stderr


def test_snakemake_keys_a_variable_read_in_a_module_the_shell_commands_script_imports(
        tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`shell: "python3 scripts/prep.py {output}"` where prep.py imports helpers.py, which reads FACTOR: Snakemake
    keyed the variables prep.py reads by name, not those of the modules it imports (nw run and Luigi follow them:
    nixlib.envreads.scripts_variables), so the FACTOR=2 result was served under FACTOR=3."""
    pytest.importorskip("snakemake")
    from tests.test_gaps_probe17 import counted_snakemake
    from tests.test_snakemake_semantics import write as write_in

    where = write_in(tmp_path / "wf", {
        "scripts/prep.py": "import sys\nfrom helpers import factor\nopen(sys.argv[1], 'w').write(factor() + '\\n')\n",
        "scripts/helpers.py": "import os\n\n\ndef factor():\n    return os.environ.get('FACTOR', '1')\n",
        "Snakefile": '''
rule prep:
    output: "out/prep.txt"
    shell: "python3 scripts/prep.py {output} && echo prep >> $NW_TEST_LOG"
'''})
    run = counted_snakemake(where, log, "prep")
    monkeypatch.setenv("FACTOR", "2")
    assert run() == 1
    assert run() == 0, "an unchanged re-run must be restored from the store"
    monkeypatch.setenv("FACTOR", "3")
    assert run() == 1, "the FACTOR=2 result was served under FACTOR=3"
    assert (where / "out/prep.txt").read_text() == "3\n"


@pytest.mark.parametrize("how", ["path", "static"])
def test_a_python_program_without_a_suffix_is_scanned_for_the_variables_it_reads(tmp_path: Path, how: str) -> None:
    """A project program `tools/train` (`#!/usr/bin/env python3`, no suffix, as the showcase's tools) reading
    os.environ["SCALE"] was scanned as a shell script (no `$SCALE` in it), or, copied into the store by static(), not
    scanned at all: SCALE=3 was served what SCALE=2 made. Its `#!` line says it is Python."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "train").write_text('#!/usr/bin/env python3\nimport os\nimport sys\n'
                                 'open(sys.argv[1], "w").write(os.environ.get("SCALE", "1") + "\\n")\n')
    (tools / "train").chmod(0o755)
    head = "from pathlib import Path\nfrom nixlib import output, static\nHERE = Path(__file__).parent\n"
    run = "f'{HERE}/tools/train $out/r'" if how == "path" else "f'python3 {static(\"tools/train\")} $out/r'"
    (tmp_path / "experiment.py").write_text(head + f"a = output({run})\n")

    def result(scale: str) -> tuple[str, str]:
        r = nw("run", "experiment.py", cwd=tmp_path, env={"SCALE": scale})
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout + r.stderr, (tmp_path / "nix-workflow-output/a/r").read_text()

    assert result("2")[1] == "2\n"
    said, made = result("3")
    assert made == "3\n", f"SCALE=3 was served the SCALE=2 result:\n{said}"
    assert "done 0 · cached 1" in result("3")[0]  # the same value: served
