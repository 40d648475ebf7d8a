"""Wave 16 of `nw run`: the project files realistic ML/science projects run a step through (a Makefile, a run.sh
pipeline's scripts, `python -c` one-liners, notebooks, Hydra config directories, YAML `defaults:` includes) are keyed
by content; each a regression test that served a stale result before its fix, and checks an unchanged re-run is
served."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import nw


def _state(exp: Path, cwd: Path) -> dict[str, str]:
    status = nw("status", str(exp), "--json", cwd=cwd)
    assert status.returncode == 0, status.stderr
    return {s["name"]: s["state"] for s in json.loads(status.stdout)}


def _run(exp: Path, cwd: Path) -> None:
    ran = nw("run", str(exp), cwd=cwd)
    assert ran.returncode == 0, ran.stdout + ran.stderr


_HEAD = "from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"


def test_a_makefile_step_is_keyed_by_the_makefile_its_recipes_scripts_and_their_data(tmp_path: Path) -> None:
    """`make -C {HERE} OUT=$out all` and `cd {HERE} && make`: the command names a directory only, so editing the
    Makefile, the script a recipe runs (prep.py) or the data file that script reads served the old result. A rule's
    target the recipe writes into the project (results/out.txt) keys nothing: the step stays served."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "x.txt").write_text("d1\n")
    (proj / "prep.py").write_text("print(open('data/x.txt').read().strip().upper())\n")
    (proj / "Makefile").write_text(".PHONY: all\nall: results/out.txt\n\tcp results/out.txt $(OUT)/o\n\n"
                                   "results/out.txt: data/x.txt prep.py\n\tmkdir -p results\n\tpython3 prep.py > $@\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "mk = output(f'make -s -C {HERE} OUT=$out all')\n"
                           "mk2 = output(f'cd {HERE} && make -s OUT=$out all && echo {mk} >/dev/null')\n")  # (after mk)
    out = tmp_path / "nix-workflow-output"
    _run(exp, tmp_path)
    assert (out / "mk" / "o").read_text() == "D1\n"
    assert _state(exp, tmp_path) == {"mk": "cached", "mk2": "cached"}  # (results/out.txt written: not keyed)
    (proj / "data" / "x.txt").write_text("d2\n")
    assert _state(exp, tmp_path) == {"mk": "to run", "mk2": "to run"}
    _run(exp, tmp_path)
    assert (out / "mk" / "o").read_text() == "D2\n"
    assert _state(exp, tmp_path) == {"mk": "cached", "mk2": "cached"}
    (proj / "prep.py").write_text("print(open('data/x.txt').read().strip().lower())\n")
    assert _state(exp, tmp_path) == {"mk": "to run", "mk2": "to run"}
    _run(exp, tmp_path)
    assert (out / "mk" / "o").read_text() == "d2\n"
    makefile = (proj / "Makefile").read_text()
    (proj / "Makefile").write_text(makefile.replace("cp results", "echo v2 > $(OUT)/v; cp results"))
    assert _state(exp, tmp_path) == {"mk": "to run", "mk2": "to run"}
    _run(exp, tmp_path)
    assert (out / "mk" / "v").read_text() == "v2\n"
    assert _state(exp, tmp_path) == {"mk": "cached", "mk2": "cached"}


def test_data_a_script_run_by_a_pipeline_script_reads_is_keyed(tmp_path: Path) -> None:
    """`bash {HERE}/run.sh` where run.sh does `cd "$(dirname "$0")"; python3 scripts/prep.py` and prep.py reads
    data/x.txt: prep.py was keyed with run.sh, but not the data file it reads, so editing it served the old result."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "scripts").mkdir()
    (proj / "data" / "x.txt").write_text("x1\n")
    (proj / "run.sh").write_text('#!/bin/bash\nset -e\ncd "$(dirname "$0")"\npython3 scripts/prep.py\n')
    (proj / "scripts" / "prep.py").write_text("print(open('data/x.txt').read().strip())\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "pipe = output(f'bash {HERE}/run.sh > $out/o')\n")
    _run(exp, tmp_path)
    assert _state(exp, tmp_path) == {"pipe": "cached"}
    (proj / "data" / "x.txt").write_text("x2\n")
    assert _state(exp, tmp_path) == {"pipe": "to run"}
    why = nw("why", "-f", str(exp), "pipe", cwd=tmp_path)
    assert "project file ./data/x.txt changed" in why.stdout, why.stdout + why.stderr
    _run(exp, tmp_path)
    assert (tmp_path / "nix-workflow-output" / "pipe" / "o").read_text() == "x2\n"
    assert _state(exp, tmp_path) == {"pipe": "cached"}


def test_a_python_c_one_liner_is_keyed_by_the_project_modules_it_imports(tmp_path: Path) -> None:
    """`cd {HERE} && python3 -c 'import helpers; …'` and `PYTHONPATH={HERE} python3 -c "from helpers import f; …"`:
    the command named no script, so editing helpers.py (or a module it imports) served the old result."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "helpers.py").write_text("import consts\ndef f():\n    return consts.K\n")
    (proj / "consts.py").write_text("K = 1\n")
    (proj / "other.py").write_text("X = 0\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "one = output(f\"cd {HERE} && python3 -c 'import helpers; print(helpers.f())' > $out/o\")\n"
                           "two = output(f'PYTHONPATH={HERE} python3 -u -c \"from helpers import f; print(f())\" '\n"
                           "             '> $out/o')\n")
    out = tmp_path / "nix-workflow-output"
    _run(exp, tmp_path)
    assert (out / "one" / "o").read_text() == "1\n"
    (proj / "other.py").write_text("X = 1\n")  # (a module it does not import: still served)
    assert _state(exp, tmp_path) == {"one": "cached", "two": "cached"}
    (proj / "consts.py").write_text("K = 2\n")
    assert _state(exp, tmp_path) == {"one": "to run", "two": "to run"}
    _run(exp, tmp_path)
    assert (out / "one" / "o").read_text() == (out / "two" / "o").read_text() == "2\n"
    assert _state(exp, tmp_path) == {"one": "cached", "two": "cached"}


def test_a_notebook_is_keyed_with_the_modules_and_data_files_its_code_cells_use(tmp_path: Path) -> None:
    """A notebook a step executes (`… {HERE}/nb.ipynb`, as `jupyter nbconvert --execute` or papermill would): its
    code cells' `import helpers` and `open("data/x.txt")` were not seen (its JSON escapes the quotes), so editing
    helpers.py or data/x.txt served the old result."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "x.txt").write_text("x1\n")
    (proj / "helpers.py").write_text("def f():\n    return 1\n")
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# Notebook\n"]},
             {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
              "source": ["%matplotlib inline\n", "import helpers\n",
                         "print(open(\"data/x.txt\").read().strip(), helpers.f())\n"]}]
    (proj / "nb.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    # (a stand-in for `jupyter nbconvert --execute`: runs the code cells in the notebook's directory)
    runner = ("import json, os, sys; p = sys.argv[1]; os.chdir(os.path.dirname(p)); sys.path.insert(0, '.'); "
              "exec('\\n'.join(''.join(l for l in c['source'] if not l.startswith('%')) "
              "for c in json.load(open(p))['cells'] if c['cell_type'] == 'code'))")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + f"RUNNER = {runner!r}\n"
                           "nb = output(f'python3 -c \"{RUNNER}\" {HERE}/nb.ipynb > $out/o')\n")
    out = tmp_path / "nix-workflow-output"
    _run(exp, tmp_path)
    assert (out / "nb" / "o").read_text() == "x1 1\n"
    assert _state(exp, tmp_path) == {"nb": "cached"}
    (proj / "helpers.py").write_text("def f():\n    return 2\n")
    assert _state(exp, tmp_path) == {"nb": "to run"}
    _run(exp, tmp_path)
    assert (out / "nb" / "o").read_text() == "x1 2\n"
    (proj / "data" / "x.txt").write_text("x2\n")
    assert _state(exp, tmp_path) == {"nb": "to run"}
    _run(exp, tmp_path)
    assert (out / "nb" / "o").read_text() == "x2 2\n"
    assert _state(exp, tmp_path) == {"nb": "cached"}


_MINIHYDRA = '''"""A stand-in for hydra.main: composes <config_path>/<config_name>.yaml, its defaults, overrides."""
import os, sys, yaml

def main(config_path, config_name):
    def wrap(fn):
        def run():
            base = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), config_path)
            args = sys.argv[1:]
            if "--config-path" in args:
                base = args[args.index("--config-path") + 1]
            over = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
            top = yaml.safe_load(open(os.path.join(base, config_name + ".yaml")))
            cfg = {}
            for d in top.pop("defaults", []):
                if isinstance(d, dict):
                    for g, o in d.items():
                        cfg[g] = yaml.safe_load(open(os.path.join(base, g, over.get(g, o) + ".yaml")))
            cfg.update(top)
            fn(cfg)
        return run
    return wrap
'''


def test_a_hydra_config_directory_is_keyed_by_its_configs(tmp_path: Path) -> None:
    """`@hydra.main(config_path="conf", config_name="config")` in train.py, with `model=big` on the command line, and
    `--config-path {HERE}/conf2`: the configs composed from conf/model/big.yaml were named nowhere, so editing it
    served the old result. Every YAML file of the config directory is keyed (not what the step writes elsewhere)."""
    proj = tmp_path / "proj"
    (proj / "conf" / "model").mkdir(parents=True)
    (proj / "conf2" / "model").mkdir(parents=True)
    for conf in ("conf", "conf2"):
        (proj / conf / "config.yaml").write_text("defaults:\n  - model: small\n  - _self_\nseed: 1\n")
        (proj / conf / "model" / "small.yaml").write_text("width: 8\n")
        (proj / conf / "model" / "big.yaml").write_text("width: 64\n")
    (proj / "minihydra.py").write_text(_MINIHYDRA)
    (proj / "train.py").write_text("import minihydra\n\n@minihydra.main(config_path='conf', config_name='config')\n"
                                   "def train(cfg):\n    print(cfg['model']['width'])\n    open('log.txt', 'w')\n\n"
                                   "if __name__ == '__main__':\n    train()\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "big = output(f'python3 {HERE}/train.py model=big > $out/o')\n"
                           "cli = output(f'python3 {HERE}/train.py --config-path {HERE}/conf2 model=big > $out/o')\n")
    out = tmp_path / "nix-workflow-output"
    _run(exp, tmp_path)
    assert (out / "big" / "o").read_text() == (out / "cli" / "o").read_text() == "64\n"
    assert _state(exp, tmp_path) == {"big": "cached", "cli": "cached"}
    (proj / "conf" / "model" / "big.yaml").write_text("width: 65\n")
    (proj / "conf2" / "model" / "big.yaml").write_text("width: 66\n")
    assert _state(exp, tmp_path) == {"big": "to run", "cli": "to run"}
    _run(exp, tmp_path)
    assert (out / "big" / "o").read_text() == "65\n" and (out / "cli" / "o").read_text() == "66\n"
    assert _state(exp, tmp_path) == {"big": "cached", "cli": "cached"}


def test_a_yaml_config_is_keyed_with_the_configs_its_defaults_include(tmp_path: Path) -> None:
    """`python {HERE}/train.py --config {HERE}/configs/a.yaml` where a.yaml has `defaults: [base, {optim: adam}]`
    (and `_base_: ../shared.yaml`): a.yaml was keyed, the files it includes were not, so editing them served the old
    result."""
    proj = tmp_path / "proj"
    (proj / "configs" / "optim").mkdir(parents=True)
    (proj / "configs" / "a.yaml").write_text("defaults:\n  - base\n  - optim: adam\n  - _self_\n"
                                             "_base_: ../shared.yaml\nlr: 0.1\n")
    (proj / "configs" / "base.yaml").write_text("epochs: 3\n")
    (proj / "configs" / "optim" / "adam.yaml").write_text("beta: 0.9\n")
    (proj / "shared.yaml").write_text("seed: 0\n")
    (proj / "train.py").write_text(
        "import os, sys, yaml\npath = sys.argv[2]\nhere = os.path.dirname(path)\ncfg = yaml.safe_load(open(path))\n"
        "merged = yaml.safe_load(open(os.path.join(here, cfg.pop('_base_'))))\n"
        "for d in cfg.pop('defaults'):\n"
        "    name = d if isinstance(d, str) else '/'.join(next(iter(d.items())))\n"
        "    if name != '_self_':\n        merged.update(yaml.safe_load(open(os.path.join(here, name + '.yaml'))))\n"
        "merged.update(cfg)\nprint(sorted(merged.items()))\n")
    exp = proj / "experiment.py"
    exp.write_text(_HEAD + "cfg = output(f'python3 {HERE}/train.py --config {HERE}/configs/a.yaml > $out/o')\n")
    out = tmp_path / "nix-workflow-output"
    _run(exp, tmp_path)
    assert "('epochs', 3)" in (out / "cfg" / "o").read_text()
    assert _state(exp, tmp_path) == {"cfg": "cached"}
    for f, text, seen in (("configs/base.yaml", "epochs: 4\n", "('epochs', 4)"),
                          ("configs/optim/adam.yaml", "beta: 0.5\n", "('beta', 0.5)"),
                          ("shared.yaml", "seed: 7\n", "('seed', 7)")):
        (proj / f).write_text(text)
        assert _state(exp, tmp_path) == {"cfg": "to run"}, f
        _run(exp, tmp_path)
        assert seen in (out / "cfg" / "o").read_text()
        assert _state(exp, tmp_path) == {"cfg": "cached"}
