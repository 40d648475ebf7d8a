"""What running Luigi's own test suite with every `luigi.Task` a NixTask revealed (tests/luigi_compat.py,
docs/luigi-compat.md). Each test is a bug that comparison found, and fails on the code before its fix."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections import Counter
from pathlib import Path

import luigi
import pytest
from luigi.mock import MockTarget

from luigi_nixworkflow import NixTask
from tests import luigi_compat as compat
from tests import sdist
from tests.luigi_run import build

# ---- a task that says when it is done in its own complete() and declares no output() -------------------------


DONE: set[str] = set()


class RunOnce(NixTask):
    """Luigi's own tests' RunOnceTask (and a task that records its work in a database): run() and complete(),
    no output()."""

    name = luigi.Parameter()

    def complete(self) -> bool:
        return self.name in DONE

    def run(self) -> None:
        DONE.add(self.name)


class CheckedOnly(NixTask):
    """Only complete() (luigi's MixinNaiveBulkComplete tests): done when something else says so."""

    name = luigi.Parameter()

    def complete(self) -> bool:
        return self.name in DONE


def test_own_complete_without_output_runs_as_plain_luigi(caplog: pytest.LogCaptureFixture) -> None:
    """Was: "NixTask RunOnce defines run() but not output()" raised from complete(), so the migrated task
    failed scheduling. Its result lives outside any file: it runs as plain Luigi, with the warning a task the
    store cannot hold gets, and its output() is Luigi's default, no target."""
    DONE.clear()
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        summary = build(RunOnce(name="a"))
    assert DONE == {"a"}, summary
    assert "RunOnce runs as a plain Luigi task" in caplog.text and "declares no output()" in caplog.text
    assert RunOnce(name="a").output() == []
    DONE.add("b")
    assert CheckedOnly(name="b").complete() and not CheckedOnly(name="c").complete()
    with pytest.raises(NotImplementedError):  # as for a plain task: the range tools then look at files
        CheckedOnly.bulk_complete(["b", "c"])


# ---- `luigi.Task = NixTask`: migrating every class of a module tree in one line -------------------------------


def test_adapter_survives_luigi_task_rebound_to_nixtask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: RecursionError from complete() of a task the store cannot hold (its fallback called `luigi.Task.complete`,
    which is NixTask's own then), and a class with no run() of its own was taken for one that defines run().
    The adapter now names Luigi's own Task class, whatever `luigi.Task` is bound to."""
    monkeypatch.setattr(luigi, "Task", NixTask)

    class Mocked(luigi.Task):  # a NixTask now: output() is a MockTarget, so it runs as plain Luigi
        def output(self) -> MockTarget:
            return MockTarget("compat/mocked")

        def run(self) -> None:
            with self.output().open("w") as f:
                f.write("x")

    class Checked(luigi.Task):  # no run() of its own
        def complete(self) -> bool:
            return True

    assert luigi.task.Task.complete is not NixTask.complete
    build(Mocked())
    assert MockTarget("compat/mocked").exists()
    assert Checked().complete() and Checked().output() == []


class Data(NixTask):
    """Input data declared with luigi.Task instead of luigi.ExternalTask: output(), no run()."""

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("data.txt")


class Upper(NixTask):
    def requires(self) -> Data:
        return Data()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("upper.txt")

    def run(self) -> None:
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(src.read().upper())


def test_output_without_run_is_data_read_by_content(caplog: pytest.LogCaptureFixture) -> None:
    """Was: "NixTask Data overrides output() but has no run() of its own" from complete(), so every task behind
    it failed scheduling. It names data something else writes: it runs as plain Luigi (as an ExternalTask), and
    the NixTask reading its file is keyed by that file's content, cached and re-run when it changes."""
    Path("data.txt").write_text("a")
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        build(Upper())
    assert "Data runs as a plain Luigi task" in caplog.text and "declares output() but no run()" in caplog.text
    assert Path("upper.txt").read_text() == "A"
    Path("upper.txt").unlink()
    assert Upper().complete() and Path("upper.txt").read_text() == "A"  # served: restored from the store
    Path("data.txt").write_text("b")
    build(Upper())
    assert Path("upper.txt").read_text() == "B"


def test_init_without_super_gets_luigis_own_error() -> None:
    """Was: AttributeError "'Forgot' object has no attribute 'param_kwargs'" from NixTask's instance cache, where
    Luigi says what is wrong: the class overrides __init__ and forgot to call super().__init__()."""

    class Forgot(NixTask):
        def __init__(self) -> None:
            pass

        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("forgot.txt")

        def run(self) -> None:
            pass

    with pytest.raises(luigi.worker.TaskException, match="not initialized"):
        luigi.build([Forgot()], local_scheduler=True, log_level="WARNING")


def _yielding(base: type) -> tuple[Counter[int], luigi.Task]:
    """A task without output() whose run() yields two tasks (Luigi's worker_test idiom), on `base`; counts the
    complete() calls of the yielded tasks."""
    calls: Counter[int] = Counter()
    done: set[int] = set()

    class Leaf(base):  # type: ignore[misc, valid-type]
        task_namespace = f"yielding_{base.__name__}"  # Luigi finds a yielded task again by its family
        i = luigi.IntParameter()

        def complete(self) -> bool:
            calls[self.i] += 1
            return self.i in done

        def run(self) -> None:
            done.add(self.i)

    class Parent(base):  # type: ignore[misc, valid-type]
        task_namespace = f"yielding_{base.__name__}"

        def complete(self) -> bool:
            return -1 in done

        def run(self) -> object:
            yield Leaf(i=0)
            yield Leaf(i=1)
            done.add(-1)

    return calls, Parent()


def test_plain_running_task_yields_to_luigi_as_luigi_does() -> None:
    """Was: a NixTask running as plain Luigi had its yielding run() driven by the store's machinery, which asks
    each yielded task's complete() itself before Luigi does (6 calls where Luigi makes 2: Luigi's
    cache_task_completion test). Now Luigi drives it, exactly as it drives a plain task's."""
    expected, plain_parent = _yielding(luigi.task.Task)
    build(plain_parent)
    calls, parent = _yielding(NixTask)
    build(parent)
    assert calls == expected and sum(expected.values()) > 0


# ---- a sample of the comparison itself (`make luigi-compat` runs every module) --------------------------------

SAMPLE = ["task_test", "util_test", "task_bulk_complete_test", "task_forwarded_attributes_test", "instance_test",
          "wrap_test"]


@pytest.mark.slow
def test_luigi_test_suite_sample_has_no_regression(tmp_path: Path) -> None:
    """A few of Luigi's own test modules, as shipped and with every luigi.Task a NixTask: each test that passes as
    shipped passes with NixTask too (or fails for a documented reason, tests/luigi_compat.py)."""
    tests = sdist.tests_or_skip(compat.source_tests, "Luigi", "NW_REQUIRE_LUIGI_TESTS")
    with cf.ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda m: compat.run_case(tests, m, tmp_path / m), SAMPLE))
    for o in outcomes:
        assert o.shipped is not None and o.nix is not None
        for run in (o.shipped, o.nix):
            assert not run.problem, f"{o.module}: {run.problem}\n{run.output[-3000:]}"
        assert o.count(o.shipped, "passed") > 0, f"{o.module}: nothing passes as shipped\n{o.shipped.output[-3000:]}"
        assert not o.regressions, f"{o.module}: " + "; ".join(
            f"{t}: {o.nix.messages.get(t, 'missing')[:300]}" for t in o.regressions)


# ---- a task with nothing to store: run() without output(), or only requires() ------------------------------------


RAN: list[str] = []


class Notify(NixTask):
    """run() and no output(): Luigi runs it at every build (it is never complete)."""

    def requires(self) -> luigi.Task:
        return Upstream()

    def run(self) -> None:
        RAN.append("notify")


class Grouped(NixTask):
    """Only requires(), as a WrapperTask written as a plain luigi.Task (never complete, as in Luigi: only a root)."""

    def requires(self) -> list[luigi.Task]:
        return [Upstream()]


class Upstream(NixTask):
    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("up.txt")

    def run(self) -> None:
        RAN.append("up")
        with self.output().open("w") as f:
            f.write("up")


def test_a_task_with_nothing_to_store_runs_as_plain_luigi(caplog: pytest.LogCaptureFixture,
                                                           store_root: Path) -> None:
    """Was: "NixTask Notify defines run() but not output()" and "must define exactly one of ... none of them":
    a pipeline migrated by changing every base class failed scheduling at its last, output-less task (Luigi's own
    tests have ~75 such tasks). They have nothing the store could hold: they run as plain Luigi runs them, with a
    warning, and the task with an output upstream of them is cached as usual."""
    RAN.clear()
    with caplog.at_level(logging.WARNING, logger="luigi-interface"):
        build(Notify(), Grouped())
    assert RAN == ["up", "notify"]
    assert "Notify runs as a plain Luigi task" in caplog.text and "declares no output()" in caplog.text
    assert "Grouped runs as a plain Luigi task" in caplog.text
    os.unlink("up.txt")
    build(Notify())  # Notify is never complete, as in Luigi; Upstream's file comes back from the store
    assert RAN == ["up", "notify", "notify"] and Path("up.txt").read_text() == "up"


class Joined(NixTask):
    """Luigi's subtask_test: run() of a task without outputs returns a value its caller reads."""

    k = luigi.IntParameter()

    def run(self) -> str:
        return ",".join(["bar", "hello" * self.k])


def test_run_of_a_task_run_as_plain_luigi_returns_its_value() -> None:
    """Was: None (the wrapper dropped run()'s return value) where Luigi returns 'bar,hellohello'."""
    assert Joined(k=2).run() == "bar,hellohello"
