"""Migration, step 1: the two middle tasks become NixTasks; the tasks around them stay plain Luigi.

    Measurements (plain) -> Clean (NixTask, shell) -> Stats (NixTask, Python) -> Report (plain)

What changed, per task:

- Clean: `output()` and `run()` are gone; `command()` says what to run. Interpolating
  `self.input()` (the plain task's LocalTarget) makes the file's *content* part of Clean's
  cache key; the command reads a hashed copy of it. `self.output()` is the output directory.
- Stats: its Python body moves from `run()` to `produce(out)` and writes into `out`. Its key
  covers its code, so editing the method re-runs it; an unchanged one never runs twice.
- Report stays plain: it reads `self.input().path`, the read-only store directory of Stats.

Both NixTasks run with the host environment here; give them `env = "name"` (nixworkflow.yaml)
or `env = Env(...)` to pin their tools with Nix.

    PYTHONPATH=examples/luigi:. luigi --module step1 step1.Report --local-scheduler
"""

import csv
import json
import os
import statistics
from pathlib import Path

import luigi
from legacy import Measurements

from luigi_nixworkflow import NixTask

luigi.namespace("step1", scope=__name__)
OUT = "out/step1"


class Clean(NixTask):
    """Drop the invalid readings (awk: the first column is kept, values below -100 go)."""

    def requires(self):
        return Measurements()

    def command(self):
        return f"awk -F, 'NR == 1 || $2 > -100' {self.input()} > {self.output()}/clean.csv"


class Stats(NixTask):
    """Mean and standard deviation per sensor."""

    def requires(self):
        return Clean()

    def produce(self, out: Path):
        by_sensor: dict[str, list[float]] = {}
        with (self.input() / "clean.csv").open() as f:
            for r in csv.DictReader(f):
                by_sensor.setdefault(r["sensor"], []).append(float(r["value"]))
        stats = {s: {"n": len(v), "mean": round(statistics.mean(v), 4), "stdev": round(statistics.stdev(v), 4)}
                 for s, v in sorted(by_sensor.items())}
        (out / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))


class Report(luigi.Task):
    """Unchanged but for reading a directory: the plain task reads the NixTask's store path."""

    def requires(self):
        return Stats()

    def output(self):
        return luigi.LocalTarget(f"{OUT}/report.md")

    def run(self):
        with open(os.path.join(self.input().path, "stats.json")) as f:
            stats = json.load(f)
        with self.output().open("w") as f:
            f.write("| sensor | n | mean | stdev |\n|---|---|---|---|\n")
            for s, v in stats.items():
                f.write(f"| {s} | {v['n']} | {v['mean']} | {v['stdev']} |\n")


luigi.namespace(scope=__name__)

if __name__ == "__main__":
    luigi.build([Report()], local_scheduler=True)
