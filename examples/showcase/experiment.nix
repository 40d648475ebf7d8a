# The seed's showcase experiment in Nix: data -> three trainings -> inference -> evaluation -> comparison,
# and an early evaluation of a checkpoint that model_base publishes while it trains.
#
#   nw run experiment.nix            (nw puts nixworkflow's library on the search path as <nixworkflow>)
#
# Every top-level attribute is a step named after it. Interpolating a step (`${dataset}`) makes
# the dependency; interpolating a tool (`${train_bin}`) puts its derivation in the step's string
# context, so nw builds it with Nix before running and records its exact store path.
let
  inherit ((import <nixworkflow>).lib) output;
  tools = import ./nix { };
  build_data_bin = tools.build-data;
  train_bin = tools.train;
  inference_bin = tools.inference;
  evaluate_bin = tools.evaluate;
  compare_bin = tools.compare;
in
rec {
  dataset = output ''
    ${build_data_bin}/bin/build-data --name=demo --samples=500 --seed=42
  '';

  model_small = output ''
    ${train_bin}/bin/train
      --data=${dataset}/data.csv
      --epochs=5 --lr=0.01 --batch-size=128
  '';
  # publishes epoch-1 … epoch-10 while it trains (docs/resume.md)
  model_base = output {
    cmd = ''
      ${train_bin}/bin/train
        --data=${dataset}/data.csv
        --epochs=10 --lr=0.001 --batch-size=32
    '';
    checkpoints = true;
  };
  model_large = output ''
    ${train_bin}/bin/train
      --data=${dataset}/data.csv
      --epochs=50 --lr=0.0001 --batch-size=64 --seed=123
  '';

  predict_small = output ''
    ${inference_bin}/bin/inference
      --model=${model_small}/model.json
      --data=${dataset}/data.csv
  '';
  predict_base = output ''
    ${inference_bin}/bin/inference
      --model=${model_base}/model.json
      --data=${dataset}/data.csv
  '';
  predict_large = output ''
    ${inference_bin}/bin/inference
      --model=${model_large}/model.json
      --data=${dataset}/data.csv
  '';

  eval_small = output ''
    ${evaluate_bin}/bin/evaluate
      --predictions=${predict_small}/predictions.csv
      --ground-truth=${dataset}/data.csv
  '';
  eval_base = output ''
    ${evaluate_bin}/bin/evaluate
      --predictions=${predict_base}/predictions.csv
      --ground-truth=${dataset}/data.csv
  '';
  eval_large = output ''
    ${evaluate_bin}/bin/evaluate
      --predictions=${predict_large}/predictions.csv
      --ground-truth=${dataset}/data.csv
  '';

  # model_base as it was after 2 of its 10 epochs: runs as soon as training publishes epoch-2, while it goes on.
  predict_base_epoch2 = output ''
    ${inference_bin}/bin/inference
      --model=${model_base.checkpoint "epoch-2"}/model.json
      --data=${dataset}/data.csv
  '';
  eval_base_epoch2 = output ''
    ${evaluate_bin}/bin/evaluate
      --predictions=${predict_base_epoch2}/predictions.csv
      --ground-truth=${dataset}/data.csv
  '';

  comparison = output ''
    ${compare_bin}/bin/compare
      --result=${eval_small}
      --result=${eval_base}
      --result=${eval_large}
  '';
}
