"""Luigi's dynamic_requirements example, migrated by changing base classes only.

    Dynamic --yield--> Configuration --(its numbers)--> yield Data(n) for each n

What Dynamic yields is known only while it runs. Its stored result lists every task it yielded with
the content that task had; the result is served only while all of them still have it (change a
Configuration, or delete a Data result, and Dynamic runs again).

    PYTHONPATH=examples/luigi:. luigi --module dynamic_requirements Dynamic --seed 3 --local-scheduler
"""

import os
import random

import luigi

from luigi_nixworkflow import NixTask


class Configuration(NixTask):
    """A few numbers drawn from the seed: which Data tasks Dynamic needs."""

    seed = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(f"data/dynamic/config_{self.seed}.txt")

    def run(self):
        rnd = random.Random(self.seed)
        with self.output().open("w") as out:
            out.write(",".join(str(rnd.randint(0, 1000)) for _ in range(rnd.randint(1, 5))))


class Data(NixTask):
    magic_number = luigi.IntParameter()

    def output(self):
        return luigi.LocalTarget(f"data/dynamic/data_{self.magic_number}.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write(str(self.magic_number))


class Dynamic(NixTask):
    seed = luigi.IntParameter(default=1)

    def output(self):
        return luigi.LocalTarget(f"data/dynamic/dynamic_{self.seed}.txt")

    def run(self):
        config = self.clone(Configuration)  # requires() could list this one ...
        yield config
        with config.output().open() as f:
            numbers = [int(x) for x in f.read().split(",")]
        data = [Data(magic_number=n) for n in numbers]  # ... but not these: they depend on its content
        yield data
        with self.output().open("w") as out:
            out.write("Tada! " + "+".join(d.output().open().read() for d in data))

        def all_present(complete):  # many requirements: check the first, then list the directory once
            if not complete(data[0]):
                return False
            present = os.listdir(os.path.dirname(data[0].output().path))
            return all(os.path.basename(d.output().path) in present for d in data)

        yield luigi.DynamicRequirements(data, all_present)
