"""Probing wave 20: the environment variables the project scripts a step runs read by name (`os.environ["SCALE"]` in
train.py, `$SCALE` in run.sh, `os.getenv("FACTOR")` in a module train.py imports) are keyed by their values in every
front door (nixlib.envreads), as the Snakemake executor keyed them already: `nw run` and Luigi keyed only the variables
a command itself expands, so the result made under SCALE=2 was served under SCALE=3."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from nixlib import dsl
from nixlib.store import default_root
from tests.helpers import nw
from tests.luigi_run import luigi_cli

_HEAD = "from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"

TRAIN = '''import os
import sys
from helpers import factor
with open(sys.argv[1], "w") as f:
    f.write(os.environ.get("SCALE", "1") + " " + factor() + "\\n")
'''
HELPERS = 'import os\n\n\ndef factor():\n    return os.getenv("FACTOR", "f")\n'
RUN_SH = 'echo "${SCALE:-1}" > "$1"\n'
PLAIN = "import sys\nopen(sys.argv[1], 'w').write('plain\\n')\n"


def _project(root: Path) -> Path:
    """An experiment whose steps run project scripts: train.py (reads SCALE, and FACTOR through helpers.py),
    run.sh (reads $SCALE), plain.py (reads none). Each step appends its name to $NW_TEST_LOG."""
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "train.py").write_text(TRAIN)
    (root / "scripts" / "helpers.py").write_text(HELPERS)
    (root / "run.sh").write_text(RUN_SH)
    (root / "plain.py").write_text(PLAIN)
    exp = root / "experiment.py"
    exp.write_text(_HEAD + "train = output(f'echo train >> $NW_TEST_LOG; cd {HERE} && python3 scripts/train.py "
                           "$out/r.txt')\n"
                           "shell = output(f'echo shell >> $NW_TEST_LOG; bash {HERE}/run.sh $out/r.txt')\n"
                           "plain = output(f'echo plain >> $NW_TEST_LOG; python3 {HERE}/plain.py $out/r.txt')\n")
    return exp


def _run(exp: Path, log: Path, monkeypatch: pytest.MonkeyPatch, **variables: str | None) -> dict[str, object]:
    """`nw run` with the given variables set (None: unset); which steps ran, and what each result holds."""
    _set(monkeypatch, variables)
    before = log.read_text().split() if log.exists() else []
    proc = nw("run", str(exp), cwd=exp.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = log.read_text().split()[len(before):]
    links = exp.parent / "nix-workflow-output"
    return {"ran": sorted(ran), **{s: (links / s / "r.txt").read_text().strip() for s in ("train", "shell", "plain")}}


def _set(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str | None]) -> None:
    for k, v in variables.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)


def test_nw_run_keys_the_variables_its_scripts_read(tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    """`python3 scripts/train.py` reading os.environ["SCALE"] (and FACTOR in the helpers module it imports), and
    `bash run.sh` reading ${SCALE:-1}: SCALE=3 must re-run them (before, the SCALE=2 results were served); a step whose
    script reads no variable is served whatever SCALE holds, and SCALE unset is not SCALE set."""
    monkeypatch.delenv("SCALE", raising=False)
    monkeypatch.delenv("FACTOR", raising=False)
    exp = _project(tmp_path / "proj")
    run = lambda **v: _run(exp, log, monkeypatch, **v)  # noqa: E731
    assert run(SCALE="2") == {"ran": ["plain", "shell", "train"], "train": "2 f", "shell": "2", "plain": "plain"}
    assert run(SCALE="2")["ran"] == []
    assert run(SCALE="3") == {"ran": ["shell", "train"], "train": "3 f", "shell": "3", "plain": "plain"}
    assert run(FACTOR="g") == {"ran": ["train"], "train": "3 g", "shell": "3", "plain": "plain"}
    assert run(SCALE="2", FACTOR=None) == {"ran": [], "train": "2 f", "shell": "2", "plain": "plain"}  # (stored)
    assert run(SCALE=None) == {"ran": ["shell", "train"], "train": "1 f", "shell": "1", "plain": "plain"}
    assert run(SCALE="") == {"ran": ["shell", "train"], "train": "f", "shell": "1", "plain": "plain"}


def test_a_step_whose_scripts_read_no_variable_keeps_its_recipe(tmp_path: Path) -> None:
    """No `environment` field for a step whose command expands no variable and whose scripts read none: its key stays
    the one existing stores hold. One whose script reads SCALE has it, naming SCALE (and not HOME, which says where
    it runs: nixlib.hostenv)."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "plain.py").write_text(PLAIN)
    (root / "home.py").write_text("import os, sys\nopen(sys.argv[1], 'w').write(os.environ['HOME'] + "
                                  "os.getenv('SCALE', ''))\n")
    exp = root / "experiment.py"
    exp.write_text(_HEAD + "plain = output(f'python3 {HERE}/plain.py $out/r.txt')\n"
                           "home = output(f'python3 {HERE}/home.py $out/r.txt')\n")
    workflow = dsl.load(str(exp))
    assert "environment" not in workflow.recipes["plain"].extra
    keyed = workflow.recipes["home"].extra["environment"]
    assert "SCALE" in keyed and "HOME" not in keyed, keyed


# ---- Luigi ---------------------------------------------------------------------------------------------------------

PIPELINE = '''
import os
import subprocess
import sys
from pathlib import Path

import luigi

from luigi_nixworkflow import NixTask

HERE = Path(__file__).parent


def note(what):
    with open(os.environ["NW_TEST_LOG"], "a") as log:
        log.write(what + "\\n")


class Shell(NixTask):
    def command(self):
        return f'echo shell >> "$NW_TEST_LOG"; bash {HERE}/run.sh $out/r.txt'


class Fit(NixTask):
    def output(self):
        return luigi.LocalTarget("out/fit.txt")

    def run(self):
        note("fit")
        os.makedirs("out", exist_ok=True)
        subprocess.run([sys.executable, "scripts/train.py", self.output().path], check=True)


class Plain(NixTask):
    def command(self):
        return f'echo plain >> "$NW_TEST_LOG"; python3 {HERE}/plain.py $out/r.txt'


class Fitted(NixTask):  # (R is not run here: only its recipe is looked at)
    def output(self):
        return luigi.LocalTarget("out/fitted.txt")

    def run(self):
        subprocess.run(["Rscript", "fit.R", self.output().path], check=True)


class EnvReadsAll(luigi.WrapperTask):
    def requires(self):
        return [Shell(), Fit(), Plain()]
'''


def _luigi(log: Path, monkeypatch: pytest.MonkeyPatch, **variables: str | None) -> dict[str, object]:
    """`luigi --module envpipe EnvReadsAll` with the given variables (None: unset): which tasks ran, their results."""
    _set(monkeypatch, variables)
    before = log.read_text().split() if log.exists() else []
    luigi_cli("--module", "envpipe", "EnvReadsAll")
    ran = log.read_text().split()[len(before):] if log.exists() else []
    links = Path("nix-workflow-output")
    shell, plain = (next(links.glob(f"{n}*")) / "r.txt" for n in ("Shell", "Plain"))
    return {"ran": sorted(ran), "shell": shell.read_text().strip(), "fit": Path("out/fit.txt").read_text().strip(),
            "plain": plain.read_text().strip()}


def test_luigi_keys_the_variables_the_scripts_a_task_runs_read(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command() running `bash {HERE}/run.sh` that reads ${SCALE:-1}, and a run() running scripts/train.py with
    subprocess (reading SCALE, and FACTOR in the helpers module it imports): SCALE=3 must re-run both (before, the
    SCALE=2 results were served: only run()'s own os.environ reads and command()'s own `$X` were keyed). A task whose
    script reads no variable is served whatever SCALE holds."""
    monkeypatch.delenv("SCALE", raising=False)
    monkeypatch.delenv("FACTOR", raising=False)
    Path("envpipe.py").write_text(PIPELINE)
    Path("scripts").mkdir()
    Path("scripts/train.py").write_text(TRAIN)
    Path("scripts/helpers.py").write_text(HELPERS)
    Path("run.sh").write_text(RUN_SH)
    Path("plain.py").write_text(PLAIN)
    assert _luigi(log, monkeypatch, SCALE="2") == {"ran": ["fit", "plain", "shell"], "shell": "2", "fit": "2 f",
                                                   "plain": "plain"}
    assert _luigi(log, monkeypatch, SCALE="2")["ran"] == []
    assert _luigi(log, monkeypatch, SCALE="3") == {"ran": ["fit", "shell"], "shell": "3", "fit": "3 f",
                                                   "plain": "plain"}
    assert _luigi(log, monkeypatch, FACTOR="g") == {"ran": ["fit"], "shell": "3", "fit": "3 g", "plain": "plain"}
    assert _luigi(log, monkeypatch, SCALE="2", FACTOR=None) == {"ran": [], "shell": "2", "fit": "2 f",
                                                                "plain": "plain"}
    assert _luigi(log, monkeypatch, SCALE=None)["ran"] == ["fit", "shell"]


def test_luigi_task_reading_no_variable_keeps_its_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `runs_environment` field for a task whose scripts read no variable (existing stores stay cached); the one
    whose run.sh reads $SCALE names it, and so does the one whose run() runs `Rscript fit.R` reading
    `Sys.getenv("SCALE")` (before, neither was keyed)."""
    monkeypatch.syspath_prepend(str(Path.cwd()))
    Path("envpipe.py").write_text(PIPELINE)
    Path("run.sh").write_text(RUN_SH)
    Path("plain.py").write_text(PLAIN)
    Path("fit.R").write_text('scale <- as.numeric(Sys.getenv("SCALE", unset = "1"))\nargs <- commandArgs(TRUE)\n'
                             'writeLines(as.character(scale), args[1])\n')
    sys.modules.pop("envpipe", None)
    pipeline = importlib.import_module("envpipe")
    root = str(default_root())
    plain = pipeline.Plain().nix_recipe(root=root)
    shell = pipeline.Shell().nix_recipe(root=root)
    assert "runs_environment" not in plain.extra["luigi"]
    assert sorted(shell.extra["luigi"]["runs_environment"]) == ["SCALE"]  # (run.sh: `${SCALE:-1}`, `$1`)
    fitted = pipeline.Fitted().nix_recipe(root=root)
    assert sorted(fitted.extra["luigi"]["runs_environment"]) == ["SCALE"]
