"""nw run probe 18: a second Ctrl-C while nw stops, `nw run -n`/`nw status` against a remote cache, and `nw show`
of a step whose run has not finished. Everything through the real `nw` CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, nw, tree_snapshot
from tests.test_remote import keys  # noqa: F401 - a fixture used here

IGNORES_TERM = """\
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie no init reaped yet does not: it is dead, only not waited for)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(path: Path, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return [int(p) for p in path.read_text().split()]


def _experiment(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """quick, then slow (after quick), whose processes ignore SIGTERM: a bash step that traps it away (its
    `sleep` inherits that), or a Python program its shell runs (the shell itself dies of the SIGTERM)."""
    started = tmp_path / "started"
    if kind == "shell":
        body = f"trap '' TERM; sleep 120 & echo $$ $! > {started}.tmp; mv {started}.tmp {started}; wait"
    else:
        script = tmp_path / "ignores_term.py"
        script.write_text(IGNORES_TERM)
        body = f"{sys.executable} {script} {started}"
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   "quick = output('echo q > $out/q')\n"
                   f"slow = output(f\"cat {{quick}}/q > /dev/null; {body}; echo d > $out/d\")\n")
    return exp, started


def _interrupted_run(exp: Path, started: Path, presses: int) -> tuple[subprocess.Popen[str], list[int], str]:
    """`nw run exp` interrupted by `presses` Ctrl-Cs 1 s apart once its steps have started; fails the test if nw is
    still running 40 s later (a step's processes ignore SIGTERM). Returns nw, the step's process ids and nw's stderr;
    the step's processes are killed in any case."""
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    pids = _wait_for(started)
    try:
        for press in range(presses):
            if press:
                time.sleep(1)  # nw is stopping now: SIGTERM sent, waiting its grace period for the step
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"nw was still running 40 s after {presses} Ctrl-C (a step ignores SIGTERM):\n{err}")
    finally:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return proc, pids, err


@pytest.mark.parametrize("kind", ["shell", "python"])
def test_a_second_ctrl_c_kills_steps_that_ignore_sigterm_and_nw_ends_cleanly(tmp_path: Path, store_root: Path,
                                                                              kind: str) -> None:
    """Ctrl-C, then Ctrl-C again while nw waits for a step that ignores SIGTERM: the second one SIGKILLs the step's
    processes at once. Before, it raised a KeyboardInterrupt inside the stopping: nw waited for the step's own
    end (120 s here), then ended on a bare KeyboardInterrupt, so the run's summary was not written and quick, which
    had finished, was neither linked nor recorded."""
    exp, started = _experiment(tmp_path, kind)
    nw("run", str(exp), "quick", check=True)
    before = tree_snapshot(store_root)
    proc, pids, err = _interrupted_run(exp, started, presses=2)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "nw: interrupted" in err, err
    assert not [p for p in pids if _alive(p)], f"processes of the step still run: {pids}"
    out = Path("nix-workflow-output")
    assert (out / "quick" / "q").read_text() == "q\n" and not os.path.lexists(out / "slow")
    show = nw("show", "slow")
    assert "interrupted" in show.stdout + show.stderr, show.stdout + show.stderr
    after = tree_snapshot(store_root)
    assert {k: v for k, v in after.items() if not k.startswith(("logs", "state"))} == \
        {k: v for k, v in before.items() if not k.startswith(("logs", "state"))}  # nothing of slow was stored
    assert not list((store_root / "tmp").iterdir())
    assert nw("verify").returncode == 0


def test_one_ctrl_c_kills_a_program_that_ignores_sigterm_after_its_shell_died(tmp_path: Path) -> None:
    """One Ctrl-C: the step's shell dies of the SIGTERM, the Python program it started ignores it and holds the
    step's output pipe. Before, nw SIGKILLed only groups whose shell was still alive after the grace period, so it
    waited for that program's own end (120 s here)."""
    exp, started = _experiment(tmp_path, "python")
    proc, pids, err = _interrupted_run(exp, started, presses=1)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not [p for p in pids if _alive(p)]
    assert (Path("nix-workflow-output") / "quick" / "q").read_text() == "q\n"


# ---- 2. `nw run -n` and `nw status` against a remote cache ------------------------------------------------------


def _states(out: str) -> dict[str, str]:
    """{step: state} from the lines of `nw run -n` (state padded to 17) or `nw status` (state, two spaces, name)."""
    found = {}
    for line in out.splitlines():
        head = line.split("  (", 1)[0]
        state, _, name = head.rstrip().rpartition(" ")
        found[name] = state.strip()
    return found


def test_dry_run_and_status_say_what_the_remote_has_would_be_fetched(tmp_path: Path,
                                                                      keys: dict[str, str]) -> None:  # noqa: F811
    """Host A pushed both steps to a file:// remote. On host B (empty store), `nw run -n` and `nw status` said
    "would run"/"to run" for both, although `nw run` runs nothing there (it substitutes them). Now they say
    "would fetch"/"to fetch" (model's key is computed from data's outputs as the remote records them), without
    downloading anything or creating B's store; a changed step is still "would run", and a remote that cannot be
    reached costs one warning and the local answer."""
    from tests.test_remote import Host
    from tests.test_remote_probe10 import pushed_remote

    remote, exp, count = pushed_remote(tmp_path, keys)
    on_remote = remote.keys()
    b = Host(tmp_path, "b", remote, keys["k1.pub"])

    dry = b.nw("run", "-n", str(exp), "--remote", remote.url, check=True)
    assert _states(dry.stdout) == {"data": "would fetch", "model": "would fetch"}, dry.stdout
    assert "2 would be fetched" in dry.stderr, dry.stderr
    status = b.nw("status", str(exp), "--remote", remote.url, check=True)
    assert _states(status.stdout) == {"data": "to fetch", "model": "to fetch"}, status.stdout
    by_env = b.nw("status", "--json", str(exp), env={"NIX_WORKFLOW_REMOTE": remote.url}, check=True)
    assert '"state": "to fetch"' in by_env.stdout and '"state": "to run"' not in by_env.stdout, by_env.stdout
    assert not (b.store / "store").exists() or not b.objects()  # nothing was downloaded
    assert not list(b.store.glob("realisations/**/*.json"))
    assert remote.keys() == on_remote

    changed = tmp_path / "changed.py"
    changed.write_text(exp.read_text().replace("> $out/y", "| tr a A > $out/y"))
    dry = b.nw("run", "-n", str(changed), "--remote", remote.url, check=True)
    assert _states(dry.stdout) == {"data": "would fetch", "model": "would run"}, dry.stdout

    down = b.nw("status", str(exp), "--remote", f"file://{tmp_path / 'not-mounted'}", check=True)
    assert _states(down.stdout) == {"data": "to run", "model": "to run"}, down.stdout
    assert down.stderr.count("could not be asked") == 1, down.stderr

    b.run(exp)  # what the dry run said: B runs nothing, both are fetched
    assert count.read_text().split() == ["data", "model"]
    after = b.nw("status", str(exp), "--remote", remote.url, check=True)
    assert _states(after.stdout) == {"data": "cached", "model": "cached"}, after.stdout


# ---- 3. `nw show STEP` while its run goes on, or after it was killed ---------------------------------------------


def quick_then_slow_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`nw run` of quick, then slow (60 s), started in the background once slow runs: nw's process and slow's
    process group (the caller kills both)."""
    started = tmp_path / "started"
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nquick = output('echo q > $out/q')\n"
                   f"slow = output(f'cat {{quick}}/q > /dev/null; echo $$ > {started}; sleep 60; echo d > $out/d')\n")
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
    return proc, _wait_for(started)[0]


def test_show_of_a_step_whose_run_has_not_ended_says_so(tmp_path: Path) -> None:
    """`nw show slow` during the run (or after the run was killed) said only "no step or path named 'slow'" (or,
    with a link there, that the link was left by an earlier run): the summary `nw show` reads is written when a run
    ends. Now it names the run that has not ended, or says that the run was killed before it finished."""
    proc, group = quick_then_slow_run(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:  # (the run's journal is written by a thread, a moment after the run starts)
            show = nw("show", "slow")
            if "has not ended yet" in show.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert show.returncode == 1 and "has not ended yet" in show.stderr and f"process {proc.pid}" in show.stderr, \
            show.stderr
        assert "Traceback" not in show.stderr
        proc.kill()  # SIGKILL: no summary, no links
        proc.wait()
    finally:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
        proc.kill()
    show = nw("show", "slow")
    assert show.returncode == 1 and "did not finish" in show.stderr and "killed" in show.stderr, show.stderr


# ---- 4. an output-link directory removed while a run goes on, and a gc meanwhile -----------------------------------


def test_a_link_written_after_its_directory_was_removed_and_remade_is_rooted(tmp_path: Path, store_root: Path) -> None:
    """A run links its first step (the directory is registered as a GC root once per process); the user removes
    nix-workflow-output/ and a gc drops the now stale root entry; the directory comes back (the run's journal remakes
    it) and the next step is linked there. Before, the per-process memo skipped registering it again: once the run
    ended (its temp roots gone) a gc removed the next step's result under its link (CI saw it as
    test_gc_loop_beside_nw_run_keeps_the_cached_input_it_uses failing once per-step linking landed)."""
    from nixlib import temproots
    from nixlib.store import Store

    first, second = tmp_path / "first", tmp_path / "second"
    for d, text in ((first, "1\n"), (second, "2\n")):
        d.mkdir()
        (d / "v").write_text(text)
    store = Store(store_root)
    a, b = store.ingest(first), store.ingest(second)
    temproots.of(store.root).add([a, b])  # as a running run's results are
    links = str((tmp_path / "work" / "nix-workflow-output").absolute())
    store.link_output(links, "a", str(store.object_path(a)))
    shutil.rmtree(links)
    nw("gc", "--min-age", "0", check=True)  # drops the stale root entry (this process's temp roots keep a and b)
    os.makedirs(links)  # back, as the run's journal (`.nw-runs`) remakes it
    store.link_output(links, "b", str(store.object_path(b)))
    temproots.of(store.root).release()  # the run ends: only the links keep its results now
    nw("gc", "--min-age", "0", check=True)
    assert (Path(links) / "b" / "v").read_text() == "2\n", "the result under the new link was collected"
