"""Issue 10: a plain Luigi pipeline migrated by changing only `luigi.Task` to `NixTask` in each class.

Each task keeps its own run() and output() (a LocalTarget written through self.output().open('w'), a
dict of them, a directory). The same source is written twice, once as plain Luigi and once with only
the base classes changed, and run with real Luigi (local scheduler) against a private store."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import luigi
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from tests.helpers import migrated_pair, nw

PIPELINE = '''
import json
import os
import shutil

import luigi

BASE = "plain"


def note(name):
    with open("runs.log", "a") as f:
        f.write(name + " " + os.environ.get("NIX_WORKFLOW_STEP", "-") + "\\n")


class Raw(BASE):
    size = luigi.IntParameter(default=3)

    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/raw.txt")

    def run(self):
        note("Raw")
        with self.output().open("w") as f:
            for i in range(self.size):
                f.write(f"line {i}\\n")


class Upper(BASE):
    size = luigi.IntParameter(default=3)

    def requires(self):
        return Raw(size=self.size)

    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/upper.txt")

    def run(self):
        note("Upper")
        with self.input().open() as src, self.output().open("w") as dst:
            dst.write(src.read().upper())


class Split(BASE):
    def output(self):
        return {"parts": luigi.LocalTarget(f"data/{OUT}/parts"),
                "index": luigi.LocalTarget(f"data/{OUT}/index.json")}

    def run(self):
        note("Split")
        os.makedirs(self.output()["parts"].path)
        for name in ("a", "b"):
            with open(os.path.join(self.output()["parts"].path, name), "w") as f:
                f.write(name * 3)
        with self.output()["index"].open("w") as f:
            json.dump(["a", "b"], f)


class Report(BASE):
    size = luigi.IntParameter(default=3)

    def requires(self):
        return {"upper": Upper(size=self.size), "split": Split()}

    def output(self):
        return luigi.LocalTarget(f"data/{OUT}/report.txt")

    def run(self):
        note("Report")
        with self.input()["upper"].open() as f:
            lines = f.read().splitlines()
        with self.input()["split"]["index"].open() as f:
            parts = json.load(f)
        with self.output().open("w") as f:
            f.write(f"{len(lines)} lines, last {lines[-1]}, parts {parts}\\n")
'''


def write_module(where: Path, name: str, migrated: bool) -> ModuleType:
    return migrated_pair(PIPELINE, where, name, migrated)


@pytest.fixture
def modules(tmp_path: Path) -> tuple[ModuleType, ModuleType]:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    code = tmp_path / "code"
    code.mkdir()
    plain, migrated = write_module(code, "pipeline_plain", False), write_module(code, "pipeline_nix", True)
    yield plain, migrated
    for name in ("pipeline_plain", "pipeline_nix"):
        sys.modules.pop(name, None)


def build(*tasks: luigi.Task) -> None:
    Register.clear_instance_cache()
    luigi_nixworkflow.reset()
    result = luigi.build(list(tasks), local_scheduler=True, detailed_summary=True, log_level="WARNING")
    assert result.status == luigi.execution_summary.LuigiStatusCode.SUCCESS, result.summary_text


def runs() -> Counter[str]:
    path = Path("runs.log")
    return Counter(line.split()[0] for line in path.read_text().splitlines()) if path.exists() else Counter()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_migrated_pipeline_runs_restores_and_reruns_only_what_changed(modules: tuple[ModuleType, ModuleType],
                                                                       store_root: Path) -> None:
    plain, nix = modules
    build(plain.Report())
    build(nix.Report())
    assert runs() == {"Raw": 2, "Upper": 2, "Split": 2, "Report": 2}
    produced = files(Path("data/pipeline_nix"))
    assert produced == {k: v for k, v in files(Path("data/pipeline_plain")).items()}  # same bytes as plain Luigi
    assert produced["report.txt"] == b"3 lines, last LINE 2, parts ['a', 'b']\n"
    steps = [line.split()[1] for line in Path("runs.log").read_text().splitlines()[4:]]
    assert sorted(steps) == sorted(t.task_id for t in (nix.Raw(), nix.Upper(), nix.Split(), nix.Report()))
    assert len(os.listdir(store_root / "realisations")) == 4

    # every output file deleted: nothing runs, every file comes back byte-identical, as a writable copy
    for path in sorted(Path("data/pipeline_nix").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    build(nix.Report())
    assert sum(runs().values()) == 8
    assert files(Path("data/pipeline_nix")) == produced
    report = Path("data/pipeline_nix/report.txt")
    assert not report.is_symlink() and report.stat().st_mode & stat.S_IWUSR
    report.write_text("edited by hand\n")  # an edit corrupts nothing in the store ...
    assert nw("verify", check=True).returncode == 0
    build(nix.Report())  # ... and the next run puts the stored result back
    assert report.read_bytes() == produced["report.txt"] and sum(runs().values()) == 8

    # one parameter changes: exactly the task it reaches and its dependants run again; Split does not
    build(nix.Report(size=4))
    assert runs() == {"Raw": 3, "Upper": 3, "Split": 2, "Report": 3}
    assert Path("data/pipeline_nix/report.txt").read_text() == "4 lines, last LINE 3, parts ['a', 'b']\n"
    build(nix.Report())  # back to size 3: served from the store, the files are size 3's again
    assert runs() == {"Raw": 3, "Upper": 3, "Split": 2, "Report": 3}
    assert files(Path("data/pipeline_nix")) == produced


def test_lineage_of_a_legacy_task(modules: tuple[ModuleType, ModuleType], store_root: Path) -> None:
    """A legacy task's result has lineage down through its upstream tasks (its linked output is a gc root)."""
    _, nix = modules
    build(nix.Report())
    out = nw("lineage", f"nix-workflow-output/{nix.Report().task_id}", check=True).stdout
    assert nix.Upper().task_id in out and nix.Raw().task_id in out and nix.Split().task_id in out, out


def test_run_without_writing_an_output_stores_nothing_and_keeps_the_old_file(tmp_path: Path,
                                                                             store_root: Path) -> None:
    """A re-run that does not write one of its outputs fails: the file a previous run left is never stored."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "forgetful.py").write_text(
        "import luigi\nfrom luigi_nixworkflow import NixTask\n\n\n"
        "class Forgetful(NixTask):\n"
        "    def output(self):\n        return [luigi.LocalTarget('a.txt'), luigi.LocalTarget('b.txt')]\n\n"
        "    def run(self):\n        with self.output()[0].open('w') as f:\n            f.write('a')\n"
    )
    sys.path.insert(0, str(code))
    try:
        import forgetful

        Path("b.txt").write_text("left by an old plain run\n")
        Register.clear_instance_cache()
        luigi_nixworkflow.reset()
        assert not luigi.build([forgetful.Forgetful()], local_scheduler=True, log_level="CRITICAL")
        assert Path("b.txt").read_text() == "left by an old plain run\n"  # put back, not stored
        assert not (store_root / "realisations").exists() or not os.listdir(store_root / "realisations")
        with pytest.raises(Exception, match="without writing its declared output.*b.txt"):
            forgetful.Forgetful().run()
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("forgetful", None)


class Words(luigi_nixworkflow.NixTask):
    """Legacy shape, two declared files."""

    def output(self) -> list[luigi.LocalTarget]:
        return [luigi.LocalTarget("words/a.txt"), luigi.LocalTarget("words/b.txt")]

    def run(self) -> None:
        for target, text in zip(self.output(), ("one two three\n", "four\n"), strict=True):
            with target.open("w") as f:
                f.write(text)


class CountWords(luigi_nixworkflow.NixTask):
    """Store-native shape, interpolating the legacy task's LocalTarget paths: both styles in one graph."""

    def requires(self) -> luigi.Task:
        return Words()

    def command(self) -> str:
        a, b = self.input()
        return f"cat {a.path} {b.path} | wc -w > $out/n"


def test_a_command_reading_a_legacy_tasks_files_reads_the_stored_copies(store_root: Path) -> None:
    build(CountWords())
    assert (CountWords().output() / "n").open().read().strip() == "4"
    recipe = CountWords().nix_recipe()
    assert recipe is not None and "words/" not in recipe.command  # the paths became references
    assert sorted(i.output for i in recipe.inputs) == ["out", "out1"]
    shutil.rmtree("words")
    Path("nix-workflow-output").rename("old-links")
    build(CountWords())  # served; Words' files come back as well
    assert Path("words/b.txt").read_text() == "four\n"
    assert os.path.islink(f"nix-workflow-output/{Words().task_id}.out1")
