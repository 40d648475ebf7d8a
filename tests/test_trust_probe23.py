"""Trust probe 23: `nw gc` removing another user's dead tmp/ entry, and two real users racing, dying and collecting
on one shared store.

- gc removes a dead builder's `tmp/<host>-<pid>-…` entry, which its owner (another user) can rename or replace at
  any moment: a directory swapped for a symlink between gc's check and its chmod (the window held open by
  NIX_WORKFLOW_PAUSE=remove-unlock, the swap made inside it every time) used to make gc chmod 0700 the symlink's
  target, a file of the user running gc (a sealed store object, say), now never; a symlink planted before gc looks
  is never followed either;
- two users run one 4-step pipeline at once, one is killed (SIGKILL, as the OOM killer would) in the middle of a
  step while the other waits for that step, and `nw gc --min-age 0` runs while a third run uses cached results
  nothing else roots: every result served is the bytes a clean run makes (checked by content and by the real
  `nix-hash`), every step ran once for its key (the killed one once more, nothing of it stored), no lock a dead
  process left blocks a later run, and `nw verify` is clean for both users.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unixusers import SharedStore, User, as_user, env, pythonpath, shared_store

CLOCK_NANOSLEEP = "230"  # x86_64 syscall number: a Python process in time.sleep (the pause point)


@pytest.fixture
def shared() -> Iterator[SharedStore]:
    with shared_store("t23", trusting=True) as s:
        try:
            yield s
        finally:  # a step a killed run left going (the watchdog failed: old code) must not outlive the test
            for u in s.users.values():
                for line in steps_of(s, u):  # this test's, not another worker's (the users are shared)
                    with contextlib.suppress(OSError):
                        os.kill(int(line.split(":")[0]), signal.SIGKILL)




def start(shared: SharedStore, who: str, *args: str, extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`nw ARGS` as user `who`, in its directory, in a session of its own (setpriv execs: the pid is nw's)."""
    u = shared.users[who]
    environ = env(shared.store, u, {"NIX_WORKFLOW_TRUSTED_USERS": shared.trusted, **(extra or {})})
    return subprocess.Popen(as_user(u, shared.python, "-m", "nixlib.cli", *args), cwd=u.home, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finish(p: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = p.communicate(timeout=180)
    assert "Traceback" not in err, err
    return p.returncode, out + err


def wait_until(condition: object, what: str, timeout: float = 60, info: object = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}: " + repr(info() if info else "")
        time.sleep(0.02)


def sleeping(pid: int) -> bool:
    """Whether process `pid` is in clock_nanosleep (a Python time.sleep) right now."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] == CLOCK_NANOSLEEP
    except (OSError, IndexError):
        return False


def dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    p = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    return int(p.stdout)


# ---- gc and a tmp/ entry swapped for a symlink ------------------------------------------------------------------


def _victims(shared: SharedStore) -> tuple[Path, Path]:
    """A read-only file and a read-only directory of user b (who runs gc): what a swapped-in symlink points at."""
    b = shared.users["b"]
    f, d = b.home / "sealed.txt", b.home / "sealed-dir"
    f.write_text("b's own\n")
    d.mkdir()
    (d / "inner").write_text("b's inner\n")
    for p in (f, d / "inner", d):
        os.chown(p, b.uid, b.gid)
    f.chmod(0o444)
    (d / "inner").chmod(0o444)
    d.chmod(0o555)
    return f, d


def _modes(*paths: Path) -> list[int]:
    return [stat.S_IMODE(os.lstat(p).st_mode) for p in paths]


def _as_a(shared: SharedStore, script: str) -> None:
    a = shared.users["a"]
    subprocess.run(as_user(a, "sh", "-c", script), check=True, env=env(shared.store, a), capture_output=True)


@pytest.mark.parametrize("where", ["entry", "inside"])
def test_gc_never_chmods_what_a_dead_tmp_entry_was_swapped_for_while_it_removed_it(shared: SharedStore, where: str,
                                                                                   reap: list) -> None:
    victim, victim_dir = _victims(shared)
    assert shared.nw("b", "verify").returncode == 0  # the store's directories, made by the first user
    a = shared.users["a"]
    entry = shared.store / "tmp" / f"{socket.gethostname()}-{dead_pid()}-build-{where}"
    sealed = entry if where == "entry" else entry / "d"  # a's directory gc must chmod u+rwx to empty
    _as_a(shared, f"mkdir -p {sealed} && chmod 0777 {entry} && echo x > {sealed}/f && chmod 0500 {sealed}")
    target = victim if where == "entry" else victim_dir
    gc = start(shared, "b", "gc", "--min-age", "0", extra={"NIX_WORKFLOW_PAUSE": "remove-unlock:5"})
    reap.append(gc)
    wait_until(lambda: sleeping(gc.pid) or gc.poll() is not None, "gc to reach the pause point")
    assert gc.poll() is None, gc.communicate()
    _as_a(shared, f"mv {sealed} {sealed}.gone && ln -s {target} {sealed}")  # the swap, inside gc's window
    assert sleeping(gc.pid), "the swap did not land inside gc's pause"
    finish(gc)
    assert _modes(victim, victim_dir, victim_dir / "inner") == [0o444, 0o555, 0o444]
    assert victim.read_text() == "b's own\n" and (victim_dir / "inner").read_text() == "b's inner\n"
    assert os.lstat(entry).st_uid == a.uid or where == "entry"  # nothing of b's was put there either


@pytest.mark.parametrize("remover", ["b", "root"])
def test_gc_never_follows_a_symlink_planted_as_or_in_a_dead_tmp_entry(shared: SharedStore, remover: str) -> None:
    victim, victim_dir = _victims(shared)
    assert shared.nw("b", "verify").returncode == 0
    tmp = shared.store / "tmp"
    host = socket.gethostname()
    top_file, top_dir, holder = (tmp / f"{host}-{dead_pid()}-build-{n}" for n in ("f", "d", "h"))
    _as_a(shared, f"ln -s {victim} {top_file} && ln -s {victim_dir} {top_dir} && mkdir {holder} && chmod 0777 {holder}"
                  f" && ln -s {victim} {holder}/f && ln -s {victim_dir} {holder}/d")
    if remover == "root":
        environ = dict(os.environ, NIX_WORKFLOW_STORE=str(shared.store), PYTHONPATH=pythonpath())
        gc = subprocess.run([shared.python, "-m", "nixlib.cli", "gc", "--min-age", "0"], env=environ,
                            capture_output=True, text=True, timeout=180)
        assert gc.returncode == 0 and "Traceback" not in gc.stderr, gc.stderr
        assert not [p for p in (top_file, top_dir, holder) if os.path.lexists(p)]  # root removes them, links only
    else:
        gc = shared.nw("b", "gc", "--min-age", "0")
        assert not os.path.lexists(holder / "f") and not os.path.lexists(holder / "d")  # a 0777 directory: b may
    assert _modes(victim, victim_dir, victim_dir / "inner") == [0o444, 0o555, 0o444]
    assert victim.read_text() == "b's own\n" and (victim_dir / "inner").read_text() == "b's inner\n"



def test_a_store_subdirectory_another_users_first_run_is_still_making_is_waited_for_not_refused(
        shared: SharedStore, reap: list) -> None:
    """Two users' first runs on a fresh shared store: a has just made store/realisations (mode 0755, its umask) and
    is about to make it 1777, as Store._ensure_layout does; b's run used to refuse the whole store right then."""
    a = shared.users["a"]
    made = shared.store / "realisations"
    _as_a(shared, f"umask 022 && mkdir {made}")
    b = shared.users["b"]
    (b.home / "exp.py").write_text("from nixlib import output\ns = output('echo hi > $out/v', name='s')\n")
    run = start(shared, "b", "run", "exp.py")
    reap.append(run)
    wait_until(lambda: sleeping(run.pid) or run.poll() is not None, "b's run to look at the new directory")
    _as_a(shared, f"chmod 1777 {made}")
    code, text = finish(run)
    assert code == 0, text
    assert (b.home / "nix-workflow-output" / "s" / "v").read_text() == "hi\n"
    assert os.lstat(made).st_uid == a.uid


# ---- two users: at once, one killed mid-step, gc beside a third run ------------------------------------------------

PIPELINE = """from nixlib import output
s1 = output('printf "alpha-R\\\\nbeta-R\\\\n" > $out/v; touch RUNS/R.s1.$(id -u).$$', name='s1')
s2 = output(f'touch RUNS/R.s2-start.$(id -u).$$; while [ ! -e RUNS/R.go ]; do sleep 0.05; done; '
            f'tr a-z A-Z < {s1}/v > $out/v; touch RUNS/R.s2.$(id -u).$$', name='s2')
s3 = output(f'sort -r {s1}/v > $out/v; touch RUNS/R.s3.$(id -u).$$', name='s3')
s4 = output(f'cat {s2}/v {s3}/v > $out/v; mkdir $out/d; wc -l < {s3}/v > $out/d/n; touch RUNS/R.s4.$(id -u).$$',
            name='s4')
"""
SLOW_FIFTH = """s5 = output(f'touch RUNS/R.s5-start.$(id -u).$$; while [ ! -e RUNS/R.go5 ]; do sleep 0.05; done; '
            f'cat {s4}/v {s1}/v > $out/v; touch RUNS/R.s5.$(id -u).$$', name='s5')
"""


def expected(r: str) -> dict[str, dict[str, str]]:
    """What a clean run of round `r` makes, written out by hand (never computed by the code under test)."""
    s2, s3 = f"ALPHA-{r.upper()}\nBETA-{r.upper()}\n", f"beta-{r}\nalpha-{r}\n"
    return {"s1": {"v": f"alpha-{r}\nbeta-{r}\n"}, "s2": {"v": s2}, "s3": {"v": s3},
            "s4": {"v": s2 + s3, "d/n": "2\n"}, "s5": {"v": s2 + s3 + f"alpha-{r}\nbeta-{r}\n"}}


class Rounds:
    """Rounds of PIPELINE on one shared store: round `r` keys differ from every other round's; each command leaves a
    marker RUNS/<r>.<step>.<uid>.<pid> when it completes (and <step>-start when a slow one starts)."""

    def __init__(self, shared: SharedStore) -> None:
        self.shared = shared
        self.runs = shared.store.parent / "runs"
        self.runs.mkdir(mode=0o1777)
        self.runs.chmod(0o1777)

    def write(self, who: str, r: str, fifth: bool = False) -> str:
        u = self.shared.users[who]
        text = (PIPELINE + (SLOW_FIFTH if fifth else "")).replace("RUNS", str(self.runs)).replace("R", r)
        name = f"exp_{r}{'_5' if fifth else ''}.py"
        (u.home / name).write_text(text)
        os.chown(u.home / name, u.uid, u.gid)
        return name

    def count(self, r: str, step: str) -> int:
        return sum(1 for n in os.listdir(self.runs) if n.startswith(f"{r}.{step}."))

    def counts(self, r: str) -> dict[str, int]:
        return {s: self.count(r, s) for s in ("s1", "s2", "s3", "s4", "s5")}

    def go(self, r: str, name: str = "go") -> None:
        (self.runs / f"{r}.{name}").touch()


def served(u: User, steps: list[str]) -> dict[str, dict[str, str]]:
    """The files of each step's output link in `u`'s directory."""
    out = {}
    for step in steps:
        root = u.home / "nix-workflow-output" / step
        out[step] = {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}
    return out


def object_of(u: User, step: str) -> str:
    """The store object an output link serves, checked by the real `nix-hash` to hold exactly its name's bytes."""
    real = Path(os.path.realpath(u.home / "nix-workflow-output" / step))
    nar = subprocess.run(["nix-hash", "--type", "sha256", "--base32", str(real)], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert nar == real.name, f"{step}: {real} holds other bytes than its name says ({nar})"
    return real.name


def assert_served(shared: SharedStore, who: str, r: str, steps: list[str]) -> dict[str, str]:
    u = shared.users[who]
    assert served(u, steps) == {s: expected(r)[s] for s in steps}
    return {s: object_of(u, s) for s in steps}


def assert_verify_clean(shared: SharedStore) -> None:
    for who in ("a", "b"):
        v = shared.nw(who, "verify")
        assert v.returncode == 0, v.stdout + v.stderr


def dead_leftovers(shared: SharedStore) -> list[str]:
    """tmp/ entries of processes of this host that no longer run (what gc removes)."""
    host = f"{socket.gethostname()}-"
    names = os.listdir(shared.store / "tmp")
    return [n for n in names if n.startswith(host) and not os.path.exists(f"/proc/{n[len(host):].split('-')[0]}")]


def records(shared: SharedStore) -> int:
    """How many realisation records the store holds."""
    return sum(1 for n in os.listdir(shared.store / "realisations") if n.endswith(".json") and not n.startswith("."))


def steps_of(shared: SharedStore, u: User) -> list[str]:
    """The live processes of `u` that belong to this test (their command names its directory: its step shells)."""
    return [line for line in uid_processes(u.uid) if str(shared.store.parent) in line]


def uid_processes(uid: int) -> list[str]:
    """The command lines of the live (not zombie) processes of `uid`."""
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}").st_uid == uid and Path(f"/proc/{p}/stat").read_text().rsplit(")")[1][1] != "Z":
                    found.append(f"{p}: " + Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
    return found


STEPS4 = ["s1", "s2", "s3", "s4"]


def test_two_users_at_once_then_one_killed_mid_step_then_gc_beside_a_third_run(shared: SharedStore, reap: list) -> None:
    rounds = Rounds(shared)
    a, b = shared.users["a"], shared.users["b"]

    # 1. Both users start the same pipeline at the same moment (-j 2: s2 and s3 in parallel); s2 waits for "go".
    procs = [start(shared, who, "run", "-j", "2", rounds.write(who, "one")) for who in ("a", "b")]
    reap.extend(procs)
    wait_until(lambda: rounds.count("one", "s2-start") >= 1, "s2 to start")
    rounds.go("one")
    for p in procs:
        code, text = finish(p)
        assert code == 0, text
    assert rounds.counts("one") == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 0}
    assert rounds.count("one", "s2-start") == 1
    objects = assert_served(shared, "a", "one", STEPS4)
    assert assert_served(shared, "b", "one", STEPS4) == objects
    assert_verify_clean(shared)

    # 2. a's run is SIGKILLed (the runner alone, as the OOM killer does) while it runs s2; b waits for s2 meanwhile.
    before = records(shared)
    holder = start(shared, "a", "run", "-j", "2", rounds.write("a", "two"))
    reap.append(holder)
    wait_until(lambda: rounds.count("two", "s2-start") == 1, "a's s2 to start")
    waiter = start(shared, "b", "run", "-j", "2", rounds.write("b", "two"))
    reap.append(waiter)
    wait_until(lambda: records(shared) == before + 2, "s1 and s3 (beside s2) to be recorded")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    wait_until(lambda: not steps_of(shared, a), "the killed run's step to be ended by its watchdog", timeout=20,
               info=lambda: steps_of(shared, a))

    assert rounds.count("two", "s2") == 0
    wait_until(lambda: rounds.count("two", "s2-start") == 2 or waiter.poll() is not None, "b to take over s2")
    rounds.go("two")
    code, text = finish(waiter)
    assert code == 0, text
    assert rounds.counts("two") == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 0}
    assert rounds.count("two", "s2-start") == 2  # a's (killed, nothing of it stored), then b's
    objects = assert_served(shared, "b", "two", STEPS4)
    assert dead_leftovers(shared), "the killed run left nothing behind for gc: the probe did not kill mid-step"
    rerun = start(shared, "a", "run", rounds.write("a", "two"))  # no lock the dead run left blocks it
    reap.append(rerun)
    code, text = finish(rerun)
    assert code == 0, text
    assert rounds.counts("two") == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 0}  # all served from the store
    assert assert_served(shared, "a", "two", STEPS4) == objects
    assert_verify_clean(shared)

    # 3. Round three, run once by a; then nothing roots it but a third run (b's, with a slow fifth step): gc
    #    --min-age 0 (by a, whose dead run's leftovers it removes) runs while that run waits inside s5.
    rounds.go("three")
    code, text = finish(start(shared, "a", "run", rounds.write("a", "three")))
    assert code == 0, text
    objects = assert_served(shared, "a", "three", STEPS4)
    for u in (a, b):
        subprocess.run(["rm", "-rf", str(u.home / "nix-workflow-output")], check=True)
    third = start(shared, "b", "run", rounds.write("b", "three", fifth=True))
    reap.append(third)
    wait_until(lambda: rounds.count("three", "s5-start") == 1, "the third run's s5 to start")
    code, text = finish(start(shared, "a", "gc", "--min-age", "0"))
    assert code == 0, text
    assert not dead_leftovers(shared), os.listdir(shared.store / "tmp")
    for h in objects.values():  # what the third run looked up is a temp root: gc kept it
        assert (shared.store / "store" / h).exists(), h
    rounds.go("three", "go5")
    code, text = finish(third)
    assert code == 0, text
    assert rounds.counts("three") == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 1}
    assert {s: h for s, h in assert_served(shared, "b", "three", [*STEPS4, "s5"]).items() if s != "s5"} == objects
    for who, fifth in (("b", True), ("a", False)):  # both served from the store, nothing runs again
        code, text = finish(start(shared, who, "run", rounds.write(who, "three", fifth=fifth)))
        assert code == 0, text
    assert rounds.counts("three") == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 1}
    assert assert_served(shared, "a", "three", STEPS4) == objects
    assert_verify_clean(shared)


def test_a_sigkilled_runs_step_is_stopped_even_if_its_user_cannot_run_the_interpreter_by_its_path(
        shared: SharedStore, reap: list) -> None:
    """The users' interpreter here (tests/unixusers.find_python) is the venv's, a link into root's 0700 home: setpriv
    runs it, but the run's children cannot run it again by name. The runner's watchdog, which stops a SIGKILLed run's
    steps, used to fail to start then, silently, and the step went on after its run was killed."""
    rounds = Rounds(shared)
    a = shared.users["a"]
    run = start(shared, "a", "run", "-j", "1", rounds.write("a", "kill"))
    reap.append(run)
    wait_until(lambda: rounds.count("kill", "s2-start") == 1, "s2 to start")
    # (-j 1: no other step is running, so none is killed half-stored and rightly run again)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    wait_until(lambda: not steps_of(shared, a), "the killed run's step to be stopped", timeout=30,
               info=lambda: steps_of(shared, a))
    rounds.go("kill")
    code, text = finish(start(shared, "a", "run", rounds.write("a", "kill")))
    assert code == 0, text
    assert rounds.counts("kill") == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 0}
    assert_served(shared, "a", "kill", STEPS4)


def test_gc_by_the_user_who_made_store_dir_never_hides_another_users_object_it_cannot_remove(
        shared: SharedStore) -> None:
    """a's first run made the store's subdirectories (no `sudo nw verify`), so a owns store/: its gc could rename b's
    unreachable object to a hidden name of its own, but not empty b's sealed tree, and left it there for good."""
    a, b = shared.users["a"], shared.users["b"]
    shared.experiment("a", "s = output('echo a > $out/v', name='s')\n")
    assert shared.nw("a", "run", "exp.py").returncode == 0
    assert os.lstat(shared.store / "store").st_uid == a.uid
    shared.experiment("b", "t = output('echo b > $out/v', name='t')\n")
    assert shared.nw("b", "run", "exp.py").returncode == 0
    theirs = Path(os.path.realpath(b.home / "nix-workflow-output" / "t")).name
    subprocess.run(["rm", "-rf", str(b.home / "nix-workflow-output")], check=True)  # b's object: unreachable now
    gc = shared.nw("a", "gc", "--min-age", "0")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert (shared.store / "store" / theirs / "v").read_text() == "b\n"  # still under its name, b's to remove
    assert not [n for n in os.listdir(shared.store / "store") if n.startswith(".")]
    verify = shared.nw("a", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert shared.nw("b", "gc", "--min-age", "0").returncode == 0
    assert not os.path.lexists(shared.store / "store" / theirs)
    assert shared.nw("b", "verify").returncode == 0
