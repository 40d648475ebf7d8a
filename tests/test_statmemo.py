"""The stat memo: served while a tree's stat signature is unchanged, never after a change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixlib import boot, nar, statmemo
from nixlib.statmemo import StatMemo

REPO = Path(__file__).resolve().parent.parent
OTHER_HASH = "1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello world\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(100)))
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("a.txt")
    return root


@pytest.fixture
def memo(tmp_path: Path) -> StatMemo:
    return StatMemo(tmp_path / "memo")


class DumpCounter:
    """Counts NAR serialisations: every real (re-)hash goes through nar.dump."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = nar.dump

        def counting(path: str | os.PathLike, sink: nar.Sink) -> None:
            self.calls += 1
            real(path, sink)

        monkeypatch.setattr(nar, "dump", counting)


@pytest.fixture
def dumps(monkeypatch: pytest.MonkeyPatch) -> DumpCounter:
    return DumpCounter(monkeypatch)


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scans happen 10 s after the tree was written, so it is not racily clean (see StatMemo.racy_ns)."""
    monkeypatch.setattr(statmemo, "_now_ns", lambda: time.time_ns() + 10_000_000_000)


def next_tick(tree: Path) -> None:
    """Wait until the filesystem stamps a newer ctime than any in `tree`, so a change is visible."""
    newest = statmemo.scan(tree).newest_ns
    probe = tree.parent / "tick-probe"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe.write_bytes(b"")
        if os.lstat(probe).st_ctime_ns > newest:
            return
        time.sleep(0.005)
    raise AssertionError("filesystem timestamps do not advance")


def test_unchanged_tree_is_a_hit(tree: Path, memo: StatMemo, dumps: DumpCounter, later: None) -> None:
    first = memo.hash(tree)
    assert first == nar.nar_hash(tree)  # (this direct call is counted too)
    assert dumps.calls == 2
    assert memo.hash(tree) == first
    assert memo.hash(str(tree) + "/sub/..") == first  # same absolute path after normalisation
    assert dumps.calls == 2
    assert memo.memo_file(tree).exists()


def test_a_hit_is_served_from_the_memo_file(tree: Path, memo: StatMemo, later: None) -> None:
    """Doctor the memo: a hit must return what the file says, proving nothing was re-read."""
    memo.hash(tree)
    path = memo.memo_file(tree)
    data = json.loads(path.read_text())
    data["nar_hash"] = OTHER_HASH
    path.write_text(json.dumps(data))
    assert memo.hash(tree) == OTHER_HASH


def test_one_byte_changed_same_size_and_mtime_is_a_miss(tree: Path, memo: StatMemo, dumps: DumpCounter,
                                                       later: None) -> None:
    before = memo.hash(tree)
    next_tick(tree)
    f = tree / "sub" / "b.bin"
    st = f.stat()
    f.write_bytes(bytes([255]) + bytes(range(1, 100)))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as before: only ctime tells
    assert (f.stat().st_size, f.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    after = memo.hash(tree)
    assert dumps.calls == 2
    assert after != before
    assert after == nar.nar_hash(tree)


def test_touch_with_restored_mtime_is_a_miss(tree: Path, memo: StatMemo, dumps: DumpCounter, later: None) -> None:
    before = memo.hash(tree)
    signature = memo.signature(tree)
    next_tick(tree)
    f = tree / "a.txt"
    st = f.stat()
    subprocess.run(["touch", "-m", str(f)], check=True)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert memo.signature(tree) != signature  # ctime moved on
    assert memo.hash(tree) == before  # same content, honestly re-hashed
    assert dumps.calls == 2


def test_adding_a_file_is_a_miss(tree: Path, memo: StatMemo, dumps: DumpCounter, later: None) -> None:
    before = memo.hash(tree)
    (tree / "sub" / "new").write_bytes(b"")
    after = memo.hash(tree)
    assert dumps.calls == 2
    assert after != before and after == nar.nar_hash(tree)


def test_signature_covers_type_exec_bit_and_link_target(tree: Path, memo: StatMemo) -> None:
    seen = {memo.signature(tree)}
    (tree / "a.txt").chmod(0o755)
    seen.add(memo.signature(tree))
    (tree / "link").unlink()
    (tree / "link").symlink_to("run.sh")
    seen.add(memo.signature(tree))
    (tree / "sub" / "b.bin").rename(tree / "sub" / "c.bin")
    seen.add(memo.signature(tree))
    assert len(seen) == 4


def test_corrupt_memo_is_a_miss_and_is_replaced(tree: Path, memo: StatMemo, dumps: DumpCounter,
                                                later: None) -> None:
    expected = memo.hash(tree)
    path = memo.memo_file(tree)
    for garbage in (b"", b"{not json", b"\xff\xfe", b"[]", b'{"v": 1}',
                    json.dumps({**json.loads(path.read_text() or "{}"), "path": "/elsewhere"}).encode(),
                    json.dumps({**json.loads(path.read_text() or "{}"), "nar_hash": "not-a-hash"}).encode()):
        path.write_bytes(garbage)
        assert memo.hash(tree) == expected
        assert json.loads(path.read_text())["nar_hash"] == expected  # rewritten, valid again
    assert dumps.calls == 1 + 7


def test_unwritable_memo_directory_still_hashes(tree: Path, tmp_path: Path, dumps: DumpCounter,
                                                later: None) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    memo = StatMemo(blocker / "memo")  # mkdir fails: NotADirectoryError
    assert memo.hash(tree) == memo.hash(tree) == nar.nar_hash(tree)
    memo.remember(tree, OTHER_HASH)  # silently not recorded
    assert dumps.calls == 3
    assert memo.hash(tree) != OTHER_HASH


def test_freshly_changed_tree_is_not_recorded(tree: Path, memo: StatMemo, dumps: DumpCounter) -> None:
    """With the real clock the tree was written just now: a change in the same timestamp tick
    could hide behind its signature, so nothing is recorded and the next call hashes again."""
    memo.hash(tree)
    memo.hash(tree)
    assert dumps.calls == 2
    assert not memo.memo_file(tree).exists()


def test_remember_records_a_hash_computed_elsewhere(tree: Path, memo: StatMemo, dumps: DumpCounter,
                                                    later: None) -> None:
    memo.remember(tree, OTHER_HASH)  # the memo trusts its caller (the store, which just hashed it)
    assert memo.hash(tree) == OTHER_HASH
    assert dumps.calls == 0
    with pytest.raises(ValueError):
        memo.remember(tree, "nope")


def test_memos_are_per_host_and_path(tree: Path, memo: StatMemo, dumps: DumpCounter, later: None) -> None:
    memo.hash(tree)
    other = StatMemo(memo.directory)
    other.host = "another-host"  # same path, other host: its inode numbers mean nothing here
    assert other.memo_file(tree) != memo.memo_file(tree)
    other.hash(tree)
    assert dumps.calls == 2
    assert len(list(memo.directory.iterdir())) == 2  # no temp files left behind


def test_single_files_and_dangling_links(tmp_path: Path, memo: StatMemo, later: None) -> None:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "dangling").symlink_to("nowhere")
    for p in (tmp_path / "f", tmp_path / "dangling"):
        assert memo.hash(p) == nar.nar_hash(p) == memo.hash(p)


def test_module_entry_point(tree: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "nixlib.statmemo", str(tree), str(tmp_path / "m")], check=True,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    assert out.strip() == nar.nar_hash(tree)


def test_bytes_and_undecodable_paths(tmp_path: Path, memo: StatMemo, dumps: DumpCounter, later: None) -> None:
    odd = os.fsencode(tmp_path) + b"/caf\xe9 \xff"  # Latin-1 bytes: not UTF-8
    os.mkdir(odd)
    with open(odd + b"/f", "wb") as f:
        f.write(b"x")
    assert memo.hash(odd) == memo.hash(os.fsdecode(odd)) == nar.nar_hash(odd)
    assert dumps.calls == 2


ANOTHER_BOOT = "00000000-0000-4000-8000-000000000000"


def test_an_entry_written_before_the_last_boot_is_not_believed(tree: Path, memo: StatMemo, later: None) -> None:
    """After an OS crash a file can keep its stat fields and lose data that was not written back, so an entry
    is believed only in the boot that wrote it (nixlib.boot); that is what lets the store skip the fsync."""
    true = memo.hash(tree)
    path = memo.memo_file(tree)
    data = json.loads(path.read_text())
    assert data["boot"] == boot.boot_id() and boot.boot_id() is not None
    data["nar_hash"] = OTHER_HASH  # (believed, this would be served: test_a_hit_is_served_from_the_memo_file)
    data["boot"] = ANOTHER_BOOT
    path.write_text(json.dumps(data))
    assert memo.hash(tree) == true


def test_without_a_boot_id_entries_are_still_believed(tree: Path, memo: StatMemo, later: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Where boots have no id (then the store fsyncs what it stores: nixlib.trees), the memo works as before."""
    monkeypatch.setattr(boot, "BOOT_ID_FILE", str(tree.parent / "no-boot-id"))
    boot.boot_id.cache_clear()
    try:
        memo.hash(tree)
        path = memo.memo_file(tree)
        data = json.loads(path.read_text())
        assert data["boot"] is None
        data["nar_hash"] = OTHER_HASH
        path.write_text(json.dumps(data))
        assert memo.hash(tree) == OTHER_HASH
    finally:
        monkeypatch.undo()
        boot.boot_id.cache_clear()
