"""A legacy Luigi pipeline, before migration: plain tasks writing LocalTargets under ./out/legacy/.

    Measurements -> Clean -> Stats -> Report

Every task re-runs whenever its file is missing, whatever produced the file, and nothing
records which code, tools or inputs made it. step1.py and step2.py migrate it to NixTask.

    PYTHONPATH=examples/luigi:. luigi --module legacy legacy.Report --local-scheduler
"""

import csv
import json
import random
import statistics

import luigi

luigi.namespace("legacy", scope=__name__)
OUT = "out/legacy"


class Measurements(luigi.Task):
    """Simulated sensor readings (some invalid), as an upstream system would deliver them."""

    seed = luigi.IntParameter(default=7)
    rows = luigi.IntParameter(default=300)

    def output(self):
        return luigi.LocalTarget(f"{OUT}/measurements-{self.seed}.csv")

    def run(self):
        rng = random.Random(self.seed)
        with self.output().open("w") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["sensor", "value"])
            for _ in range(self.rows):
                value = rng.gauss(20, 5) if rng.random() > 0.1 else -999
                w.writerow([rng.choice("abc"), f"{value:.3f}"])


class Clean(luigi.Task):
    """Drop the invalid readings."""

    def requires(self):
        return Measurements()

    def output(self):
        return luigi.LocalTarget(f"{OUT}/clean.csv")

    def run(self):
        with self.input().open() as src, self.output().open("w") as dst:
            rows = [r for r in csv.DictReader(src) if float(r["value"]) > -100]
            w = csv.DictWriter(dst, ["sensor", "value"], lineterminator="\n")
            w.writeheader()
            w.writerows(rows)


class Stats(luigi.Task):
    """Mean and standard deviation per sensor."""

    def requires(self):
        return Clean()

    def output(self):
        return luigi.LocalTarget(f"{OUT}/stats.json")

    def run(self):
        by_sensor: dict[str, list[float]] = {}
        with self.input().open() as f:
            for r in csv.DictReader(f):
                by_sensor.setdefault(r["sensor"], []).append(float(r["value"]))
        stats = {s: {"n": len(v), "mean": round(statistics.mean(v), 4), "stdev": round(statistics.stdev(v), 4)}
                 for s, v in sorted(by_sensor.items())}
        with self.output().open("w") as f:
            json.dump(stats, f, indent=2, sort_keys=True)


class Report(luigi.Task):
    """A Markdown table for humans."""

    def requires(self):
        return Stats()

    def output(self):
        return luigi.LocalTarget(f"{OUT}/report.md")

    def run(self):
        with self.input().open() as f:
            stats = json.load(f)
        with self.output().open("w") as f:
            f.write("| sensor | n | mean | stdev |\n|---|---|---|---|\n")
            for s, v in stats.items():
                f.write(f"| {s} | {v['n']} | {v['mean']} | {v['stdev']} |\n")


luigi.namespace(scope=__name__)

if __name__ == "__main__":
    luigi.build([Report()], local_scheduler=True)
