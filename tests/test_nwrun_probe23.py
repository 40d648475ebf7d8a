"""Wave 23 probe of `nw run`: a module run by `python -m` that puts a directory on sys.path itself, and the precise
scan of the environment variables a Python script reads (nixlib.envreads). Each a regression test that failed
before its fix (or guards a conservative fallback that must keep re-running)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nixlib.envreads import read_variables
from tests.helpers import nw


def _state(exp: Path, cwd: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    status = nw("status", str(exp), "--json", cwd=cwd, env=env)
    assert status.returncode == 0, status.stderr
    return {s["name"]: s["state"] for s in json.loads(status.stdout)}


def test_a_module_run_by_python_m_is_keyed_with_what_it_imports_from_its_own_sys_path(tmp_path: Path) -> None:
    """`python -m pkg.train`, where pkg/train.py puts ../lib on sys.path itself and imports a module from there: the
    module was keyed without it, so editing lib/mylib.py served the old result (a script named by path had it)."""
    proj = tmp_path / "proj"
    (proj / "pkg").mkdir(parents=True)
    (proj / "lib").mkdir()
    (proj / "pkg" / "__init__.py").write_text("")
    (proj / "pkg" / "train.py").write_text(
        "import os, sys\n"
        "sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))\n"
        "import mylib\n"
        "print('train', mylib.V)\n")
    (proj / "lib" / "mylib.py").write_text("V = 1\n")
    exp = proj / "experiment.py"
    exp.write_text("from pathlib import Path\n"
                   "from nixlib import output\n"
                   "HERE = Path(__file__).parent\n"
                   "train = output(f'cd {HERE} && python3 -m pkg.train > $out/r.txt')\n"
                   "other = output('echo 1 > $out/o.txt')\n")
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    out = tmp_path / "nix-workflow-output"
    assert (out / "train" / "r.txt").read_text() == "train 1\n"
    (proj / "lib" / "mylib.py").write_text("V = 2\n")
    assert _state(exp, tmp_path) == {"train": "to run", "other": "cached"}
    ran = nw("run", str(exp), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert (out / "train" / "r.txt").read_text() == "train 2\n"
    assert set(_state(exp, tmp_path).values()) == {"cached"}


PRECISE = '''import os
import sys
NAME = "FACTOR"
label = "DATASET"
scale = os.environ.get("SCALE", "unset")
with open(sys.argv[1], "w") as f:
    f.write(scale + " " + os.getenv(NAME, "1") + " " + label + "\\n")
'''
# Names the scan cannot tell from the lookup itself: a helper's parameter, a copy of the environment.
COMPUTED = '''import os
import sys
def read(name):
    return os.getenv(name, "1")
def factor():
    env = os.environ.copy()
    return env.get("FACTOR", "1")
with open(sys.argv[1], "w") as f:
    f.write(read("SCALE") + " " + factor() + "\\n")
'''


def _env_project(root: Path) -> Path:
    root.mkdir()
    (root / "precise.py").write_text(PRECISE)
    (root / "computed.py").write_text(COMPUTED)
    exp = root / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
                   "precise = output(f'echo precise >> $NW_TEST_LOG; python3 {HERE}/precise.py $out/r.txt')\n"
                   "computed = output(f'echo computed >> $NW_TEST_LOG; python3 {HERE}/computed.py $out/r.txt')\n")
    return exp


def _run_with(exp: Path, log: Path, **variables: str) -> list[str]:
    """`nw run` with the variables set; the steps that ran."""
    before = log.read_text().split() if log.exists() else []
    proc = nw("run", str(exp), cwd=exp.parent, env=variables)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(log.read_text().split()[len(before):])


def test_a_default_value_or_an_unrelated_constant_is_not_keyed_as_a_variable(tmp_path: Path, log: Path) -> None:
    """`os.environ.get("SCALE", "unset")`, `open(p, "w")` and `label = "DATASET"` in a script reading the environment
    keyed $unset, $w and $DATASET (every string constant of such code was taken for a variable's name): a result was
    re-made whenever those unrelated variables changed (another user's $DATASET: not shared). Only the names looked up
    are keyed now (SCALE, and FACTOR through `NAME = "FACTOR"`): changing them still re-runs."""
    exp = _env_project(tmp_path / "proj")
    base = {"SCALE": "2", "FACTOR": "3", "unset": "a", "w": "a", "DATASET": "mnist"}
    assert _run_with(exp, log, **base) == ["computed", "precise"]
    assert (tmp_path / "proj" / "nix-workflow-output" / "precise" / "r.txt").read_text() == "2 3 DATASET\n"
    # (computed.py is scanned conservatively: its constant "w" is keyed, so it re-runs; precise.py does not)
    assert _run_with(exp, log, **{**base, "unset": "b", "w": "b", "DATASET": "cifar"}) == ["computed"]
    assert _run_with(exp, log, **{**base, "unset": "c", "DATASET": "svhn"}) == []
    assert _run_with(exp, log, **{**base, "SCALE": "5"}) == ["computed", "precise"]
    assert _run_with(exp, log, **{**base, "SCALE": "5", "FACTOR": "4"}) == ["computed", "precise"]
    assert (tmp_path / "proj" / "nix-workflow-output" / "precise" / "r.txt").read_text() == "5 4 DATASET\n"
    assert (tmp_path / "proj" / "nix-workflow-output" / "computed" / "r.txt").read_text() == "5 4\n"


def test_a_name_passed_to_a_helper_that_reads_the_environment_is_keyed(tmp_path: Path, log: Path) -> None:
    """The conservative fallback the precise scan keeps (a guard, not a regression: the old scan keyed every constant
    of such a file too): `def read(name): return os.getenv(name)` called as `read("SCALE")`, and `env =
    os.environ.copy()` looked up later, name variables the scan cannot follow from the lookup, so every name-like
    constant of the file is keyed and SCALE=5 is not served SCALE=2's result."""
    exp = _env_project(tmp_path / "proj")
    assert _run_with(exp, log, SCALE="2", FACTOR="3") == ["computed", "precise"]
    assert _run_with(exp, log, SCALE="5", FACTOR="3") == ["computed", "precise"]
    assert (tmp_path / "proj" / "nix-workflow-output" / "computed" / "r.txt").read_text() == "5 3\n"


@pytest.mark.parametrize(("source", "names"), [
    ('import os\nx = os.environ.get("SCALE", "unset")\nopen("p", "w")\n', {"SCALE"}),
    ('import os\nfor v in ("A", "B"):\n    print(os.environ[v])\n', {"A", "B"}),
    ('import os\nVARS = ["A", "B"]\nprint([os.environ.get(v) for v in VARS])\n', {"A", "B"}),
    ('import os\nprint("SCALE" in os.environ, "LABEL")\n', {"SCALE"}),
    ('from os import environ as E, getenv\nprint(E["A"], getenv("B", "w"))\n', {"A", "B"}),
    ('import os\nos.environ["X"] = "1"\nprint("LABEL")\n', set()),  # (set, not read)
    ('import os\nos.environ["PATH"] += ":x"\n', {"PATH"}),
    ('import os\nprint(os.environ.get("SCALE"), "$DATA/x")\n', {"SCALE", "DATA"}),
    # computed or handed on: every name-like constant of the file
    ('import os\nNAME = "SCALE"\nNAME = input()\nprint(os.getenv(NAME), "w")\n', {"SCALE", "w"}),
    ('import os, subprocess\nsubprocess.run(["t"], env={**os.environ, "X": "1"})\n', {"t", "X"}),
    ('import os\nprint(list(map(os.getenv, ["A"])))\n', {"A"}),
])
def test_the_python_scan_keys_the_names_looked_up_else_every_constant(source: str, names: set[str]) -> None:
    """nixlib.envreads.read_variables of Python scripts (expected names written by hand)."""
    assert set(read_variables("x.py", source.encode())) == names
