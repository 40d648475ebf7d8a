"""Probing wave 16b (Luigi): the ML project shapes `nw run` learnt to key this session (a Makefile a step runs, a script
chain reading data, YAML defaults: includes, a Hydra config directory, a python -c one-liner, papermill), in a Luigi
pipeline migrated by changing its base class to NixTask: a legacy run() and a command(). Each was stale (an edit
served the old result) or ran once more than needed; run with the real `luigi` command, a new process per build,
against a private store. Each test checks the first build, that an edit re-runs the task, and that an unchanged
re-build is served."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.luigi_run import LUIGI

HEAD = '''
import os, subprocess, sys
import luigi
import yaml
from luigi_nixworkflow import NixTask
HERE = os.path.dirname(os.path.abspath(__file__))
'''


def build(task: str, extra_path: str = "") -> str:
    """`luigi --module pipe TASK --local-scheduler`: "ran" or "served"."""
    path = os.pathsep.join(str(p) for p in (Path.cwd(), REPO, extra_path) if p)
    proc = subprocess.run([LUIGI, "--module", "pipe", task, "--local-scheduler", "--no-lock"],
                          env=dict(os.environ, PYTHONPATH=path), text=True, capture_output=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "This progress looks :)" in out, out[-3000:]
    return "served" if "complete ones were encountered" in out and "ran successfully" not in out else "ran"


def write(files: dict[str, str]) -> None:
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)


def edits_rerun(task: str, edits: list[tuple[str, str]], extra_path: str = "") -> None:
    """First build runs, an unchanged re-build is served, and each edit re-runs the task (then is served again)."""
    assert build(task, extra_path) == "ran"
    assert build(task, extra_path) == "served"
    for name, text in edits:
        Path(name).write_text(text)
        assert build(task, extra_path) == "ran", f"stale after editing {name}"
        assert build(task, extra_path) == "served", f"not served after editing {name}"


MAKE_FILES = {"sub/Makefile": "all:\n\tpython3 prep.py > $(OUT)\n",
              "sub/prep.py": "print(open('data/x.txt').read().strip())\n", "sub/data/x.txt": "one\n"}
MAKE_EDITS = [("sub/Makefile", "all:\n\tpython3 prep.py > $(OUT)\n\techo more >> $(OUT)\n"),
              ("sub/prep.py", "print(open('data/x.txt').read().strip() + '!')\n"), ("sub/data/x.txt", "two\n")]


def test_a_makefile_a_legacy_run_makes_is_keyed_with_its_recipes_scripts_and_their_data() -> None:
    """run() calls `subprocess.run(["make", "-C", "sub", ...])`: the Makefile, the prep.py its recipe runs and the
    data prep.py reads were all unkeyed (editing any served the old result)."""
    write({**MAKE_FILES, "pipe.py": HEAD + '''
class T(NixTask):
    def output(self):
        return luigi.LocalTarget("out/made.txt")
    def run(self):
        self.output().makedirs()
        subprocess.run(["make", "-C", "sub", "OUT=" + os.path.abspath(self.output().path)], check=True)
'''})
    edits_rerun("T", MAKE_EDITS)
    assert Path("out/made.txt").read_text() == "two!\nmore\n"


def test_a_makefile_a_command_runs_is_keyed_with_its_recipes_scripts_and_their_data() -> None:
    """command() returns `make -C {HERE}/sub OUT=$out/made.txt`: as for nw run, the makefile is code now."""
    write({**MAKE_FILES, "pipe.py": HEAD + '''
class T(NixTask):
    def command(self):
        return f"make -C {HERE}/sub OUT={self.output()}/made.txt"
'''})
    edits_rerun("T", MAKE_EDITS)


CHAIN = {"run.sh": '#!/usr/bin/env bash\nset -eu\ncd "$(dirname "$0")"\npython3 scripts/prep.py > "$1"\n',
         "scripts/prep.py": "print(open('data/x.txt').read().strip())\n", "data/x.txt": "one\n",
         "helpers.py": "def f():\n    return 'a'\n"}


def test_data_a_script_run_by_run_sh_reads_and_a_python_c_ones_modules_are_keyed() -> None:
    """run() runs `bash run.sh`, which runs scripts/prep.py reading data/x.txt: prep.py was keyed, its data not. A
    command() running `cd {HERE} && python3 -c 'import helpers; ...'`: helpers.py was not keyed."""
    write({**CHAIN, "pipe.py": HEAD + '''
class T(NixTask):
    def output(self):
        return luigi.LocalTarget("out/x.txt")
    def run(self):
        self.output().makedirs()
        subprocess.run(["bash", "run.sh", os.path.abspath(self.output().path)], check=True)


class C(NixTask):
    def command(self):
        return f"cd {HERE} && python3 -c 'import helpers; print(helpers.f())' > {self.output()}/x.txt"
'''})
    edits_rerun("T", [("data/x.txt", "two\n")])
    assert Path("out/x.txt").read_text() == "two\n"
    edits_rerun("C", [("helpers.py", "def f():\n    return 'b'\n")])


CONF = {"conf/train.yaml": "defaults:\n  - base\n  - optim: adam\n  - _self_\nepochs: 3\n",
        "conf/base.yaml": "lr: 0.1\n", "conf/optim/adam.yaml": "beta: 0.9\n"}
CONF_EDITS = [("conf/base.yaml", "lr: 0.2\n"), ("conf/optim/adam.yaml", "beta: 0.8\n")]
LOADER = '''
def load(path):
    cfg = yaml.safe_load(open(path))
    out = {}
    for e in cfg.pop("defaults", []):
        if e != "_self_":
            name = e if isinstance(e, str) else "/".join(next(iter(e.items())))
            out.update(yaml.safe_load(open(os.path.join(os.path.dirname(path), name + ".yaml"))))
    out.update(cfg)
    return out
'''


def test_the_configs_a_yaml_config_includes_by_its_defaults_are_keyed() -> None:
    """`yaml.safe_load(open("conf/train.yaml"))` in run(), and `python3 {HERE}/train.py {HERE}/conf/train.yaml` in a
    command(): train.yaml was keyed, not the base.yaml and optim/adam.yaml its `defaults:` include."""
    train = "import sys, yaml, os\n" + LOADER + "open(sys.argv[1], 'w').write(repr(load(sys.argv[2])))\n"
    write({**CONF, "train.py": train,
           "pipe.py": HEAD + LOADER + '''
class T(NixTask):
    def output(self):
        return luigi.LocalTarget("out/cfg.txt")
    def run(self):
        cfg = load("conf/train.yaml")
        with self.output().open("w") as f:
            f.write(repr(sorted(cfg.items())))


class C(NixTask):
    def command(self):
        return f"python3 {HERE}/train.py {self.output()}/cfg.txt {HERE}/conf/train.yaml"
'''})
    edits_rerun("T", CONF_EDITS)
    assert "0.8" in Path("out/cfg.txt").read_text()
    edits_rerun("C", [("conf/base.yaml", "lr: 0.3\n"), ("conf/optim/adam.yaml", "beta: 0.7\n")])


FAKE_HYDRA = '''
import functools, os, sys, yaml
def main(config_path, config_name):  # (a stand-in for hydra.main: hydra-core is not installed here)
    def deco(f):
        @functools.wraps(f)
        def run():
            d = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), config_path)
            cfg = yaml.safe_load(open(os.path.join(d, config_name + ".yaml")))
            for a in sys.argv[2:]:
                g, o = a.split("=", 1)
                cfg[g] = yaml.safe_load(open(os.path.join(d, g, o + ".yaml")))
            return f(cfg)
        return run
    return deco
'''
HTRAIN = '''
import sys
from fakehydra import main
@main(config_path="conf", config_name="config")
def train(cfg):
    open(sys.argv[1], "w").write(repr(sorted(cfg.items())))
if __name__ == "__main__":
    train()
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_hydra_config_directory_of_a_script_the_task_runs_is_keyed() -> None:
    """run() runs `htrain.py model=big`, whose `@main(config_path="conf", ...)` composes conf/config.yaml and
    conf/model/big.yaml; a command() runs the same, and another names `--config-path {HERE}/conf2`: editing a config
    served the old result."""
    write({"fakehydra.py": FAKE_HYDRA, "htrain.py": HTRAIN, "conf/config.yaml": "epochs: 3\n",
           "conf/model/big.yaml": "width: 100\n", "conf2/config.yaml": "a: 1\n",
           "show.py": "import sys\nopen(sys.argv[1], 'w').write(open(sys.argv[3] + '/config.yaml').read())\n",
           "pipe.py": HEAD + '''
class T(NixTask):
    def output(self):
        return luigi.LocalTarget("out/cfg.txt")
    def run(self):
        self.output().makedirs()
        subprocess.run([sys.executable, "htrain.py", os.path.abspath(self.output().path), "model=big"], check=True)


class C(NixTask):
    def command(self):
        return f"python3 {HERE}/htrain.py {self.output()}/cfg.txt model=big"


class P(NixTask):
    def command(self):
        return f"python3 {HERE}/show.py {self.output()}/cfg.txt --config-path {HERE}/conf2"
'''})
    edits_rerun("T", [("conf/config.yaml", "epochs: 4\n"), ("conf/model/big.yaml", "width: 200\n")])
    assert "200" in Path("out/cfg.txt").read_text()
    edits_rerun("C", [("conf/model/big.yaml", "width: 300\n")])
    edits_rerun("P", [("conf2/config.yaml", "a: 2\n")])


def _notebook(expr: str) -> str:
    code = [["import nbhelp\n"], ["v = nbhelp.f(open('data/x.txt').read().strip())" + expr + "\n",
                                  "open('result.txt', 'w').write(v)\n"]]
    return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# title"]},
                                 *({"cell_type": "code", "metadata": {}, "source": c, "execution_count": None,
                                    "outputs": []} for c in code)],
                       "metadata": {"kernelspec": {"language": "python", "name": "python3"}}, "nbformat": 4,
                       "nbformat_minor": 5})


FAKE_PAPERMILL = '''
import json, os, sys

def execute_notebook(input_path, output_path, parameters=None, **kw):  # (a stand-in: papermill is not installed)
    nb = json.load(open(input_path))
    here, old, out = os.path.dirname(os.path.abspath(input_path)), os.getcwd(), os.path.abspath(output_path)
    sys.path.insert(0, here)
    os.chdir(here)
    names = dict(parameters or {})
    try:
        for n, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                exec("".join(cell["source"]), names)
                cell["execution_count"], cell["outputs"] = n, [{"output_type": "stream", "text": [str(n)]}]
    finally:
        os.chdir(old)
        sys.path.remove(here)
    json.dump(nb, open(out, "w"))
'''


def test_a_notebook_papermill_executes_is_keyed_and_its_output_notebook_is_not(tmp_path: Path) -> None:
    """run() calls `papermill.execute_notebook("nb/nb.ipynb", "out/executed.ipynb")`: the notebook it writes was
    keyed as code once it existed, so the task ran once more after every build that changed it (an unchanged
    re-build was not served). The notebook it reads, the module and the data its cells use stay keyed, also run in
    place (`execute_notebook("nb/nb.ipynb", "nb/nb.ipynb")`)."""
    site = tmp_path / "site"
    (site / "papermill").mkdir(parents=True)
    (site / "papermill" / "__init__.py").write_text(FAKE_PAPERMILL)
    write({"nb/nb.ipynb": _notebook(""), "nb/nbhelp.py": "def f(x):\n    return x.upper()\n",
           "nb/data/x.txt": "abc\n", "pipe.py": HEAD + '''
import papermill


class T(NixTask):
    def output(self):
        return luigi.LocalTarget("out/result.txt")
    def run(self):
        self.output().makedirs()
        papermill.execute_notebook("nb/nb.ipynb", "out/executed.ipynb", parameters={"alpha": 1})
        os.replace("nb/result.txt", self.output().path)


class InPlace(NixTask):
    def output(self):
        return luigi.LocalTarget("out/inplace.txt")
    def run(self):
        self.output().makedirs()
        papermill.execute_notebook("nb/nb.ipynb", "nb/nb.ipynb")
        os.replace("nb/result.txt", self.output().path)
'''})
    edits_rerun("T", [("nb/nb.ipynb", _notebook(" + '!'")), ("nb/nbhelp.py", "def f(x):\n    return x.lower()\n"),
                      ("nb/data/x.txt", "xyz\n")], str(site))
    assert Path("out/result.txt").read_text() == "xyz!"
    edits_rerun("InPlace", [("nb/nb.ipynb", _notebook(" + '?'")), ("nb/data/x.txt", "uvw\n")], str(site))
    assert Path("out/inplace.txt").read_text() == "uvw?"
