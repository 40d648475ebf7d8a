"""Checkpoints (issue 15, item 1 and part of 2): a step with checkpoints=True publishes NAME by renaming
`$NW_CHECKPOINTS/NAME.tmp` to `$NW_CHECKPOINTS/NAME`; each is sealed into the store while the step still
runs, as its own object with its own realisation keyed by (resolved key, NAME), and `nw checkpoints STEP`
lists them; a failed step's published checkpoints stay; in-progress and invalid names are never stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO, nw

PUBLISH = r"""
publish() {  # NAME TEXT: fill NAME.tmp, then rename it (the atomic protocol)
  mkdir "$NW_CHECKPOINTS/$1.tmp"; echo "$2" > "$NW_CHECKPOINTS/$1.tmp/weights"
  mv "$NW_CHECKPOINTS/$1.tmp" "$NW_CHECKPOINTS/$1"
}
"""


def experiment(tmp_path: Path, body: str) -> Path:
    data = tmp_path / "data.txt"
    if not data.exists():
        data.write_text("d1\n")
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/bash\nset -euo pipefail\n" + PUBLISH + body)
    script.chmod(0o755)
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output, static\n"
                   f"data = static({str(data)!r})\n"
                   f"train = output(f'{script} {{data}} {tmp_path}', checkpoints=True)\n")
    return exp


def listed(exp: Path) -> dict[str, tuple[str, Path]]:
    out = nw("checkpoints", "train", "--file", str(exp), check=True).stdout
    return {name: (h, Path(path)) for name, h, path in (line.split("\t") for line in out.splitlines())}


def test_checkpoints_are_stored_while_the_step_runs_and_listed(tmp_path: Path, store_root: Path) -> None:
    exp = experiment(tmp_path, 'publish epoch-1 "one from $(cat $1)"\n'
                               'for _ in $(seq 600); do [ -f "$2/go" ] && break; sleep 0.05; done\n'
                               'publish epoch-2 two; echo final > $out/model\n')
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while "epoch-1" not in listed(exp):  # the producer is still running: it waits for `go`
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        h, path = listed(exp)["epoch-1"]
        assert (path / "weights").read_text() == "one from d1\n" and path == store_root / "store" / h
        assert proc.poll() is None
        (tmp_path / "go").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "checkpoint 'epoch-2' stored as" in out
    found = listed(exp)
    assert list(found) == ["epoch-1", "epoch-2"]
    assert (found["epoch-2"][1] / "weights").read_text() == "two\n"
    records = [json.loads(p.read_text()) for p in (store_root / "realisations").glob("*.json")]
    marks = sorted(d["checkpoint"]["name"] for d in records if "checkpoint" in d)
    assert marks == ["epoch-1", "epoch-2"]
    step = next(d for d in records if "checkpoint" not in d)
    assert all(d["checkpoint"]["of"] == step["resolved_key"] for d in records if "checkpoint" in d)
    assert (Path("nix-workflow-output") / "train" / "model").read_text() == "final\n"


def test_a_failed_step_keeps_what_it_published_and_nothing_in_progress(tmp_path: Path, store_root: Path) -> None:
    exp = experiment(tmp_path, "publish epoch-1 one\n"
                               "mkdir $NW_CHECKPOINTS/epoch-2.tmp; echo half > $NW_CHECKPOINTS/epoch-2.tmp/w\n"
                               "mkdir $NW_CHECKPOINTS/empty\n"
                               "exit 1\n")
    run = nw("run", str(exp))
    assert run.returncode == 1 and "step 'train' failed" in run.stderr
    assert "checkpoint 'empty' was not stored: it is empty" in run.stdout
    found = listed(exp)
    assert list(found) == ["epoch-1"]  # published before the failure; epoch-2 was never completed
    assert (found["epoch-1"][1] / "weights").read_text() == "one\n"
    assert not (Path("nix-workflow-output") / "train").exists()  # the step itself is not served

    (tmp_path / "data.txt").write_text("d2\n")  # other inputs: another computation, no checkpoints yet
    assert listed(exp) == {}


def test_a_step_without_checkpoints_has_no_checkpoint_directory(tmp_path: Path) -> None:
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "plain = output('test -z \"${NW_CHECKPOINTS:-}\" && echo none > $out/x')\n")
    nw("run", str(exp), check=True)
    assert (Path("nix-workflow-output") / "plain" / "x").read_text() == "none\n"


def test_a_dependant_of_a_checkpoint_runs_while_its_producer_still_trains(tmp_path: Path, store_root: Path) -> None:
    """evaluate uses train.checkpoint('epoch-2'); train only goes on once evaluate's result exists, so the run
    can only finish if evaluate ran while train was still running (no timing is asserted)."""
    exp = experiment(tmp_path, 'publish epoch-1 one; publish epoch-2 "two from $(cat $1)"\n'
                               'for _ in $(seq 1200); do [ -f "$2/evaluated" ] && break; sleep 0.05; done\n'
                               '[ -f "$2/evaluated" ] || { echo "evaluate never ran"; exit 1; }\n'
                               'publish epoch-3 three; echo final > $out/model\n')
    with exp.open("a") as f:
        f.write(f"evaluate = output(f'cat {{train.checkpoint(\"epoch-2\")}}/weights > $out/score; "
                f"touch {tmp_path}/evaluated')\n"
                "late = output(f'cat {train.checkpoint(\"epoch-3\")}/weights > $out/w')\n")
    run = nw("run", "-j", "2", str(exp))
    assert run.returncode == 0, run.stdout + run.stderr
    assert (Path("nix-workflow-output") / "evaluate" / "score").read_text() == "two from d1\n"
    assert (Path("nix-workflow-output") / "late" / "w").read_text() == "three\n"
    assert (Path("nix-workflow-output") / "train" / "model").read_text() == "final\n"

    again = nw("run", "-j", "2", str(exp), check=True)  # everything, checkpoints included, is served
    assert "done 0 · cached 5" in again.stderr, again.stderr


def test_a_checkpoint_never_published_fails_its_dependants_clearly(tmp_path: Path, store_root: Path) -> None:
    exp = experiment(tmp_path, "publish epoch-1 one; echo final > $out/model\n")
    with exp.open("a") as f:
        f.write("evaluate = output(f'cat {train.checkpoint(\"epoch-9\")}/weights > $out/score')\n")
    run = nw("run", "-j", "2", str(exp))
    assert run.returncode == 1
    assert "step 'train' finished without publishing checkpoint 'epoch-9'" in run.stderr, run.stderr
    assert (Path("nix-workflow-output") / "train" / "model").read_text() == "final\n"
    assert not (Path("nix-workflow-output") / "evaluate").exists()

    # train is served now, not run: it "finished without publishing" nothing in this run (a producer pulled from a
    # remote cache that lacks the checkpoint said so too, misleading the user): the message says what happened
    again = nw("run", "-j", "2", str(exp))
    assert again.returncode == 1
    assert "finished without publishing" not in again.stderr, again.stderr
    assert "step 'train' did not run now but was served from the store, which holds no checkpoint 'epoch-9'" \
        in again.stderr, again.stderr
    assert "nw run --force FILE train" in again.stderr


SHOWCASE_TOOLS = REPO / "examples" / "showcase" / "tools"


def test_showcase_trainer_publishes_checkpoints_a_dependant_uses(tmp_path: Path, store_root: Path) -> None:
    """The showcase's trainer publishes epoch-N (here consumed by inference on epoch-2) and its checkpointed,
    resumable run ends with the same model bytes as a plain run. That a dependant runs while its producer
    still trains is shown without timing by the handshake test above."""
    exp = tmp_path / "experiment.py"
    exp.write_text(
        "from nixlib import output, static\n"
        f"build_data, train, inference = (static({str(SHOWCASE_TOOLS)!r} + '/' + t) "
        "for t in ('build-data', 'train', 'inference'))\n"
        "dataset = output(f'{build_data} --name=demo --samples=200 --seed=1')\n"
        "model = output(f'{train} --data={dataset}/data.csv --epochs=4 --epoch-seconds=0.05', checkpoints=True,"
        " resumable=True)\n"
        "early = output(f'{inference} --model={model.checkpoint(\"epoch-2\")}/model.json "
        "--data={dataset}/data.csv')\n"
        "plain = output(f'{train} --data={dataset}/data.csv --epochs=4')\n")
    nw("run", "-j", "3", str(exp), check=True)
    records = {d["name"]: d for d in (json.loads(p.read_text()) for p in (store_root / "realisations").glob("*.json"))}
    early_model = json.loads((store_root / "store" / records["model@epoch-2"]["outputs"]["out"] / "model.json")
                             .read_text())
    assert early_model["epochs"] == 2 and len(early_model["loss_history"]) == 2
    out = Path("nix-workflow-output")
    assert (out / "model" / "model.json").read_bytes() == (out / "plain" / "model.json").read_bytes()
    assert (out / "early" / "predictions.csv").read_text().count("\n") > 100


def test_checkpoints_in_nix(tmp_path: Path, store_root: Path) -> None:
    from tests.nixcheck import require_nix

    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    exp.write_text("let inherit ((import <nixworkflow>).lib) output; in {\n"
                   "  train = output { cmd = ''\n"
                   "    mkdir $NW_CHECKPOINTS/e1.tmp; echo one > $NW_CHECKPOINTS/e1.tmp/w\n"
                   "    mv $NW_CHECKPOINTS/e1.tmp $NW_CHECKPOINTS/e1; echo done > $out/m\n"
                   "  ''; checkpoints = true; };\n"
                   "}\n")
    nw("run", str(exp), check=True)
    out = nw("checkpoints", "train", "--file", str(exp), check=True).stdout
    [(name, _, path)] = [line.split("\t") for line in out.splitlines()]
    assert name == "e1" and (Path(path) / "w").read_text() == "one\n"


HANDSHAKE = (PUBLISH + 'publish epoch-1 one; publish epoch-2 two\n'
             'for _ in $(seq 1200); do [ -f "$1/evaluated" ] && break; sleep 0.05; done\n'
             '[ -f "$1/evaluated" ] || { echo "evaluate never ran"; exit 1; }\n'
             'publish epoch-3 three; echo final > $out/model\n')


def test_a_nix_step_consumes_a_checkpoint_as_pythons_does(tmp_path: Path, store_root: Path) -> None:
    """`train.checkpoint "epoch-2"` (and `checkpoint train "epoch-3"`) in experiment.nix: the dependant runs while
    train still runs (train waits for it: the handshake), and the same experiment in Python is then entirely
    served, so both front doors map a checkpoint to the same dependency and keys."""
    from tests.nixcheck import require_nix

    require_nix("nix-instantiate")
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/bash\nset -euo pipefail\n" + HANDSHAKE)
    script.chmod(0o755)
    evaluate = "cat {}/weights > $out/score; touch " + f"{tmp_path}/evaluated"
    nix = tmp_path / "experiment.nix"
    nix_evaluate = evaluate.format('${train.checkpoint "epoch-2"}')
    nix.write_text("let inherit ((import <nixworkflow>).lib) output checkpoint; in rec {\n"
                   f'  train = output {{ cmd = "{script} {tmp_path}"; checkpoints = true; }};\n'
                   f"  evaluate = output ''{nix_evaluate}'';\n"
                   '  late = output "cat ${checkpoint train "epoch-3"}/weights > $out/w";\n'
                   "}\n")
    run = nw("run", "-j", "2", str(nix))
    assert run.returncode == 0, run.stdout + run.stderr
    out = Path("nix-workflow-output")
    assert (out / "evaluate" / "score").read_text() == "two\n"
    assert (out / "late" / "w").read_text() == "three\n"
    assert (out / "train" / "model").read_text() == "final\n"

    py = tmp_path / "experiment.py"
    py.write_text("from nixlib import output\n"
                  f"train = output('{script} {tmp_path}', checkpoints=True)\n"
                  f"evaluate = output('{evaluate}'.format(train.checkpoint('epoch-2')))\n"
                  "late = output(f'cat {train.checkpoint(\"epoch-3\")}/weights > $out/w')\n")
    again = nw("run", "-j", "2", str(py), check=True)
    assert "done 0 · cached 5" in again.stderr, again.stderr


def test_nix_refuses_a_checkpoint_of_a_step_without_checkpoints(tmp_path: Path) -> None:
    from tests.nixcheck import require_nix

    require_nix("nix-instantiate")
    nix = tmp_path / "experiment.nix"
    nix.write_text("let inherit ((import <nixworkflow>).lib) output; in rec {\n"
                   '  train = output "echo 1 > $out/m";\n'
                   '  evaluate = output "cat ${train.checkpoint "epoch-2"}/m > $out/s";\n'
                   "}\n")
    run = nw("run", str(nix))
    assert run.returncode != 0
    assert 'checkpoint "epoch-2" of a step that publishes none: declare the step with checkpoints = true' \
        in run.stderr, run.stderr


def test_a_resumed_step_gets_its_latest_published_checkpoint(tmp_path: Path, store_root: Path) -> None:
    """A resumable step with checkpoints that failed after publishing z-first, then a-second (the latest,
    though its name sorts first; both are stored after the step ended, in one scan), finds a-second in
    $NW_LATEST_CHECKPOINT on its next run; a first run, and a run on other inputs, find none. Checkpoints
    published in one scan are also listed in publication order (epoch-9 before epoch-10 on a tie)."""
    exp = experiment(tmp_path, 'echo "latest=${NW_LATEST_CHECKPOINT_NAME:-none}" >> "$2/seen"\n'
                               'if [ -n "${NW_LATEST_CHECKPOINT:-}" ]; then\n'
                               '  cat "$NW_LATEST_CHECKPOINT/weights" > $out/model; exit 0; fi\n'
                               'publish epoch-9 "nine"; publish epoch-10 "ten"; sleep 0.05\n'
                               'publish z-first "one"; sleep 0.05; publish a-second "two from $(cat $1)"; exit 1\n')
    exp.write_text(exp.read_text().replace("checkpoints=True", "checkpoints=True, resumable=True"))
    assert nw("run", str(exp)).returncode == 1
    assert list(listed(exp)) == ["epoch-9", "epoch-10", "z-first", "a-second"]
    nw("run", str(exp), check=True)
    assert (Path("nix-workflow-output") / "train" / "model").read_text() == "two from d1\n"
    (tmp_path / "data.txt").write_text("d2\n")  # other inputs: the checkpoints of d1 are not offered
    assert nw("run", str(exp)).returncode == 1
    assert (tmp_path / "seen").read_text() == "latest=none\nlatest=a-second\nlatest=none\n"
