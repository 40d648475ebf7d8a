"""Luigi's foo example, migrated by changing Bar's base class only: a WrapperTask over ten tasks.

    Foo (a WrapperTask, plain) -> Bar(0) … Bar(9)

Luigi's own Bar writes an empty file; a NixTask refuses an empty output unless the class says
`allow_empty = True` (an empty result is usually a bug), so this Bar writes its number.

    PYTHONPATH=examples/luigi:. luigi --module foo examples.Foo --workers 3 --local-scheduler
"""

import luigi

from luigi_nixworkflow import NixTask


class Foo(luigi.WrapperTask):
    task_namespace = "examples"

    def run(self):
        print("Running Foo")

    def requires(self):
        for i in range(10):
            yield Bar(i)


class Bar(NixTask):
    task_namespace = "examples"

    num = luigi.IntParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write(f"bar {self.num}\n")

    def output(self):
        return luigi.LocalTarget(f"data/bar/{self.num}")
