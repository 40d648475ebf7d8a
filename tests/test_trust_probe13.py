"""Probe of the store's trust guarantees (wave 13): an attacker sharing the store, and an unlucky user, try to
make it serve bytes no successful step produced, or records that lie about which step produced them.

Each test is a case the probe found; its docstring says what happened before the fix. The two-user tests need
root (useradd, setpriv, as in tests/test_multiuser.py): skipped otherwise, failed when NW_REQUIRE_USERS=1.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unixusers import SharedStore, as_user, env, shared_store

# ---- an object changed by its owner through a writable mmap keeps every stat field -------------------------------

# The owner of an object re-opens it for writing, maps it shared and writes one byte unchanged: the page fault of that
# first write sets the file's mtime and ctime (now). Every later write to the still-dirty page changes the bytes and
# no timestamp at all, until the kernel writes the page back (about 30 s later).
ATTACKER = r'''
import mmap, os, sys, time
path, signal, owner = sys.argv[1], sys.argv[2], sys.argv[3] == "owner"
top = os.path.dirname(path)
if owner:  # (else the file is writable by others already)
    os.chmod(top, 0o755); os.chmod(path, 0o644)
m = mmap.mmap(os.open(path, os.O_RDWR), 0)
m[0:1] = m[0:1]
if owner:
    os.chmod(path, 0o444); os.chmod(top, 0o555)
before = os.stat(path).st_ctime_ns
open(signal + ".armed", "w").close()
while not os.path.exists(signal + ".go"):
    time.sleep(0.05)
m[0:4] = b"evil"
after = os.stat(path).st_ctime_ns
open(signal + ".done", "w").write(f"{before} {after}")
'''


@pytest.fixture
def shared() -> Iterator[SharedStore]:
    with shared_store("store13") as s:
        yield s


def _wait_for(path: Path, what: str) -> None:
    for _ in range(1200):
        if path.exists():
            return
        time.sleep(0.05)
    pytest.fail(f"the attacker never {what}")


def _mmap_attack(shared: SharedStore, file: Path, how: str, check: Callable[[], None]) -> None:
    """User b maps `file` writable (as its owner, or as anyone when it is writable by others), then `check()` runs
    past the stat memo's racy window, then b changes "good" to "evil" in it, and its stat fields stay the same."""
    signal = shared.users["b"].home / "signal"
    attacker = shared.users["b"].home / "attacker.py"
    attacker.write_text(ATTACKER)
    proc = subprocess.Popen(as_user(shared.users["b"], shared.python, str(attacker), str(file), str(signal), how),
                            env=env(shared.store, shared.users["b"]), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(Path(f"{signal}.armed"), "armed")
        time.sleep(2.2)  # past the stat memo's racy window: a check now may vouch for the object's stat signature
        check()
        Path(f"{signal}.go").touch()
        _wait_for(Path(f"{signal}.done"), "tampered")
    finally:
        proc.wait(timeout=60)
    before, after = Path(f"{signal}.done").read_text().split()
    if before != after:
        pytest.skip("the kernel wrote the mapped page back before the attacker's second write (its ctime changed)")
    assert file.read_text() == "evil data\n"  # the object's bytes changed, and its stat fields did not


@pytest.mark.parametrize("trust", ["never-trusted", "no-longer-trusted"])
def test_an_object_its_owner_changed_through_a_writable_mmap_is_never_served(shared: SharedStore, trust: str) -> None:
    """User b stored the bytes of a's step output first (anyone can plant the bytes another user's step will
    produce), so a's own record names b's object. b maps the object writable and changes it keeping its size,
    inode, mtime and ctime. Before the fix, a's stat memo (and verified-hit memo) vouched for the object by its
    stat signature alone, so every later run of a served b's bytes ("evil data") as a's step's result, though a
    never trusted b. `no-longer-trusted`: a trusted b when the memos vouched for the object, then stopped."""
    shared.experiment("b", 's1 = output("printf \'good data\\n\' > $out/f", name="s1")\n')
    shared.experiment("a", 's1 = output("echo good data > $out/f", name="s1")\n'  # another recipe, the same bytes
                      's2 = output(f"cat {s1}/f > $out/v", name="s2")\n')
    assert shared.nw("b", "run", "exp.py").returncode == 0
    out = shared.users["a"].home / "nix-workflow-output"
    first = shared.nw("a", "run", "exp.py")
    assert first.returncode == 0, first.stderr
    obj = Path(os.readlink(out / "s1"))
    assert obj.stat().st_uid == shared.users["b"].uid  # a's record names b's object

    def check() -> None:  # the object holds the good bytes: served, and checked
        if trust == "no-longer-trusted":
            shared.trusted = shared.users["b"].name
        done = shared.nw("a", "run", "exp.py")
        assert done.returncode == 0 and "cached 2" in done.stderr, done.stderr

    _mmap_attack(shared, obj / "f", "owner", check)

    shared.trusted = ""
    for name in ("s1", "s2"):  # (a served result would be linked here again)
        (out / name).unlink()
    again = shared.nw("a", "run", "exp.py")
    assert not (out / "s1").exists() and not (out / "s2").exists(), again.stderr
    assert "cached 2" not in again.stderr, again.stderr
    # b's object is re-hashed, found corrupt and never served; a cannot move b's file aside, so s1 fails naming it
    assert again.returncode == 1 and obj.name in again.stderr and "could not be moved aside" in again.stderr, \
        again.stderr


def test_an_own_object_left_writable_by_others_is_re_hashed_and_a_change_through_mmap_never_served(
        shared: SharedStore) -> None:
    """An unlucky user a made a file of its own stored object writable by everyone (`chmod 666`). User b, who can
    now write it, maps it and changes its bytes keeping every stat field. Before the fix, a's memos vouched for
    a's own object by its stat signature, so a's next run served b's bytes as s1's result (and s2 stayed
    "good"). Now such an object is re-hashed on every lookup: the change is found, the object quarantined, and
    s1 runs again."""
    shared.experiment("a", 's1 = output("echo good data > $out/f", name="s1")\n'
                      's2 = output(f"cat {s1}/f > $out/v", name="s2")\n')
    out = shared.users["a"].home / "nix-workflow-output"
    assert shared.nw("a", "run", "exp.py").returncode == 0
    obj = Path(os.readlink(out / "s1"))
    assert shared.run("a", "chmod", "666", str(obj / "f")).returncode == 0

    def check() -> None:
        done = shared.nw("a", "run", "exp.py")
        assert done.returncode == 0 and "cached 2" in done.stderr, done.stderr

    _mmap_attack(shared, obj / "f", "anyone", check)
    again = shared.nw("a", "run", "exp.py")
    assert again.returncode == 0, again.stderr
    assert "cached 2" not in again.stderr, again.stderr
    assert (out / "s1" / "f").read_text() == "good data\n"
    assert (out / "s2" / "v").read_text() == "good data\n"
