"""NAR serialisation and hashing: the vectors of shared/nix-vectors.md, an independent reference
serialiser, and property tests against the real `nix-hash` and `nix-store --dump`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib import base32, nar
from tests.nixcheck import require_nix

REPO = Path(__file__).resolve().parent.parent


def make_tree_d(root: Path) -> Path:
    """Tree `d` of shared/nix-vectors.md, built exactly as its shell recipe does."""
    d = root / "d"
    (d / "sub").mkdir(parents=True)
    (d / "file.txt").write_bytes(b"hello\n")
    (d / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (d / "run.sh").chmod(0o755)
    (d / "link").symlink_to("file.txt")
    (d / "sub" / "empty").write_bytes(b"")
    (d / "sub" / "b").write_bytes(b"abc")
    return d


@pytest.fixture
def tree_d(tmp_path: Path) -> Path:
    return make_tree_d(tmp_path)


def nar_bytes(path: str | os.PathLike) -> bytes:
    chunks: list[bytes] = []
    nar.dump(path, chunks.append)
    return b"".join(chunks)


def reference_nar(path: str | os.PathLike) -> bytes:
    """The NAR format written as plainly as possible, to check the streaming implementation against."""

    def s(data: bytes) -> bytes:
        return len(data).to_bytes(8, "little") + data + b"\0" * (-len(data) % 8)

    def node(p: bytes) -> bytes:
        mode = os.lstat(p).st_mode
        if stat.S_ISLNK(mode):
            return s(b"(") + s(b"type") + s(b"symlink") + s(b"target") + s(os.readlink(p)) + s(b")")
        if stat.S_ISREG(mode):
            with open(p, "rb") as f:
                data = f.read()
            executable = s(b"executable") + s(b"") if mode & stat.S_IXUSR else b""
            return s(b"(") + s(b"type") + s(b"regular") + executable + s(b"contents") + s(data) + s(b")")
        out = s(b"(") + s(b"type") + s(b"directory")
        for name in sorted(os.listdir(p)):
            out += s(b"entry") + s(b"(") + s(b"name") + s(name) + s(b"node") + node(p + b"/" + name) + s(b")")
        return out + s(b")")

    return s(b"nix-archive-1") + node(os.fsencode(path))


# --- the vectors of tree d -----------------------------------------------------------------


def test_tree_d_nar_length_and_bytes(tree_d: Path) -> None:
    data = nar_bytes(tree_d)
    assert len(data) == 1264
    assert data == reference_nar(tree_d)


def test_tree_d_hashes(tree_d: Path) -> None:
    assert nar.nar_digest(tree_d).hex() == "26d367eb6b200dc1b15f7c1fe9a647b595393f2ff74b0cfc67a74a51cc86ea61"
    assert nar.nar_hash(tree_d) == "0qgahv652jm7czy0qjzp5wzkk5dm8ykfj7vwbyqw2390dgmnglr6"
    assert base32.encode(nar.nar_digest(tree_d, "sha1")) == "w22zij3fpqhlmy7ji7z3x7qrblszlbv3"
    assert nar.nar_digest(tree_d, "md5").hex() == "f0f03661941a6b9813aed5b3436df16d"
    assert nar.is_nar_hash(nar.nar_hash(tree_d))


def test_file_txt_hashes(tree_d: Path) -> None:
    assert nar.nar_hash(tree_d / "file.txt") == "04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw"
    flat = hashlib.sha256((tree_d / "file.txt").read_bytes()).digest()
    assert flat.hex() == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    assert base32.encode(flat) == "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq"


def test_store_paths_of_tree_d(tree_d: Path) -> None:
    """`nix-store --add d` and `nix-store --add-fixed sha256 d/file.txt`, from our own hashes."""
    assert base32.store_path("source", nar.nar_digest(tree_d).hex(), "d") == \
        "/nix/store/xym19qjnd3wnnk4srxl8yvlsadarq5nv-d"
    flat = hashlib.sha256((tree_d / "file.txt").read_bytes()).hexdigest()
    inner = hashlib.sha256(f"fixed:out:sha256:{flat}:".encode()).hexdigest()
    assert base32.store_path("output:out", inner, "file.txt") == \
        "/nix/store/z1rahp9fy11h8yvihxhgj8vr2pb6db1a-file.txt"


@pytest.mark.nix
def test_store_path_agrees_with_nix_print_fixed_path(tree_d: Path) -> None:
    nix_store = require_nix("nix-store")
    out = subprocess.run([nix_store, "--print-fixed-path", "--recursive", "sha256", nar.nar_hash(tree_d), "d"],
                         check=True, capture_output=True, text=True).stdout.strip()
    assert out == base32.store_path("source", nar.nar_digest(tree_d).hex(), "d")


def test_module_entry_point_prints_the_hash(tree_d: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "nixlib.nar", str(tree_d)], check=True, capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    assert out == "0qgahv652jm7czy0qjzp5wzkk5dm8ykfj7vwbyqw2390dgmnglr6\n"


# --- format details ------------------------------------------------------------------------


def test_only_the_owner_execute_bit_counts(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    hashes = {}
    for mode in (0o644, 0o600, 0o611, 0o655, 0o744, 0o700, 0o755):
        f.chmod(mode)
        hashes[mode] = nar.nar_hash(f)
    assert len({hashes[m] for m in (0o644, 0o600, 0o611, 0o655)}) == 1
    assert len({hashes[m] for m in (0o744, 0o700, 0o755)}) == 1
    assert hashes[0o644] != hashes[0o755]


def test_symlinks_are_stored_not_followed(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f").write_bytes(b"data")
    (tmp_path / "to-dir").symlink_to("dir")
    (tmp_path / "dangling").symlink_to("no/such/thing")
    for link in ("to-dir", "dangling"):
        assert nar_bytes(tmp_path / link) == reference_nar(tmp_path / link)
        assert b"data" not in nar_bytes(tmp_path / link)


def test_entries_sort_bytewise_not_by_unicode(tmp_path: Path) -> None:
    """Invalid UTF-8 names must sort as bytes (\\xff after \\xef), as Nix sorts them."""
    root = os.fsencode(tmp_path / "t")
    os.mkdir(root)
    for name in (b"\xff", b"\xef\xbf\xbd", b"\xf0\x9f\x98\x80", b"a", b"B", b"\x80"):
        with open(root + b"/" + name, "wb") as f:
            f.write(name)
    data = nar_bytes(root)
    assert data == reference_nar(root)
    bytewise = [b"B", b"a", b"\x80", b"\xef\xbf\xbd", b"\xf0\x9f\x98\x80", b"\xff"]
    positions = [data.index(nar._str(name)) for name in bytewise]
    assert positions == sorted(positions)


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "dir" / "fifo"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file, directory or symlink"):
        nar.nar_hash(fifo)
    with pytest.raises(ValueError, match="fifo"):
        nar.nar_hash(fifo.parent)


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        nar.nar_hash(tmp_path / "absent")


@pytest.mark.parametrize("size", [nar._FLUSH - 1, nar._FLUSH, nar._FLUSH + 1, 3 * nar._FLUSH + 5])
def test_files_around_the_streaming_threshold(tmp_path: Path, size: int) -> None:
    f = tmp_path / "big"
    f.write_bytes(os.urandom(size))
    assert nar_bytes(f) == reference_nar(f)


def test_large_files_stream_in_bounded_chunks(tmp_path: Path) -> None:
    f = tmp_path / "big"
    f.write_bytes(os.urandom(100_003))
    with mock.patch.multiple(nar, _FLUSH=1000, _CHUNK=997):
        chunks: list[bytes] = []
        nar.dump(f, chunks.append)
    assert b"".join(chunks) == reference_nar(f)
    assert max(len(c) for c in chunks) <= 1000


def test_a_file_that_shrinks_is_an_error() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"12345")
    os.close(write_fd)
    with pytest.raises(OSError, match="shrank"):
        nar._read_exact(read_fd, 10, b"some/file")
    os.close(read_fd)


def test_short_reads_are_completed(tree_d: Path) -> None:
    """read() may return less than asked (network filesystems, signals): keep reading."""
    real_read = os.read
    with mock.patch.object(os, "read", lambda fd, n: real_read(fd, min(n, 3))), \
            mock.patch.multiple(nar, _FLUSH=8, _CHUNK=5):
        assert nar_bytes(tree_d) == reference_nar(tree_d)


def test_sink_gets_large_updates(tree_d: Path) -> None:
    """Headers are gathered: a small tree reaches the sink in one call."""
    chunks: list[bytes] = []
    nar.dump(tree_d, chunks.append)
    assert len(chunks) == 1


# --- property tests: generated trees ---------------------------------------------------------

_SPECIAL_NAMES = [b"a b", b"new\nline", b"-dash", b".hidden", b"...", b"\xc3\xa9t\xc3\xa9", b"A", b"a", b"\t"]
names = st.one_of(
    st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=8)
    .map(str.encode),
    st.binary(min_size=1, max_size=8),
    st.sampled_from(_SPECIAL_NAMES),
).filter(lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..") and len(n) <= 255)

_BOUNDARY_SIZES = [*range(18), 4095, 4096, 4097, 65535, 65536, 65537]
contents = st.one_of(
    st.binary(max_size=40),
    st.tuples(st.sampled_from(_BOUNDARY_SIZES), st.integers(0, 255)).map(
        lambda t: (bytes([t[1]]) + bytes(range(256)) * (t[0] // 256 + 1))[: t[0]]),
)
modes = st.sampled_from([0o644, 0o755, 0o600, 0o700, 0o611, 0o444, 0o555, 0o744, 0o477])
files = st.tuples(st.just("file"), contents, modes)
links = st.tuples(st.just("link"), st.one_of(names, st.sampled_from([b"../nowhere", b"/etc/hostname", b"."])))
trees = st.recursive(
    st.one_of(files, links),
    lambda children: st.tuples(st.just("dir"), st.dictionaries(names, children, max_size=6)),
    max_leaves=25,
)
# code paths to cover: defaults, tiny flush/chunk sizes (streaming large files, frequent flushes)
tunings = st.sampled_from([
    {},
    {"_FLUSH": 5, "_CHUNK": 3},
    {"_FLUSH": 4096, "_CHUNK": 1000},
    {"_FLUSH": 64},
])


def tuned(tuning: dict) -> contextlib.AbstractContextManager:
    return mock.patch.multiple(nar, **tuning) if tuning else contextlib.nullcontext()


def build(path: bytes, node: tuple) -> None:
    kind = node[0]
    if kind == "file":
        with open(path, "wb") as f:
            f.write(node[1])
        os.chmod(path, node[2])
    elif kind == "link":
        os.symlink(node[1], path)
    else:
        os.mkdir(path)
        for name, child in node[1].items():
            build(path + b"/" + name, child)


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(tree=trees, tuning=tunings)
def test_generated_trees_match_reference(tree: tuple, tuning: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.fsencode(tmp) + b"/root"
        build(root, tree)
        with tuned(tuning):
            data = nar_bytes(root)
        assert data == reference_nar(root)


@pytest.mark.nix
@PROPERTY
@given(tree=trees, tuning=tunings)
def test_generated_trees_match_real_nix(tree: tuple, tuning: dict) -> None:
    nix_hash, nix_store = require_nix("nix-hash"), require_nix("nix-store")
    with tempfile.TemporaryDirectory() as tmp:
        root = os.fsencode(tmp) + b"/root"
        build(root, tree)
        with tuned(tuning):
            data = nar_bytes(root)
            h = nar.nar_hash(root)
        assert data == subprocess.run([nix_store, "--dump", root], check=True, capture_output=True).stdout
        expected = subprocess.run([nix_hash, "--type", "sha256", "--base32", root], check=True,
                                  capture_output=True, text=True).stdout.strip()
        assert h == expected
