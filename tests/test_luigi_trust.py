"""The Luigi front door never caches a wrong result (issue 8): writes reach the build, not store/;
an empty output fails the task unless declared; produce() leaves no process behind; a produce()
that yields, or a name that escapes its directory, is a clear error. Real Luigi, local scheduler."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from luigi_nixworkflow import NixTask, children
from nixlib import dsl, output
from nixlib.errors import NixWorkflowError
from nixlib.store import Store
from tests.helpers import nw


@pytest.fixture(autouse=True)
def fresh_luigi() -> None:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()


@pytest.fixture
def failures() -> Iterator[list[tuple[str, BaseException]]]:
    """(task_id, exception) of every NixTask that fails while the test runs, from Luigi's own event."""
    seen: list[tuple[str, BaseException]] = []

    def record(task: luigi.Task, exception: BaseException) -> None:
        seen.append((task.task_id, exception))

    NixTask.event_handler(luigi.Event.FAILURE)(record)
    yield seen
    NixTask._event_callbacks[NixTask][luigi.Event.FAILURE].discard(record)


def build(*tasks: luigi.Task) -> bool:
    return luigi.build(list(tasks), local_scheduler=True, log_level="CRITICAL")


def store_entries(root: Path) -> list[str]:
    return sorted(os.listdir(root / "store")) if (root / "store").is_dir() else []


def realisations(root: Path) -> list[str]:
    return sorted(os.listdir(root / "realisations")) if (root / "realisations").is_dir() else []


def assert_store_valid(root: Path) -> None:
    """Every entry of store/ re-hashes to its name (the real `nw verify`), and it quarantined nothing."""
    names = store_entries(root)
    verified = nw("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert store_entries(root) == names
    assert not (root / "quarantine").is_dir() or not os.listdir(root / "quarantine")


# ---- writes go into the build, never into store/ ------------------------------------------


class FileByPath(NixTask):
    """The common Luigi idiom: the output written through its path, as one file."""

    def produce(self) -> None:
        with open(self.output().path, "w") as f:
            f.write("by path\n")


class FileByOpen(NixTask):
    def produce(self) -> None:
        with self.output().open("w") as f:
            f.write("by open\n")


class FileByLocalTarget(NixTask):
    def produce(self) -> None:
        with luigi.LocalTarget(self.output().path).open("w") as f:
            f.write("by LocalTarget\n")


class DirByTarget(NixTask):
    def produce(self, out: Path) -> None:
        with (self.output() / "sub" / "a.txt").open("w") as f:
            f.write("a\n")
        with open(os.path.join(self.output().path, "b.txt"), "w") as f:
            f.write("b\n")


class Reader(NixTask):
    def requires(self) -> list[NixTask]:
        return [FileByPath(), DirByTarget()]

    def command(self) -> str:
        single, tree = self.input()
        return f"cat {single} {tree}/sub/a.txt {tree}/b.txt > {self.output()}/all.txt"


def test_writes_through_output_path_land_in_the_build(store_root: Path) -> None:
    assert build(Reader(), FileByOpen(), FileByLocalTarget())
    assert open(FileByPath().output().path).read() == "by path\n"
    assert FileByOpen().output().open().read() == "by open\n"
    assert open(FileByLocalTarget().output().path).read() == "by LocalTarget\n"
    assert (Reader().output() / "all.txt").open().read() == "by path\na\nb\n"
    assert Path("nix-workflow-output", FileByPath().task_id).read_text() == "by path\n"
    assert len(store_entries(store_root)) == 5  # the five outputs, nothing else
    assert_store_valid(store_root)


class OutDirOpenedAsFile(NixTask):
    """produce(out) gets a directory: opening the output itself as a file is a mistake, said clearly."""

    def produce(self, out: Path) -> None:
        with open(self.output().path, "w") as f:
            f.write("x\n")


def test_produce_out_opening_its_directory_as_a_file_is_a_clear_error(
        store_root: Path, failures: list[tuple[str, BaseException]]) -> None:
    assert not build(OutDirOpenedAsFile())
    [(task_id, error)] = failures
    assert isinstance(error, NixWorkflowError) and "produce(self) without `out`" in str(error)
    assert store_entries(store_root) == [] and realisations(store_root) == []


class WritesInsideMissingOutput(NixTask):
    """produce(self) makes its output itself: a file inside a directory it never created cannot be written."""

    def produce(self) -> None:
        with open(os.path.join(self.output().path, "x.txt"), "w") as f:
            f.write("x\n")


def test_produce_writing_inside_an_output_it_did_not_create_is_a_clear_error(
        store_root: Path, failures: list[tuple[str, BaseException]]) -> None:
    assert not build(WritesInsideMissingOutput())
    [(task_id, error)] = failures
    assert isinstance(error, NixWorkflowError) and "os.makedirs(self.output().path)" in str(error)
    assert store_entries(store_root) == [] and realisations(store_root) == []


def test_writes_outside_a_run_are_errors_and_never_reach_store(store_root: Path) -> None:
    target = FileByPath().output()
    with pytest.raises(NixWorkflowError, match="written outside its task's run"):
        target.open("w")
    with pytest.raises(NixWorkflowError, match="written outside its task's run"):
        (target / "x.txt").open("a")
    with pytest.raises(NotADirectoryError):  # a placeholder lies beneath a regular file: not even root writes
        open(target.path, "w")
    with pytest.raises(NotADirectoryError):
        os.makedirs(target.path)
    with pytest.raises(NotADirectoryError):
        open(os.path.join(target.path, "x.txt"), "w")
    assert store_entries(store_root) == []
    assert build(FileByPath())  # realised: a read-only object, still not writable through the target
    with pytest.raises(NixWorkflowError, match="read-only store object"):
        FileByPath().output().open("w")
    assert_store_valid(store_root)


def test_python_front_door_placeholders_are_not_writable(store_root: Path) -> None:
    Store(store_root)
    dsl.forget()
    step = output("echo hi > $out/x", name="hi")
    assert "/store/" not in step
    with pytest.raises(NotADirectoryError):
        open(step, "w")
    with pytest.raises(NotADirectoryError):
        os.makedirs(os.path.join(step, "x"))
    assert store_entries(store_root) == []
    assert dsl.build({"hi": step}).recipes["hi"].inputs == []


# ---- empty outputs ------------------------------------------------------------------------


class ProducesNothing(NixTask):
    def produce(self, out: Path) -> None:
        print("forgot to write")


class ProducesEmptyFile(NixTask):
    def produce(self) -> None:
        open(self.output().path, "w").close()


class CommandWritesNothing(NixTask):
    def command(self) -> str:
        return "echo nothing written"


@pytest.mark.parametrize("task", [ProducesNothing, ProducesEmptyFile, CommandWritesNothing])
def test_empty_output_fails_the_task_and_stores_nothing(
        task: type[NixTask], store_root: Path, failures: list[tuple[str, BaseException]]) -> None:
    assert not build(task())
    [(task_id, error)] = failures
    assert task_id == task().task_id
    message = str(error)
    assert isinstance(error, NixWorkflowError)
    assert f"NixTask {task.__name__} wrote nothing" in message and "allow_empty = True" in message
    assert store_entries(store_root) == [] and realisations(store_root) == []
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    assert not task().complete()


class EmptyOnPurpose(NixTask):
    allow_empty = True

    def produce(self, out: Path) -> None:
        pass


class EmptyCommandOnPurpose(NixTask):
    allow_empty = True

    def command(self) -> str:
        return "true"


def test_allow_empty_stores_the_empty_output(store_root: Path) -> None:
    assert build(EmptyOnPurpose(), EmptyCommandOnPurpose())
    assert len(realisations(store_root)) == 2
    for task in (EmptyOnPurpose(), EmptyCommandOnPurpose()):
        path = Path(task.output().path)
        assert path.parent == store_root / "store" and path.is_dir() and not any(path.iterdir())
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    assert EmptyOnPurpose().complete() and EmptyCommandOnPurpose().complete()


# ---- dynamic dependencies and names -------------------------------------------------------


class Helper(NixTask):
    def command(self) -> str:
        return f"echo help > {self.output()}/h"


class YieldsDeps(NixTask):
    def produce(self, out: Path) -> Iterator[luigi.Task]:
        yield Helper()
        (out / "x").write_text("x\n")


def test_yield_in_produce_is_a_clear_error(store_root: Path) -> None:
    with pytest.raises(NixWorkflowError, match="produce\\(\\) yields"):
        YieldsDeps().complete()
    assert not build(YieldsDeps())
    assert realisations(store_root) == [] and store_entries(store_root) == []


class Escaping(NixTask):
    task_namespace = "../outside"

    def command(self) -> str:
        return f"echo x > {self.output()}/x"


def test_task_name_that_escapes_the_link_directory_is_refused(store_root: Path) -> None:
    with pytest.raises(NixWorkflowError, match="is not allowed: it contains '/'"):
        Escaping().complete()
    assert not build(Escaping())
    assert realisations(store_root) == []
    assert not any(p.name.startswith("outside.") for p in Path.cwd().iterdir())


# ---- processes produce() leaves running ---------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _late_writer(out: str) -> None:
    time.sleep(30)
    Path(out, "late3").write_text("late\n")


class LeavesProcesses(NixTask):
    """Starts a child it never waits for, a daemon re-parented away from the worker and a forked
    multiprocessing child it never joins, then returns."""

    def produce(self, out: Path) -> None:
        pids = Path(os.environ["NW_TEST_PIDS"])
        child = subprocess.Popen(["sh", "-c", 'sleep 30; echo late > "$out/late"'])
        subprocess.run(["sh", "-c", f'(sleep 30; echo late > "$out/late2") & echo $! >> {pids}'], check=True)
        forked = multiprocessing.get_context("fork").Process(target=_late_writer, args=(str(out),))
        forked.start()
        with pids.open("a") as f:
            f.write(f"{child.pid}\n{forked.pid}\n")
        (out / "x").write_text("early\n")


def test_processes_left_by_produce_are_killed_before_hashing(store_root: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pids_file = tmp_path / "pids"
    monkeypatch.setenv("NW_TEST_PIDS", str(pids_file))
    try:
        assert build(LeavesProcesses())
        pids = [int(p) for p in pids_file.read_text().split()]
        assert len(pids) == 3
        still = [p for p in pids if _alive(p)]
        assert still == [], f"processes produce() started outlived the task: {still}"
        obj = Path(LeavesProcesses().output().path)
        assert sorted(os.listdir(obj)) == ["x"]
        assert_store_valid(store_root)
    finally:  # (on a failure: leave nothing running)
        for pid in (int(p) for p in pids_file.read_text().split()) if pids_file.exists() else ():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_any_new_pid_sends_the_leftover_check_through_the_walk() -> None:
    """The pid namespace's last allocated pid moves with every process started (here a real one, already
    waited for), so an unchanged value proves nothing was started since the baseline."""
    before = children._last_pid()
    assert before is not None
    subprocess.run(["true"], check=True)
    assert children._last_pid() != before


def test_the_leftover_check_walks_unless_no_pid_was_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    """stop_leftovers answers without walking /proc only when the last pid and the children's usage are both
    unchanged; a changed pid (something started, here or elsewhere) or unknown one takes the walk, which finds and
    kills what produce() left (test above). Pids are fixed here: other processes on the machine fork meanwhile."""
    walks: list[int] = []
    monkeypatch.setattr(children, "descendants", lambda pid: walks.append(pid) or set())
    for now, walked in ((100, False), (101, True), (None, True)):
        monkeypatch.setattr(children, "_last_pid", lambda: 100)
        w = children.watch("NW_TEST_MARKER")
        monkeypatch.setattr(children, "_last_pid", lambda now=now: now)
        walks.clear()
        assert children.stop_leftovers(w, "t") == []
        assert bool(walks) is walked, (now, walks)
