"""Probing wave 27 (Luigi): features no earlier test built with a NixTask — outputs that are not local files
(MockTarget, a Target of one's own, RunAnywayTarget), luigi.task.externalize, luigi.util.copies and delegates,
luigi.tools.deps and deps_tree over a NixTask graph, set_status_message/set_progress_percentage through a real luigid,
the PROCESS_FAILURE and DEPENDENCY_MISSING events, OptionalPathParameter, luigi.format.Nop outputs written through
temporary_path(), and retry_count with a task that fails once. Each compares with what plain Luigi does on a first
build, a re-build and a re-build after the outputs were deleted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import luigi
import luigi.format
import luigi.local_target
import luigi.mock
import luigi.target
import luigi.task
import luigi.tools.deps
import luigi.tools.deps_tree
import luigi.util
import pytest
from luigi.contrib.simulate import RunAnywayTarget

import luigi_nixworkflow
from luigi_nixworkflow import NixTask
from tests.luigi_run import build, note, runs
from tests.test_luigi_processes import LUIGI, Processes, env, luigid, procs  # noqa: F401 - fixtures

STATUS = '''
import luigi
import luigi_nixworkflow
from luigi_nixworkflow import NixTask


class Legacy(NixTask):
    def output(self):
        return luigi.LocalTarget("out/legacy.txt")

    def run(self):
        self.set_status_message("legacy halfway")
        self.set_progress_percentage(50)
        with self.output().open("w") as f:
            f.write("legacy")


class Native(NixTask):
    def produce(self, out):
        self.set_status_message("native halfway")
        self.set_progress_percentage(40)
        (out / "n.txt").write_text("native")


class Both(luigi.WrapperTask):
    def requires(self):
        return [Legacy(), Native()]
'''


def _api(port: int, method: str, **data: object) -> dict:
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{method}?{query}", timeout=10) as r:
        return json.loads(r.read())["response"]


def test_status_message_and_progress_reach_a_real_luigid(procs: Processes, env: dict[str, str],  # noqa: F811
                                                         luigid: int, tmp_path: Path) -> None:  # noqa: F811
    """set_status_message()/set_progress_percentage() in run() and in produce() reach luigid as in plain Luigi."""
    (tmp_path / "modules" / "statusgraph.py").write_text(STATUS)
    proc = subprocess.run([LUIGI, "--module", "statusgraph", "Both", "--scheduler-host", "127.0.0.1",
                           "--scheduler-port", str(luigid), "--workers", "2", "--no-lock"], env=env,
                          text=True, capture_output=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert "This progress looks :)" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    tasks = _api(luigid, "task_list", status="DONE", upstream_status="")
    ids = {t["name"]: tid for tid, t in tasks.items()}
    assert _api(luigid, "get_task_status_message", task_id=ids["Legacy"])["statusMessage"] == "legacy halfway"
    assert _api(luigid, "get_task_progress_percentage", task_id=ids["Legacy"])["progressPercentage"] == 50
    assert _api(luigid, "get_task_status_message", task_id=ids["Native"])["statusMessage"] == "native halfway"
    assert _api(luigid, "get_task_progress_percentage", task_id=ids["Native"])["progressPercentage"] == 40


def stored(store: Path) -> int:
    """How many results the store records (its realisations)."""
    found = store / "realisations"
    return sum(1 for p in found.rglob("*") if p.is_file()) if found.exists() else 0


# ---- luigi.util.delegates: the subtasks' files come back with the delegating task ---------------------------------

class P27Sub(NixTask):
    def output(self):
        return luigi.LocalTarget("out/sub.txt")

    def run(self):
        note("P27Sub")
        with self.output().open("w") as f:
            f.write("sub")


@luigi.util.delegates
class P27Delegating(NixTask):
    def subtasks(self):
        return P27Sub()

    def output(self):
        return luigi.LocalTarget("out/del.txt")

    def run(self):
        note("P27Delegating")
        with self.output().open("w") as f, self.subtasks().output().open() as g:
            f.write("del:" + g.read())


def test_delegates_restores_the_files_its_subtasks_wrote_when_served_from_the_store() -> None:
    """A `luigi.util.delegates` task's run() runs its subtasks' run() (the scheduler never sees them). Plain Luigi, once
    the outputs are deleted, runs it again and so writes the subtasks' files again; served from the store, only its
    own file came back and out/sub.txt stayed missing. Each subtask's result is stored when its run() runs, so it is
    now restored with the delegating task's."""
    build(P27Delegating())
    assert runs() == {"P27Sub": 1, "P27Delegating": 1}
    build(P27Delegating())
    assert runs() == {"P27Sub": 1, "P27Delegating": 1}
    shutil.rmtree("out")
    build(P27Delegating())
    assert runs() == {"P27Sub": 1, "P27Delegating": 1}
    assert Path("out/del.txt").read_text() == "del:sub"
    assert Path("out/sub.txt").read_text() == "sub", "the subtask's file, which plain Luigi writes again, is missing"


# ---- luigi.task.externalize -----------------------------------------------------------------------------------------

class P27Native(NixTask):
    def produce(self, out):
        note("P27Native")
        (out / "n.txt").write_text("native")


class P27ReadsExternal(luigi.Task):
    def requires(self):
        return luigi.task.externalize(P27Native)()

    def output(self):
        return luigi.LocalTarget("down.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write((Path(self.input().path) / "n.txt").read_text())


def test_externalized_store_native_class_is_complete_once_the_store_holds_its_result(store_root: Path) -> None:
    """`luigi.task.externalize(SomeTask)` copies the class with run = None: "this data exists, never run it here". The
    copy of a store-native task had a key of its own (its source counted twice), so it was never complete, and a task
    requiring it failed with a missing external dependency although the original's result was stored. Before that
    result exists it is a missing dependency, as in plain Luigi; nothing runs."""
    external = luigi.task.externalize(P27Native)
    assert external.run is None and P27Native.run is not None
    build(external(), ok=False)
    assert runs() == {} and stored(store_root) == 0
    build(P27Native())
    build(external())
    build(P27ReadsExternal())
    assert Path("down.txt").read_text() == "native"
    assert runs() == {"P27Native": 1}


class P27Legacy(NixTask):
    def output(self):
        return luigi.LocalTarget("out/legacy.txt")

    def run(self):
        note("P27Legacy")
        with self.output().open("w") as f:
            f.write("legacy")


def test_externalized_legacy_class_is_an_external_task_and_an_externalized_instance_asks_the_store() -> None:
    """A legacy task's externalized class is a plain ExternalTask (complete when its file exists, as in plain Luigi:
    read by NixTasks by content); an externalized *instance* keeps its class, so it is complete when the store
    holds its result, whose files are then restored (documented)."""
    external = luigi.task.externalize(P27Legacy)
    build(external(), ok=False)
    build(P27Legacy())
    build(external())
    shutil.rmtree("out")
    build(external(), ok=False)  # (plain Luigi: the file is gone, so the data is missing)
    build(luigi.task.externalize(P27Legacy()))
    assert Path("out/legacy.txt").read_text() == "legacy"
    assert runs() == {"P27Legacy": 1}


# ---- outputs that are not local files ------------------------------------------------------------------------------

class P27Own(luigi.target.Target):
    """A target of one's own that is no FileSystemTarget (a row, a flag in a service)."""
    done: set[str] = set()

    def __init__(self, name: str) -> None:
        self.name = name

    def exists(self) -> bool:
        return self.name in P27Own.done


class P27Mock(NixTask):
    def output(self):
        return luigi.mock.MockTarget("p27/mock")

    def run(self):
        note("P27Mock")
        with self.output().open("w") as f:
            f.write("mock")


class P27Custom(NixTask):
    def output(self):
        return P27Own("custom")

    def run(self):
        note("P27Custom")
        P27Own.done.add("custom")


class P27Anyway(NixTask):
    def output(self):
        return RunAnywayTarget(self)

    def run(self):
        note("P27Anyway")
        self.output().done()


def test_outputs_that_are_not_local_files_run_as_plain_luigi_and_are_never_stored_or_restored(store_root: Path,
                                                                                               caplog) -> None:
    """A MockTarget, a Target of one's own and RunAnywayTarget cannot be held by the store: the task runs as plain Luigi
    (a warning names the target), complete when its target exists, and once the target is gone it runs again —
    nothing "restores" an empty or missing thing."""
    for task in (P27Mock(), P27Custom(), P27Anyway()):
        build(task)
        build(task)
    assert runs() == {"P27Mock": 1, "P27Custom": 1, "P27Anyway": 1}
    assert "MockTarget" in caplog.text and "P27Own" in caplog.text and "RunAnywayTarget" in caplog.text
    luigi.mock.MockFileSystem().remove("p27/mock")
    P27Own.done.clear()
    build(P27Mock())
    build(P27Custom())
    assert runs() == {"P27Mock": 2, "P27Custom": 2, "P27Anyway": 1}
    with luigi.mock.MockTarget("p27/mock").open() as f:
        assert f.read() == "mock"
    assert stored(store_root) == 0


# ---- luigi.util.copies, luigi.tools.deps and deps_tree -------------------------------------------------------------

class P27Source(NixTask):
    def output(self):
        return luigi.LocalTarget("out/source.txt")

    def run(self):
        note("P27Source")
        with self.output().open("w") as f:
            f.write("source")


@luigi.util.copies(P27Source)
class P27Copy(NixTask):
    def output(self):
        return luigi.LocalTarget("out/copy.txt")


class P27Top(NixTask):
    def requires(self):
        return P27Source()

    def produce(self, out):
        note("P27Top")
        (out / "top.txt").write_text(Path(self.input().path).read_text() + "+top")


def test_copies_runs_once_and_is_restored() -> None:
    build(P27Copy())
    build(P27Copy())
    shutil.rmtree("out")
    build(P27Copy())
    assert Path("out/copy.txt").read_text() == "source" and Path("out/source.txt").read_text() == "source"
    assert runs() == {"P27Source": 1}


def test_deps_tools_over_a_nixtask_graph_run_and_store_nothing(store_root: Path, capsys) -> None:
    """luigi.tools.deps and deps_tree call complete(): before a build they show PENDING and neither run nor store
    anything; after one whose files were deleted, COMPLETE (complete() restores them from the store, as documented)."""
    tree = luigi.tools.deps_tree.print_tree(P27Top())
    assert tree.count("PENDING") == 2 and "COMPLETE" not in tree
    assert {t.task_family for t in luigi.tools.deps.find_deps(P27Top(), None)} == {"P27Top", "P27Source"}
    assert runs() == {} and stored(store_root) == 0 and not Path("out").exists()
    build(P27Top())
    shutil.rmtree("out")
    tree = luigi.tools.deps_tree.print_tree(P27Top())
    assert tree.count("COMPLETE") == 2 and "PENDING" not in tree
    assert runs() == {"P27Source": 1, "P27Top": 1} and stored(store_root) == 2
    assert "Traceback" not in capsys.readouterr().err


# ---- events: PROCESS_FAILURE and DEPENDENCY_MISSING ---------------------------------------------------------------

class P27Killed(NixTask):
    def output(self):
        return luigi.LocalTarget("out/killed.txt")

    def run(self):
        note("P27Killed")
        if not Path("attempted").exists():
            Path("attempted").touch()
            Path("out").mkdir(exist_ok=True)
            Path(self.output().path).write_text("half")  # (written in place, not atomically)
            os.kill(os.getpid(), signal.SIGKILL)
        with self.output().open("w") as f:
            f.write("whole")


class P27Missing(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("not-there.txt")


class P27NeedsMissing(NixTask):
    def requires(self):
        return P27Missing()

    def output(self):
        return luigi.LocalTarget("out/needs.txt")

    def run(self):
        note("P27NeedsMissing")


def test_process_failure_and_dependency_missing_events_fire_and_nothing_partial_is_served(store_root: Path) -> None:
    """A run() whose process dies (SIGKILL, workers=2) fires PROCESS_FAILURE as in plain Luigi and stores nothing; its
    half-written file does not make the task complete (plain Luigi would take it as done), the next build runs it
    again. DEPENDENCY_MISSING fires for the missing external task, and the NixTask does not run."""
    seen: list[tuple[str, str]] = []

    @P27Killed.event_handler(luigi.Event.PROCESS_FAILURE)
    def died(task, *args):
        seen.append((luigi.Event.PROCESS_FAILURE, task.task_family))

    @P27Missing.event_handler(luigi.Event.DEPENDENCY_MISSING)
    def missing(task, *args):
        seen.append((luigi.Event.DEPENDENCY_MISSING, task.task_family))

    luigi.task_register.Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    assert not luigi.build([P27Killed()], local_scheduler=True, workers=2, log_level="CRITICAL")
    assert (luigi.Event.PROCESS_FAILURE, "P27Killed") in seen and stored(store_root) == 0
    build(P27Killed())
    assert Path("out/killed.txt").read_text() == "whole" and runs() == {"P27Killed": 2}
    build(P27NeedsMissing(), ok=False)
    assert (luigi.Event.DEPENDENCY_MISSING, "P27Missing") in seen and "P27NeedsMissing" not in runs()
    assert stored(store_root) == 1


# ---- parameters naming files, binary outputs written atomically ---------------------------------------------------

class P27Optional(NixTask):
    data = luigi.OptionalPathParameter(default=None)

    def output(self):
        return luigi.LocalTarget("out/optional.txt")

    def run(self):
        note("P27Optional")
        with self.output().open("w") as f:
            f.write(Path(self.data).read_text().upper() if self.data else "none")


def test_optional_path_parameter_keys_the_file_it_names_by_content() -> None:
    Path("d.txt").write_text("v1")
    build(P27Optional(data="d.txt"))
    build(P27Optional(data="d.txt"))
    assert Path("out/optional.txt").read_text() == "V1" and runs() == {"P27Optional": 1}
    Path("d.txt").write_text("v2")
    build(P27Optional(data="d.txt"))
    assert Path("out/optional.txt").read_text() == "V2" and runs() == {"P27Optional": 2}
    build(P27Optional())
    assert Path("out/optional.txt").read_text() == "none" and runs() == {"P27Optional": 3}
    shutil.rmtree("out")
    build(P27Optional(data="d.txt"))
    assert Path("out/optional.txt").read_text() == "V2" and runs() == {"P27Optional": 3}


BLOB = bytes(range(256)) * 4


class P27Binary(NixTask):
    def output(self):
        return {"tmp": luigi.LocalTarget("out/tmp.bin", format=luigi.format.Nop),
                "atomic": luigi.LocalTarget("out/atomic.bin", format=luigi.format.Nop),
                "open": luigi.LocalTarget("out/open.bin", format=luigi.format.Nop)}

    def run(self):
        note("P27Binary")
        with self.output()["tmp"].temporary_path() as tmp:
            Path(tmp).write_bytes(BLOB)
        with luigi.local_target.atomic_file(self.output()["atomic"].path) as f:
            f.write(BLOB[::-1])
        with self.output()["open"].open("w") as f:
            f.write(b"\x00\xff")


def test_nop_binary_outputs_written_through_temporary_path_and_atomic_file_are_stored_byte_for_byte() -> None:
    build(P27Binary())
    build(P27Binary())
    shutil.rmtree("out")
    build(P27Binary())
    assert runs() == {"P27Binary": 1}
    assert Path("out/tmp.bin").read_bytes() == BLOB and Path("out/atomic.bin").read_bytes() == BLOB[::-1]
    assert Path("out/open.bin").read_bytes() == b"\x00\xff"
    assert sorted(os.listdir("out")) == ["atomic.bin", "open.bin", "tmp.bin"]


# ---- retry_count: a task that fails once, then succeeds -------------------------------------------------------------

class P27Flaky(NixTask):
    retry_count = 2

    def output(self):
        return [luigi.LocalTarget("out/flaky.txt"), luigi.LocalTarget("out/flakydir")]

    def run(self):
        note("P27Flaky")
        first = not Path("attempted").exists()
        Path("attempted").touch()
        with self.output()[0].open("w") as f:
            f.write("partial" if first else "good")
        Path(self.output()[1].path).mkdir(parents=True, exist_ok=True)
        (Path(self.output()[1].path) / ("junk" if first else "good")).write_text("x")
        if first:
            raise RuntimeError("the first attempt fails")


def test_retry_count_stores_the_successful_attempt_only(store_root: Path) -> None:
    """Luigi retries the failed task in the same build; the result stored and restored is the second attempt's, and
    nothing the failed attempt wrote (its file, a file inside its directory) is stored or left behind."""
    luigi.configuration.get_config().set("scheduler", "retry_delay", "0")
    luigi.configuration.get_config().set("worker", "keep_alive", "true")
    luigi.task_register.Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    try:
        result = luigi.build([P27Flaky()], local_scheduler=True, detailed_summary=True, log_level="CRITICAL")
    finally:
        luigi.configuration.get_config().remove_option("scheduler", "retry_delay")
        luigi.configuration.get_config().remove_option("worker", "keep_alive")
    assert result.status == luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY, result.summary_text
    assert runs() == {"P27Flaky": 2} and stored(store_root) == 1
    assert Path("out/flaky.txt").read_text() == "good" and os.listdir("out/flakydir") == ["good"]
    assert sorted(os.listdir("out")) == ["flaky.txt", "flakydir"], "the failed attempt's files were left aside"
    shutil.rmtree("out")
    build(P27Flaky())
    assert runs() == {"P27Flaky": 2}
    assert Path("out/flaky.txt").read_text() == "good" and os.listdir("out/flakydir") == ["good"]
    assert sorted(os.listdir("out")) == ["flaky.txt", "flakydir"]


# ---- an S3Target output, against a real S3 server ------------------------------------------------------------------

class P27S3(NixTask):
    endpoint = luigi.Parameter(significant=False)

    def client(self):
        from luigi.contrib.s3 import S3Client
        return S3Client(aws_access_key_id="nw-test", aws_secret_access_key="nw-test", endpoint_url=self.endpoint,
                        region_name="us-east-1")

    def output(self):
        from luigi.contrib.s3 import S3Target
        return S3Target("s3://p27/result.txt", client=self.client())

    def run(self):
        note("P27S3")
        with self.output().open("w") as f:
            f.write("in s3")


class P27FromS3(NixTask):
    endpoint = luigi.Parameter(significant=False)

    def requires(self):
        return P27S3(endpoint=self.endpoint)

    def output(self):
        return luigi.LocalTarget("out/from-s3.txt")

    def run(self):
        note("P27FromS3")
        with self.input().open() as f, self.output().open("w") as g:
            g.write(f.read().upper())


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_s3_target_output_runs_as_plain_luigi_and_its_reader_too(tmp_path: Path, store_root: Path, caplog) -> None:
    """A NixTask whose output() is an S3Target (a real S3 server here): the store cannot hold it, so it runs as plain
    Luigi (complete when the object exists, run again once it is deleted), and so does a NixTask reading it (keyed
    by the object's name alone, a stored result would be served after the object changed)."""
    import boto3

    from tests.test_remote import CREDS, weed_server
    for k, v in CREDS.items():
        os.environ[k] = v
    data = tmp_path / "weed"
    data.mkdir()
    with weed_server(data, "-iam=false") as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="p27")
        build(P27FromS3(endpoint=endpoint))
        build(P27FromS3(endpoint=endpoint))
        assert runs() == {"P27S3": 1, "P27FromS3": 1}
        assert Path("out/from-s3.txt").read_text() == "IN S3"
        assert "S3Target" in caplog.text
        P27S3(endpoint=endpoint).client().remove("s3://p27/result.txt")
        build(P27S3(endpoint=endpoint))
        assert runs() == {"P27S3": 2, "P27FromS3": 1}, "a deleted object was taken as still there"
        shutil.rmtree("out")
        build(P27FromS3(endpoint=endpoint))
        assert runs() == {"P27S3": 2, "P27FromS3": 2}, "a deleted file was restored from a store that cannot know it"
        assert Path("out/from-s3.txt").read_text() == "IN S3"
    assert stored(store_root) == 0


class P27NativeSub(NixTask):
    def produce(self, out):
        note("P27NativeSub")
        (out / "s.txt").write_text("s")


@luigi.util.delegates
class P27DelegatingNative(NixTask):
    def subtasks(self):
        return P27NativeSub()

    def produce(self, out):
        (out / "d.txt").write_text("d")


def test_a_store_native_task_under_delegates_is_refused_naming_the_decorator(caplog) -> None:
    """`luigi.util.delegates` gives the class a run(); with produce() that was refused as "defines run() and
    produce()", which the author never wrote. The message now says where the run() comes from and what to do."""
    build(P27DelegatingNative(), ok=False)
    assert "luigi.util" in caplog.text and "run() with output()" in caplog.text
    assert "Traceback" not in caplog.text and runs() == {}
