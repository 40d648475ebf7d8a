"""Probe (wave 26) of lease take-over and of symbolic links on the read side of a remote.

- On S3, taking over a stale (expired or garbled) lease was a plain write: two hosts that found the same stale lease
  both "took" it and both built. It is now a PUT conditional on the ETag read (If-Match), which SeaweedFS honours.
- On a `file://` remote, a FIFO, directory or symbolic link left under a lease's name was refused but never
  replaced: that key could never be leased again. It is now taken over like a garbled lease (moved aside into
  tmp/, never followed, nothing outside the remote touched).
- Reads on a `file://` remote followed symbolic links (only writes were confined): a link planted under nar/,
  realisations/ or leases/ was read through. It is now refused, like the other special files.

Real parts only: the real `nw` CLI, a real directory remote, a real SeaweedFS server (`weed`)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from tests import test_remote as remote_fixtures
from tests.test_remote import Host, Remote, experiment, ran
from tests.test_remote_probe25 import _run, _show

keys = remote_fixtures.keys  # the fixtures, for pytest to find
s3_endpoint = remote_fixtures.s3_endpoint

# ---- 1. S3: take-over conditional on the ETag read ---------------------------------------------------------------

def test_seaweedfs_refuses_a_put_whose_if_match_is_not_the_current_etag(s3_endpoint: str, tmp_path: Path) -> None:
    """What the S3 take-over rests on, checked on the server the tests use: a PUT with If-Match of another ETag is
    refused with 412, one with the current ETag is accepted, and the old ETag is refused after that."""
    import botocore.exceptions

    remote = Remote("s3", tmp_path, s3_endpoint)
    key = f"{remote.prefix}/if-match"
    first = remote.client.put_object(Bucket=remote.bucket, Key=key, Body=b"one")["ETag"]
    for wrong in ('"0123456789abcdef0123456789abcdef"', first):
        if wrong == first:
            remote.client.put_object(Bucket=remote.bucket, Key=key, Body=b"two", IfMatch=first)
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            remote.client.put_object(Bucket=remote.bucket, Key=key, Body=b"three", IfMatch=wrong)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert remote.read("if-match") == b"two"


def _race(backend: object, scratch: Path, rk: str, takers: int) -> list[tuple[bool, str]]:
    """`takers` Lease objects that each read the same stale lease (inspect) and then take it over at once (a
    barrier between reading and writing): each one's (won, token)."""
    from nixlib import remote_lease

    found = [remote_lease.inspect(backend, rk) for _ in range(takers)]  # type: ignore[arg-type]
    assert all(doc is not None and not remote_lease.live(doc) for doc, _ in found)
    leases = [remote_lease.Lease(backend, scratch, rk) for _ in range(takers)]  # type: ignore[arg-type]
    barrier = threading.Barrier(takers)
    won: list[bool] = [False] * takers

    def take(i: int) -> None:
        barrier.wait()
        won[i] = leases[i].take(replace=True, stale=found[i][1])

    threads = [threading.Thread(target=take, args=(i,)) for i in range(takers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for lease, w in zip(leases, won, strict=True):
        if w:
            lease._stop.set()  # (stop renewing; the lease is read below)
    return [(w, lease.token) for lease, w in zip(leases, won, strict=True)]


def test_two_takers_of_one_stale_s3_lease_one_wins(s3_endpoint: str, tmp_path: Path) -> None:
    """Hosts that found the same expired lease on S3 (the same ETag) take it over at once: exactly one wins, and
    the lease on the server is the winner's. Before: each wrote it blindly, so every taker won and all built."""
    from nixlib.remotes import open_backend

    remote = Remote("s3", tmp_path, s3_endpoint)
    backend = open_backend(remote.url)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for round_ in range(4):
        rk = f"{round_:052d}"
        remote.write(f"leases/{rk}.json", json.dumps({"host": "gone", "pid": 1, "expires": 1.0}).encode())
        results = _race(backend, scratch, rk, 3)
        winners = [token for w, token in results if w]
        assert len(winners) == 1, results
        assert json.loads(remote.read(f"leases/{rk}.json"))["token"] == winners[0]


# ---- 2. file://: no regular file under a lease's name ------------------------------------------------------------

def _fifo(path: Path, outside: Path) -> None:
    os.mkfifo(path)


def _empty_dir(path: Path, outside: Path) -> None:
    path.mkdir()


def _full_dir(path: Path, outside: Path) -> None:
    path.mkdir()
    (path / "kept").write_text("whoever left this directory may want it back\n")
    (path / "link-out").symlink_to(outside)


def _link_out(path: Path, outside: Path) -> None:
    path.symlink_to(outside)


def _link_to_live_lease(path: Path, outside: Path) -> None:
    """A link to a live lease of another host kept outside the remote (read through, it made every host wait)."""
    lease = outside.parent / "live-lease.json"
    lease.write_text(json.dumps({"host": "elsewhere", "pid": 1, "user": "x", "token": "t", "boot": "b",
                                 "expires": __import__("time").time() + 3600}))
    path.symlink_to(lease)


NOT_FILES = {"fifo": _fifo, "empty-directory": _empty_dir, "directory-with-files": _full_dir,
             "symlink-out-of-the-remote": _link_out, "symlink-to-a-live-lease": _link_to_live_lease}


@pytest.mark.parametrize("kind", list(NOT_FILES))
def test_no_regular_file_under_a_lease_name_is_taken_over(tmp_path: Path, keys: dict[str, str], kind: str) -> None:
    """Something no holder writes is under `data`'s lease name. A pushing host takes it over like a garbled lease
    (so the key can be leased again), builds once without waiting, pushes, and releases its lease: the name is then
    free. Nothing outside the remote is touched, and a directory's contents are kept (moved into tmp/). Before:
    the entry stayed for ever (every pushing host built without a lease), and a link to a live lease elsewhere
    made every host wait."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    outside = tmp_path / "outside-file"
    outside.write_text("the pusher's own file\n")
    scratch = Host(tmp_path, "scratch", remote, keys["k1.pub"])
    scratch.nw("run", str(exp), "data", "-q", check=True)
    rk = _show(scratch, "data")["resolved_key"]
    lease = remote.dir / "leases" / f"{rk}.json"
    lease.parent.mkdir()
    NOT_FILES[kind](lease, outside)
    b = Host(tmp_path, "b", remote, keys["k1.pub"])
    b.env["NIX_WORKFLOW_LEASE_WAIT"] = "10"  # (bounds the old code's wait on a linked live lease)
    err = _run(b, exp, "--push", "--secret-key-file", keys["k1"], step="data")
    assert ran(count) == ["data", "data"], err
    assert "waited" not in err and "waiting" not in err, err
    assert not os.path.lexists(lease), "the entry under the lease name was never taken over"
    assert (remote.dir / "realisations" / f"{rk}.json").is_file()
    assert outside.read_text() == "the pusher's own file\n"
    if kind == "directory-with-files":
        (kept,) = [p for p in (remote.dir / "tmp").iterdir() if p.is_dir()]
        assert (kept / "kept").read_text().startswith("whoever left")
        assert (kept / "link-out").is_symlink()
    else:
        assert os.listdir(remote.dir / "tmp") == []


def test_two_takers_of_one_fifo_lease_one_wins(tmp_path: Path) -> None:
    """Two hosts that found the same FIFO under a lease name take it over at once on a file remote: exactly one
    wins, the lease there is the winner's, and nothing is left in tmp/. Before: neither could take it."""
    from nixlib.remotes import open_backend

    root = tmp_path / "remote"
    (root / "leases").mkdir(parents=True)
    backend = open_backend(f"file://{root}")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for round_ in range(4):
        rk = f"{round_:052d}"
        os.mkfifo(root / "leases" / f"{rk}.json")
        from nixlib import remote_lease

        found = [remote_lease.inspect(backend, rk) for _ in range(2)]  # type: ignore[arg-type]
        assert [doc for doc, _ in found] == [None, None]
        leases = [remote_lease.Lease(backend, scratch, rk) for _ in range(2)]  # type: ignore[arg-type]
        barrier = threading.Barrier(2)
        won = [False, False]

        def take(i: int, leases: list = leases, found: list = found, won: list = won,
                 barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            won[i] = leases[i].take(replace=True, stale=found[i][1])

        threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert won.count(True) == 1, won
        winner = leases[won.index(True)]
        winner._stop.set()
        assert json.loads((root / "leases" / f"{rk}.json").read_text())["token"] == winner.token
        assert os.listdir(root / "tmp") == []


# ---- 3. file://: reads never follow a symbolic link --------------------------------------------------------------

def _pushed(tmp_path: Path, keys: dict[str, str]) -> tuple[Remote, Path, Path, Host, Host]:
    """A file remote to which host A pushed the whole experiment (data, model); B trusts A's key."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    _run(a, exp, "--push", "--secret-key-file", keys["k1"])
    assert ran(count) == ["data", "model"]
    return remote, exp, count, a, b


@pytest.mark.parametrize("where", ["object", "record"])
def test_a_symlink_planted_under_nar_or_realisations_is_refused_not_read_through(
        tmp_path: Path, keys: dict[str, str], where: str) -> None:
    """`data`'s object or record is moved out of the remote and a symbolic link to it is left in its place (the
    copy it leads to is good: only the link is wrong). B must not read through it: one warning naming the key as a
    symbolic link, `data` built here, `model` still substituted. Before: the link was followed, so whatever it led
    to (a file of anyone's, anywhere this user may read) was read as the remote's."""
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    data = _show(a, "data")
    key = f"nar/{data['outputs']['out']}.nar.xz" if where == "object" else \
        f"realisations/{data['resolved_key']}.json"
    moved = tmp_path / "elsewhere" / Path(key).name
    moved.parent.mkdir()
    os.rename(remote.dir / key, moved)
    (remote.dir / key).symlink_to(moved)
    err = _run(b, exp)
    assert ran(count) == ["data", "model", "data"], err  # data built here; model substituted
    assert f"{key} is a symbolic link (to {moved}), not a regular file" in err, err
    assert err.count("not a regular file") == 1, err  # one warning
    assert "unavailable" not in err
    assert "substituted" in _show(b, "model")["provenance"]
    assert moved.exists()  # (never removed: not the remote's)


def test_a_symlinked_record_directory_is_not_read_through(tmp_path: Path, keys: dict[str, str]) -> None:
    """`realisations/` itself is replaced by a symbolic link to a copy of it elsewhere: no record is read through
    it, each step is built here with a warning naming the link, and the run succeeds. Before: the records were read
    through the link and substituted."""
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    moved = tmp_path / "elsewhere-realisations"
    os.rename(remote.dir / "realisations", moved)
    (remote.dir / "realisations").symlink_to(moved)
    err = _run(b, exp)
    assert ran(count) == ["data", "model", "data", "model"], err
    assert f"is under a symbolic link ({remote.dir}/realisations leads to {moved}), not a regular file" in err, err
    assert err.count("under a symbolic link") == 2, err  # one warning for each step's record
    assert "unavailable" not in err and "Traceback" not in err
