"""The showcase pipeline as Luigi NixTasks: data -> three trainings -> inference -> evaluation -> comparison.

The same tools as examples/showcase/experiment.py, entered by content through static(), so the
keys do not depend on where this checkout lives. Dependencies are ordinary Luigi requires();
the commands interpolate the upstream outputs, which become store paths when they run.

    PYTHONPATH=examples/luigi:. luigi --module showcase showcase.Compare --local-scheduler --workers 2
"""

from pathlib import Path

import luigi

from luigi_nixworkflow import NixTask, static

luigi.namespace("showcase", scope=__name__)
TOOLS = Path(__file__).resolve().parent.parent / "showcase" / "tools"
MODELS = {
    "small": {"epochs": 5, "lr": 0.01, "batch_size": 128, "seed": 0},
    "base": {"epochs": 10, "lr": 0.001, "batch_size": 32, "seed": 0},
    "large": {"epochs": 50, "lr": 0.0001, "batch_size": 64, "seed": 123},
}


def tool(name: str) -> str:
    return static(TOOLS / name)


class BuildData(NixTask):
    samples = luigi.IntParameter(default=500)
    seed = luigi.IntParameter(default=42)

    def command(self):
        return f"{tool('build-data')} --name=demo --samples={self.samples} --seed={self.seed}"


class Train(NixTask):
    model = luigi.ChoiceParameter(choices=list(MODELS))

    def requires(self):
        return BuildData()

    def command(self):
        m = MODELS[self.model]
        return (f"{tool('train')} --data={self.input() / 'data.csv'} --epochs={m['epochs']} --lr={m['lr']} "
                f"--batch-size={m['batch_size']} --seed={m['seed']}")


class Inference(NixTask):
    model = luigi.ChoiceParameter(choices=list(MODELS))

    def requires(self):
        return {"model": Train(self.model), "data": BuildData()}

    def command(self):
        i = self.input()
        return f"{tool('inference')} --model={i['model'] / 'model.json'} --data={i['data'] / 'data.csv'}"


class Evaluate(NixTask):
    model = luigi.ChoiceParameter(choices=list(MODELS))

    def requires(self):
        return {"predictions": Inference(self.model), "data": BuildData()}

    def command(self):
        i = self.input()
        return (f"{tool('evaluate')} --predictions={i['predictions'] / 'predictions.csv'} "
                f"--ground-truth={i['data'] / 'data.csv'}")


class Compare(NixTask):
    def requires(self):
        return [Evaluate(m) for m in MODELS]

    def command(self):
        return f"{tool('compare')} " + " ".join(f"--result={e}" for e in self.input())


luigi.namespace(scope=__name__)

if __name__ == "__main__":
    luigi.build([Compare()], local_scheduler=True, workers=2)
