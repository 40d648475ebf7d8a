"""Luigi pipelines written the way public Luigi projects write them, migrated by changing only `luigi.Task` to
`NixTask`: paths built from a `data_dir` parameter, csv-module processing through `format.UTF8`, a directory
output with a `complete()` override that checks its files, `requires()` and `output()` as dicts, a config
file named by a parameter, values read straight from luigi.cfg with `luigi.configuration.get_config()`, and a
staging task that links its input instead of copying it. The same source runs as plain Luigi and migrated
(real Luigi, local scheduler, private store): the migrated run writes the same bytes, re-runs nothing when run
again, brings deleted files back without running, and re-runs what an edit reaches — never a stale result."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import luigi
import luigi.configuration
import pytest
from luigi.task_register import Register

import luigi_nixworkflow
from tests.helpers import migrated_pair

PIPELINE = '''
import configparser
import csv
import json
import os

import luigi
import luigi.format
from luigi.task import flatten

BASE = "plain"


def note(name):
    with open("runs.log", "a") as f:
        f.write(name + "\\n")


class RawSales(luigi.ExternalTask):
    data_dir = luigi.Parameter(default="data")

    def output(self):
        return luigi.LocalTarget(os.path.join(self.data_dir, "raw", "sales.csv"))


class CleanSales(BASE):
    data_dir = luigi.Parameter(default="data")

    def requires(self):
        return RawSales(data_dir=self.data_dir)

    def output(self):
        return luigi.LocalTarget(os.path.join(self.data_dir, OUT, "clean.csv"), format=luigi.format.UTF8)

    def run(self):
        note("CleanSales")
        scale = luigi.configuration.get_config().getint("cleaning", "scale", 1)  # not a luigi.Config class
        with self.input().open("r") as f, self.output().open("w") as out:
            writer = csv.DictWriter(out, fieldnames=["region", "amount"])
            writer.writeheader()
            for row in csv.DictReader(f):
                writer.writerow({"region": row["region"].strip().lower(), "amount": float(row["amount"]) * scale})


class Regions(BASE):
    data_dir = luigi.Parameter(default="data")

    def requires(self):
        return CleanSales(data_dir=self.data_dir)

    def output(self):
        return luigi.LocalTarget(os.path.join(self.data_dir, OUT, "regions"))

    def complete(self):  # the check many pipelines write: every output is there
        return all(t.exists() for t in flatten(self.output()))

    def run(self):
        note("Regions")
        os.makedirs(self.output().path)
        rows = {}
        with self.input().open("r") as f:
            for row in csv.DictReader(f):
                rows.setdefault(row["region"], []).append(row["amount"])
        for region, amounts in sorted(rows.items()):
            with open(os.path.join(self.output().path, region + ".txt"), "w") as out:
                out.write("\\n".join(amounts) + "\\n")


class Summary(BASE):
    data_dir = luigi.Parameter(default="data")
    config_path = luigi.Parameter(default="report.ini")

    def requires(self):
        return {"clean": CleanSales(data_dir=self.data_dir), "regions": Regions(data_dir=self.data_dir)}

    def output(self):
        return {"json": luigi.LocalTarget(os.path.join(self.data_dir, OUT, "summary.json")),
                "txt": luigi.LocalTarget(os.path.join(self.data_dir, OUT, "summary.txt"), format=luigi.format.Nop)}

    def run(self):
        note("Summary")
        cfg = configparser.ConfigParser()
        cfg.read(self.config_path)
        title = cfg.get("report", "title")
        with self.input()["clean"].open("r") as f:
            total = sum(float(row["amount"]) for row in csv.DictReader(f))
        regions = sorted(os.listdir(self.input()["regions"].path))
        with self.output()["json"].open("w") as f:
            json.dump({"title": title, "total": total, "regions": regions}, f, sort_keys=True)
        with self.output()["txt"].open("w") as f:
            f.write(f"{title}: {total}\\n".encode())
'''


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[tuple[ModuleType, ModuleType]]:
    code = tmp_path / "code"
    code.mkdir()
    Path("data/raw").mkdir(parents=True)
    Path("data/raw/sales.csv").write_text("region,amount\nNorth ,10\nsouth,5.5\nnorth,2\n")
    Path("report.ini").write_text("[report]\ntitle = Q1\n")
    yield migrated_pair(PIPELINE, code, "rw_plain", False), migrated_pair(PIPELINE, code, "rw_nix", True)
    for name in ("rw_plain", "rw_nix"):
        sys.modules.pop(name, None)
    luigi.configuration.get_config().remove_section("cleaning")


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


def set_scale(value: str) -> None:
    config = luigi.configuration.get_config()
    if not config.has_section("cleaning"):
        config.add_section("cleaning")
    config.set("cleaning", "scale", value)


def test_a_complete_override_is_served_restored_and_never_stale(modules: tuple[ModuleType, ModuleType],
                                                                 store_root: Path) -> None:
    """Regions overrides complete() to check its files. Before, deleting them re-ran it (the override said "not
    complete", which was taken as a force) and, worse, after an input edit the override said "complete" because
    the old files were there: the stale directory was kept and Summary was keyed by it."""
    plain, nix = modules
    build(plain.Summary())
    build(nix.Summary())
    assert runs() == {"CleanSales": 2, "Regions": 2, "Summary": 2}
    produced = files(Path("data/rw_nix"))
    assert produced == files(Path("data/rw_plain"))
    assert produced["regions/north.txt"] == b"10.0\n2.0\n" and produced["summary.txt"] == b"Q1: 17.5\n"

    build(nix.Summary())
    for path in sorted(Path("data/rw_nix").rglob("*"), reverse=True):  # every file and directory deleted
        path.rmdir() if path.is_dir() else path.unlink()
    build(nix.Regions())  # asked first: its override sees the files the store restored
    build(nix.Summary())
    assert runs() == {"CleanSales": 2, "Regions": 2, "Summary": 2}
    assert files(Path("data/rw_nix")) == produced

    Path("data/raw/sales.csv").write_text("region,amount\nNorth ,10\nwest,1\n")
    build(nix.Regions())  # its files are all there, but they are not the result for this input
    assert runs() == {"CleanSales": 3, "Regions": 3, "Summary": 2}
    assert sorted(p.name for p in Path("data/rw_nix/regions").iterdir()) == ["north.txt", "west.txt"]
    build(nix.Summary())
    assert runs() == {"CleanSales": 3, "Regions": 3, "Summary": 3}
    assert Path("data/rw_nix/summary.txt").read_bytes() == b"Q1: 11.0\n"


def test_a_config_file_parameter_and_luigi_cfg_values_read_directly_are_keyed(
        modules: tuple[ModuleType, ModuleType], store_root: Path) -> None:
    """`get_config().getint("cleaning", "scale")` in run(): changing `[cleaning] scale` re-runs CleanSales and what
    reads it (before, the result computed with the old value was served); setting it back serves the first."""
    _, nix = modules
    build(nix.Summary())
    assert Path("data/rw_nix/summary.txt").read_bytes() == b"Q1: 17.5\n"
    Path("report.ini").write_text("[report]\ntitle = Q2\n")  # the file a parameter names
    build(nix.Summary())
    assert runs() == {"CleanSales": 1, "Regions": 1, "Summary": 2}
    assert Path("data/rw_nix/summary.txt").read_bytes() == b"Q2: 17.5\n"
    set_scale("2")
    build(nix.Summary())
    assert runs() == {"CleanSales": 2, "Regions": 2, "Summary": 3}
    assert Path("data/rw_nix/summary.txt").read_bytes() == b"Q2: 35.0\n"
    build(nix.Summary())
    luigi.configuration.get_config().remove_section("cleaning")
    build(nix.Summary())
    assert runs() == {"CleanSales": 2, "Regions": 2, "Summary": 3}
    assert Path("data/rw_nix/summary.txt").read_bytes() == b"Q2: 17.5\n"


def test_an_output_linking_to_its_input_is_refused(store_root: Path) -> None:
    """A staging task that symlinks its input (`os.symlink(self.input().path, self.output().path)`): the store
    would hold only the link, so after an input edit the re-run made the same link, and the task reading it was
    served its old result (early cutoff on identical bytes). Now the run fails, naming the link; nothing is
    stored. A link between the entries of one output directory is kept as written."""
    import os

    from luigi_nixworkflow import NixTask

    class Raw(luigi.ExternalTask):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("raw.txt")

    class Stage(NixTask):
        def requires(self) -> luigi.Task:
            return Raw()

        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("staged.txt")

        def run(self) -> None:
            os.symlink(os.path.abspath(self.input().path), self.output().path)

    class Shout(NixTask):
        def requires(self) -> luigi.Task:
            return Stage()

        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("shout.txt")

        def run(self) -> None:
            with self.input().open() as f, self.output().open("w") as g:
                g.write(f.read().upper())

    class Versions(NixTask):
        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("versions")

        def run(self) -> None:
            os.makedirs(self.output().path)
            Path(self.output().path, "v1.txt").write_text("one\n")
            os.symlink("v1.txt", os.path.join(self.output().path, "latest"))

    errors: list[BaseException] = []
    Stage.event_handler(luigi.Event.FAILURE)(lambda task, error: errors.append(error))
    Path("raw.txt").write_text("hello\n")
    build(Shout(), ok=False)
    assert not Path("shout.txt").exists()
    assert not list((store_root / "realisations").iterdir())
    assert len(errors) == 1 and "staged.txt -> " in str(errors[0]) and "outside its output" in str(errors[0])
    build(Versions())
    Path("versions/latest").unlink()
    build(Versions())  # served: the link inside the directory comes back as the run made it
    assert os.readlink("versions/latest") == "v1.txt" and Path("versions/latest").read_text() == "one\n"
