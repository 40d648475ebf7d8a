"""The seed's showcase experiment in Python: data -> three trainings -> inference -> evaluation -> comparison,
and an early evaluation of a checkpoint that model_base publishes while it trains.

Tools enter by content through static(), so the recipe keys do not depend on where this
checkout lives: a clone elsewhere sharing the store re-runs nothing. Referencing a step
inside another's command (f-strings here) is what makes the dependency.
"""

from pathlib import Path

from nixlib import output, static

tools = Path(__file__).parent / "tools"
build_data, train, inference, evaluate, compare = (
    static(tools / t) for t in ("build-data", "train", "inference", "evaluate", "compare")
)

dataset = output(f"{build_data} --name=demo --samples=500 --seed=42")

model_small = output(f"""
  {train}
    --data={dataset}/data.csv
    --epochs=5 --lr=0.01 --batch-size=128
""")
model_base = output(f"""
  {train}
    --data={dataset}/data.csv
    --epochs=10 --lr=0.001 --batch-size=32
""", checkpoints=True)  # publishes epoch-1 … epoch-10 while it trains (docs/resume.md)
model_large = output(f"""
  {train}
    --data={dataset}/data.csv
    --epochs=50 --lr=0.0001 --batch-size=64 --seed=123
""")

predict_small = output(f"{inference} --model={model_small}/model.json --data={dataset}/data.csv")
predict_base = output(f"{inference} --model={model_base}/model.json --data={dataset}/data.csv")
predict_large = output(f"{inference} --model={model_large}/model.json --data={dataset}/data.csv")

eval_small = output(f"{evaluate} --predictions={predict_small}/predictions.csv --ground-truth={dataset}/data.csv")
eval_base = output(f"{evaluate} --predictions={predict_base}/predictions.csv --ground-truth={dataset}/data.csv")
eval_large = output(f"{evaluate} --predictions={predict_large}/predictions.csv --ground-truth={dataset}/data.csv")

# model_base as it was after 2 of its 10 epochs: runs as soon as training publishes epoch-2, while it goes on.
predict_base_epoch2 = output(f"{inference} --model={model_base.checkpoint('epoch-2')}/model.json "
                             f"--data={dataset}/data.csv")
eval_base_epoch2 = output(f"{evaluate} --predictions={predict_base_epoch2}/predictions.csv "
                          f"--ground-truth={dataset}/data.csv")

comparison = output(f"{compare} --result={eval_small} --result={eval_base} --result={eval_large}")
