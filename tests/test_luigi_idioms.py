"""Issue 10, beyond Luigi's own examples: the idioms real Luigi pipelines are written with, migrated by
changing only `luigi.Task` to `NixTask` in each class.

`luigi.util.requires` / `inherits`, `temporary_path()` for atomic writes, binary targets (`format.Nop`,
`format.Gzip`), typed parameters (list, dict, tuple, enum, choice, optional, date), an insignificant and a
private parameter, `clone()`, NixTask added as a mixin to luigi.contrib's ExternalProgramTask, an
`ExternalTask` input the user provides, requires() written as a generator (alone or inside a dict), and a
task that fails. The same source runs once as plain Luigi and once migrated, with real Luigi (local
scheduler) against a private store; the migrated run must write the same bytes, re-run nothing when run
again, bring deleted files back, and re-run exactly what a changed input or parameter reaches."""

from __future__ import annotations

import gzip
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from tests.helpers import migrated_pair

PIPELINE = '''
import datetime
import enum
import gzip
import json
import os

import luigi
from luigi.contrib.external_program import ExternalProgramTask
from luigi.util import inherits, requires

BASE = "plain"


def note(name):
    with open("runs.log", "a") as f:
        f.write(name + "\\n")


class Colour(enum.Enum):
    red = 1
    blue = 2


class Given(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("given.txt")


class Params(BASE):
    words = luigi.ListParameter(default=["a", "b"])
    weights = luigi.DictParameter(default={"a": 1})
    pair = luigi.TupleParameter(default=(1, 2))
    colour = luigi.EnumParameter(enum=Colour, default=Colour.red)
    mode = luigi.ChoiceParameter(choices=["fast", "slow"], default="fast")
    limit = luigi.OptionalParameter(default=None)
    day = luigi.DateParameter(default=datetime.date(2026, 1, 2))
    workers = luigi.IntParameter(default=1, significant=False)
    secret = luigi.Parameter(default="s", visibility=luigi.parameter.ParameterVisibility.PRIVATE)

    def requires(self):
        return [Given()]

    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/params-{self.mode}.json")

    def run(self):
        note("Params")
        with self.input()[0].open() as f:
            given = f.read().strip()
        with self.output().temporary_path() as path:
            with open(path, "w") as f:
                json.dump([given, list(self.words), dict(self.weights), list(self.pair), self.colour.name,
                           self.limit, str(self.day), self.secret], f, sort_keys=True)


@requires(Params)
class Packed(BASE):
    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/packed-{self.mode}.gz", format=luigi.format.Nop)

    def run(self):
        note("Packed")
        with self.input().open() as f:
            text = f.read()
        with self.output().open("wb") as f:
            f.write(gzip.compress(text.encode(), mtime=0))


@inherits(Params)
class Counted(BASE):
    def requires(self):
        return self.clone(Packed)

    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/counted-{self.mode}.txt.gz", format=luigi.format.Gzip)

    def run(self):
        note("Counted")
        with self.input().open("r") as f:
            size = len(gzip.decompress(f.read()))
        with self.output().open("w") as f:
            f.write(f"{size} bytes\\n".encode())


class Listed(BASE):
    def requires(self):  # a generator: Luigi calls requires() anew for each use
        for mode in ("fast", "slow"):
            yield Packed(mode=mode)

    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/listed.txt")

    def run(self):
        note("Listed")
        with self.output().open("w") as f:
            f.write("sizes:\\n")
            for target in self.input():
                with target.open("r") as g:
                    f.write(f"{len(g.read())}\\n")


class Joined(BASE):
    def requires(self):
        return {"given": Given(), "params": (Params(mode=m) for m in ("fast", "slow"))}

    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/joined.txt")

    def run(self):
        note("Joined")
        with self.output().open("w") as f:
            f.write("joined:\\n")
            for target in [self.input()["given"], *self.input()["params"]]:
                with target.open() as g:
                    f.write(g.read() + "\\n")


class Sorted(MIXINExternalProgramTask):  # NixTask added as a mixin: run() comes from the library's base
    def requires(self):
        return Given()

    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/sorted.txt")

    def program_args(self):
        return ["sh", "-c", f"echo Sorted >> runs.log; (cat {self.input().path}; echo abc) | sort"
                            f" > {self.output().path}"]


class Broken(BASE):
    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/broken.txt")

    def run(self):
        note("Broken")
        with self.output().open("w") as f:  # (a LocalTarget's file lands only when the block ends well)
            f.write("half")
            if os.path.exists("break"):
                raise RuntimeError("broken on purpose")
'''


def load(where: Path, name: str, migrated: bool) -> ModuleType:
    return migrated_pair(PIPELINE, where, name, migrated)


@pytest.fixture
def modules(tmp_path: Path) -> tuple[ModuleType, ModuleType]:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    code = tmp_path / "code"
    code.mkdir()
    Path("given.txt").write_text("hello\n")
    yield load(code, "idioms_plain", False), load(code, "idioms_nix", True)
    for name in ("idioms_plain", "idioms_nix"):
        sys.modules.pop(name, None)


def build(*tasks: luigi.Task, ok: bool = True) -> None:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    result = luigi.build(list(tasks), local_scheduler=True, detailed_summary=True, log_level="WARNING")
    assert (result.status == luigi.execution_summary.LuigiStatusCode.SUCCESS) is ok, result.summary_text


def runs() -> Counter[str]:
    path = Path("runs.log")
    return Counter(path.read_text().split()) if path.exists() else Counter()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_idioms_write_what_plain_luigi_writes_and_rerun_nothing(modules: tuple[ModuleType, ModuleType],
                                                                 store_root: Path) -> None:
    plain, nix = modules
    build(plain.Counted(), plain.Listed(), plain.Joined(), plain.Sorted())
    build(nix.Counted(), nix.Listed(), nix.Joined(), nix.Sorted())
    expected = {"Params": 4, "Packed": 4, "Counted": 2, "Listed": 2, "Joined": 2, "Sorted": 2}
    assert runs() == expected
    produced = files(Path("data/idioms_nix"))
    assert produced == files(Path("data/idioms_plain"))
    assert set(produced) == {"params-fast.json", "params-slow.json", "packed-fast.gz", "packed-slow.gz",
                             "counted-fast.txt.gz", "listed.txt", "joined.txt", "sorted.txt"}
    assert produced["sorted.txt"] == b"abc\nhello\n"
    assert produced["listed.txt"] == b"sizes:\n%d\n%d\n" % (len(produced["packed-fast.gz"]),
                                                             len(produced["packed-slow.gz"]))
    assert produced["joined.txt"].count(b"hello") == 3
    assert gzip.decompress(produced["counted-fast.txt.gz"]) == b"%d bytes\n" % len(produced["params-fast.json"])
    assert produced["params-fast.json"] == (b'["hello", ["a", "b"], {"a": 1}, [1, 2], "red", null, "2026-01-02", '
                                            b'"s"]')

    for path in Path("data/idioms_nix").iterdir():  # deleted: restored from the store, nothing runs
        path.unlink()
    build(nix.Counted(), nix.Listed(), nix.Joined(), nix.Sorted())
    assert runs() == expected
    assert files(Path("data/idioms_nix")) == produced


def test_what_enters_the_key(modules: tuple[ModuleType, ModuleType], store_root: Path) -> None:
    _, nix = modules
    build(nix.Counted())
    assert runs() == {"Params": 1, "Packed": 1, "Counted": 1}
    build(nix.Counted(workers=8))  # insignificant: the same task to Luigi, the same result to the store
    assert runs() == {"Params": 1, "Packed": 1, "Counted": 1}
    build(nix.Counted(words=["a", "b", "c"]))  # a typed parameter, passed down by inherits/clone/requires
    assert runs() == {"Params": 2, "Packed": 2, "Counted": 2}
    build(nix.Counted(secret="t"))  # private: not in the task_id, but it changes what run() writes
    assert runs() == {"Params": 3, "Packed": 3, "Counted": 3}
    assert b'"t"]' in Path("data/idioms_nix/params-fast.json").read_bytes()
    Path("given.txt").write_text("changed\n")  # the ExternalTask's file is keyed by content
    build(nix.Counted())
    assert runs() == {"Params": 4, "Packed": 4, "Counted": 4}
    build(nix.Counted(words=["a", "b", "c"]))  # before the edit: content differs now (one build each: the two
    build(nix.Counted(secret="t"))  # Params write one file, params-fast.json, a clash refused within one build)
    assert runs() == {"Params": 6, "Packed": 6, "Counted": 6}
    Path("given.txt").write_text("hello\n")  # back: every earlier result is served again
    build(nix.Counted())
    build(nix.Counted(words=["a", "b", "c"]))
    assert runs() == {"Params": 6, "Packed": 6, "Counted": 6}
    assert b'"hello"' in Path("data/idioms_nix/params-fast.json").read_bytes()


def test_a_failed_run_stores_nothing_and_runs_again(modules: tuple[ModuleType, ModuleType], store_root: Path) -> None:
    _, nix = modules
    Path("break").write_text("")
    build(nix.Broken(), ok=False)
    assert not Path("data/idioms_nix/broken.txt").exists()  # the temporary file never landed
    assert not list((store_root / "realisations").iterdir())
    Path("break").unlink()
    build(nix.Broken())
    build(nix.Broken())
    assert runs() == {"Broken": 2}
    assert Path("data/idioms_nix/broken.txt").read_text() == "half"


def test_requires_values_are_walked_as_often_as_needed(modules: tuple[ModuleType, ModuleType]) -> None:
    """What requires() returns, remembered once per task, gives Luigi's getpaths and flatten the same answer
    at every use as calling requires() anew would (a generator, alone or nested, is read only once)."""
    from collections import namedtuple

    from luigi.task import flatten, getpaths

    from luigi_nixworkflow.graph import reusable

    def paths(struct: object) -> object:  # targets by their paths, in the same nesting and container types
        if isinstance(struct, dict):
            return type(struct), {k: paths(v) for k, v in struct.items()}
        if isinstance(struct, list | tuple):
            return type(struct), [paths(v) for v in struct]
        return getattr(struct, "path", struct)

    _, nix = modules
    pair = namedtuple("pair", "left right")
    shapes = [
        lambda: (nix.Params(mode=m) for m in ("fast", "slow")),
        lambda: {"a": (nix.Params(mode=m) for m in ("fast", "slow")), "b": [nix.Given()]},
        lambda: [nix.Given(), iter([nix.Params()])],
        lambda: nix.Given(),
        lambda: [],
    ]
    for make in shapes:
        kept = reusable(make())
        for _ in range(2):
            assert paths(getpaths(kept)) == paths(getpaths(make()))
            assert flatten(kept) == flatten(make())
    assert type(reusable(pair(nix.Given(), iter([nix.Params()])))) is pair  # (Luigi's getpaths cannot map one)


def test_a_mixin_base_run_is_not_used_by_a_store_native_task(store_root: Path) -> None:
    """NixTask added to a base that brings run(): a class written with command() still runs its command (its
    run() is NixTask's own, as before), and one that writes its own output() runs the base's run()."""
    from luigi_nixworkflow import NixTask

    class Base(luigi.Task):
        def run(self) -> None:
            Path("base-run.log").write_text("the base's run() ran\n")

    class Cmd(NixTask, Base):
        def command(self) -> str:
            return f"echo from-command > {self.output()}/v"

    class Legacy(NixTask, Base):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("legacy.txt")

    build(Cmd())
    assert not Path("base-run.log").exists()
    assert (Path(Cmd().output().path) / "v").read_text() == "from-command\n"
    with pytest.raises(AssertionError):  # the base's run() writes no legacy.txt: a failed task, nothing stored
        build(Legacy())
    assert Path("base-run.log").exists() and not Path("legacy.txt").exists()


def test_a_task_writing_a_code_file_is_still_served(store_root: Path) -> None:
    """A task whose output is itself a script (`generated.sql`, named by a constant in its code) is not keyed by
    that file's content: its own output is never one of the project's code files it runs."""
    from luigi_nixworkflow import NixTask

    class Generate(NixTask):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("generated.sql")

        def run(self) -> None:
            with open("runs.log", "a") as f:
                f.write("Generate\n")
            with self.output().open("w") as f:
                f.write("select 1;\n")

    build(Generate())
    build(Generate())
    Path("generated.sql").unlink()
    build(Generate())
    assert runs() == {"Generate": 1} and Path("generated.sql").read_text() == "select 1;\n"


def test_files_named_by_parameters_are_keyed_by_content(store_root: Path) -> None:
    """`input_path = luigi.Parameter()` naming a file the task reads: editing the file re-runs the task (before,
    the result for the old content was served); a parameter naming the task's own output, a directory, or no
    file at all keys nothing but its text."""
    from luigi_nixworkflow import NixTask

    class Count(NixTask):
        input_path = luigi.Parameter()
        paths = luigi.ListParameter(default=[])
        out_path = luigi.Parameter(default="count.txt")
        where = luigi.Parameter(default=".")

        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget(self.out_path)

        def run(self) -> None:
            with open("runs.log", "a") as f:
                f.write("Count\n")
            words = sum(len(Path(p).read_text().split()) for p in [self.input_path, *self.paths] if Path(p).exists())
            with self.output().open("w") as f:
                f.write(f"{words}\n")

    Path("words.txt").write_text("a b c\n")
    Path("more.txt").write_text("d\n")
    task = Count(input_path="words.txt", paths=["more.txt", "not-a-file"])
    build(task)
    build(task)
    assert runs() == {"Count": 1} and Path("count.txt").read_text() == "4\n"
    Path("words.txt").write_text("a b c d e\n")
    build(task)
    assert runs() == {"Count": 2} and Path("count.txt").read_text() == "6\n"
    Path("more.txt").write_text("x y\n")  # a file named inside a list parameter
    build(task)
    assert runs() == {"Count": 3} and Path("count.txt").read_text() == "7\n"
    Path("count.txt").unlink()
    build(task)  # its own output, named by a parameter, is not an input: served, restored
    assert runs() == {"Count": 3} and Path("count.txt").read_text() == "7\n"


def test_every_build_of_one_interpreter_checks_afresh(store_root: Path) -> None:
    """A notebook runs luigi.build, edits an input file, and runs luigi.build again on the same task instance
    (Luigi's instance cache keeps it): the second build must see the new content, with no reset() called."""
    from luigi_nixworkflow import NixTask

    class Given(luigi.ExternalTask):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("given.txt")

    class Shout(NixTask):
        def requires(self) -> luigi.Task:
            return Given()

        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("shout.txt")

        def run(self) -> None:
            with self.input().open() as f, self.output().open("w") as g:
                g.write(f.read().upper())

    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    Path("given.txt").write_text("one\n")
    task = Shout()
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    assert Path("shout.txt").read_text() == "ONE\n"
    Path("given.txt").write_text("two\n")
    assert Shout() is task  # (the instance, and its memos, live on)
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    assert Path("shout.txt").read_text() == "TWO\n"
    Path("given.txt").write_text("one\n")
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    assert Path("shout.txt").read_text() == "ONE\n"  # served from the store again, restored


def test_an_upstream_output_passed_as_a_parameter_keys_the_same_on_disk_or_not(store_root: Path) -> None:
    """`Process(input_file="raw.txt")` requiring the task that writes raw.txt: the file is keyed as that task's
    result, so whether it is on disk when the key is computed (restored or not yet) does not change the key."""
    from luigi_nixworkflow import NixTask

    class Raw(NixTask):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("raw.txt")

        def run(self) -> None:
            with open("runs.log", "a") as f:
                f.write("Raw\n")
            with self.output().open("w") as f:
                f.write("abc\n")

    class Process(NixTask):
        input_file = luigi.Parameter()

        def requires(self) -> luigi.Task:
            return Raw()

        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("processed.txt")

        def run(self) -> None:
            with open("runs.log", "a") as f:
                f.write("Process\n")
            with open(self.input_file) as src, self.output().open("w") as dst:
                dst.write(src.read().upper())

    build(Process(input_file="raw.txt"))
    for name in ("raw.txt", "processed.txt"):
        Path(name).unlink()
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    assert Process(input_file="raw.txt").complete()  # found by the key it was stored under, raw.txt still absent
    build(Process(input_file="raw.txt"))
    build(Process(input_file="raw.txt"))
    assert runs() == {"Raw": 1, "Process": 1} and Path("processed.txt").read_text() == "ABC\n"
    assert len(list((store_root / "realisations").iterdir())) == 2
