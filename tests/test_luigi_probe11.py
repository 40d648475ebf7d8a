"""Probing wave 11: other people's Luigi pipelines (a package with relative imports, luigi.util, typed and private
parameters, static inputs), written as their users write them and migrated by changing only `luigi.Task` to
`NixTask`, run with the real `luigi` command against a private store. Each test is a bug that probing found, and
fails on the code before its fix. Code digests are memoised per process, so each run is a new `luigi` process, as
a user's next run is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import luigi
from luigi.parameter import ParameterVisibility

from luigi_nixworkflow import NixTask
from tests.luigi_run import build, luigi_cli, runs

# ---- a package: helpers reached through relative and dotted imports ----------------------------------------------

TASKS = '''
import luigi
import etl.helpers
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


def write(task, text):
    note(type(task).__name__)
    with task.output().open("w") as f:
        f.write(text)


class RelativeDot(NixTask):
    def output(self):
        return luigi.LocalTarget("out/reldot.txt")

    def run(self):
        from . import helpers
        write(self, helpers.shout("a"))


class Dotted(NixTask):
    def output(self):
        return luigi.LocalTarget("out/dotted.txt")

    def run(self):
        from etl.helpers import shout
        write(self, shout("b"))


class DottedModule(NixTask):
    def output(self):
        return luigi.LocalTarget("out/dotmod.txt")

    def run(self):
        import etl.helpers as h
        write(self, h.shout("c"))


class TopLevelDotted(NixTask):
    def output(self):
        return luigi.LocalTarget("out/top.txt")

    def run(self):
        write(self, etl.helpers.shout("d"))


class Untouched(NixTask):
    def output(self):
        return luigi.LocalTarget("out/untouched.txt")

    def run(self):
        from .other import VALUE
        write(self, VALUE)


class All(luigi.WrapperTask):
    def requires(self):
        return [RelativeDot(), Dotted(), DottedModule(), TopLevelDotted(), Untouched()]
'''


def test_helpers_of_a_package_imported_inside_run_or_by_dotted_name_are_keyed() -> None:
    """A pipeline laid out as a package (`luigi --module etl.tasks All`) reaches its helpers as `from . import
    helpers` or `from etl.helpers import shout` inside run(), or as `etl.helpers.shout(...)` after a module-level
    `import etl.helpers`. Only `import helpers` of a module beside the task module was keyed, and only a one-level
    module attribute (`helpers.shout`), so editing `etl/helpers.py` (or `etl/deep.py`, which it imports with a
    relative import) served every one of these tasks stale. Now each re-runs, and an edit to a module none of them
    imports re-runs nothing."""
    os.makedirs("etl")
    Path("etl/__init__.py").write_text("")
    Path("etl/tasks.py").write_text(TASKS)
    Path("etl/deep.py").write_text('MARK = "!"\n')
    Path("etl/other.py").write_text('VALUE = "other"\n')
    Path("etl/helpers.py").write_text("from .deep import MARK\n\n\ndef shout(s):\n    return s.upper() + MARK\n")
    luigi_cli("--module", "etl.tasks", "All")
    assert Path("out/dotted.txt").read_text() == "B!"
    Path("etl/deep.py").write_text('MARK = "?"\n')
    luigi_cli("--module", "etl.tasks", "All")
    assert {p: Path(f"out/{p}.txt").read_text() for p in ("reldot", "dotted", "dotmod", "top")} == \
        {"reldot": "A?", "dotted": "B?", "dotmod": "C?", "top": "D?"}
    Path("etl/helpers.py").write_text("from .deep import MARK\n\n\ndef shout(s):\n    return s.lower() + MARK\n")
    luigi_cli("--module", "etl.tasks", "All")
    assert Path("out/top.txt").read_text() == "d?"
    assert Path("out/reldot.txt").read_text() == "a?"
    counted = runs()
    assert counted.pop("Untouched") == 1
    assert set(counted.values()) == {3}, counted
    Path("etl/unrelated.py").write_text("X = 1\n")
    luigi_cli("--module", "etl.tasks", "All")
    assert runs()["RelativeDot"] == 3 and runs()["Untouched"] == 1


# ---- static() -----------------------------------------------------------------------------------------------------

STATIC = '''
import luigi
from luigi_nixworkflow import NixTask, static
from tests.luigi_run import note

LOOKUP = static("lookup.txt")


class Data(luigi.ExternalTask):
    def output(self):
        return luigi.LocalTarget("data.txt")


class Copy(NixTask):
    def requires(self):
        return Data()

    def output(self):
        return luigi.LocalTarget("out/copy.txt")

    def run(self):
        with self.input().open() as f, self.output().open("w") as out:
            out.write(f.read())


class Tool(NixTask):
    def command(self):
        return f"echo ran >> {COUNT}; cat {static('tool.txt')} > $out/tool.txt"


class Both(luigi.WrapperTask):
    def requires(self):
        return [Copy(), Tool()]


class Lookup(NixTask):
    def output(self):
        return luigi.LocalTarget("out/lookup.txt")

    def run(self):
        note("Lookup")
        with open(LOOKUP) as f, self.output().open("w") as out:
            out.write(f.read())


class LookupAttr(NixTask):
    lookup = static("lookup.txt")

    def output(self):
        return luigi.LocalTarget("out/attr.txt")

    def run(self):
        note("LookupAttr")
        with open(self.lookup) as f, self.output().open("w") as out:
            out.write(f.read())


class Lookups(luigi.WrapperTask):
    def requires(self):
        return [Lookup(), LookupAttr()]


class LookupInRun(NixTask):
    def output(self):
        return luigi.LocalTarget("out/late.txt")

    def run(self):
        with open(static("lookup.txt")) as f, self.output().open("w") as out:
            out.write(f.read())
'''


def test_a_static_file_read_by_run_is_in_the_store_and_keyed(tmp_path: Path) -> None:
    """The docs send a legacy run() that reads a data file to static(). At module level (`LOOKUP =
    static("lookup.txt")`, or in the class body) it named a store object that was never added (run() failed with a
    raw [Errno 2]); called inside run(), after the key was computed, it also could not key the file. Now static()
    adds the copy to the store at once, the code digest keys the path it returned (a module-level value, or a class
    attribute set from a call), so an edit re-runs the task, and a call inside run() is a clear error."""
    Path("lookup.txt").write_text("k=1\n")
    Path("data.txt").write_text("data\n")
    Path("tool.txt").write_text("tool\n")
    Path("static_pipe.py").write_text(STATIC.replace("{COUNT}", str(tmp_path / "count")))
    luigi_cli("--module", "static_pipe", "Lookups")
    assert Path("out/lookup.txt").read_text() == Path("out/attr.txt").read_text() == "k=1\n"
    luigi_cli("--module", "static_pipe", "Lookups")
    Path("lookup.txt").write_text("k=2\n")
    luigi_cli("--module", "static_pipe", "Lookups")
    assert Path("out/lookup.txt").read_text() == Path("out/attr.txt").read_text() == "k=2\n"
    assert runs() == {"Lookup": 2, "LookupAttr": 2}
    out = luigi_cli("--module", "static_pipe", "LookupInRun", ok=False)
    assert "static('lookup.txt') was called while its run() or produce() runs" in out
    assert not Path("out/late.txt").exists()


def test_a_key_does_not_depend_on_what_else_the_process_hashed(tmp_path: Path) -> None:
    """A command() using static() had nixworkflow's own static() walked as the user's code (in a checkout or an
    editable install), with the registry of files the process had hashed so far: run beside a task reading a plain
    input whose content had just changed, the command's key changed and it ran again although nothing it uses did.
    Now nixworkflow's own code is never part of a task's code digest."""
    Path("lookup.txt").write_text("k=1\n")
    Path("data.txt").write_text("data\n")
    Path("tool.txt").write_text("tool\n")
    Path("static_pipe.py").write_text(STATIC.replace("{COUNT}", str(tmp_path / "count")))
    luigi_cli("--module", "static_pipe", "Both")
    Path("data.txt").write_text("other data\n")
    luigi_cli("--module", "static_pipe", "Both")
    assert Path("out/copy.txt").read_text() == "other data\n"
    luigi_cli("--module", "static_pipe", "Tool")
    assert (tmp_path / "count").read_text() == "ran\n"


# ---- a private parameter ------------------------------------------------------------------------------------------


class Fetch(NixTask):
    user = luigi.Parameter()
    password = luigi.Parameter(visibility=ParameterVisibility.PRIVATE)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"fetched_{self.user}.txt")

    def run(self) -> None:
        with self.output().open("w") as f:
            f.write(f"rows for {self.user} ({len(self.password)})\n")


def test_a_private_parameter_is_keyed_but_never_written_into_the_records(store_root: Path) -> None:
    """Luigi keeps a `visibility=PRIVATE` parameter (a password) out of task ids and the scheduler; NixTask wrote its
    value in plain text into the store's recipes and realisations (which `nw push` copies to a remote). It is keyed
    by a digest now: a changed password still re-runs the task, and its text is in no record."""
    build(Fetch(user="ann", password="hunter2-secret"))
    build(Fetch(user="ann", password="hunter2-secret"))
    first = Path("fetched_ann.txt").read_text()
    build(Fetch(user="ann", password="another-secret-value"))
    assert Path("fetched_ann.txt").read_text() != first
    records = [p for d in ("recipes", "realisations") for p in (store_root / d).iterdir()]
    assert len(records) >= 4
    for path in records:
        text = path.read_text()
        assert "hunter2-secret" not in text and "another-secret-value" not in text, path
        assert "ann" in json.dumps(json.loads(text))
