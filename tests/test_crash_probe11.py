"""Crash and concurrency probe (wave 11): remote pulls with signed sizes, Luigi's static() at import time, `nw show`
of outputs that are gone or another user's, and kill -9 at each phase. Regressions of what it found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, nw
from tests.unixusers import SharedStore, shared_store

# ---- an object its owner changed so that it cannot be read (a shared store) ---------------------------------------


@pytest.fixture
def shared() -> Iterator[SharedStore]:
    """A shared store and two users, "a" and "b", who trust each other's records, each with exp.py (TWO_STEPS)."""
    with shared_store("crash11", trusting=True) as s:
        for who in s.users:
            s.experiment(who, TWO_STEPS.removeprefix("from nixlib import output\n"))
        yield s


TWO_STEPS = '''from nixlib import output
s1 = output("mkdir $out/d; echo one > $out/d/f; echo top > $out/t", name="s1")
s2 = output(f"cat {s1}/d/f > $out/v", name="s2")
'''


@pytest.mark.parametrize("change", ["chmod 000", "a FIFO"])
def test_another_users_object_changed_to_be_unreadable_is_never_served_nor_crashes_show_verify_or_run(
        shared: SharedStore, change: str) -> None:
    """User b stored s1's object (so b owns it); a trusts b. b then opens the object and makes a file in it
    unreadable (or puts a FIFO in it). The object no longer hashes, so it must count as corrupt: not served, and
    named as such. Before, hashing it raised "cannot archive …: it cannot be read … so its bytes cannot be stored"
    out of every lookup: `nw show s1` and `nw run` failed with that message (nothing was being stored), and
    `nw verify` stopped at it, checking nothing after it."""
    assert shared.nw("b", "run", "exp.py").returncode == 0
    assert "cached 2" in shared.nw("a", "run", "exp.py").stderr
    obj = Path(os.readlink(shared.users["a"].home / "nix-workflow-output" / "s1"))
    owner = "chmod 000 d/f" if change == "chmod 000" else "mkfifo d/p"
    assert shared.run("b", "sh", "-c", f"cd {obj} && chmod u+w d && {owner}").returncode == 0

    show = shared.nw("a", "show", "s1")
    assert show.returncode == 0, show.stderr
    assert "MISSING" in show.stdout and "no longer re-hashes" in show.stdout, show.stdout
    assert "cannot be stored" not in show.stdout + show.stderr

    verify = shared.nw("a", "verify")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert f"corrupt: {obj.name}" in verify.stdout and "nwcrash11b" in verify.stdout, verify.stdout
    assert "dangling record" in verify.stdout, verify.stdout  # it went on past the object: s1's record names it

    run = shared.nw("a", "run", "exp.py")  # s1 runs again; its object's name is held by b's changed copy
    assert run.returncode == 1
    assert f"object {obj.name}" in run.stderr and "could not be moved aside" in run.stderr, run.stderr
    assert "cannot be stored" not in run.stderr

    fixed = shared.nw("b", "verify", "--repair")  # its owner moves it aside: the next run stores the intact copy
    assert f"quarantined {obj.name}" in fixed.stdout, fixed.stdout
    again = shared.nw("a", "run", "exp.py")
    assert again.returncode == 0, again.stderr
    assert (shared.users["a"].home / "nix-workflow-output" / "s2" / "v").read_text() == "one\n"


# ---- `nw verify` beside `nw gc` ------------------------------------------------------------------------------------

SPARSE = '''from nixlib import output
a = output("truncate -s 1G $out/big; echo a > $out/n", name="a")
b = output("truncate -s 1G $out/big; echo b > $out/n", name="b")
'''


def _hashing_an_object(pid: int, objects: Path) -> bool:
    """Whether process `pid` has a file of the store's objects open (verify re-hashing it)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{objects}/"):
                return True
        except OSError:
            continue
    return False


def test_verify_beside_a_gc_reports_no_object_the_gc_removed_as_corrupt(tmp_path: Path, store_root: Path) -> None:
    """`nw gc` removed objects while `nw verify` was re-hashing another one: verify then reported each removed
    object as "corrupt: … hashes to (unreadable: [Errno 2] No such file or directory …); it is gone" and exited 1,
    on a store with nothing wrong. verify now holds the store's gc guard shared, as a run does while it stores, so
    a gc started meanwhile waits for it, and then removes what it would have."""
    exp = tmp_path / "exp.py"
    exp.write_text(SPARSE)  # two objects of 1 GiB sparse files: re-hashing one takes seconds, no disk space
    nw("run", str(exp), "-q", check=True)
    shutil.rmtree("nix-workflow-output")  # unrooted: `nw gc --min-age 0` removes both
    full = dict(os.environ, PYTHONPATH=str(REPO))
    verify = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "verify"], env=full, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    objects = store_root / "store"
    while not _hashing_an_object(verify.pid, objects):  # until verify reads the first object
        assert verify.poll() is None, verify.communicate()
        time.sleep(0.01)
    gc = nw("gc", "--min-age", "0", timeout=300)
    out, err = verify.communicate(timeout=300)
    assert verify.returncode == 0 and "corrupt:" not in out, out + err
    assert "0 problem(s)" in err, err
    assert gc.returncode == 0, gc.stderr
    assert not [n for n in os.listdir(objects)], "the gc removed nothing"
