"""What the Luigi speed pass (issue 10 item 6) must keep, and the waste it removed that a test can see."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from luigi_nixworkflow import NixTask
from nixlib import hits, records
from nixlib.store import read_raw
from tests.helpers import REPO, nw


class Made(NixTask):
    def produce(self, out: Path) -> None:
        (out / "v").write_text("made\n")


def build(*tasks: luigi.Task) -> bool:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()  # as a new process would start: nothing memoised
    return luigi.build(list(tasks), local_scheduler=True, log_level="CRITICAL")


def _root_entry(store_root: Path, path: Path) -> Path:
    return store_root / "gcroots" / hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:32]


def test_a_cached_run_leaves_a_right_link_and_its_gc_root_as_they_are(store_root: Path) -> None:
    """A link that already points at the result is not re-created by every new process (it was: a symlink,
    a rename and a GC root written per task on every cached run); the link directory stays the GC root, and
    no root file is made per link."""
    assert build(Made())
    links = Path("nix-workflow-output")
    link = links / Made().task_id
    before = os.lstat(link)
    root_entry = _root_entry(store_root, links)
    assert os.readlink(root_entry) == str(links.absolute())
    assert os.listdir(store_root / "gcroots") == [root_entry.name]
    assert build(Made())
    after = os.lstat(link)
    assert (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)
    assert os.readlink(root_entry) == str(links.absolute())


def test_a_removed_gc_root_of_a_right_link_is_registered_again(store_root: Path) -> None:
    """Skipping the rewrite of a right link must not skip its GC root: `nw gc` would collect the result."""
    assert build(Made())
    links = Path("nix-workflow-output")
    root_entry = _root_entry(store_root, links)
    root_entry.unlink()
    assert build(Made())
    assert os.readlink(root_entry) == str(links.absolute())


TWO = """import luigi
from luigi_nixworkflow import NixTask


class Made(NixTask):
    def produce(self, out):
        (out / "v").write_text("made\\n")


class Other(NixTask):
    def produce(self, out):
        (out / "v").write_text("other\\n")


assert luigi.build([Made(), Other()], local_scheduler=True, log_level="ERROR")
for t in (Made(), Other()):
    print(t.task_id, t.output().path)
"""


def test_the_link_directory_roots_each_link_in_it_for_nw_gc(tmp_path: Path, store_root: Path) -> None:
    """One root entry for the directory keeps every output linked in it; a link removed from it no longer keeps
    its object, and once the directory is gone its entry is dead and removed. (The pipeline runs in its own
    process: this one's temp roots would keep everything it looked up.)"""
    (tmp_path / "two.py").write_text(TWO)
    proc = subprocess.run([sys.executable, str(tmp_path / "two.py")], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (made_id, made), (other_id, other) = [(i, Path(p)) for i, p in (line.split() for line in proc.stdout.splitlines())]
    links = Path("nix-workflow-output")
    assert sorted(os.listdir(links)) == sorted([made_id, other_id])
    nw("gc", "--min-age", "0", check=True)
    assert made.is_dir() and other.is_dir()
    (links / other_id).unlink()
    nw("gc", "--min-age", "0", check=True)
    assert made.is_dir() and not other.exists()
    shutil.rmtree(links)
    nw("gc", "--min-age", "0", check=True)
    assert not made.exists() and not os.listdir(store_root / "gcroots")


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


PIPELINE = """import luigi
from luigi_nixworkflow import NixTask


class Counted(NixTask):
    def produce(self, out):
        with open("RUNS", "a") as f:
            f.write("ran\\n")
        (out / "v").write_text("counted\\n")
"""


def _luigi_process(work: Path) -> None:
    """One `luigi.build` in a fresh interpreter, so the verified-hit memo is read at start and written at exit."""
    code = "import luigi, pipeline; assert luigi.build([pipeline.Counted()], local_scheduler=True, log_level='ERROR')"
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{work}")
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_luigi_hit_served_by_the_memo_is_refused_once_its_record_is_tampered(store_root: Path) -> None:
    """A cached complete() in a new process goes through the verified-hit memo (issue 10 item 6); a record edited
    in place afterwards (same size, mtime restored) is still refused there, so the task runs again."""
    work = Path.cwd()
    (work / "pipeline.py").write_text(PIPELINE)
    _luigi_process(work)
    _luigi_process(work)  # cached: the full check, memoised at exit
    assert (work / "RUNS").read_text() == "ran\n"
    (shard,) = (store_root / "cache" / str(os.getuid())).glob("hits.*/*.json")
    (rk,) = hits.decode(shard.read_bytes())
    record = store_root / "realisations" / f"{rk}.json"
    _luigi_process(work)  # served from the memo
    assert (work / "RUNS").read_text() == "ran\n"
    before = os.stat(record)
    text = record.read_text()
    os.chmod(record, 0o644)
    record.write_text(text.replace('"exit": 0', '"exit": 1'))
    os.utime(record, ns=(before.st_atime_ns, before.st_mtime_ns))
    _luigi_process(work)
    assert (work / "RUNS").read_text() == "ran\nran\n"


# ---- pass 3 -----------------------------------------------------------------------------------


def test_a_task_found_complete_is_looked_up_again_after_reset(store_root: Path) -> None:
    """complete() asked again in one process answers from the task's memo (Luigi asks it of every dependency of a
    task it runs), but not across reset(): task instances outlive it in Luigi's instance cache, and a result gone
    from the store meanwhile must read as missing, not as the memo's answer."""
    assert build(Made())
    task = Made()
    assert task.complete()
    result = task.nix_result()
    assert result is not None and task.complete()
    record = store_root / "realisations" / f"{result.resolved_key}.json"
    record.unlink()
    luigi_nixworkflow.reset()  # (the instance cache is kept: `task` is what Luigi would hand out again)
    assert Made() is task
    assert not task.complete()


def test_a_task_that_ran_in_this_process_answers_with_what_it_produced(store_root: Path) -> None:
    """The memo a complete() leaves does not outlive a run: a forced task (here by a complete() override) that
    runs again answers nix_result() with its new result, not with the one found before it ran."""

    class Counted(NixTask):
        def produce(self, out: Path) -> None:
            count = Path("count")
            count.write_text(str(int(count.read_text()) + 1) if count.exists() else "1")
            (out / "v").write_text(count.read_text())

    assert build(Counted())
    task = Counted()
    first = task.nix_result()
    assert first is not None
    Counted.complete = lambda self: False  # type: ignore[method-assign]
    try:
        task.run()
    finally:
        del Counted.complete
    second = task.nix_result()
    assert second is not None and second.outputs != first.outputs
    assert Path("count").read_text() == "2"


def test_the_store_root_follows_the_variable_between_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """store_root() is memoised by the raw value of NIX_WORKFLOW_STORE: each change of the variable is seen."""
    from luigi_nixworkflow import settings

    first = settings.store_root()
    monkeypatch.setenv("NIX_WORKFLOW_STORE", str(tmp_path / "other"))
    assert settings.store_root() == str(tmp_path / "other")
    monkeypatch.setenv("NIX_WORKFLOW_STORE", first)
    assert settings.store_root() == first


def test_class_sources_are_those_inspect_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code digest reads each module once rather than once per class: the text must be inspect.getsource's
    for every shape of class definition (decorated, nested in a function or a class, several in one file), or
    every key would change."""
    import importlib
    import inspect

    from luigi_nixworkflow import keying

    (tmp_path / "several_classes.py").write_text('''
import functools
import luigi


def deco(cls):
    return cls


@deco
class First(luigi.Task):
    """Docstring
       over lines."""
    x = luigi.IntParameter()


class Outer:
    class Inner:
        def f(self):
            return """
  dedented?
"""


def make():
    class Local:
        pass

    return Local


class Last(First):  # a comment
    pass
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("several_classes")
    classes = [module.First, module.Outer, module.Outer.Inner, module.make(), module.Last]
    for cls in classes:
        assert keying._class_source(cls) == inspect.getsource(cls), cls.__qualname__
