"""A step succeeds only under strict shell semantics, and ends only when all of its processes end.

Issue 8 items 1 and 4, issue 9 item 7 (inputs): each test here failed on the engine that ran
steps with `/bin/sh -c` and only signalled the process group while the shell lived.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

import pytest

from nixlib import nar
from tests.helpers import REPO, nw


def marker() -> str:
    """A string unique to this test, put in the command lines of the processes a step starts."""
    return f"nwmark{uuid.uuid4().hex}"


def marked(mark: str) -> list[int]:
    """Live processes whose command line contains `mark` (zombies have an empty one)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if mark.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def wait_until(condition, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def err_text(err: TextIO) -> str:
    """What a process wrote so far to `err`, a file opened "w+" for its stderr."""
    err.seek(0)
    return err.read()


def experiment(tmp_path: Path, body: str) -> Path:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n" + body)
    return exp


def realisations(store_root: Path) -> list[Path]:
    return sorted((store_root / "realisations").glob("*.json"))


# ---- strict shell semantics ---------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    "cat missing.txt | sort > $out/y; echo done > $out/z",  # a failure in the middle of a pipe
    "false\necho done > $out/z",  # the first line of a multi-line command
    "echo $no_such_variable > $out/y; echo done > $out/z",  # an unset variable
], ids=["pipe", "first-line", "unset-variable"])
def test_a_failing_command_fails_the_step_and_is_not_cached(tmp_path: Path, store_root: Path, command: str) -> None:
    exp = experiment(tmp_path, f"s = output('''{command}''', name='s')\n")
    first = nw("run", str(exp))
    assert first.returncode == 1 and "step 's' failed" in first.stderr, first.stderr
    assert realisations(store_root) == []
    assert not Path("nix-workflow-output/s").exists()
    again = nw("run", str(exp))
    assert again.returncode == 1 and "s: running" in again.stderr  # runs again: nothing was cached


def test_strict_mode_can_be_switched_off_inside_a_command(tmp_path: Path) -> None:
    exp = experiment(tmp_path, "lax = output('''set +o pipefail; cat missing.txt | sort > $out/y; "
                               "echo done > $out/z''', name='lax')\n"
                               "laxer = output('''set +euo pipefail; false; echo ${unset_var} > $out/y; "
                               "echo done > $out/z''', name='laxer')\n")
    nw("run", str(exp), check=True)
    assert Path("nix-workflow-output/lax/z").read_text() == "done\n"
    assert Path("nix-workflow-output/laxer/z").read_text() == "done\n"


# ---- a step ends when all of its processes end ----------------------------------------------------

GATE_WAIT = "until [ -e {gate} ]; do sleep 0.1; done"
LEFTOVERS = {
    # each opens its file before the step's command exits and writes into it once the test opens its gate, after
    # the run (one that wrote while the step still ran, on a loaded machine that takes long to end it, wrote into
    # the step's output: no escape)
    "background": f"( exec 3>>late; {GATE_WAIT}; echo late >&3; : {{mark}} ) >/dev/null 2>&1 &",
    "setsid-daemon": f"setsid sh -c 'exec 3>>late; {GATE_WAIT}; echo late >&3' {{mark}} >/dev/null 2>&1 &",
    "double-fork": f"( ( exec 3>>late; {GATE_WAIT}; echo late >&3; : {{mark}} ) & ) >/dev/null 2>&1",
}


@pytest.mark.parametrize("kind", sorted(LEFTOVERS))
def test_leftover_processes_are_killed_before_the_output_is_stored(tmp_path: Path, store_root: Path,
                                                                    kind: str) -> None:
    if kind == "setsid-daemon" and shutil.which("setsid") is None:
        pytest.skip("setsid (util-linux) is not installed")
    mark, gate = marker(), tmp_path / "gate"
    command = f"echo early > $out/early; : > late; {LEFTOVERS[kind].format(mark=mark, gate=gate)}"
    exp = experiment(tmp_path, f"w = output('''{command}''', name='w')\n")
    nw("run", str(exp), check=True)
    survivors = marked(mark)
    gate.touch()
    time.sleep(1.5)  # (a surviving writer would write now)
    assert survivors == []  # the step's processes all ended before `nw run` returned
    out = Path("nix-workflow-output/w")
    obj = out.resolve()
    assert nar.nar_hash(obj) == obj.name  # the stored object is exactly what was hashed
    verify = nw("verify", check=True)
    assert "0 problem(s)" in verify.stdout + verify.stderr
    assert "late" not in (out / "late").read_text()
    log = (store_root / "logs").glob("*.log")
    assert any("killed" in p.read_text() and "left running" in p.read_text() for p in log)


def test_a_step_without_leftovers_logs_no_kill(tmp_path: Path, store_root: Path) -> None:
    exp = experiment(tmp_path, "w = output('''(echo waited > $out/x) & wait''', name='w')\n")
    nw("run", str(exp), check=True)
    assert Path("nix-workflow-output/w/x").read_text() == "waited\n"
    assert not any("killed" in p.read_text() for p in (store_root / "logs").glob("*.log"))


COUNT_ORPHANS = (  # processes carrying the marker in another session than this step's own
    "import os\n"
    "m = os.environ['NW_TEST_MARK'].encode()\n"
    "me = os.getsid(0)\n"
    "n = 0\n"
    "for p in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        n += m in open(f'/proc/{p}/cmdline', 'rb').read() and os.getsid(int(p)) != me\n"
    "    except OSError:\n"
    "        pass\n"
    "print(n)\n"
)


def test_kill_9_of_nw_kills_the_steps_processes_and_the_rerun_runs_alone(tmp_path: Path, store_root: Path) -> None:
    if shutil.which("setsid") is None:
        pytest.skip("setsid (util-linux) is not installed")
    mark = marker()
    started, go = tmp_path / "started", tmp_path / "go"
    (tmp_path / "count.py").write_text(COUNT_ORPHANS)
    exp = experiment(tmp_path, f"""s = output('''
if [ -e {go} ]; then
  NW_TEST_MARK={mark} {sys.executable} {tmp_path / "count.py"} > $out/orphans
else
  ( while :; do sleep 0.05; done; : {mark} ) >/dev/null 2>&1 &
  setsid sh -c 'while :; do sleep 0.05; done' {mark} >/dev/null 2>&1 &
  echo started > {started}
  sleep 30
fi
: {mark}''', name='s')
""")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(tmp_path / "nw.err", "wb") as err:
        runner = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        assert wait_until(lambda: started.exists() and len(marked(mark)) >= 3), (tmp_path / "nw.err").read_text()
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    go.touch()
    rerun = nw("run", str(exp), check=True)  # at once: an orphan of the killed run would still be running
    assert Path("nix-workflow-output/s/orphans").read_text() == "0\n", rerun.stderr
    assert wait_until(lambda: marked(mark) == [], timeout=3.0), "processes of the killed step survive"
    assert len(realisations(store_root)) == 1


# ---- inputs are not writable by a step --------------------------------------------------------------

def test_a_step_that_changes_its_input_object_fails_and_the_object_is_quarantined(tmp_path: Path,
                                                                                  store_root: Path) -> None:
    exp = experiment(tmp_path, "a = output('echo base > $out/v', name='a')\n"
                               "b = output(f'chmod -R u+w {a} && echo evil >> {a}/v && cat {a}/v > $out/v', "
                               "name='b')\n")
    proc = nw("run", str(exp))
    assert proc.returncode == 1 and "changed its input object" in proc.stderr, proc.stderr
    assert not Path("nix-workflow-output/b").exists()
    quarantined = list((store_root / "quarantine").iterdir())  # the changed object is set aside, never served
    assert len(quarantined) == 1 and (quarantined[0] / "v").read_text() == "base\nevil\n"
    assert not any((store_root / "store" / q.name.split(".")[0]).exists() for q in quarantined)
    rerun = nw("run", str(exp), "a", check=True)  # its producer runs again and restores the true bytes
    assert "a: running" in rerun.stderr
    assert Path("nix-workflow-output/a/v").read_text() == "base\n"


def test_a_front_door_that_marks_its_environment_takes_its_processes_with_it(tmp_path: Path) -> None:
    """For runners whose steps are not started by run_shell (a Snakemake executor, a Luigi worker):
    after mark_runner_environ(), what they start dies when they are killed with SIGKILL."""
    mark = marker()
    script = ("import os, signal, subprocess, sys\n"
              "from nixlib import reaper\n"
              "reaper.mark_runner_environ()\n"
              f"subprocess.Popen(['sh', '-c', 'sleep 30; : {mark}'], start_new_session=True)\n"
              f"subprocess.Popen(['setsid', 'sh', '-c', 'sleep 30; : {mark}'])\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert wait_until(lambda: marked(mark) == [], timeout=3.0), "processes survive their runner"


def test_keep_fds_are_inherited_by_the_steps_processes(tmp_path: Path) -> None:
    """What lets a step's processes hold the per-key lock (a flock lives while any holder lives)."""
    from nixlib.runner import Build, run_shell

    lock = tmp_path / "k.lock"
    fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        build = Build(name="s", out=tmp_path / "out", state=None, tmp=tmp_path, log=tmp_path / "log",
                      store_root=tmp_path / "store", keep_fds=(fd,))
        build.out.mkdir()
        run_shell(build, f"readlink /proc/$$/fd/{fd} > $out/held")
    finally:
        os.close(fd)
    assert (build.out / "held").read_text().strip() == str(lock)


def test_the_key_lock_stays_held_while_an_escaped_process_of_a_killed_step_lives(tmp_path: Path) -> None:
    """A process that hides from the reaper (no marker: `env -i`; own session: `setsid`) still holds the step's
    per-key lock, which it inherited: a re-run after `kill -9` of `nw` waits for it instead of running the same
    recipe beside it. The escaped process ends only once the test opens its gate, after the re-run said it waits
    (or ended: it then ran beside it)."""
    if shutil.which("setsid") is None:
        pytest.skip("setsid (util-linux) is not installed")
    started, go, ended, gate = tmp_path / "started", tmp_path / "go", tmp_path / "ended", tmp_path / "gate"
    exp = experiment(tmp_path, f"""s = output('''
if [ -e {go} ]; then
  test -e {ended} && echo after > $out/order || echo beside > $out/order
else
  env -i setsid sh -c 'until [ -e {gate} ]; do sleep 0.1; done; touch {ended}' >/dev/null 2>&1 < /dev/null &
  echo started > {started}
  sleep 30
fi''', name='s')
""")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runner = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(started.exists)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    go.touch()
    try:
        with open(tmp_path / "rerun.err", "w+") as err:
            rerun = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=err, text=True)
            assert wait_until(lambda: rerun.poll() is not None or "waits for process" in err_text(err), 60)
            gate.touch()  # the escaped process ends: the lock is free
            assert rerun.wait(timeout=60) == 0, err_text(err)
    finally:
        gate.touch()
    assert Path("nix-workflow-output/s/order").read_text() == "after\n"


def test_reap_marked_stops_every_marked_process_before_killing_and_spares_the_excluded(tmp_path: Path) -> None:
    """nixlib.reaper.reap_marked (what the Luigi adapter uses for produce(), which has no process group):
    a shell whose `sleep` is killed must not get to run its next command, a forking loop must not outrun
    the kill, and an excluded marked process is left alone."""
    from nixlib import reaper

    mark, variable = marker(), reaper.new_marker()
    late = tmp_path / "late"
    env = dict(os.environ, **{variable: "1"})
    spared = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(30)  # {mark}"], env=env)
    victims = [subprocess.Popen(["sh", "-c", f"sleep 30; : {mark}; echo late > {late}"], env=env,
                                start_new_session=True),
               subprocess.Popen(["sh", "-c", f"while :; do sleep 0.01 & : {mark}; done"], env=env)]
    try:
        # the three long-lived marked shells/interpreters; the loop's forked children come and go (under load a
        # poll can miss them, which made a ">= 4" wait flaky in CI)
        assert wait_until(lambda: {spared.pid, *(v.pid for v in victims)} <= set(marked(mark)))
        killed = reaper.reap_marked(variable, exclude={spared.pid})
        assert {v.pid for v in victims} <= set(killed) and spared.pid not in killed
        assert marked(mark) == [spared.pid]  # nothing marked is left running but the excluded one
        assert not any(os.path.exists(f"/proc/{v.pid}") for v in victims)  # dead, and reaped by reap_marked
        time.sleep(0.05)
        assert not late.exists()
        assert spared.poll() is None
    finally:
        for p in [spared, *victims]:
            p.kill()
            p.wait()


def _state(pid: int) -> str:
    """The process's state letter from /proc/PID/stat (T: stopped)."""
    data = Path(f"/proc/{pid}/stat").read_text()
    return data[data.rindex(")") + 2]


def test_reap_marked_resumes_a_process_that_is_no_longer_the_steps_after_it_was_stopped(tmp_path: Path) -> None:
    """Between reap_marked's scan and its SIGSTOP a pid can change hands (the step's process exits, an unrelated
    process gets the number). Here `also()` names an unmarked process on the first look only, as if it had been
    the step's then: once stopped it is checked again, found to be nobody's, and resumed, not killed. A marked
    process in the same call is still killed."""
    from nixlib import reaper

    mark, variable = marker(), reaper.new_marker()
    bystander = subprocess.Popen(["sh", "-c", f"sleep 30; : {mark}"])
    victim = subprocess.Popen(["sh", "-c", f"sleep 30; : {mark}"], env=dict(os.environ, **{variable: "1"}))
    calls: list[int] = []

    def also() -> set[int]:
        calls.append(1)
        return {bystander.pid} if len(calls) == 1 else set()

    try:
        assert wait_until(lambda: len(marked(mark)) >= 2)
        killed = reaper.reap_marked(variable, also=also)
        assert victim.pid in killed and bystander.pid not in killed
        assert not os.path.exists(f"/proc/{victim.pid}")  # dead (and reaped by reap_marked)
        assert bystander.poll() is None and _state(bystander.pid) != "T"  # alive and running, not left stopped
    finally:
        for p in (bystander, victim):
            p.kill()
            p.wait()
