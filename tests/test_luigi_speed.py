"""What the Luigi speed pass (issue 10 item 6) must keep, and the waste it removed that a test can see."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from luigi_nixworkflow import NixTask
from nixlib import records
from nixlib.store import read_raw


class Made(NixTask):
    def produce(self, out: Path) -> None:
        (out / "v").write_text("made\n")


def build(*tasks: luigi.Task) -> bool:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()  # as a new process would start: nothing memoised
    return luigi.build(list(tasks), local_scheduler=True, log_level="CRITICAL")


def test_a_cached_run_leaves_a_right_link_and_its_gc_root_as_they_are(store_root: Path) -> None:
    """A link that already points at the result is not re-created by every new process (it was: a symlink,
    a rename and a GC root written per task on every cached run); its GC root stays registered."""
    assert build(Made())
    link = Path("nix-workflow-output") / Made().task_id
    before = os.lstat(link)
    root_entry = store_root / "gcroots" / hashlib.sha256(str(link.absolute()).encode()).hexdigest()[:32]
    assert os.readlink(root_entry) == str(link.absolute())
    assert build(Made())
    after = os.lstat(link)
    assert (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)
    assert os.readlink(root_entry) == str(link.absolute())


def test_a_removed_gc_root_of_a_right_link_is_registered_again(store_root: Path) -> None:
    """Skipping the rewrite of a right link must not skip its GC root: `nw gc` would collect the result."""
    assert build(Made())
    link = (Path("nix-workflow-output") / Made().task_id).absolute()
    root_entry = store_root / "gcroots" / hashlib.sha256(str(link).encode()).hexdigest()[:32]
    root_entry.unlink()
    assert build(Made())
    assert os.readlink(root_entry) == str(link)


def test_record_reads_keep_their_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_raw now asks for the size fstat gives, not for the limit: a file over the limit is still refused
    and one at the limit is read whole."""
    monkeypatch.setattr(records, "MAX_BYTES", 100)
    at_limit, over = tmp_path / "at", tmp_path / "over"
    at_limit.write_bytes(b"x" * 100)
    over.write_bytes(b"x" * 101)
    assert read_raw(at_limit) == (os.getuid(), b"x" * 100)
    with pytest.raises(records.InvalidRecord, match="larger than 100 bytes"):
        read_raw(over)
