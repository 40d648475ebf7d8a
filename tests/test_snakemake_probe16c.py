"""Probe 16c of `snakemake --executor nixworkflow`: the ML project shapes nw run and Luigi key since nwrun16/luigi16b
(a Makefile, a script chain, a python -c one-liner, Hydra config directories, YAML includes, notebooks), with the
real snakemake CLI, make and bash. Each edit must re-run exactly the rules that depend on it (stale otherwise), and
an unchanged re-run is restored from the store. Each test failed before its fix."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

NOTE = "import os\nopen(os.environ['NW_TEST_LOG'], 'a').write('{name}\\n')\n"


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(where: Path) -> None:
        text = (where / path).read_text()
        assert old in text
        (where / path).write_text(text.replace(old, new, 1))
    return apply


def check(where: Path, log: Path, rules: set[str], edits: list[tuple[str, Callable[[Path], None], set[str]]],
          env: dict[str, str] | None = None) -> None:
    """First run runs every rule; an unchanged re-run runs none; each edit re-runs exactly its rules."""
    def run() -> set[str]:
        before = executions(log)
        wipe(where, "out")
        ok(snakemake(where, env=env))
        return set((executions(log) - before).elements())
    assert run() == rules
    assert run() == set(), "an unchanged re-run must be restored from the store"
    for label, apply, wanted in edits:
        apply(where)
        assert run() == wanted, f"after editing {label}"


SHELL = {
    "Snakefile": '''
rule all:
    input: "out/make.txt", "out/chain.txt", "out/direct.txt", "out/inline.txt", "out/hydra.txt", "out/deco.txt"

rule make:
    output: "out/make.txt"
    shell: "make -C sub OUT=$PWD/{output}"

rule chain:
    output: "out/chain.txt"
    shell: "bash scripts/run.sh {output}"

rule direct:
    output: "out/direct.txt"
    shell: "python3 scripts/direct.py > {output}"

rule inline:
    output: "out/inline.txt"
    shell: "python3 -c 'import helpers; helpers.main(\\"{output}\\")'"

rule hydra:
    output: "out/hydra.txt"
    shell: "python3 scripts/train.py --config-path conf model=big {output}"

rule deco:
    output: "out/deco.txt"
    shell: "python3 scripts/fit.py {output}"
''',
    "sub/Makefile": "all:\n\tpython3 prep.py > $(OUT)\n",
    "sub/prep.py": NOTE.format(name="make") + "print(open('data/m.txt').read().strip(), 'v1')\n",
    "sub/data/m.txt": "m1\n",
    "scripts/run.sh": 'source "$(dirname "$0")/lib.sh"\npython3 scripts/prep.py > "$1"\n',
    "scripts/lib.sh": "export GREETING=hello1\n",
    "scripts/prep.py": NOTE.format(name="chain") + "print(os.environ['GREETING'], open('data/x.txt').read())\n",
    "scripts/direct.py": NOTE.format(name="direct") + "print(open('data/d.txt').read())\n",
    "data/x.txt": "x1\n",
    "data/d.txt": "d1\n",
    "helpers.py": "import util\n" + NOTE.format(name="inline") + "def main(o):\n    open(o, 'w').write(util.V)\n",
    "util.py": "V = 'v1'\n",
    "scripts/train.py": "import sys, yaml\n" + NOTE.format(name="hydra") +
                        "a = sys.argv\ncp = a[a.index('--config-path') + 1]\n"
                        "cfg = [yaml.safe_load(open(f'{cp}/config.yaml')),\n"
                        "       yaml.safe_load(open(f'{cp}/model/big.yaml'))]\n"
                        "open(a[-1], 'w').write(repr(cfg))\n",
    "conf/config.yaml": "lr: 0.1\n",
    "conf/model/big.yaml": "width: 10\n",
    # a stand-in for hydra.main (not installed): configs read from config_path beside the script
    "scripts/hydrastub.py": "import os, yaml\n"
                            "def main(config_path, config_name):\n"
                            "    here = os.path.dirname(os.path.abspath(__file__))\n"
                            "    name = os.path.join(here, config_path, config_name + '.yaml')\n"
                            "    load = lambda: yaml.safe_load(open(name))\n"
                            "    return lambda f: lambda: f(load())\n",
    "scripts/fit.py": "import sys\nfrom hydrastub import main\n" + NOTE.format(name="deco") +
                      "@main(config_path='hconf', config_name='config')\n"
                      "def run(cfg):\n    open(sys.argv[1], 'w').write(repr(cfg))\nrun()\n",
    "scripts/hconf/config.yaml": "lr: 0.1\n",
    "scripts/hconf/model/big.yaml": "width: 10\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_shell_rules_key_makefiles_script_chains_python_c_modules_and_hydra_configs(tmp_path: Path, log: Path
                                                                                     ) -> None:
    where = write(tmp_path / "wf", SHELL)
    check(where, log, {"make", "chain", "direct", "inline", "hydra", "deco"}, [
        ("sub/Makefile", edit("sub/Makefile", "prep.py >", "prep.py --v >"), {"make"}),
        ("sub/prep.py", edit("sub/prep.py", "v1", "v2"), {"make"}),
        ("sub/data/m.txt", edit("sub/data/m.txt", "m1", "m2"), {"make"}),
        ("scripts/lib.sh", edit("scripts/lib.sh", "hello1", "hello2"), {"chain"}),
        ("data/x.txt", edit("data/x.txt", "x1", "x2"), {"chain"}),
        ("data/d.txt", edit("data/d.txt", "d1", "d2"), {"direct"}),
        ("helpers.py", edit("helpers.py", "write(util.V)", "write(util.V + '!')"), {"inline"}),
        ("util.py", edit("util.py", "v1", "v2"), {"inline"}),
        ("conf/model/big.yaml", edit("conf/model/big.yaml", "10", "20"), {"hydra"}),
        ("scripts/hconf/model/big.yaml", edit("scripts/hconf/model/big.yaml", "10", "20"), {"deco"}),
    ])


SCRIPTS = {
    "Snakefile": '''
rule all:
    input: "out/includes.txt", "out/chain.txt", "out/make.txt", "out/deco.txt"

rule includes:
    output: "out/includes.txt"
    script: "scripts/includes.py"

rule chain:
    output: "out/chain.txt"
    script: "scripts/drive.py"

rule make:
    output: "out/make.txt"
    script: "scripts/drive_make.py"

rule deco:
    output: "out/deco.txt"
    script: "scripts/fit.py"
''',
    "scripts/includes.py": "import yaml\n" + NOTE.format(name="includes") +
                           "cfg = yaml.safe_load(open('conf/train.yaml'))\n"
                           "more = [yaml.safe_load(open(p)) for p in ('conf/base.yaml', 'conf/optim/adam.yaml')]\n"
                           "open(snakemake.output[0], 'w').write(repr((cfg, more)))\n",
    "conf/train.yaml": "defaults:\n  - base\n  - optim: adam\nlr: 0.1\n",
    "conf/base.yaml": "epochs: 3\n",
    "conf/optim/adam.yaml": "beta: 0.9\n",
    "scripts/drive.py": "import subprocess\n" + NOTE.format(name="chain") +
                        "out = subprocess.run(['bash', 'scripts/run.sh'], capture_output=True, text=True, check=True)\n"
                        "open(snakemake.output[0], 'w').write(out.stdout)\n",
    "scripts/run.sh": 'source "$(dirname "$0")/lib.sh"\npython3 scripts/prep.py\n',
    "scripts/lib.sh": "export GREETING=hello1\n",
    "scripts/prep.py": "import os\nprint(os.environ['GREETING'], open('data/x.txt').read())\n",
    "data/x.txt": "x1\n",
    "scripts/drive_make.py": "import os, subprocess\n" + NOTE.format(name="make") +
                             "subprocess.run(['make', '-C', 'sub', 'OUT=' + os.path.abspath(snakemake.output[0])], "
                             "check=True)\n",
    "sub/Makefile": "all:\n\tpython3 prep.py > $(OUT)\n",
    "sub/prep.py": "print(open('data/m.txt').read().strip(), 'v1')\n",
    "sub/data/m.txt": "m1\n",
    "scripts/hydrastub.py": SHELL["scripts/hydrastub.py"],
    "scripts/fit.py": "from hydrastub import main\n" + NOTE.format(name="deco") +
                      "@main(config_path='hconf', config_name='config')\n"
                      "def run(cfg):\n    open(snakemake.output[0], 'w').write(repr(cfg))\nrun()\n",
    "scripts/hconf/config.yaml": "lr: 0.1\n",
    "scripts/hconf/model/big.yaml": "width: 10\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_script_rules_key_yaml_includes_script_chains_makefiles_and_hydra_configs(tmp_path: Path, log: Path
                                                                                   ) -> None:
    where = write(tmp_path / "wf", SCRIPTS)
    check(where, log, {"includes", "chain", "make", "deco"}, [
        ("conf/base.yaml", edit("conf/base.yaml", "3", "4"), {"includes"}),
        ("conf/optim/adam.yaml", edit("conf/optim/adam.yaml", "0.9", "0.8"), {"includes"}),
        ("data/x.txt", edit("data/x.txt", "x1", "x2"), {"chain"}),
        ("sub/Makefile", edit("sub/Makefile", "prep.py >", "prep.py --v >"), {"make"}),
        ("sub/prep.py", edit("sub/prep.py", "v1", "v2"), {"make"}),
        ("sub/data/m.txt", edit("sub/data/m.txt", "m1", "m2"), {"make"}),
        ("scripts/hconf/config.yaml", edit("scripts/hconf/config.yaml", "0.1", "0.2"), {"deco"}),
    ])


def notebook(code: str, note: str) -> str:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [note]},
             {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [code]}]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"language": "python", "name": "python3",
                                                                    "display_name": "Python 3"},
                                    "language_info": {"name": "python"}},
                       "nbformat": 4, "nbformat_minor": 5})


# Snakemake's `notebook:` directive runs `papermill --log-level ERROR IN OUT` when `papermill --version` works:
# this stand-in (papermill and jupyter are not installed here) runs the code cells, Snakemake's preamble first.
PAPERMILL = ("import json, os, sys\n"
             "if '--version' in sys.argv: print('2.6.0'); sys.exit(0)\n"
             "a = [x for x in sys.argv[1:] if not x.startswith('--') and x != 'ERROR']\n"
             "nb = json.load(open(a[0])); g = {'__name__': '__main__'}\n"
             "for c in nb['cells']:\n"
             "    if c['cell_type'] == 'code': exec(''.join(c['source']), g)\n"
             "json.dump(nb, open(a[1], 'w'))\n")


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_notebook_rule_is_keyed_by_its_code_cells_and_the_modules_and_data_they_use(tmp_path: Path, log: Path
                                                                                       ) -> None:
    import sys
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "papermill").write_text(f"#!{sys.executable}\n" + PAPERMILL)
    (bin_dir / "papermill").chmod(0o755)
    where = write(tmp_path / "wf", {
        "Snakefile": 'rule all:\n    input: "out/n.txt"\n\n'
                     'rule nb:\n    output: "out/n.txt"\n    notebook: "nb/analysis.py.ipynb"\n',
        "nb/analysis.py.ipynb": notebook("import nbhelp\n" + NOTE.format(name="nb") +
                                         "open(snakemake.output[0], 'w').write(nbhelp.V + open('data/x.txt').read())\n",
                                         "# Notes\n"),
        "nb/nbhelp.py": "V = 'v1'\n",
        "data/x.txt": "x1\n",
    })

    def markdown(where: Path) -> None:
        data = json.loads((where / "nb/analysis.py.ipynb").read_text())
        data["cells"][0]["source"] = ["# Other notes\n"]
        (where / "nb/analysis.py.ipynb").write_text(json.dumps(data))

    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    check(where, log, {"nb"}, [
        ("nb/nbhelp.py", edit("nb/nbhelp.py", "v1", "v2"), {"nb"}),
        ("data/x.txt", edit("data/x.txt", "x1", "x2"), {"nb"}),
        ("a markdown cell", markdown, set()),
        ("a code cell", edit("nb/analysis.py.ipynb", "nbhelp.V +", "nbhelp.V + 'a' +"), {"nb"}),
    ], env=env)
    assert (where / "out/n.txt").read_text() == "v2ax2\n"
