"""Probe (wave 25) of what a `file://` remote may hold under an object's, record's or lease's name that is no file.

A FIFO nobody writes, a device, a socket, a directory, or a symbolic link (to /dev/zero, to a FIFO, to itself)
planted where a pull expects a file made the pull block for ever, read without end, or take the whole remote
for down. Each must be refused with one warning naming the remote key, and the step built locally, as for any
object that does not verify. Real parts only: the real `nw` CLI and a real directory remote. Every run has a
timeout, so a pull that hangs fails the test instead of hanging it."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import test_remote as remote_fixtures
from tests.helpers import bound, nw
from tests.test_remote import Host, Remote, experiment, ran

keys = remote_fixtures.keys  # the fixture, for pytest to find

HANG = 60  # seconds: far beyond any of these runs, which take a few seconds; a hang is a TimeoutExpired


def _run(host: Host, exp: Path, *extra: str, step: str | None = None) -> str:
    """`nw run` on `host` with the remote (stderr); fails the test if it hangs or fails."""
    proc = nw("run", str(exp), *([step] if step else []), "-q", "--remote", host.remote.url, *extra, cwd=host.cwd,
              env=host.env, timeout=HANG)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def _show(host: Host, step: str) -> dict:
    return json.loads(host.nw("show", step, "--json", check=True).stdout)


def _pushed(tmp_path: Path, keys: dict[str, str]) -> tuple[Remote, Path, Path, Host, Host]:
    """A file remote to which host A pushed the whole experiment (data, model); B trusts A's key."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    a, b = Host(tmp_path, "a", remote, keys["k1.pub"]), Host(tmp_path, "b", remote, keys["k1.pub"])
    _run(a, exp, "--push", "--secret-key-file", keys["k1"])
    assert ran(count) == ["data", "model"]
    return remote, exp, count, a, b


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    path.chmod(0o644)
    path.unlink()
    make(path)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="nw25")) / "s"  # (AF_UNIX paths are short: bind there, then move it)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(short))  # (left bound and unlistened: open(2) of it fails with ENXIO)
    s.close()
    os.rename(short, path)
    short.parent.rmdir()


def _dir(path: Path) -> None:
    path.mkdir()


def _chardev(path: Path) -> None:
    os.mknod(path, 0o444 | 0o020000, os.makedev(1, 5))  # a /dev/zero of its own


def _sparse_4g(path: Path) -> None:
    with path.open("wb") as f:
        f.truncate(4 << 30)


def _link_to(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.symlink_to(target)
    return make


def _link_to_fifo(path: Path) -> None:
    os.mkfifo(path.parent / "elsewhere-fifo")
    path.symlink_to(path.parent / "elsewhere-fifo")


def _link_loop(path: Path) -> None:
    path.symlink_to(path.name)


SPECIALS = {
    "fifo": (_fifo, "a FIFO"),
    "socket": (_socket, "a socket"),
    "directory": (_dir, "a directory"),
    "chardev": (_chardev, "a character device"),
    # a link is refused as one, whatever it leads to (reads of a file:// remote never follow one: probe 26)
    "symlink-to-dev-zero": (_link_to("/dev/zero"), "a symbolic link"),
    "symlink-to-fifo": (_link_to_fifo, "a symbolic link"),
    "symlink-loop": (_link_loop, "a symbolic link"),
}


@pytest.mark.parametrize("kind", list(SPECIALS))
def test_a_special_file_planted_as_an_object_is_refused_and_the_step_built_locally(
        tmp_path: Path, keys: dict[str, str], kind: str) -> None:
    """`data`'s object on the remote is replaced by something that is no file. B must not block on it (FIFO), read
    it without end (/dev/zero), nor take the whole remote for down (directory, socket, loop: then `model`, whose
    record and object are good, was built too): one warning naming the key, `data` built here, `model` still
    substituted. Before: the FIFOs hung the run; the directory, socket and loop made the remote "unavailable"."""
    make, what = SPECIALS[kind]
    if kind == "chardev" and os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root")
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    obj = _show(a, "data")["outputs"]["out"]
    key = f"nar/{obj}.nar.xz"
    _replace(remote.dir / key, make)
    err = _run(b, exp)
    assert ran(count) == ["data", "model", "data"], err  # data built here; model substituted
    assert f"{key} is {what}" in err and "not a regular file" in err, err
    assert err.count("not a regular file") == 1, err  # one warning
    assert "unavailable" not in err
    assert (b.cwd / "nix-workflow-output/model/y").read_text() == "hello\nabc"
    assert "substituted" in _show(b, "model")["provenance"]
    assert b.nw("verify").returncode == 0


@pytest.mark.parametrize("kind", list(SPECIALS))
def test_a_special_file_planted_as_a_record_is_refused_and_the_step_built_locally(
        tmp_path: Path, keys: dict[str, str], kind: str) -> None:
    """The same under `data`'s record name: refused with one warning naming the key, `data` built, `model`
    substituted (a FIFO record hung `nw run` at the first lookup; /dev/zero was read to 64 MiB)."""
    make, what = SPECIALS[kind]
    if kind == "chardev" and os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root")
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    key = f"realisations/{_show(a, 'data')['resolved_key']}.json"
    _replace(remote.dir / key, make)
    err = _run(b, exp)
    assert ran(count) == ["data", "model", "data"], err
    assert f"{key} is {what}" in err and "not a regular file" in err, err
    assert err.count("not a regular file") == 1, err  # one warning
    assert "substituted" in _show(b, "model")["provenance"]


def test_a_fifo_planted_as_a_record_does_not_hang_nw_pull(tmp_path: Path, keys: dict[str, str]) -> None:
    """`nw pull model` walks to `data`'s record, a FIFO: the pull ends, says data was not pulled, and warns once
    naming the key (before: it blocked for ever on the open)."""
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    key = f"realisations/{_show(a, 'data')['resolved_key']}.json"
    _replace(remote.dir / key, _fifo)
    model_rk = _show(a, "model")["resolved_key"]
    proc = nw("pull", model_rk, "--remote", remote.url, cwd=b.cwd, env=b.env, timeout=HANG)
    assert f"{key} is a FIFO, not a regular file" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pulled: model" in proc.stdout or "pulled" in proc.stdout, proc.stdout


def test_a_fifo_planted_as_a_lease_does_not_hang_a_pushing_host(tmp_path: Path, keys: dict[str, str]) -> None:
    """A pushing host that misses a step takes a lease; a FIFO already under the lease's name made it read the
    "other host's" lease, and block for ever. It counts as no lease: the step is built and pushed."""
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    scratch = Host(tmp_path, "scratch", remote, keys["k1.pub"])
    scratch.nw("run", str(exp), "data", "-q", check=True)
    rk = _show(scratch, "data")["resolved_key"]
    (remote.dir / "leases").mkdir()
    os.mkfifo(remote.dir / "leases" / f"{rk}.json")
    b = Host(tmp_path, "b", remote, keys["k1.pub"])
    _run(b, exp, "--push", "--secret-key-file", keys["k1"], step="data")
    assert ran(count) == ["data", "data"]
    assert (remote.dir / "realisations" / f"{rk}.json").is_file()


def test_a_fifo_record_is_replaced_by_the_next_good_push(tmp_path: Path, keys: dict[str, str]) -> None:
    """A FIFO under a record's name blocked every push of that key too ("already there"): it is no record, so
    B's push replaces it, and a third host substitutes the step."""
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    key = f"realisations/{_show(a, 'data')['resolved_key']}.json"
    _replace(remote.dir / key, _fifo)
    _run(b, exp, "--push", "--secret-key-file", keys["k1"], step="data")
    assert (remote.dir / key).is_file()
    c = Host(tmp_path, "c", remote, keys["k1.pub"])
    _run(c, exp, step="data")
    assert ran(count) == ["data", "model", "data"]


def test_a_huge_record_is_refused_by_its_size_unread(tmp_path: Path, keys: dict[str, str]) -> None:
    """A record name holding gigabytes (a sparse 4 GiB file: no disk used): refused by the size it states, with a
    warning naming the key, without reading it (before: 64 MiB of it were read into memory, then refused)."""
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    key = f"realisations/{_show(a, 'data')['resolved_key']}.json"
    _replace(remote.dir / key, _sparse_4g)
    err = _run(b, exp, step="data")
    assert ran(count) == ["data", "model", "data"], err
    assert f"{key} is {4 << 30} bytes, larger than any record" in err, err


def test_a_remote_directory_that_is_a_symbolic_link_loop_is_named_as_one(tmp_path: Path,
                                                                          keys: dict[str, str]) -> None:
    """A remote path that is a symbolic link loop: `nw run` goes on locally with one warning, and `nw push` is one
    clear error saying the link loops (before, push said the directory was missing and advised `mkdir -p` on it,
    which fails on a loop)."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)
    exp, count = experiment(tmp_path)
    a = Host(tmp_path, "a", Remote("file", tmp_path, None), keys["k1.pub"])
    a.remote.url = f"file://{loop}"
    err = _run(a, exp, "--push", "--secret-key-file", keys["k1"], step="data")
    assert ran(count) == ["data"] and err.count(f"remote {a.remote.url} is unavailable") == 1, err
    pushed = nw("push", "data", "--remote", a.remote.url, "--secret-key-file", keys["k1"], cwd=a.cwd, env=a.env,
                timeout=HANG)
    assert pushed.returncode == 1 and "Traceback" not in pushed.stderr, pushed.stderr
    assert f"{loop} cannot be reached: Too many levels of symbolic links" in pushed.stderr, pushed.stderr
    assert "mkdir" not in pushed.stderr


def test_a_directory_under_a_record_name_costs_that_push_only_not_the_remote(tmp_path: Path,
                                                                             keys: dict[str, str]) -> None:
    """A directory planted under `data`'s record name: B builds `data`, and its push of that record (a replacement
    of what is no record) finds a directory. That one push fails with a warning naming the key; the remote stays
    in use, so `model` is still substituted (before: the remote was taken for down and `model` was built too)."""
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    key = f"realisations/{_show(a, 'data')['resolved_key']}.json"
    _replace(remote.dir / key, _dir)
    err = _run(b, exp, "--push", "--secret-key-file", keys["k1"])
    assert ran(count) == ["data", "model", "data"], err
    assert f"not pushing file://{remote.dir}/{key}: the remote holds a directory" in err, err
    assert "unavailable" not in err
    assert "substituted" in _show(b, "model")["provenance"]


def _resign(data: bytes, secret: str, change: Callable[[dict], None]) -> bytes:
    """A remote record changed by `change`, then sealed and signed again by the trusted key (a key holder gone
    rogue, or a stolen key: the signature is good, the content hostile)."""
    from nixlib import records, signing
    from nixlib.recipe import canonical_json

    doc = json.loads(data)
    doc.pop("sig")
    sizes = doc.pop("nar_sizes", {})
    change(doc | {"nar_sizes": sizes})  # (the maps are shared: a change to either lands in doc or sizes)
    body = records.seal(doc) | {"nar_sizes": sizes}
    return json.dumps(body | {"sig": signing.load_secret(secret).sign(canonical_json(body).encode())}).encode()


DOTDOT = "../../escaped"


def _output(doc: dict) -> None:
    doc["outputs"]["out"] = DOTDOT


def _size(doc: dict) -> None:
    doc["nar_sizes"][DOTDOT] = 10


def _input_key(doc: dict) -> None:
    doc["inputs"][0]["resolved_key"] = DOTDOT


@pytest.mark.parametrize("change", [_output, _size, _input_key], ids=["output", "nar-size", "input-key"])
def test_a_signed_record_naming_a_path_with_dotdot_is_refused_before_any_path_is_made(
        tmp_path: Path, keys: dict[str, str], change: Callable[[dict], None]) -> None:
    """A record signed by the trusted key names `../../escaped` as an object, a sized object or an upstream key.
    Nothing read from a record is used as a path before it is validated as a name: the record is ignored as
    invalid (one warning), `model` is built, and nothing under the escaped name is opened (it is a FIFO here, so
    a lookup of it would hang the run). (Held before this probe: kept as a guard.)"""
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    key = f"realisations/{_show(a, 'model')['resolved_key']}.json"
    remote.write(key, _resign(remote.read(key), keys["k1"], change))
    for name in ("escaped.nar.xz", "escaped.nar", "escaped.json"):
        os.mkfifo(tmp_path / name)  # where nar/../../escaped… and realisations/../../escaped… would land
    err = _run(b, exp)
    assert ran(count) == ["data", "model", "model"], err
    assert "ignoring invalid remote record" in err and key in err, err
    proc = nw("pull", _show(a, "model")["resolved_key"], "--remote", remote.url, cwd=b.cwd, env=b.env, timeout=HANG)
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("where", ["object", "record"])
def test_a_file_with_more_bytes_than_its_size_is_refused_after_one_byte_too_many(
        tmp_path: Path, keys: dict[str, str], where: str) -> None:
    """What is read is bounded by the size the file had when it was opened: a file that gives more (one being
    written as it is read, which could go on for ever; here a process's /proc status file, size 0 but with
    content, bind-mounted over the key: reads follow no link) is
    refused after one byte past it, with a warning naming the key, and the step is built locally. (Before, it
    was read to its end, or to 64 MiB for a record, and refused only as an invalid archive or record.)"""
    remote, exp, count, a, b = _pushed(tmp_path, keys)
    data = _show(a, "data")
    key = f"nar/{data['outputs']['out']}.nar.xz" if where == "object" else \
        f"realisations/{data['resolved_key']}.json"
    with bound(f"/proc/{os.getpid()}/status", remote.dir / key):
        err = _run(b, exp, step="data")
    assert ran(count) == ["data", "model", "data"], err
    assert f"{key} is not a finished file: it grew past the 0 bytes" in err, err
