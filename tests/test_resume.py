"""Resumable steps (issue 15, items 3 and 4): `$state` keyed by the resolved key, resume after `kill -9` of
`nw`, no stale state after an input changed, `resumable` in Nix, `--keep-failed`, and what `nw gc` collects.

The training tool is a deterministic bash script: its model is the dataset followed by one line per epoch,
kept in `$state/model` and replaced atomically after each epoch, so the number of epochs done is read from
the model itself. A control directory (outside the store) makes an epoch slow or makes the step fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, nw
from tests.nixcheck import require_nix

TRAIN = r"""#!/bin/bash
set -euo pipefail
data=$1; epochs=$2; ctl=$3
if [ -f "$state/model" ]; then
  done=$(grep -c '^epoch' "$state/model" || true)
  echo "resuming after epoch $done from a model of data '$(head -n 1 "$state/model")'"
else
  done=0; echo "starting fresh"; cp "$data" "$state/model"
fi
for ((i = done + 1; i <= epochs; i++)); do
  if [ -f "$ctl/slow" ]; then sleep 0.15; fi
  { cat "$state/model"; echo "epoch $i"; } > "$state/model.new"
  mv "$state/model.new" "$state/model"
  if [ -f "$ctl/fail-after-$i" ]; then echo "crash after epoch $i"; exit 1; fi
done
cp "$state/model" "$out/model"
"""


def setup(tmp_path: Path, epochs: int = 4) -> tuple[Path, Path, Path]:
    """experiment.py with a dataset step (reading a host file, so --force can change its bytes without
    changing its recipe) and a resumable training step; returns (experiment, data file, control dir)."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    train = tmp_path / "train.sh"
    train.write_text(TRAIN)
    train.chmod(0o755)
    data = tmp_path / "data.txt"
    data.write_text("data-v1\n")
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   f"dataset = output('cp {data} $out/data')\n"
                   f"model = output(f'{train} {{dataset}}/data {epochs} {ctl}', resumable=True)\n")
    return exp, data, ctl


def expected(data: str, epochs: int) -> str:
    return data + "".join(f"epoch {i}\n" for i in range(1, epochs + 1))


def states(store_root: Path) -> list[Path]:
    return sorted((store_root / "state").iterdir())


def test_killed_training_resumes_from_its_state_with_the_bytes_of_an_uninterrupted_run(
        tmp_path: Path, store_root: Path) -> None:
    exp, _, ctl = setup(tmp_path)
    (ctl / "slow").touch()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any((d / "model").is_file() and "epoch 2" in (d / "model").read_text()
                      for d in (store_root / "state").glob("*")):
            assert proc.poll() is None and time.monotonic() < deadline, "training never reached epoch 2"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # kill -9 of nw mid-step: its watchdog stops the training
    finally:
        proc.kill()
        proc.wait()
    assert not (Path("nix-workflow-output") / "model").exists()
    (ctl / "slow").unlink()

    resumed = nw("run", str(exp), check=True)
    assert "resuming after epoch" in resumed.stdout and "starting fresh" not in resumed.stdout
    final = (Path("nix-workflow-output") / "model" / "model").read_bytes()
    assert final == expected("data-v1\n", 4).encode()

    other = tmp_path / "other-store"  # the same experiment, never interrupted, in a store of its own
    nw("run", str(exp), "--out-link", str(tmp_path / "uninterrupted"), env={"NIX_WORKFLOW_STORE": str(other)},
       check=True)
    assert (tmp_path / "uninterrupted" / "model" / "model").read_bytes() == final
    assert states(store_root) == []  # the state of a completed step is removed once it is recorded


def test_a_changed_dataset_starts_from_scratch_not_from_stale_state(tmp_path: Path, store_root: Path) -> None:
    exp, data, ctl = setup(tmp_path)
    (ctl / "fail-after-2").touch()
    first = nw("run", str(exp))
    assert first.returncode == 1 and "crash after epoch 2" in first.stdout
    assert len(states(store_root)) == 1  # kept for a resume

    data.write_text("data-v2\n")  # the dataset step re-runs with the same recipe but new bytes
    nw("run", "--force", str(exp), "dataset", check=True)
    (ctl / "fail-after-2").unlink()
    second = nw("run", str(exp), check=True)
    assert "starting fresh" in second.stdout and "resuming" not in second.stdout  # old code: resumed v1's model
    assert (Path("nix-workflow-output") / "model" / "model").read_text() == expected("data-v2\n", 4)


def test_interrupt_message_names_the_kept_state(tmp_path: Path, store_root: Path) -> None:
    exp, _, ctl = setup(tmp_path, epochs=200)
    (ctl / "slow").touch()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "nixlib.cli", "run", str(exp)], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any((d / "model").is_file() for d in (store_root / "state").glob("*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "nothing partial was stored" in err and "$state of resumable step(s) model was kept" in err
    assert "run the same command again to resume" in err
    assert len(states(store_root)) == 1


def test_gc_collects_the_state_of_completed_steps_and_old_unused_state(tmp_path: Path, store_root: Path) -> None:
    exp, _, ctl = setup(tmp_path)
    (ctl / "fail-after-1").touch()
    assert nw("run", str(exp)).returncode == 1
    [failed_state] = states(store_root)
    assert "removed" in nw("gc", check=True).stderr
    assert failed_state.is_dir()  # recent and never completed: kept for a resume

    (ctl / "fail-after-1").unlink()
    nw("run", str(exp), check=True)
    rk = failed_state.name
    # A crash between the record and the removal of the state leaves it behind: gc removes it (completed).
    (store_root / "state" / rk).mkdir()
    (store_root / "state" / rk / "model").write_text("left by a crash\n")
    orphan = store_root / "state" / ("a" * 52)  # no realisation: goes once unused for --min-age
    orphan.mkdir()
    (orphan / "x").write_text("x")
    nw("gc", check=True)
    assert not (store_root / "state" / rk).exists() and orphan.exists()
    nw("gc", "--min-age", "0", check=True)
    assert not orphan.exists()
    assert (Path("nix-workflow-output") / "model" / "model").read_text() == expected("data-v1\n", 4)


def test_keep_failed_keeps_the_build_directory_and_prints_it(tmp_path: Path, store_root: Path) -> None:
    exp = tmp_path / "experiment.py"
    exp.write_text("from nixlib import output\n"
                   "broken = output('echo half > $out/part; echo scratch > $TMPDIR/t; exit 3')\n")
    plain = nw("run", str(exp))
    assert plain.returncode == 1 and not list((store_root / "failed").iterdir())  # (made with the store's layout)

    kept = nw("run", "--keep-failed", str(exp))
    assert kept.returncode == 1
    [entry] = (store_root / "failed").iterdir()
    assert f"build directory is kept at {entry}" in kept.stderr
    assert (entry / "out" / "part").read_text() == "half\n" and (entry / "t").read_text() == "scratch\n"
    assert not any((store_root / "realisations").glob("*.json"))  # never recorded, so never served
    assert nw("run", str(exp)).returncode == 1  # and a later run still runs it

    nw("gc", check=True)
    assert entry.exists()  # recent: kept for debugging
    nw("gc", "--min-age", "0", check=True)
    assert not entry.exists()


def test_resumable_in_nix(tmp_path: Path, store_root: Path) -> None:
    require_nix("nix-instantiate")
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    exp = tmp_path / "experiment.nix"
    exp.write_text("let inherit ((import <nixworkflow>).lib) output; in {\n"
                   "  train = output { cmd = ''\n"
                   "    if [ -f $state/epoch1 ]; then cp $state/epoch1 $out/model\n"
                   "    else echo ckpt > $state/epoch1; exit 1; fi\n"
                   "  ''; resumable = true; };\n"
                   "  plain = output ''test -z \"''${state:-}\" && echo no-state > $out/s'';\n"
                   "}\n")
    first = nw("run", str(exp), "-k")
    assert first.returncode == 1 and "step 'train' failed" in first.stderr, first.stderr
    assert (Path("nix-workflow-output") / "plain" / "s").read_text() == "no-state\n"
    nw("run", str(exp), check=True)
    assert (Path("nix-workflow-output") / "train" / "model").read_text() == "ckpt\n"


def test_resumable_luigi_task(store_root: Path) -> None:
    luigi = pytest.importorskip("luigi")
    from luigi.task_register import Register

    import luigi_nixworkflow
    from luigi_nixworkflow import NixTask

    class ResumableTrain(NixTask):
        resumable = True

        def command(self) -> str:
            return ("if [ -f $state/epoch1 ]; then cp $state/epoch1 $out/model; "
                    "else echo ckpt > $state/epoch1; exit 1; fi")

    def build() -> Any:
        Register.clear_instance_cache()
        luigi_nixworkflow.reset()
        return luigi.build([ResumableTrain()], local_scheduler=True, detailed_summary=True, log_level="CRITICAL")

    assert build().status != luigi.execution_summary.LuigiStatusCode.SUCCESS  # old code: $state is unset (-u)
    assert len(states(store_root)) == 1
    assert build().status == luigi.execution_summary.LuigiStatusCode.SUCCESS
    assert (ResumableTrain().output() / "model").open().read() == "ckpt\n"


SNAKEFILE = '''
rule train:
    output: "model.txt"
    resources: nix_resumable=1
    shell: 'if [ -f "$state/epoch1" ]; then cp "$state/epoch1" {output}; else echo ckpt > "$state/epoch1"; exit 1; fi'

rule plain:
    output: "plain.txt"
    shell: 'test -z "${{state:-}}" && echo no-state > {output}'
'''


@pytest.mark.slow
def test_resumable_snakemake_rule(tmp_path: Path, store_root: Path) -> None:
    pytest.importorskip("snakemake")
    from tests.test_snakemake import ok, snakemake

    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)
    first = snakemake(wf, "model.txt", "plain.txt", "--keep-going")
    assert first.returncode != 0 and not (wf / "model.txt").exists()  # old code: $state unset, so no state either
    assert (wf / "plain.txt").read_text() == "no-state\n"
    assert len(states(store_root)) == 1
    ok(snakemake(wf, "model.txt"))
    assert (wf / "model.txt").read_text() == "ckpt\n"
    assert states(store_root) == []  # completed: its state is removed
