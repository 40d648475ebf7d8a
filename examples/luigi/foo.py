"""Luigi's foo example, migrated by changing Bar's base class only: a WrapperTask over ten tasks.

    Foo (a WrapperTask, plain) -> Bar(0) … Bar(9)

Bar marks itself done with an empty file, as Luigi's own does: a declared LocalTarget written empty is a
result for a NixTask too (an empty directory, or no file at all, is a step that wrote nothing).

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
        self.output().open("w").close()

    def output(self):
        return luigi.LocalTarget(f"data/bar/{self.num}")
