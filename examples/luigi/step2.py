"""Migration, step 2: every task is a NixTask.

    Measurements (Python) -> Clean (shell) -> Stats (Python, step 1's) -> Report (shell)

The outputs are store objects now: nothing is written to ./out, every result is recorded,
each task's output is linked at ./nix-workflow-output/<task_id>, and a second run, in any
checkout sharing the store, runs nothing. Report's command interpolates
`self.input() / "stats.json"`, a path inside Stats' output directory, and a script of this
directory by content (`static()`), so editing the script re-runs Report.

    PYTHONPATH=examples/luigi:. luigi --module step2 step2.Report --local-scheduler
    nw lineage nix-workflow-output/step2.Report__99914b932b/report.md
"""

import csv
import random
from pathlib import Path

import luigi
from step1 import Stats as Step1Stats

from luigi_nixworkflow import NixTask, static

luigi.namespace("step2", scope=__name__)
HERE = Path(__file__).parent


class Measurements(NixTask):
    """The simulated readings, now a Python NixTask: `seed` and `rows` are in its key."""

    seed = luigi.IntParameter(default=7)
    rows = luigi.IntParameter(default=300)

    def produce(self, out):
        rng = random.Random(self.seed)
        with open(out / "measurements.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["sensor", "value"])
            for _ in range(self.rows):
                value = rng.gauss(20, 5) if rng.random() > 0.1 else -999
                w.writerow([rng.choice("abc"), f"{value:.3f}"])


class Clean(NixTask):
    def requires(self):
        return Measurements()

    def command(self):
        return f"awk -F, 'NR == 1 || $2 > -100' {self.input() / 'measurements.csv'} > {self.output()}/clean.csv"


class Stats(Step1Stats):
    """Step 1's Stats, reused as is: only what it requires changes (and with it, its key)."""

    def requires(self):
        return Clean()


class Report(NixTask):
    """The report as a shell step, using a script kept next to the pipeline (hashed by content)."""

    def requires(self):
        return Stats()

    def command(self):
        return f"python3 {static(HERE / 'report.py')} {self.input() / 'stats.json'} > {self.output()}/report.md"


luigi.namespace(scope=__name__)

if __name__ == "__main__":
    luigi.build([Report()], local_scheduler=True)
