"""The Luigi adapter in one process: NixTask/NixTarget with luigi.build(local_scheduler=True).

Every command appends a line to $NW_TEST_LOG, so "ran exactly once" and "ran nothing" are
counted from side effects, not from Luigi's own summary.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from luigi_nixworkflow import NixTarget, NixTask
from nixlib.errors import NixWorkflowError
from nixlib.store import Store
from tests.helpers import nw, tree_snapshot


@pytest.fixture(autouse=True)
def fresh_luigi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Luigi caches task instances and the adapter memoises per process: start each test clean."""
    log = tmp_path / "side-effects.log"
    log.touch()
    monkeypatch.setenv("NW_TEST_LOG", str(log))
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    return log


def runs(log: Path) -> Counter[str]:
    return Counter(log.read_text().split())


def build(*tasks: luigi.Task, workers: int = 1) -> luigi.execution_summary.LuigiRunResult:
    return luigi.build(list(tasks), local_scheduler=True, workers=workers, detailed_summary=True,
                       log_level="WARNING")


def again() -> None:
    """A new Luigi run in the same interpreter: new task instances, nothing memoised."""
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()


# ---- a small graph: plain -> shell NixTask -> Python NixTask -> plain ---------------------


class Raw(luigi.Task):
    text = luigi.Parameter(default="hello world")

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("raw.txt")

    def run(self) -> None:
        with self.output().open("w") as f:
            f.write(self.text + "\n")


class Upper(NixTask):
    def requires(self) -> Raw:
        return Raw()

    def command(self) -> str:
        return f'echo upper >> "$NW_TEST_LOG"; tr a-z A-Z < {self.input()} > {self.output()}/upper.txt'


class Count(NixTask):
    times = luigi.IntParameter(default=2)

    def requires(self) -> Upper:
        return Upper()

    def produce(self, out: Path) -> None:
        with open(os.environ["NW_TEST_LOG"], "a") as log:
            log.write("count\n")
        text = (self.input() / "upper.txt").open().read()
        (out / "count.txt").write_text(f"{len(text.split()) * self.times}\n")


class Summary(luigi.Task):
    def requires(self) -> Count:
        return Count()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget("summary.txt")

    def run(self) -> None:
        with open(os.path.join(self.input().path, "count.txt")) as src, self.output().open("w") as dst:
            dst.write("words x2: " + src.read())


def test_mixed_graph_runs_each_nixtask_once_and_caches(fresh_luigi: Path, store_root: Path) -> None:
    assert build(Summary()).status == luigi.execution_summary.LuigiStatusCode.SUCCESS
    assert Path("summary.txt").read_text() == "words x2: 4\n"
    assert runs(fresh_luigi) == {"upper": 1, "count": 1}
    Path("summary.txt").unlink()  # the plain consumer re-runs, its NixTask input is served from the store
    again()
    assert build(Summary()).status == luigi.execution_summary.LuigiStatusCode.SUCCESS
    assert runs(fresh_luigi) == {"upper": 1, "count": 1}
    assert Path("summary.txt").read_text() == "words x2: 4\n"


def test_nixtarget_api(store_root: Path) -> None:
    build(Count())
    target = Count().output()
    assert isinstance(target, NixTarget) and target.exists()
    assert Path(target.path).parent == store_root / "store"
    assert (target / "count.txt").open("r").read() == "4\n"
    assert target.join("count.txt").path == os.path.join(target.path, "count.txt")
    assert open(os.fspath(target / "count.txt")).read() == "4\n"
    assert not (target / "missing.txt").exists()
    with pytest.raises(NixWorkflowError, match="read-only"):
        (target / "count.txt").open("w")
    with pytest.raises(NixWorkflowError, match="relative path"):
        target / "../escape"
    pending = Count(times=3).output()  # not realised: its placeholder, under the store root but not in store/
    assert not pending.exists()
    assert str(pending).startswith(f"{store_root}/placeholders/") and str(pending).endswith("-Count")
    with pytest.raises(FileNotFoundError):
        pending.open()


def test_plain_input_is_keyed_by_content(fresh_luigi: Path) -> None:
    build(Upper())
    again()
    Path("raw.txt").write_text("hello world\n")  # same bytes, new mtime: nothing re-runs
    build(Upper())
    assert runs(fresh_luigi) == {"upper": 1}
    again()
    Path("raw.txt").write_text("three small words\n")
    assert not Upper().complete()
    build(Count())
    assert runs(fresh_luigi) == {"upper": 2, "count": 1}
    assert (Count().output() / "count.txt").open().read() == "6\n"


# ---- early cutoff, failures, several workers ------------------------------------------------

VARIANT = {"up": "a"}


class Up(NixTask):
    def command(self) -> str:  # the command changes with VARIANT, its output does not
        return f'echo up-{VARIANT["up"]} >> "$NW_TEST_LOG"; echo same > {self.output()}/v'


class Down(NixTask):
    def requires(self) -> Up:
        return Up()

    def command(self) -> str:
        return f'echo down >> "$NW_TEST_LOG"; cat {self.input()}/v > {self.output()}/w'


def test_equal_upstream_output_cuts_off_downstream(fresh_luigi: Path) -> None:
    build(Down())
    again()
    VARIANT["up"] = "b"
    try:
        assert not Down().complete()  # its upstream's recipe changed and is not realised yet
        build(Down())
    finally:
        VARIANT["up"] = "a"
    assert runs(fresh_luigi) == {"up-a": 1, "up-b": 1, "down": 1}


class Fails(NixTask):
    def command(self) -> str:
        return f'echo fails >> "$NW_TEST_LOG"; echo partial > {self.output()}/half; exit 3'


class FailsInPython(NixTask):
    def produce(self, out: Path) -> None:
        (out / "half").write_text("partial")
        raise RuntimeError("model diverged")


class AfterFailure(NixTask):
    def requires(self) -> Fails:
        return Fails()

    def command(self) -> str:
        return f'echo after >> "$NW_TEST_LOG"; touch {self.output()}/x'


def _contents(root: Path) -> dict[str, bytes | str]:
    """The store minus logs (a failed step's log is kept on purpose, for the user to read)."""
    return {k: v for k, v in tree_snapshot(root).items() if not k.startswith("logs")}


@pytest.mark.parametrize("task", [AfterFailure, FailsInPython])
def test_failing_task_stores_nothing_and_luigi_reports_it(task: type[NixTask], store_root: Path,
                                                          fresh_luigi: Path) -> None:
    Store(store_root)
    before = _contents(store_root)
    result = build(task())
    assert result.status == luigi.execution_summary.LuigiStatusCode.FAILED
    assert "after" not in runs(fresh_luigi)
    assert _contents(store_root) == before
    assert not task().complete()


class Fan(NixTask):
    i = luigi.IntParameter()

    def command(self) -> str:
        return f'echo fan-{self.i} >> "$NW_TEST_LOG"; sleep 0.2; echo {self.i % 2} > {self.output()}/v'


class Gather(NixTask):
    def requires(self) -> list[Fan]:
        return [Fan(i) for i in range(4)]

    def command(self) -> str:
        return 'echo gather >> "$NW_TEST_LOG"; cat ' + " ".join(f"{t}/v" for t in self.input()) + \
            f" > {self.output()}/all"


def test_several_worker_processes_run_each_task_once(fresh_luigi: Path) -> None:
    assert build(Gather(), workers=3).status == luigi.execution_summary.LuigiStatusCode.SUCCESS
    assert runs(fresh_luigi) == {"fan-0": 1, "fan-1": 1, "fan-2": 1, "fan-3": 1, "gather": 1}
    assert (Gather().output() / "all").open().read() == "0\n1\n0\n1\n"
    again()
    assert build(Gather(), workers=3).status == luigi.execution_summary.LuigiStatusCode.SUCCESS
    assert runs(fresh_luigi)["gather"] == 1 and sum(runs(fresh_luigi).values()) == 5


# ---- references outside requires() -------------------------------------------------------


class Helper(NixTask):
    def command(self) -> str:
        return f'echo helper >> "$NW_TEST_LOG"; echo 42 > {self.output()}/answer'


class UsesHelperUnrequired(NixTask):
    def command(self) -> str:  # Helper is not in requires(): the scanner resolves its placeholder
        return f"cp {Helper().output() / 'answer'} {self.output()}/answer"


def test_command_may_reference_a_task_outside_requires_when_resolvable(fresh_luigi: Path) -> None:
    assert build(UsesHelperUnrequired()).status == luigi.execution_summary.LuigiStatusCode.SUCCESS
    assert (UsesHelperUnrequired().output() / "answer").open().read() == "42\n"
    assert runs(fresh_luigi) == {"helper": 1}


class SeesItsEnvironment(NixTask):
    def produce(self, out: Path) -> None:
        assert os.environ["out"] == str(out) and os.environ["NIX_WORKFLOW_STEP"] == self.task_id
        print("printed by produce")
        (out / "tmpdir").write_text(os.environ["TMPDIR"])


def test_produce_runs_with_the_step_environment_then_restores_it(store_root: Path) -> None:
    before = dict(os.environ)
    assert build(SeesItsEnvironment()).status == luigi.execution_summary.LuigiStatusCode.SUCCESS
    assert dict(os.environ) == before
    result = SeesItsEnvironment().nix_result()
    assert result is not None and result.record is not None
    assert "printed by produce" in Path(result.record["log"]).read_text()
    assert (SeesItsEnvironment().output() / "tmpdir").open().read().startswith(f"{store_root}/tmp/")


def test_outputs_are_linked_kept_by_gc_and_explained_by_lineage(store_root: Path) -> None:
    build(Count())
    link = Path("nix-workflow-output") / Count().task_id
    assert link.is_symlink() and os.readlink(link) == Count().output().path
    gc = nw("gc", check=True)
    assert Path(Count().output().path).is_dir(), gc.stderr
    lineage = nw("lineage", str(link / "count.txt"), check=True).stdout
    assert "Count_2_" in lineage and "Upper__" in lineage and "python Count.produce" in lineage
    assert "raw.txt (file)" in lineage  # the plain upstream's LocalTarget, by content


class Daily(NixTask):
    """The classic Luigi chain: each day requires the previous one."""

    day = luigi.IntParameter()

    def requires(self) -> list[Daily]:
        return [Daily(self.day - 1)] if self.day > 0 else []

    def command(self) -> str:
        previous = "".join(f"cat {t}/v > {self.output()}/v; " for t in self.input())
        return previous + f"echo {self.day} >> {self.output()}/v"


def test_a_chain_deeper_than_the_recursion_limit_is_keyed_and_checked(store_root: Path) -> None:
    import sys

    depth = sys.getrecursionlimit() + 500
    top = Daily(depth)
    assert not top.complete()  # no RecursionError: recipes and lookups go dependencies first
    assert top.nix_recipe() is not None and Daily(depth - 1).nix_recipe() is not None
    build(Daily(2))
    again()
    assert Daily(3).nix_result() is None and Daily(2).complete()


class Args(NixTask):
    def command(self) -> str:
        return f"python3 -c 'import sys; print(*sys.argv[1:])' --b=2 --a=1 > {self.output()}/args"


def test_the_command_runs_as_written_and_is_keyed_canonically(store_root: Path) -> None:
    build(Args())
    assert (Args().output() / "args").open().read() == "--b=2 --a=1\n"
    recipe = Args().nix_recipe()
    assert recipe is not None and "--a=1 --b=2" in recipe.command
