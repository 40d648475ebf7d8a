"""The verified-hit memo (nixlib.hits): a hit checked once skips the record's validation while nothing changed,
and everything the full check refuses is still refused through it.

Each test first makes the memo vouch for a hit (a lookup in one "process", saved as at its exit), then changes
the store the way a crash, a hand edit or another user would, and looks up again in a new "process" (the memo
read afresh from its file). Each must fail if the fast path skipped the check it is about.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from nixlib import boot, hits, records, statmemo
from nixlib.engine import Engine, Result
from nixlib.recipe import Recipe
from nixlib.store import Store
from tests.helpers import nw

OTHER_UID = 4242  # a uid no trust setting names (chown needs root)


def _recipe() -> Recipe:
    return Recipe(name="a", command="echo made-once > $out/a.txt")


def _new_process_lookup() -> Result | None:
    """A lookup as a new process makes it: memos written back as at exit, then read afresh."""
    hits.forget()
    return Engine(Store()).lookup(_recipe())


@pytest.fixture(params=["fresh", "settled"])
def vouched(request: pytest.FixtureRequest, store_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A realised step whose hit the memo vouches for: {"key", "record", "object"}. Every test using it runs
    twice: with a record made just now (within the racy window: the fast path re-reads its bytes), and with one
    that had settled when the memo vouched for it (checked 10 s later: its stat identity alone stands for it)."""
    done = Engine(Store()).realise(_recipe())
    assert not done.cached
    with monkeypatch.context() as m:
        if request.param == "settled":
            m.setattr(statmemo, "_now_ns", lambda: time.time_ns() + 10_000_000_000)
        assert _new_process_lookup() is not None  # the full check, memoised
        hits.forget()
    entries = hits.decode(Store().hits.path_of(done.resolved_key).read_bytes())
    assert json.loads(entries[done.resolved_key])[9] is (request.param == "settled")  # (each entry: its JSON text)
    return {"key": done.resolved_key, "record": str(store_root / "realisations" / f"{done.resolved_key}.json"),
            "object": str(store_root / "store" / done.outputs["out"]), "kind": request.param}


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks happen 10 s after the object was made, so the full check writes its stat memo entry again (a
    racily new object's is not written: see StatMemo.racy_ns); that entry shows the full check ran."""
    monkeypatch.setattr(statmemo, "_now_ns", lambda: time.time_ns() + 10_000_000_000)


def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("NW_REQUIRE_USERS") == "1":
            pytest.fail("needs root (chown) and NW_REQUIRE_USERS=1 is set")
        pytest.skip("needs root to give a file another owner")


def test_an_unchanged_hit_is_served_by_the_memo_without_the_stat_memo(vouched: dict[str, str],
                                                                     later: None) -> None:
    """The fast path is taken: with the stat memo gone, the full check would re-hash the object and write its
    entry again; a hit served from the verified memo reads neither."""
    statmemo = Store().memo.directory
    shutil.rmtree(statmemo)
    found = _new_process_lookup()
    assert found is not None and found.resolved_key == vouched["key"]
    assert not statmemo.exists() or not os.listdir(statmemo)


def test_a_record_tampered_in_place_with_size_and_mtime_restored_is_refused(vouched: dict[str, str],
                                                                            capfd: pytest.CaptureFixture[str]) -> None:
    path = vouched["record"]
    before = os.stat(path)
    data = bytearray(Path(path).read_bytes())
    at = data.index(b'"duration": ') + len(b'"duration": ')
    data[at] = ord("7") if data[at] != ord("7") else ord("8")  # same size, digest no longer matches
    os.chmod(path, 0o644)
    Path(path).write_bytes(bytes(data))
    os.chmod(path, 0o444)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert _new_process_lookup() is None
    assert f"ignoring invalid record {path}: digest mismatch" in capfd.readouterr().err


def test_a_quarantined_object_is_not_served(vouched: dict[str, str]) -> None:
    assert Store().quarantine(os.path.basename(vouched["object"])) is not None
    assert _new_process_lookup() is None


def test_an_object_changed_in_place_is_not_served_and_is_quarantined(vouched: dict[str, str],
                                                                      store_root: Path) -> None:
    obj, name = vouched["object"], os.path.basename(vouched["object"])
    target = f"{obj}/a.txt"
    before = os.stat(target)
    os.chmod(obj, 0o755)
    os.chmod(target, 0o644)
    Path(target).write_text("made-twic\n")  # same size as "made-once\n"
    os.chmod(target, 0o444)
    os.chmod(obj, 0o555)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _new_process_lookup() is None
    assert not os.path.lexists(obj)
    assert any(e.startswith(name) for e in os.listdir(store_root / "quarantine"))


def test_a_record_replaced_by_another_users_is_refused(vouched: dict[str, str]) -> None:
    """Byte for byte the same record, but a new file of an untrusted owner (as after our record was removed
    and another user wrote theirs under the shared name)."""
    _need_root()
    path = vouched["record"]
    data = Path(path).read_bytes()
    os.unlink(path)
    Path(path).write_bytes(data)
    os.chown(path, OTHER_UID, OTHER_UID)
    assert _new_process_lookup() is None


def test_a_record_of_a_writer_no_longer_trusted_is_refused(store_root: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The memo vouched for a record while its writer was trusted; its identity and bytes are unchanged, but
    this process does not trust that writer."""
    _need_root()
    monkeypatch.setenv("NIX_WORKFLOW_TRUSTED_USERS", str(OTHER_UID))
    done = Engine(Store()).realise(_recipe())
    os.chown(store_root / "realisations" / f"{done.resolved_key}.json", OTHER_UID, OTHER_UID)
    assert _new_process_lookup() is not None  # trusted: served, and memoised with its (new) owner
    hits.forget()
    assert done.resolved_key in hits.decode(Store().hits.path_of(done.resolved_key).read_bytes())
    monkeypatch.delenv("NIX_WORKFLOW_TRUSTED_USERS")
    assert _new_process_lookup() is None


def test_a_memo_file_of_another_owner_is_never_believed(vouched: dict[str, str], later: None) -> None:
    """The memo is believed, so only the user's own file counts (as for the stat memo)."""
    _need_root()
    path = Store().hits.path_of(vouched["key"])
    os.chown(path, OTHER_UID, OTHER_UID)
    statmemo = Store().memo.directory
    shutil.rmtree(statmemo)
    assert _new_process_lookup() is not None
    assert os.listdir(statmemo)  # the full check ran (it re-hashed the object and wrote its stat memo entry)


def test_a_tampered_record_reruns_the_step_through_the_cli(tmp_path: Path, store_root: Path) -> None:
    """The same through real processes: `nw run` writes the memo at exit, the next one uses it."""
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\na = output('echo A > $out/a.txt')\n")
    assert nw("run", str(exp)).returncode == 0
    cached = nw("run", str(exp))
    assert cached.returncode == 0 and "cached 1" in cached.stderr, cached.stderr
    assert os.listdir(Store().hits.directory)
    rk = json.loads(Path("nix-workflow-output/.nw-last-run.json").read_text())["a"]["resolved_key"]
    record = store_root / "realisations" / f"{rk}.json"
    before = os.stat(record)
    text = record.read_text()
    os.chmod(record, 0o644)
    record.write_text(text.replace('"exit": 0', '"exit": 1'))
    os.utime(record, ns=(before.st_atime_ns, before.st_mtime_ns))
    rerun = nw("run", str(exp))
    assert rerun.returncode == 0 and "done 1" in rerun.stderr, rerun.stderr
    assert f"ignoring invalid record {record}" in rerun.stderr


def test_a_corrupt_memo_file_is_a_miss_and_is_rewritten(vouched: dict[str, str]) -> None:
    path = Store().hits.path_of(vouched["key"])
    path.write_bytes(b'{"v": 2, "entries": {"' + vouched["key"].encode() + b'": [1, 2, "x"]}')  # truncated
    assert _new_process_lookup() is not None
    hits.forget()
    entry = json.loads(hits.decode(path.read_bytes())[vouched["key"]])
    assert entry[7] == hashlib.sha256(Path(vouched["record"]).read_bytes()).hexdigest()


def test_a_shard_cut_short_is_a_miss_for_the_cut_entry_only(vouched: dict[str, str]) -> None:
    """A shard is one line per entry: a file cut inside the last line (a full disk, a copy) loses that entry's
    JSON, which then is no entry (the full check decides and writes it back), and nothing else."""
    path = Store().hits.path_of(vouched["key"])
    data = path.read_bytes()
    assert data.count(b"\n") == 2 and data.endswith(b"\n")  # the header and the one entry
    path.write_bytes(data[:-20])
    assert hits.decode(path.read_bytes())[vouched["key"]].startswith("[")  # the cut text is kept as it is
    assert hits.HitMemo(Store().root).get(vouched["key"]) is None  # and is no entry
    assert _new_process_lookup() is not None
    hits.forget()
    entry = json.loads(hits.decode(path.read_bytes())[vouched["key"]])
    assert entry[7] == hashlib.sha256(Path(vouched["record"]).read_bytes()).hexdigest()


def test_processes_saving_at_once_keep_each_others_entries(store_root: Path) -> None:
    """Each process writes back only what it changed, merged into the file as another process left it."""
    Store()
    first, second = hits.HitMemo(store_root), hits.HitMemo(store_root)
    first.get("a" * 52)
    second.get("a" * 52)  # both loaded the (empty) file before either saved
    st = os.stat(store_root)
    one, two = "a" * 52, "b" + "a" * 51  # (one shard: the same last character)
    first.put(one, hits.entry(None, st, b"one", {"h" * 52: "sig-one"}, {"out": "h" * 52}, {"h" * 52: None}, 0))
    second.put(two, hits.entry(None, st, b"two", {"h" * 52: "sig-two"}, {"out": "h" * 52}, {"h" * 52: None}, 0))
    first.save()
    second.save()
    assert set(hits.decode(first.path_of(one).read_bytes())) == {one, two}


def test_a_settled_hit_reads_its_record_only_when_asked(vouched: dict[str, str]) -> None:
    """From a settled entry the outputs are served without reading the record; asked for more, the record read
    is the one that was validated."""
    found = _new_process_lookup()
    assert found is not None and found.outputs == {"out": os.path.basename(vouched["object"])}
    assert isinstance(found.record, hits.LazyRecord) is (vouched["kind"] == "settled")
    assert found.record["exit"] == 0 and found.record["name"] == "a"
    assert dict(found.record) == json.loads(Path(vouched["record"]).read_text())


def test_a_file_added_to_an_object_is_not_served(vouched: dict[str, str], store_root: Path) -> None:
    """The listing re-check opens no directory, but a new entry changes the directory's times."""
    obj = vouched["object"]
    os.chmod(obj, 0o755)
    Path(obj, "planted.txt").write_text("x")
    os.chmod(obj, 0o555)
    assert _new_process_lookup() is None
    assert not os.path.lexists(obj)  # the full check re-hashed it: no longer its name, quarantined


def test_a_record_replaced_by_a_copy_is_checked_again(vouched: dict[str, str], capfd: pytest.CaptureFixture[str]
                                                      ) -> None:
    """Same bytes under a new inode (a copy moved over it): not the file the memo vouched for, so the full
    check runs (and finds it valid: served, with no warning)."""
    path = vouched["record"]
    shutil.copy(path, path + ".copy")
    os.replace(path + ".copy", path)
    assert _new_process_lookup() is not None
    assert "ignoring" not in capfd.readouterr().err


def test_rescan_equals_scan_until_the_tree_changes(tmp_path: Path) -> None:
    """statmemo.rescan (one lstat per listed entry) gives scan's signature for the same tree, and differs after
    each kind of change, also deep down and with sizes and mtimes restored."""
    root = tmp_path / "t"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    (root / "z").write_text("y")
    os.symlink("z", root / "l")
    listing: list[bytes] = []
    signature = statmemo.scan(root, listing).signature
    assert signature == statmemo.scan(root).signature == statmemo.rescan(root, listing)
    assert listing == [b"", b"a", b"l", b"z", b"a/b", b"a/b/f"]

    def changed(change: object) -> bool:
        return statmemo.rescan(root, listing) != signature

    before = os.stat(root / "a" / "b" / "f")
    (root / "a" / "b" / "f").write_text("q")
    os.utime(root / "a" / "b" / "f", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert changed("same size and mtime, new bytes (ctime moved)")
    listing.clear()
    signature = statmemo.scan(root, listing).signature
    (root / "a" / "b" / "new").write_text("")
    assert changed("an entry added deep down")
    (root / "a" / "b" / "new").unlink()
    listing.clear()
    signature = statmemo.scan(root, listing).signature
    os.unlink(root / "l")
    os.symlink("a", root / "l")
    assert changed("a symlink retargeted")
    os.unlink(root / "z")
    with pytest.raises(OSError):
        statmemo.rescan(root, listing)  # a listed entry gone (Store then takes the full check)


def test_a_lazy_record_never_mixes_in_a_record_of_other_outputs(vouched: dict[str, str], store_root: Path) -> None:
    """Served from a settled entry, then the record is replaced (a forced run with different bytes) before
    anything but its outputs was read: the lazily read rest must not come from the new record."""
    if vouched["kind"] != "settled":
        pytest.skip("only a settled hit reads its record lazily")
    found = _new_process_lookup()
    assert found is not None and isinstance(found.record, hits.LazyRecord)
    path = vouched["record"]
    doc = json.loads(Path(path).read_text())
    other = Engine(Store()).realise(Recipe(name="b", command="echo other > $out/b.txt"))
    doc["outputs"] = dict(other.outputs)
    os.chmod(path, 0o644)
    Path(path).write_text(json.dumps(records.seal({k: v for k, v in doc.items() if k != "digest"})))
    assert found.record["outputs"] == {"out": os.path.basename(vouched["object"])}
    assert dict(found.record) == {"outputs": {"out": os.path.basename(vouched["object"])}}


def test_keys_spread_over_all_shards(store_root: Path) -> None:
    """Resolved keys are 52-character Nix base32 SHA-256 digests, whose first character is only ever 0 or 1: shards
    by that character were two files holding every entry (and the per-shard cap then held a fraction of a big
    graph's keys). The memo shards by a character that varies."""
    memo = hits.HitMemo(store_root)
    keys = [Recipe(f"s{i}", f"echo {i} > $out/v").key for i in range(400)]
    assert {k[0] for k in keys} <= {"0", "1"}  # why the first character cannot shard
    assert len({memo.path_of(k) for k in keys}) == 32


def test_a_damaged_entry_text_is_a_miss_of_the_memo_only(vouched: dict[str, str], later: None) -> None:
    """Each entry is kept as its own JSON text, parsed when its key is first asked for: text that does not
    parse (or parses to something else) is not an entry, so the full check runs (it writes the stat memo entry
    again) and puts a good entry back; the store still serves the hit."""
    path = Store().hits.path_of(vouched["key"])
    shard = hits.decode(path.read_bytes())
    assert isinstance(shard[vouched["key"]], str)
    for damaged in ('[null, 1, 2', '{"not": "an entry"}'):
        shard[vouched["key"]] = damaged
        path.write_bytes(hits._encode(shard))
        shutil.rmtree(Store().memo.directory)
        found = _new_process_lookup()
        assert found is not None and found.resolved_key == vouched["key"]
        assert os.listdir(Store().memo.directory), "the full check ran"
        hits.forget()
        entry = json.loads(hits.decode(path.read_bytes())[vouched["key"]])
        assert entry[7] == hashlib.sha256(Path(vouched["record"]).read_bytes()).hexdigest()


def test_a_shard_written_before_the_last_boot_is_not_believed(vouched: dict[str, str], later: None) -> None:
    """A crash can keep a file's stat fields and lose its data: a shard of another boot is ignored and the full
    check runs (it re-hashes the object and writes its stat memo entry again), as after any miss of the memo."""
    shard = Store().hits.path_of(vouched["key"])
    header, body = shard.read_bytes().split(b"\n", 1)
    doc = json.loads(header)
    assert doc["v"] == hits._VERSION and doc["boot"] == boot.boot_id() and boot.boot_id() is not None
    doc["boot"] = "00000000-0000-4000-8000-000000000000"
    shard.write_bytes(json.dumps(doc).encode() + b"\n" + body)
    memo_dir = Store().memo.directory
    shutil.rmtree(memo_dir)
    found = _new_process_lookup()
    assert found is not None and found.resolved_key == vouched["key"]
    assert os.listdir(memo_dir)
