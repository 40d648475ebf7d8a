"""The project's own package, installed in development mode (`pip install -e .`: a .pth line naming src/, or
setuptools' `__editable__` finder), imported by a job of the Snakemake executor or a Luigi NixTask: editing it changes
what the job computes, so it must run again. Each front door restored the old result (stale) in the cases below.
Real snakemake CLI, real luigi, real venvs (python -m venv --without-pip, offline); the .pth and finder files are
written as pip/setuptools write them (see tests/test_pyimports.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import REPO

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

UTIL = "def scale(x):\n    return x * {}\n"
TRAIN = "import sys\nfrom mlpkg.util import scale\nopen(sys.argv[1], 'w').write(str(scale(2)))\n"
FIT = "import sys\nfrom mlpkg.util import scale\nopen(sys.argv[1], 'w').write(str(scale(3)))\n"


def project(root: Path, layout: str = "pth") -> Path:
    """Project `root` with package mlpkg (src/mlpkg: util.py, train.py) and scripts/fit2.py importing it, installed
    in development mode (`layout`) into root/.venv, whose python also sees this checkout's packages (Snakemake,
    Luigi, nixworkflow: as if installed there); the venv's bin directory."""
    pkg = root / "src/mlpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text(UTIL.format(10))
    (pkg / "train.py").write_text(TRAIN)
    (root / "scripts").mkdir()
    (root / "scripts/fit2.py").write_text(FIT)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    site = next((root / ".venv/lib").glob("python3*/site-packages"))
    (site / "checkout.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{REPO}\n")
    if layout == "pth":  # as uv, hatchling and setuptools write it for a src layout
        (site / "mlpkg.pth").write_text(f"{root / 'src'}\n")
    else:  # as setuptools >= 64 writes it (pip install -e .)
        (site / "__editable__.mlpkg-0.1.pth").write_text(
            "import __editable___mlpkg_0_1_finder; __editable___mlpkg_0_1_finder.install()")
        (site / "__editable___mlpkg_0_1_finder.py").write_text(
            "import sys\n\n"
            f"MAPPING = {{'mlpkg': '{pkg}'}}\nNAMESPACES = {{}}\nPATH_PLACEHOLDER = '__editable__.mlpkg-0.1.finder'\n\n"
            "class _Finder:\n    @classmethod\n    def find_spec(cls, fullname, path=None, target=None):\n"
            "        if fullname in MAPPING:\n            import importlib.util\n"
            "            return importlib.util.spec_from_file_location(fullname, MAPPING[fullname] + '/__init__.py',"
            " submodule_search_locations=[MAPPING[fullname]])\n        return None\n\n"
            "def install():\n    sys.meta_path.append(_Finder)\n")
    return root / ".venv/bin"


def edit(root: Path) -> None:
    (root / "src/mlpkg/util.py").write_text(UTIL.format(7))


def run(root: Path, cmd: list[str], venv: Path) -> subprocess.CompletedProcess[str]:
    """`cmd` in `root` with the venv activated (its bin first on PATH), as a user runs the pipeline."""
    env = dict(os.environ, PATH=f"{venv}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv.parent))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, cwd=root, env=env, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def wipe(root: Path) -> None:
    for d in ("out", ".snakemake"):
        subprocess.run(["chmod", "-R", "u+w", str(root / d)], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", str(root / d)], check=True)


# ---- Snakemake ---------------------------------------------------------------------------------------------------

SNAKEFILE = '''
rule all:
    input: "out/train.txt", "out/fit2.txt", "out/script.txt"

rule train:
    output: "out/train.txt"
    shell: "python -m mlpkg.train {output}"

rule fit2:
    output: "out/fit2.txt"
    shell: "python scripts/fit2.py {output}"

rule script:
    output: "out/script.txt"
    script: "scripts/fit3.py"
'''

FIT3 = "from mlpkg.util import scale\nopen(snakemake.output[0], 'w').write(str(scale(4)))\n"


def restored(proc: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr))


@pytest.mark.parametrize("layout", ["pth", "finder"])
def test_snakemake_jobs_importing_the_editable_project_package_rerun_after_an_edit(tmp_path: Path,
                                                                                  layout: str) -> None:
    """`python -m mlpkg.train`, `python scripts/fit2.py` (which imports mlpkg.util) in shell: rules, and a script:
    importing mlpkg (run by Snakemake's own interpreter), with mlpkg installed in development mode in the venv that
    runs Snakemake. After editing src/mlpkg/util.py and deleting the outputs, the executor restored the old
    results of all three."""
    root = tmp_path / "p"
    venv = project(root, layout)
    (root / "Snakefile").write_text(SNAKEFILE)
    (root / "scripts/fit3.py").write_text(FIT3)
    smk = [str(venv / "python"), "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow"]
    run(root, smk, venv)
    assert [(root / f"out/{n}.txt").read_text() for n in ("train", "fit2", "script")] == ["20", "30", "40"]
    edit(root)
    wipe(root)
    proc = run(root, smk, venv)
    assert restored(proc) == set(), proc.stderr
    assert [(root / f"out/{n}.txt").read_text() for n in ("train", "fit2", "script")] == ["14", "21", "28"]
    wipe(root)  # nothing else changed: all served
    assert restored(run(root, smk, venv)) == {"train", "fit2", "script"}


# ---- Luigi ---------------------------------------------------------------------------------------------------------

PIPELINE = '''
import os
import subprocess
import sys

import luigi
from luigi_nixworkflow import NixTask

from mlpkg.util import scale

HERE = os.path.dirname(os.path.abspath(__file__))


class Cmd(NixTask):
    def command(self):
        return f"python -m mlpkg.train {self.output()}/v"


class CmdScript(NixTask):
    def command(self):
        return f"python {HERE}/scripts/fit2.py {self.output()}/v"


class Sub(NixTask):
    def produce(self, out):
        subprocess.run([sys.executable, "scripts/fit2.py", str(out / "v")], check=True)


class SubModule(NixTask):
    def produce(self, out):
        subprocess.run([sys.executable, "-m", "mlpkg.train", str(out / "v")], check=True)


class InProcess(NixTask):
    def produce(self, out):
        (out / "v").write_text(str(scale(5)))


class InMethod(NixTask):
    def produce(self, out):
        from mlpkg.util import scale

        (out / "v").write_text(str(scale(6)))


class All(luigi.WrapperTask):
    def requires(self):
        return [Cmd(), CmdScript(), Sub(), SubModule(), InProcess(), InMethod()]
'''

TASKS = ("Cmd", "CmdScript", "Sub", "SubModule", "InProcess", "InMethod")


@pytest.mark.parametrize("layout", ["pth", "finder"])
def test_luigi_tasks_importing_the_editable_project_package_rerun_after_an_edit(tmp_path: Path, layout: str) -> None:
    """NixTasks running the project's package installed in development mode in the venv that runs Luigi: a
    command() running `python -m mlpkg.train` or a script importing mlpkg, a produce() starting either with
    subprocess and sys.executable, and a produce() calling mlpkg.util in process. After editing src/mlpkg/util.py
    every one must run again."""
    root = tmp_path / "p"
    venv = project(root, layout)
    (root / "pipeline.py").write_text(PIPELINE)
    cmd = [str(venv / "python"), "-m", "luigi", "--module", "pipeline", "All", "--local-scheduler"]

    def values() -> list[str]:
        return [(root / "nix-workflow-output" / f"{t}__99914b932b" / "v").read_text() for t in TASKS]

    run(root, cmd, venv)
    assert values() == ["20", "30", "30", "20", "50", "60"]
    edit(root)
    run(root, cmd, venv)
    assert values() == ["14", "21", "21", "14", "35", "42"]


RUN_SNAKEFILE = '''
from mlpkg.util import scale

rule all:
    input: "out/top.txt", "out/inside.txt", "out/shelled.txt", "out/script.txt"

rule top:
    output: "out/top.txt"
    run:
        open(output[0], "w").write(str(scale(5)))

rule inside:
    output: "out/inside.txt"
    run:
        import mlpkg.util
        open(output[0], "w").write(str(mlpkg.util.scale(6)))

rule shelled:
    output: "out/shelled.txt"
    run:
        shell("python -m mlpkg.train {output}")

rule script:
    output: "out/script.txt"
    run:
        shell("python scripts/fit2.py {output}")
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_run_blocks_using_the_editable_project_package_rerun_after_an_edit(tmp_path: Path) -> None:
    """`run:` blocks calling the editable-installed package: a function imported at the Snakefile's top, a module
    imported inside the block, and `shell()` calls running `python -m mlpkg.train` or a script importing mlpkg: the
    last two were restored after the edit."""
    root = tmp_path / "p"
    venv = project(root, "pth")
    (root / "Snakefile").write_text(RUN_SNAKEFILE)
    smk = [str(venv / "python"), "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow"]
    run(root, smk, venv)
    names = ("top", "inside", "shelled", "script")
    assert [(root / f"out/{n}.txt").read_text() for n in names] == ["50", "60", "20", "30"]
    edit(root)
    wipe(root)
    proc = run(root, smk, venv)
    assert restored(proc) == set(), proc.stderr
    assert [(root / f"out/{n}.txt").read_text() for n in names] == ["35", "42", "14", "21"]
    wipe(root)
    assert restored(run(root, smk, venv)) == set(names)
