"""Probe (wave 25b) of the write side of a `file://` remote, and of one unreadable key.

Someone who can write the remote's directory can replace `tmp/`, `nar/`, `realisations/` or `leases/` with a
symbolic link to a directory of a pushing user's (~/.ssh, a checkout): a push then created, linked and renamed
files there, as that user. Every write now goes through directory descriptors opened without following links:
such a directory is refused with one warning naming it, the push is skipped, and the run goes on locally. And
one object or record this user may not read (mode 000, another user's) cost the whole remote for the run; it
now costs that key only. Real parts only: the real `nw` CLI, a real directory remote and, for the permission,
a real unprivileged Unix user (tests/unixusers.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests import test_remote as remote_fixtures
from tests.helpers import nw
from tests.test_remote import Host, Remote, experiment, ran
from tests.test_remote_probe25 import HANG, _run, _show
from tests.unixusers import as_user, env, find_python, named_user, require_root

keys = remote_fixtures.keys  # the fixture, for pytest to find

def _victim(tmp_path: Path) -> tuple[Path, list[str], int]:
    """A directory of the pushing user's (it stands for ~/.ssh): its entries and its mtime, to tell any file
    created there, even one removed again (a temp file), from none."""
    victim = tmp_path / "home-ssh"
    victim.mkdir()
    (victim / "authorized_keys").write_text("ssh-ed25519 AAAA... the user's own\n")
    return victim, sorted(os.listdir(victim)), victim.stat().st_mtime_ns


@pytest.mark.parametrize("sub", ["tmp", "nar", "realisations", "leases"])
def test_a_remote_subdirectory_that_is_a_symlink_is_never_written_through(
        tmp_path: Path, keys: dict[str, str], sub: str) -> None:
    """`sub` of the remote is a symbolic link to a directory of the pusher's. A pushing `nw run` must not create,
    link, rename or remove anything there: it warns once naming the link, builds both steps and succeeds. No
    record is pushed that names an object the remote lacks (so another host builds rather than failing a pull).
    Before: temp files, objects, records and leases were written (and removed) in the victim directory."""
    remote = Remote("file", tmp_path, None)
    victim, entries, mtime = _victim(tmp_path)
    (remote.dir / sub).symlink_to(victim)
    exp, count = experiment(tmp_path)
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    err = _run(a, exp, "--push", "--secret-key-file", keys["k1"])
    assert ran(count) == ["data", "model"], err
    assert sorted(os.listdir(victim)) == entries, err
    assert victim.stat().st_mtime_ns == mtime, "a file was created or removed in the victim directory"
    assert err.count(f"{remote.dir}/{sub} is a symbolic link (to {victim})") == 1, err
    assert "unavailable" not in err
    records = [] if sub == "realisations" else list((remote.dir / "realisations").glob("*.json"))
    assert len(records) == (2 if sub == "leases" else 0), records  # no record naming an object not pushed
    if sub == "leases":  # leasing is skipped, pushing is not: a second host substitutes everything
        b = Host(tmp_path, "b", remote, keys["k1.pub"])
        _run(b, exp)
        assert ran(count) == ["data", "model"]


def test_nw_push_through_a_symlinked_record_directory_is_one_clear_error(tmp_path: Path,
                                                                         keys: dict[str, str]) -> None:
    """`nw push` (which exists only to write the remote) fails with one error naming the link, writes nothing in
    the victim directory, and shows no traceback. Before: the record was written into the victim directory."""
    remote = Remote("file", tmp_path, None)
    victim, entries, mtime = _victim(tmp_path)
    exp, count = experiment(tmp_path)
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    a.nw("run", str(exp), "data", "-q", check=True)
    (remote.dir / "realisations").symlink_to(victim)
    proc = nw("push", "data", "--remote", remote.url, "--secret-key-file", keys["k1"], cwd=a.cwd, env=a.env,
              timeout=HANG)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{remote.dir}/realisations is a symbolic link (to {victim})" in proc.stderr, proc.stderr
    assert sorted(os.listdir(victim)) == entries
    assert victim.stat().st_mtime_ns == mtime


def test_a_file_planted_as_the_tmp_directory_is_refused_by_name(tmp_path: Path, keys: dict[str, str]) -> None:
    """`tmp` is a regular file: the push is refused with a warning naming it as no directory, not taken for a
    remote that is down (objects and records are still readable by others)."""
    remote = Remote("file", tmp_path, None)
    (remote.dir / "tmp").write_text("not a directory\n")
    exp, count = experiment(tmp_path)
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    err = _run(a, exp, "--push", "--secret-key-file", keys["k1"], step="data")
    assert ran(count) == ["data"]
    assert f"{remote.dir}/tmp is not a directory" in err, err
    assert not list(remote.dir.glob("realisations/*.json")), "a record was pushed without its object"


# ---- one unreadable key, read by a real unprivileged user ------------------------------------------------------

@pytest.mark.parametrize("where", ["object", "record"])
def test_one_unreadable_key_costs_that_key_only_not_the_remote(tmp_path: Path, keys: dict[str, str],
                                                               where: str) -> None:
    """Host A (root) pushed `data` and `model`; then `data`'s object or record is made mode 000 (a file of another
    user's that this one may not read). User B (a real unprivileged user) runs the experiment: one warning naming
    that key, `data` built here, `model` still substituted. Before: EACCES took the whole remote for down
    ("unavailable"), so `model` was built too."""
    require_root()
    base = Path(tempfile.mkdtemp(prefix="nw-25b-", dir="/tmp"))
    try:
        base.chmod(0o755)
        remote = Remote("file", base, None)
        exp, count = experiment(base)
        count.touch(mode=0o666)
        count.chmod(0o666)
        a = Host(base, "a", remote, keys["k1.pub"])
        _run(a, exp, "--push", "--secret-key-file", keys["k1"])
        assert ran(count) == ["data", "model"]
        data = _show(a, "data")
        key = f"nar/{data['outputs']['out']}.nar.xz" if where == "object" else \
            f"realisations/{data['resolved_key']}.json"
        (remote.dir / key).chmod(0)
        user = named_user("nw25bu", base)
        environ = env(user.home / "store", user, {"NIX_WORKFLOW_TRUSTED_KEYS": keys["k1.pub"]})
        python = find_python(user, environ)
        proc = subprocess.run(as_user(user, python, "-m", "nixlib.cli", "run", str(exp), "-q", "--remote", remote.url),
                              cwd=user.home, env=environ, text=True, capture_output=True, timeout=HANG)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert ran(count) == ["data", "model", "data"], proc.stderr  # data built here; model substituted
        assert f"{remote.url}/{key} cannot be read: Permission denied" in proc.stderr, proc.stderr
        assert proc.stderr.count("cannot be read") == 1, proc.stderr
        assert "unavailable" not in proc.stderr, proc.stderr
        assert (user.home / "nix-workflow-output/model/y").read_text() == "hello\nabc"
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---- leases that never expire ----------------------------------------------------------------------------------

def _planted_lease(tmp_path: Path, keys: dict[str, str], body: bytes) -> tuple[Remote, Path, Path, Path]:
    """A file remote with `body` planted as the lease of `data` (its key found by a run of a scratch host)."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    scratch = Host(tmp_path, "scratch", remote, keys["k1.pub"])
    scratch.nw("run", str(exp), "data", "-q", check=True)
    lease = remote.dir / "leases" / f"{_show(scratch, 'data')['resolved_key']}.json"
    lease.parent.mkdir()
    lease.write_bytes(body)
    return remote, exp, count, lease


@pytest.mark.parametrize("body", [b"not a lease at all", b'{"host": "x", "pid": 1, "expires": 1e15}',
                                  b'{"host": "x", "pid": 1, "expires": Infinity}'],
                         ids=["garbled", "expires-in-31-million-years", "infinity"])
def test_a_lease_that_never_expires_is_taken_over(tmp_path: Path, keys: dict[str, str], body: bytes) -> None:
    """A lease planted under `data`'s name that no holder would write: garbled (it was never replaced, so every
    pushing host built without a lease, for ever), or stating an expiry far beyond any lifetime (every host waited
    its longest wait, an hour by default, for each such step). A pushing host takes it over like an expired lease:
    it builds once, without waiting, and releases its own lease after pushing, so the planted one is gone."""
    remote, exp, count, lease = _planted_lease(tmp_path, keys, body)
    b = Host(tmp_path, "b", remote, keys["k1.pub"])
    b.env["NIX_WORKFLOW_LEASE_WAIT"] = "15"  # (bounds the old code's wait: it then built "too", with a warning)
    err = _run(b, exp, "--push", "--secret-key-file", keys["k1"], step="data")
    assert ran(count) == ["data", "data"], err
    assert "waited" not in err and "waiting" not in err, err
    assert not lease.exists(), lease.read_bytes()  # taken over, then released
    assert (lease.parent.parent / "realisations" / lease.name).is_file()


def test_two_takers_of_one_expired_lease_one_wins(tmp_path: Path) -> None:
    """Taking over an expired lease is atomic on a file remote: two hosts that found the same expired lease (its
    identity) each try; the first replaces it, the second finds the first's fresh lease there and loses, leaving
    it in place (before: each replaced it blindly, so both built). Real files through the backend."""
    from nixlib.remotes.file import FileBackend

    root = tmp_path / "remote"
    (root / "leases").mkdir(parents=True)
    key = "leases/k.json"
    (root / key).write_text('{"expires": 0}')
    backend = FileBackend(f"file://{root}")
    stream = backend.get(key)
    assert stream is not None
    stale = (stream.ident, stream.read(4096))
    stream.close()
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text('{"token": "first"}')
    second.write_text('{"token": "second"}')
    assert backend.take_over(str(first), key, stale) is True
    assert backend.take_over(str(second), key, stale) is False
    assert (root / key).read_text() == '{"token": "first"}'
    assert sorted(os.listdir(root / "tmp")) == []  # nothing left aside
