"""Probing wave 24: one scan of which environment variables a step's Python reads (nixlib.envreads), for script files
(by their syntax tree) and for the live code Luigi task methods and Snakemake `run:` blocks are (by their bytecode,
nixlib.envreads.code_variables, called from nixlib.pycode.uses). Before, live code keyed every string constant of code
that touched os.environ as a variable it might read (`open(p, "w")` keyed $w, a label "DATASET" keyed $DATASET), and
missed a read through an alias (`ENV = os.environ` in another module, `from lconfig import ENV`) or a helper taking the
name (`def env(name): return os.environ[name]` called as `env("FACTOR")`): a stale result after changing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import nw
from tests.luigi_run import luigi_cli
from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write


def _set(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str | None]) -> None:
    for k, v in variables.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)


def _ran(log: Path, before: list[str]) -> list[str]:
    return sorted(log.read_text().split()[len(before):]) if log.exists() else []


# ---- nw run experiment.py ----

ENVCONF = "import os\n\nENV = os.environ\n"
LITERAL = '''import os
import sys
LABEL = "DATASET"
with open(sys.argv[1], "w") as f:
    f.write(os.environ.get("SCALE", "1") + " " + LABEL + "\\n")
'''
ALIASED = '''import sys
from envconf import ENV
with open(sys.argv[1], "w") as f:
    f.write(ENV.get("FACTOR", "f") + "\\n")
'''


def _nw_run(exp: Path, log: Path, monkeypatch: pytest.MonkeyPatch, **variables: str | None
            ) -> tuple[list[str], str, str]:
    _set(monkeypatch, variables)
    before = log.read_text().split() if log.exists() else []
    proc = nw("run", str(exp), cwd=exp.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    links = exp.parent / "nix-workflow-output"
    return (_ran(log, before), (links / "literal" / "r.txt").read_text().strip(),
            (links / "aliased" / "r.txt").read_text().strip())


def test_nw_run_keys_a_literal_read_and_a_read_through_another_modules_alias(
        tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """literal.py reads os.environ.get("SCALE", "1") and holds the constant "DATASET" and the open mode "w", which it
    never looks up: SCALE=3 re-runs its step, DATASET=x and w=y do not (a guard: so since wave 23). aliased.py reads
    FACTOR as `ENV.get("FACTOR", "f")` with `from envconf import ENV`, where envconf.py binds `ENV = os.environ`:
    FACTOR=g re-runs its step (before, the FACTOR=f result was served: envconf.py fell back to its own constants
    only, and aliased.py's `ENV.get` was no lookup of os.environ)."""
    for name in ("SCALE", "FACTOR", "DATASET", "w"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "proj"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "literal.py").write_text(LITERAL)
    (root / "scripts" / "aliased.py").write_text(ALIASED)
    (root / "scripts" / "envconf.py").write_text(ENVCONF)
    exp = root / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n" + "".join(
        f"{n} = output(f'echo {n} >> $NW_TEST_LOG; cd {{HERE}} && python3 scripts/{n}.py $out/r.txt')\n"
        for n in ("literal", "aliased")))
    run = lambda **v: _nw_run(exp, log, monkeypatch, **v)  # noqa: E731
    assert run(SCALE="2") == (["aliased", "literal"], "2 DATASET", "f")
    assert run(SCALE="2") == ([], "2 DATASET", "f")
    assert run(SCALE="3") == (["literal"], "3 DATASET", "f")
    assert run(FACTOR="g") == (["aliased"], "3 DATASET", "g")
    assert run(DATASET="x") == ([], "3 DATASET", "g")
    assert "literal" not in run(w="y")[0]  # (aliased.py's step falls back to every constant of its files: "w")


# ---- Luigi ----

LCONFIG = "import os\n\nENV = os.environ\n"
PIPELINE = '''
import os

import luigi

from luigi_nixworkflow import NixTask
from lconfig import ENV


def env(name):
    return os.environ.get(name, "-")


def note(what):
    with open(os.environ["NW_TEST_LOG"], "a") as log:
        log.write(what + "\\n")


class Literal(NixTask):
    def output(self):
        return luigi.LocalTarget("out/literal.txt")

    def run(self):
        note("literal")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(os.environ.get("SCALE", "1") + " " + "DATASET" + "\\n")


class Aliased(NixTask):
    def output(self):
        return luigi.LocalTarget("out/aliased.txt")

    def run(self):
        note("aliased")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(ENV.get("ALIASED", "a") + "\\n")


class Helped(NixTask):
    def output(self):
        return luigi.LocalTarget("out/helped.txt")

    def run(self):
        note("helped")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(env("HELPED") + "\\n")


class EnvAll24(luigi.WrapperTask):
    def requires(self):
        return [Literal(), Aliased(), Helped()]
'''


def _luigi(log: Path, monkeypatch: pytest.MonkeyPatch, **variables: str | None) -> tuple[list[str], ...]:
    """`luigi --module envpipe24 EnvAll24` with these variables (None: unset): the tasks that ran, what each wrote."""
    _set(monkeypatch, variables)
    before = log.read_text().split() if log.exists() else []
    luigi_cli("--module", "envpipe24", "EnvAll24")
    return (_ran(log, before), *(Path(f"out/{n}.txt").read_text().strip() for n in ("literal", "aliased", "helped")))


def _pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SCALE", "DATASET", "w", "ALIASED", "HELPED"):
        monkeypatch.delenv(name, raising=False)
    Path("envpipe24.py").write_text(PIPELINE)
    Path("lconfig.py").write_text(LCONFIG)


def test_luigi_keys_the_names_run_looks_up_not_its_other_constants(log: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """Literal.run() reads os.environ.get("SCALE", "1") and writes the constant "DATASET" with open(p, "w"):
    SCALE=3 re-runs it, DATASET=x and w=y do not (before, both were keyed: every constant of run() was taken as
    a variable name)."""
    _pipeline(monkeypatch)
    assert _luigi(log, monkeypatch, SCALE="2") == (["aliased", "helped", "literal"], "2 DATASET", "a", "-")
    assert _luigi(log, monkeypatch)[0] == []
    assert _luigi(log, monkeypatch, SCALE="3")[:2] == (["literal"], "3 DATASET")
    assert _luigi(log, monkeypatch, DATASET="x")[0] == []
    assert "literal" not in _luigi(log, monkeypatch, w="y")[0]  # (Helped's walk falls back to every constant: "w")


def test_luigi_keys_a_read_through_another_modules_alias_or_a_helper(log: Path, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    """Aliased.run() reads ALIASED as `ENV.get(...)` with `from lconfig import ENV` (ENV = os.environ there), and
    Helped.run() reads HELPED through a module function `env(name)`: changing either re-runs its task only (before,
    neither was keyed: run() named no `environ`, and env()'s own code holds no name: the old result was served)."""
    _pipeline(monkeypatch)
    assert _luigi(log, monkeypatch) == (["aliased", "helped", "literal"], "1 DATASET", "a", "-")
    assert _luigi(log, monkeypatch, ALIASED="b") == (["aliased"], "1 DATASET", "b", "-")
    assert _luigi(log, monkeypatch, HELPED="h") == (["helped"], "1 DATASET", "b", "h")
    assert _luigi(log, monkeypatch, ALIASED=None, HELPED=None) == ([], "1 DATASET", "a", "-")  # (stored)


# ---- Snakemake run: block ----

SNAKEFILE = '''
import os

rule all:
    input: "out/block.txt"

rule block:
    output: "out/block.txt"
    run:
        with open(os.environ["NW_TEST_LOG"], "a") as log:
            log.write("block\\n")
        with open(output[0], "w") as f:
            f.write(os.environ.get("SCALE", "1") + " " + "DATASET" + "\\n")
'''


@pytest.mark.long  # (three Snakemake runs)
def test_a_snakemake_run_block_keys_the_names_it_looks_up_not_its_other_constants(tmp_path: Path, log: Path
                                                                                   ) -> None:
    """A `run:` block reading os.environ.get("SCALE", "1") and writing the constant "DATASET" with open(p, "w"):
    SCALE=3 re-runs it; DATASET=x does not (before, every constant of the block was keyed as a variable, an unset
    one too: setting DATASET re-ran it)."""
    where = write(tmp_path / "wf", {"Snakefile": SNAKEFILE})

    def run(**variables: str) -> list[str]:
        before = log.read_text().split() if log.exists() else []
        wipe(where, "out")  # (Snakemake schedules the job again; the executor restores it or runs it)
        ok(snakemake(where, env=variables))
        return _ran(log, before)

    assert run(SCALE="2") == ["block"]
    assert (where / "out/block.txt").read_text() == "2 DATASET\n"
    assert run(SCALE="2") == []
    assert run(SCALE="3") == ["block"]
    assert (where / "out/block.txt").read_text() == "3 DATASET\n"
    assert run(SCALE="3", DATASET="x", w="y") == []
    assert executions(log)["block"] == 2


# ---- the live-code scan, case by case ----

LIVE = '''import os
import subprocess
from os import environ as E, getenv

VAR = "FACTOR"
ENV = os.environ


def precise():
    return os.environ.get("SCALE", "unset"), open("x", "w"), "DATASET"


def bound():
    return os.environ[VAR], getenv("G", "1"), "H" in os.environ, E["I"], ENV.get("J")


def writes():
    os.environ["PATH"] += "x"
    os.environ["W"] = "1"
    del os.environ["W2"]
    os.environ.update(Z="1")
    return "K"


def _read(n):
    return os.environ[n]


def helped():
    return _read("SCALE"), "OTHER"


def handed_on():
    return subprocess.run(["x"], env=os.environ), "SUB"


def looped():
    return [os.environ[v] for v in ("L1", "L2")]


def computed(x):
    return os.environ.get("J", x), os.environ.get("A" + x)


def local_import():
    from os import environ as e
    return e["LOCAL"], "LOC2"


def rebinds():
    global VAR
    VAR = "REB"
    return os.environ[VAR]


def conditional(c):
    return os.getenv("Y1" if c else "Y2")
'''

LIVE_CASES = {  # (names written by hand: the lookups' own, else every name-like constant of the walked code)
    "precise": {"SCALE"},
    "bound": {"FACTOR", "G", "H", "I", "J"},
    "writes": {"PATH"},
    "helped": {"SCALE", "OTHER"},
    "handed_on": {"x", "env", "SUB"},
    "looped": {"L1", "L2"},
    "computed": {"J", "A"},
    "local_import": {"LOCAL", "LOC2", "environ"},
    "rebinds": {"FACTOR", "REB"},
    "conditional": {"Y1", "Y2"},
}


@pytest.mark.parametrize("name", sorted(LIVE_CASES))
def test_the_live_code_scan_keys_the_names_looked_up_else_every_constant(name: str, monkeypatch: pytest.MonkeyPatch
                                                                          ) -> None:
    """nixlib.pycode.uses(environ=...) over a module's function (as Luigi walks run() and Snakemake a `run:` block):
    the names its lookups spell ("precise" keys SCALE, not "unset", "w" or "DATASET"; "bound" follows a module-level
    name, `from os import environ as E`, and `ENV = os.environ`), none for a write, and every name-like constant of
    the walked code where a use cannot be followed (a helper's parameter, the environment handed on, a loop
    variable, a computed name, a local alias, a rebound global, a conditional name)."""
    import importlib
    import sys

    from nixlib import pycode

    Path("livecode24.py").write_text(LIVE)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("livecode24", None)
    module = importlib.import_module("livecode24")
    found: set[str] = set()
    pycode.uses([getattr(module, name)], environ=found)
    assert {n for n in found if n.isidentifier()} == LIVE_CASES[name]
