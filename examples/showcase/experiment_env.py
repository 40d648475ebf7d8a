"""The showcase in Python with Nix-pinned tools: the same steps as experiment.nix, the same recipe keys.

The five tools are the derivations of ./nix (a local package set, built offline by Nix).
`tools["train"]` is the train package's store path; interpolating it into a command puts
that derivation into the step's env, exactly as `${train_bin}` does in experiment.nix, so
running this file after experiment.nix (or the other way round) re-runs nothing.

    nw run experiment_env.py
"""

from pathlib import Path

from nixlib import Env, output

tools = Env(file=Path(__file__).parent / "nix" / "default.nix")
build_data, train, inference, evaluate, compare = (
    tools[t] for t in ("build-data", "train", "inference", "evaluate", "compare")
)

dataset = output(f"{build_data}/bin/build-data --name=demo --samples=500 --seed=42")

model_small = output(f"""
  {train}/bin/train
    --data={dataset}/data.csv
    --epochs=5 --lr=0.01 --batch-size=128
""")
model_base = output(f"""
  {train}/bin/train
    --data={dataset}/data.csv
    --epochs=10 --lr=0.001 --batch-size=32
""", checkpoints=True)
model_large = output(f"""
  {train}/bin/train
    --data={dataset}/data.csv
    --epochs=50 --lr=0.0001 --batch-size=64 --seed=123
""")

predict_small = output(f"{inference}/bin/inference --model={model_small}/model.json --data={dataset}/data.csv")
predict_base = output(f"{inference}/bin/inference --model={model_base}/model.json --data={dataset}/data.csv")
predict_large = output(f"{inference}/bin/inference --model={model_large}/model.json --data={dataset}/data.csv")

eval_small = output(f"{evaluate}/bin/evaluate --predictions={predict_small}/predictions.csv "
                    f"--ground-truth={dataset}/data.csv")
eval_base = output(f"{evaluate}/bin/evaluate --predictions={predict_base}/predictions.csv "
                   f"--ground-truth={dataset}/data.csv")
eval_large = output(f"{evaluate}/bin/evaluate --predictions={predict_large}/predictions.csv "
                    f"--ground-truth={dataset}/data.csv")

predict_base_epoch2 = output(f"{inference}/bin/inference --model={model_base.checkpoint('epoch-2')}/model.json "
                             f"--data={dataset}/data.csv")
eval_base_epoch2 = output(f"{evaluate}/bin/evaluate --predictions={predict_base_epoch2}/predictions.csv "
                          f"--ground-truth={dataset}/data.csv")

comparison = output(f"{compare}/bin/compare --result={eval_small} --result={eval_base} --result={eval_large}")
