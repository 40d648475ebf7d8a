"""`nw pin STEP [--checkpoint NAME]` (issue 15): prints the object and the exact line that locks it in the
experiment file; with that line in place, the pinned object is served and its producer is not run, even
after the producer's command changed (then its checkpoints are other keys and would not be served)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import nw

TRAIN = """#!/bin/bash
set -euo pipefail
mkdir "$NW_CHECKPOINTS/epoch-2.tmp"; echo two > "$NW_CHECKPOINTS/epoch-2.tmp/weights"
mv "$NW_CHECKPOINTS/epoch-2.tmp" "$NW_CHECKPOINTS/epoch-2"
echo final > $out/model
"""


def trainer(tmp_path: Path) -> Path:
    script = tmp_path / "train.sh"
    script.write_text(TRAIN)
    script.chmod(0o755)
    return script


def pin(*args: str) -> tuple[str, str]:
    """The hash `nw pin` prints (stdout) and the line it says to write (the last line of stderr)."""
    run = nw("pin", *args, check=True)
    return run.stdout.strip(), run.stderr.strip().splitlines()[-1].strip()


def evaluate_inputs(store_root: Path) -> list[str]:
    docs = [json.loads(p.read_text()) for p in (store_root / "realisations").glob("*.json")]
    return [i["object"] for d in docs if d["name"] == "evaluate" for i in d["inputs"]]


def test_a_pinned_checkpoint_is_served_and_its_producer_not_run(tmp_path: Path, store_root: Path) -> None:
    script, ran = trainer(tmp_path), tmp_path / "train-ran"
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   f"train = output('{script}', checkpoints=True)\n"
                   "evaluate = output(f'cat {train.checkpoint(\"epoch-2\")}/weights > $out/score')\n")
    nw("run", "-j", "2", str(exp), check=True)
    h, line = pin("train", "--checkpoint", "epoch-2", "--file", str(exp))
    assert (store_root / "store" / h / "weights").read_text() == "two\n"
    assert line == f'train.checkpoint("epoch-2", hash="{h}")'

    # the producer changes (and would fail); the dependant changes too, so it really runs, from the pin
    exp.write_text("from nixlib import output\n"
                   f"train = output('touch {ran}; exit 1', checkpoints=True)\n"
                   f"evaluate = output(f'cat {{{line}}}/weights > $out/score; echo again >> $out/score')\n")
    run = nw("run", "-j", "2", str(exp), "evaluate")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "done 1" in run.stderr, run.stderr
    assert not ran.exists()
    assert (Path("nix-workflow-output") / "evaluate" / "score").read_text() == "two\nagain\n"
    assert h in evaluate_inputs(store_root)


def test_a_pinned_step_output_is_served_and_not_run(tmp_path: Path, store_root: Path) -> None:
    script, ran = trainer(tmp_path), tmp_path / "train-ran"
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   f"train = output('{script}', checkpoints=True)\n")
    nw("run", str(exp), check=True)
    h, line = pin("train", "--file", str(exp))
    assert (store_root / "store" / h / "model").read_text() == "final\n"
    assert line == f'hash="{h}"'
    exp.write_text("from nixlib import output\n"
                   f"train = output('touch {ran}; exit 1', {line})\n"
                   "evaluate = output(f'cat {train}/model > $out/m')\n")
    run = nw("run", str(exp))
    assert run.returncode == 0, run.stdout + run.stderr
    assert not ran.exists()
    assert (Path("nix-workflow-output") / "evaluate" / "m").read_text() == "final\n"


def test_pin_says_what_is_missing(tmp_path: Path) -> None:
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   f"train = output('{trainer(tmp_path)}', checkpoints=True)\n"
                   "plain = output('echo 1 > $out/x')\n")
    before = nw("pin", "train", "--checkpoint", "epoch-2", "--file", str(exp))
    assert before.returncode == 1 and "checkpoint 'epoch-2' of step 'train' has no result" in before.stderr
    assert "run the experiment first" in before.stderr and "Traceback" not in before.stderr
    nw("run", str(exp), check=True)
    wrong = nw("pin", "train", "--checkpoint", "epoch-9", "--file", str(exp))
    assert wrong.returncode == 1 and "it published only epoch-2; check the name" in wrong.stderr, wrong.stderr
    none = nw("pin", "plain", "--checkpoint", "epoch-2", "--file", str(exp))
    assert none.returncode == 1 and "step 'plain' publishes no checkpoints" in none.stderr


def test_a_pinned_checkpoint_in_nix(tmp_path: Path, store_root: Path) -> None:
    """The Nix line `nw pin` prints for an experiment.nix locks the checkpoint there just the same."""
    from tests.nixcheck import require_nix

    require_nix("nix-instantiate")
    script, ran = trainer(tmp_path), tmp_path / "train-ran"
    exp = tmp_path / "experiment.nix"
    exp.write_text("let inherit ((import <nixworkflow>).lib) output; in rec {\n"
                   f'  train = output {{ cmd = "{script}"; checkpoints = true; }};\n'
                   '  evaluate = output "cat ${train.checkpoint "epoch-2"}/weights > $out/score";\n'
                   "}\n")
    nw("run", "-j", "2", str(exp), check=True)
    h, line = pin("train", "--checkpoint", "epoch-2", "--file", str(exp))
    assert line == f'train.checkpoint {{ name = "epoch-2"; hash = "{h}"; }}'
    exp.write_text("let inherit ((import <nixworkflow>).lib) output; in rec {\n"
                   f'  train = output {{ cmd = "touch {ran}; exit 1"; checkpoints = true; }};\n'
                   f'  evaluate = output "cat ${{{line}}}/weights > $out/score; echo again >> $out/score";\n'
                   "}\n")
    run = nw("run", str(exp), "evaluate")
    assert run.returncode == 0, run.stdout + run.stderr
    assert not ran.exists()
    assert (Path("nix-workflow-output") / "evaluate" / "score").read_text() == "two\nagain\n"
    assert h in evaluate_inputs(store_root)
