"""A Luigi command() that expands a variable of the worker's environment (`echo seed=$SEED`) is keyed by it, as a
command of `nw run` is (nixlib.hostenv): `SEED=2 luigi …` served the output made with SEED=1. A pure task sees none
of the worker's variables, so none is keyed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

PIPELINE = '''
from luigi_nixworkflow import NixTask

class Seeded(NixTask):
    def command(self):
        return "echo seed=${SEED:-none} > $out/x"
'''


def run(cwd: Path, seed: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SEED"} | ({"SEED": seed} if seed is not None else {})
    env["PYTHONPATH"] = f"{REPO}:{cwd}"
    done = subprocess.run([sys.executable, "-m", "luigi", "--module", "pipeline", "Seeded", "--local-scheduler"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    (out,) = (cwd / "nix-workflow-output").glob("Seeded*")
    return (out / "x").read_text()


def test_a_variable_command_expands_is_keyed(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    assert run(tmp_path, "1") == "seed=1\n"
    assert run(tmp_path, "2") == "seed=2\n"
    assert run(tmp_path, None) == "seed=none\n"
    assert run(tmp_path, "1") == "seed=1\n"  # served again
