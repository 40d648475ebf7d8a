"""The project's own package imported by a step's Python from somewhere else than the script's directory: installed in
development mode (`pip install -e .`: a .pth file naming the source directory, or setuptools' `__editable__` finder
mapping the package to it) or put on PYTHONPATH. Editing that package changes what the step computes, so it must
re-run the step; `nw run` served the old result (stale) in every case below. Real `nw`, real venvs (python -m venv,
offline); the .pth and finder files are written as pip/setuptools write them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nixlib import pyimports
from tests.helpers import nw

SCRIPT = """import sys
from mlpkg.util import scale
open(sys.argv[1] + "/v", "w").write(str(scale(3)))
"""


def project(tmp_path: Path, layout: str) -> tuple[Path, Path]:
    """A project with package mlpkg (in src/ or at the top) installed into its own venv in development mode as
    `layout` says; (project directory, the venv's python)."""
    root = tmp_path / "proj"
    pkg = root / ("src/mlpkg" if layout in ("pth", "pythonpath") else "mlpkg")
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("def scale(x):\n    return x * 10\n")
    (pkg / "train.py").write_text("import sys\nfrom mlpkg.util import scale\n"
                                  "open(sys.argv[1] + '/v', 'w').write(str(scale(2)))\n")
    (root / "scripts").mkdir()
    (root / "scripts/fit.py").write_text(SCRIPT)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    site = next((root / ".venv/lib").glob("python3*/site-packages"))
    if layout == "pth":  # as uv, hatchling and setuptools write it for a src layout
        (site / "_mlpkg.pth").write_text(f"{root / 'src'}\n")
    elif layout == "finder":  # as setuptools >= 64 writes it (pip install -e .)
        (site / "__editable__.mlpkg-0.1.pth").write_text(
            "import __editable___mlpkg_0_1_finder; __editable___mlpkg_0_1_finder.install()")
        (site / "__editable___mlpkg_0_1_finder.py").write_text(
            "import sys\nfrom importlib.machinery import PathFinder\n\n"
            f"MAPPING = {{'mlpkg': '{pkg}'}}\nNAMESPACES = {{}}\nPATH_PLACEHOLDER = '__editable__.mlpkg-0.1.finder'\n\n"
            "class _Finder:\n    @classmethod\n    def find_spec(cls, fullname, path=None, target=None):\n"
            "        if fullname in MAPPING:\n            import importlib.util\n"
            "            return importlib.util.spec_from_file_location(fullname, MAPPING[fullname] + '/__init__.py',"
            " submodule_search_locations=[MAPPING[fullname]])\n        return None\n\n"
            "def install():\n    sys.meta_path.append(_Finder)\n")
    return root, root / ".venv/bin/python"


@pytest.mark.parametrize(("layout", "command"), [
    ("pth", "{py} {root}/scripts/fit.py $out"),
    ("finder", "{py} {root}/scripts/fit.py $out"),
    ("finder", "{py} -m mlpkg.train $out"),
    ("pth", "python3 {root}/scripts/fit.py $out"),  # the venv activated: its python first on PATH
    ("pythonpath", "PYTHONPATH={root}/src python3 {root}/scripts/fit.py $out"),
])
def test_editing_the_projects_package_a_step_imports_reruns_it(tmp_path: Path, layout: str, command: str) -> None:
    root, py = project(tmp_path, layout)
    (root / "experiment.py").write_text(
        "from nixlib.dsl import output\n"
        f"step = output({command.format(py=py, root=root)!r})\n")
    env = {"PATH": f"{py.parent}:{os.environ['PATH']}"} if command.startswith("python3") else {}
    out = root / "nix-workflow-output/step/v"
    nw("run", str(root / "experiment.py"), cwd=root, env=env, check=True)
    first = out.read_text()
    assert first in ("30", "20")
    (root / next(root.glob("**/mlpkg/util.py")).relative_to(root)).write_text("def scale(x):\n    return x * 7\n")
    nw("run", str(root / "experiment.py"), cwd=root, env=env, check=True)
    assert out.read_text() == {"30": "21", "20": "14"}[first]
    again = nw("run", str(root / "experiment.py"), cwd=root, env=env, check=True)
    assert "cached 1" in again.stderr  # and nothing else changed: served


def test_editable_dirs_reads_pth_lines_and_setuptools_finders(tmp_path: Path) -> None:
    root, py = project(tmp_path, "finder")
    site = next((root / ".venv/lib").glob("python3*/site-packages"))
    (site / "other.pth").write_text(f"# a comment\n{tmp_path}\nimport os\n./missing\n")
    assert set(pyimports.editable_dirs(str(site))) == {str(root), str(tmp_path)}
    assert str(site) in pyimports.site_dirs(str(py))
    assert pyimports.import_dirs(f"{py} -m mlpkg.train", [str(root)]) == [str(root)]  # tmp_path: outside
