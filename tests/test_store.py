"""The store: layout, atomic deduplicated ingest, read-only objects, records, materialisation."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from nixlib import nar
from nixlib.errors import NixWorkflowError
from nixlib.store import Store
from tests.nixcheck import require_nix


def make_tree(base: Path) -> Path:
    d = base / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("alpha\n")
    (d / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (d / "run.sh").chmod(0o755)
    (d / "sub" / "empty").write_bytes(b"")
    os.symlink("a.txt", d / "link")
    return d


def test_new_root_is_created_world_writable_with_sticky_bit(tmp_path: Path) -> None:
    store = Store(tmp_path / "fresh")
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o1777
    assert stat.S_IMODE((store.root / "store").stat().st_mode) == 0o1777


def test_root_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NixWorkflowError, match=r"cannot use .* as the store: it lies under .*, which is a file"):
        Store(tmp_path / "file" / "root")


@pytest.mark.nix
def test_ingested_object_is_named_by_what_nix_hash_prints(tmp_path: Path) -> None:
    nix_hash = require_nix("nix-hash")
    store = Store(tmp_path / "s")
    h = store.ingest(make_tree(tmp_path))
    obj = store.object_path(h)
    printed = subprocess.run([nix_hash, "--type", "sha256", "--base32", str(obj)], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert printed == h


def test_objects_are_read_only_and_source_is_untouched(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    src = make_tree(tmp_path)
    h = store.ingest(src)
    obj = store.object_path(h)
    assert stat.S_IMODE(obj.stat().st_mode) == 0o555
    assert stat.S_IMODE((obj / "a.txt").stat().st_mode) == 0o444
    assert stat.S_IMODE((obj / "run.sh").stat().st_mode) == 0o555
    assert os.readlink(obj / "link") == "a.txt"
    assert (src / "a.txt").stat().st_mode & stat.S_IWUSR  # the copy was sealed, not the source


def test_identical_content_is_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    first = store.ingest(make_tree(tmp_path / "one"))
    second = store.ingest(make_tree(tmp_path / "two"))
    assert first == second
    assert os.listdir(store.root / "store") == [first]
    assert not os.listdir(store.root / "tmp")


def test_moved_ingest_consumes_the_staging_path(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    staged = store.new_tmp("t") / "out"
    staged.mkdir()
    (staged / "x").write_text("x")
    h = store.ingest(staged, move=True)
    assert not staged.exists() and (store.object_path(h) / "x").read_text() == "x"


def test_corrupted_object_is_quarantined_and_never_served(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    f = tmp_path / "f.txt"
    f.write_text("original")
    h = store.ingest(f)
    assert store.has(h)
    obj = store.object_path(h)
    obj.chmod(0o644)
    obj.write_text("tampered")
    assert not store.has(h)
    assert not obj.exists()
    assert [p.name.split(".")[0] for p in (store.root / "quarantine").iterdir()] == [h]


def test_records_are_immutable_first_writer_wins(tmp_path: Path) -> None:
    from nixlib.engine import Engine
    from nixlib.recipe import Recipe

    store = Store(tmp_path / "s")
    first = Engine(store).realise(Recipe("a", "echo a > $out/a"))
    original = store.read_record("realisations", first.resolved_key)
    assert original is not None and original["command"].startswith("echo a")
    store.write_record("realisations", first.resolved_key, dict(original, command="something else"))
    assert store.read_record("realisations", first.resolved_key) == original
    path = store.root / "realisations" / f"{first.resolved_key}.json"
    assert not os.access(path, os.W_OK) or os.getuid() == 0
    path.unlink()
    path.write_text("{not json")  # an invalid record is replaced by the next write
    store.write_record("realisations", first.resolved_key, original)
    assert store.read_record("realisations", first.resolved_key) == original


@pytest.mark.parametrize("mode", ["auto", "copy", "symlink", "hardlink"])
def test_materialise_modes_reproduce_the_object(tmp_path: Path, mode: str) -> None:
    store = Store(tmp_path / "s")
    h = store.ingest(make_tree(tmp_path))
    dest = tmp_path / "restored"
    dest.mkdir()  # an existing output is replaced
    (dest / "stale").write_text("old")
    store.materialise(h, dest, mode)
    assert nar.nar_hash(dest if mode != "symlink" else store.object_path(h)) == h
    assert not (dest / "stale").exists()


def test_editing_an_auto_materialised_copy_never_touches_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    f = tmp_path / "model.json"
    f.write_text("{}")
    h = store.ingest(f)
    dest = tmp_path / "out" / "model.json"
    store.materialise(h, dest)
    dest.write_text('{"edited": true}')
    assert store.has(h) and store.object_path(h).read_text() == "{}"


def test_unknown_link_mode_is_an_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    f = tmp_path / "x"
    f.write_text("x")
    with pytest.raises(NixWorkflowError, match="unknown link mode 'weird'"):
        store.materialise(store.ingest(f), tmp_path / "y", "weird")


def test_a_fresh_object_is_not_hashed_again_on_its_first_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s")
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 100_000)
    h = store.ingest(f)
    dumps = []
    real_dump = nar.dump
    monkeypatch.setattr(nar, "dump", lambda path, sink: (dumps.append(path), real_dump(path, sink)))
    assert store.has(h)
    assert dumps == []


def test_a_root_created_concurrently_by_another_process_is_used(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "shared"
    root.mkdir()  # the other process wins the race between our check and our mkdir
    real_is_dir = Path.is_dir
    seen: list[Path] = []

    def not_yet(self: Path) -> bool:
        if self == root and not seen:
            seen.append(self)
            return False
        return real_is_dir(self)

    monkeypatch.setattr(Path, "is_dir", not_yet)
    assert Store(root).root == root and seen
