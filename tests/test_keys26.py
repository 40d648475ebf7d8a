"""Keys wave 26: environment reads through a container the environment was kept in, and HOME read through `~`.

Live code (a Luigi task's methods, a Snakemake `run:` block, the helpers they call) that kept os.environ in a
container at import (`CFG = {"env": os.environ}`, `NS = SimpleNamespace(env=os.environ)`, an object's attribute)
and read `CFG["env"]["X"]` later had no X in its key: a result made under the old value was served after X changed
(stale). A copy (`ENV = dict(os.environ)`, `os.environ.copy()`, `{**os.environ}`) was keyed only through its whole
value's digest (every variable, and none once the environment is large), not by the name read. Code that expands
`~` or asks for the home directory (`os.path.expanduser`, `Path.home()`) reads HOME, which neither the script scan
nor the live one named. A name read exactly is keyed alone; a use that cannot be told keys every name-like constant of
the walked code (more keyed, never less).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from nixlib import envreads
from tests.luigi_run import luigi_cli

LIVE = '''
import dataclasses
import os
import pathlib
import types
from os.path import expanduser as eu
from pathlib import Path
from pathlib import Path as P

ENV = dict(os.environ)
ENV_COPY = os.environ.copy()
ENV_SPLAT = {**os.environ}
CFG = {"env": os.environ}
NESTED = {"outer": [{"env": os.environ}]}
NS = types.SimpleNamespace(env=os.environ)
HELD_COPY = {"env": dict(os.environ)}


@dataclasses.dataclass
class Settings:
    env: object


class Helper:
    def __init__(self):
        self.env = os.environ


SETTINGS = Settings(os.environ)
HELPER = Helper()
PLAIN = {"mode": "fast", "n": [1, 2]}


def dict_copy():
    return ENV["DICTCOPY"]


def copy_get():
    return ENV_COPY.get("COPYGET", "unset")


def splat():
    return ENV_SPLAT["SPLAT"]


def cfg():
    return CFG["env"]["CFG"]


def nested():
    return NESTED["outer"][0]["env"].get("NESTED")


def namespace():
    return NS.env["NSPACE"]


def held_copy():
    return HELD_COPY["env"]["HELDCOPY"]


def dataclass_field():
    return SETTINGS.env.get("DATACLS")


def instance_attribute():
    return HELPER.env["INSTANCE"]


def make(holder):
    def read():
        return holder["env"]["CLOSEDCFG"]
    return read


closed_cfg = make({"env": os.environ})


def plain():
    return PLAIN["mode"] + os.environ["PLAINREAD"]


def expanduser():
    return os.path.expanduser("~/data.csv")


def expanduser_alias():
    return eu("~/data.csv")


def path_home():
    return Path.home() / "data.csv"


def pathlib_home():
    return pathlib.Path.home()


def path_home_alias():
    return P.home()


def path_expanduser():
    return Path("~/data.csv").expanduser()


def no_home():
    return os.path.join("a", "home") + os.environ["NOHOME"]
'''

# Written by hand: the lookups' own names where a read is followed; where it cannot be, a name that must be among
# every name-like constant of the walked code.
EXACT = {
    "dict_copy": {"DICTCOPY"},
    "copy_get": {"COPYGET"},  # (not "unset")
    "splat": {"SPLAT"},
    "plain": {"PLAINREAD"},  # (a dict that is no environment: "mode" is not a variable)
    "expanduser": {"HOME"},
    "expanduser_alias": {"HOME"},
    "path_home": {"HOME"},
    "pathlib_home": {"HOME"},
    "path_home_alias": {"HOME"},
    "path_expanduser": {"HOME"},
    "no_home": {"NOHOME"},  # (a "home" string is no Path.home())
}
INCLUDES = {
    "cfg": "CFG",
    "nested": "NESTED",
    "namespace": "NSPACE",
    "held_copy": "HELDCOPY",
    "dataclass_field": "DATACLS",
    "instance_attribute": "INSTANCE",
    "closed_cfg": "CLOSEDCFG",
}


def _found(name: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """pycode.uses(environ=...) over one function of the LIVE module, as Luigi walks run() and Snakemake a block."""
    from nixlib import pycode

    Path("livecode26.py").write_text(LIVE)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("livecode26", None)
    module = importlib.import_module("livecode26")
    found: set[str] = set()
    pycode.uses([getattr(module, name)], environ=found)
    return {n for n in found if n.isidentifier()}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_the_live_scan_keys_exactly_the_variable_read(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the environment made at import read by a constant name, `~` expanded or the home directory asked
    for: the name read (HOME), alone."""
    assert _found(name, monkeypatch) == EXACT[name]


@pytest.mark.parametrize("name", sorted(INCLUDES))
def test_the_live_scan_keys_a_read_through_a_container_holding_the_environment(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment kept in a dict, a list in a dict, a SimpleNamespace, a dataclass field, an instance attribute
    set in `__init__`, a closed-over dict: not followed, so every name-like constant of the walked code."""
    assert INCLUDES[name] in _found(name, monkeypatch)


SCRIPTS = {
    "import os\nprint(os.path.expanduser('~/data.csv'))\n": {"HOME"},
    "from os.path import expanduser as eu\nprint(eu('~/data.csv'))\n": {"HOME"},
    "import pathlib\nprint(pathlib.Path.home())\n": {"HOME"},
    "from pathlib import Path\nprint(Path.home() / 'x')\n": {"HOME"},
    "from pathlib import Path\nprint(Path('~/x').expanduser())\n": {"HOME"},
    "import os\nhome = 'a'\nprint(os.path.join(home, 'x'), os.environ['ONLY'])\n": {"ONLY"},
}


@pytest.mark.parametrize("text", sorted(SCRIPTS))
def test_a_script_expanding_tilde_reads_home(text: str) -> None:
    """The script scan (`nw run`'s, a Luigi or Snakemake step's scripts): `~` expanded or the home directory asked
    for reads HOME (on POSIX; the passwd entry only when HOME is unset)."""
    assert envreads.read_variables("s.py", text.encode()) == SCRIPTS[text]


# ---- the front door: luigi --module ... --local-scheduler ----

PIPELINE = '''
import os
import types

import luigi

from luigi_nixworkflow import NixTask

CFG = {"env": os.environ}
NS = types.SimpleNamespace(env=os.environ)


def note(what):
    with open(os.environ["NW_TEST_LOG"], "a") as log:
        log.write(what + "\\n")


class Configured(NixTask):
    def output(self):
        return luigi.LocalTarget("out/cfg.txt")

    def run(self):
        note("cfg")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(CFG["env"].get("CFG26", "-") + "\\n")


class Spaced(NixTask):
    def output(self):
        return luigi.LocalTarget("out/ns.txt")

    def run(self):
        note("ns")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(NS.env.get("NS26", "-") + "\\n")


class EnvAll26(luigi.WrapperTask):
    def requires(self):
        return [Configured(), Spaced()]
'''


def _luigi(log: Path, monkeypatch: pytest.MonkeyPatch, **variables: str | None) -> tuple[list[str], str, str]:
    """`luigi --module envpipe26 EnvAll26` with these variables (None: unset): the tasks that ran, what each wrote."""
    for k, v in variables.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    before = log.read_text().split() if log.exists() else []
    luigi_cli("--module", "envpipe26", "EnvAll26")
    ran = sorted(log.read_text().split()[len(before):]) if log.exists() else []
    return ran, Path("out/cfg.txt").read_text().strip(), Path("out/ns.txt").read_text().strip()


def test_luigi_reruns_a_task_reading_the_environment_kept_in_a_container(log: Path, monkeypatch: pytest.MonkeyPatch
                                                                         ) -> None:
    """Spaced.run() reads `NS.env.get("NS26")` with `NS = SimpleNamespace(env=os.environ)`: changing NS26 re-runs
    it (before, NS26 was not keyed: its old result was served), and going back serves the stored one. Configured.run()
    reads `CFG["env"].get("CFG26")` with `CFG = {"env": os.environ}`, which nixlib.pydata keys as data (the whole
    environment it holds: it also re-runs when NS26 changes, more keyed, never less)."""
    for name in ("CFG26", "NS26"):
        monkeypatch.delenv(name, raising=False)
    Path("envpipe26.py").write_text(PIPELINE)
    assert _luigi(log, monkeypatch) == (["cfg", "ns"], "-", "-")
    assert _luigi(log, monkeypatch, CFG26="c") == (["cfg"], "c", "-")
    ran, cfg, ns = _luigi(log, monkeypatch, NS26="n")
    assert "ns" in ran and (cfg, ns) == ("c", "n"), ran
    assert _luigi(log, monkeypatch, CFG26=None, NS26=None) == ([], "-", "-")


# ---- iterating the environment: every variable set now ----

ITERATING = {
    "items": 'import os\nAPP = {k: v for k, v in os.environ.items() if k.startswith("APP_")}\n',
    "for": 'import os\nfor name in os.environ:\n    print(name)\n',
    "alias": 'from os import environ as e\nprint(sorted(k for k in e if k.startswith("APP_")))\n',
}


@pytest.mark.parametrize("name", sorted(ITERATING))
def test_a_script_iterating_the_environment_reads_every_variable_set_when_keyed(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`os.environ.items()`, `for name in os.environ`: every variable may change the result (before, the script named
    none). The variables are those set when the step is keyed, not when the file was scanned (memoised): one set
    after the first scan joins."""
    monkeypatch.setenv("APP_FIRST26", "1")
    script = tmp_path / "it.py"
    script.write_text(ITERATING[name])
    assert "APP_FIRST26" in envreads.file_variables(str(script))
    monkeypatch.setenv("APP_LATER26", "2")
    assert {"APP_FIRST26", "APP_LATER26"} <= envreads.file_variables(str(script))
    assert "APP_LATER26" in envreads.files_variables([str(script)])


def test_a_script_handing_a_copy_on_keys_its_constants_not_the_whole_environment(monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    """`subprocess.run(..., env=os.environ.copy())` hands the environment on (the scripts it runs are scanned
    themselves): its constants, as before, not every variable."""
    monkeypatch.setenv("APP_HANDED26", "1")
    text = 'import os, subprocess\nsubprocess.run(["tool"], env=os.environ.copy())\n'
    assert envreads.read_variables("h.py", text.encode()) == {"tool"}


LIVE_ITERATING = '''
import os

ENV = dict(os.environ)


def items():
    return {k: v for k, v in os.environ.items() if k.startswith("APP_")}


def loop():
    return [k for k in os.environ]


def copy_keys():
    return list(ENV.keys())


def getenvb():
    return os.getenvb(b"BYTES26")


def setdefault():
    return os.environ.setdefault("SETDEF26", "1")
'''


@pytest.mark.parametrize("name", ["items", "loop", "copy_keys"])
def test_live_code_iterating_the_environment_reads_every_variable(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live scan: `os.environ.items()`, a comprehension over os.environ, the keys of a copy made at import."""
    from nixlib import pycode

    monkeypatch.setenv("APP_LIVE26", "1")
    Path("liveiter26.py").write_text(LIVE_ITERATING)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("liveiter26", None)
    found: set[str] = set()
    pycode.uses([getattr(importlib.import_module("liveiter26"), name)], environ=found)
    assert "APP_LIVE26" in found


@pytest.mark.parametrize(("name", "read"), [("getenvb", "BYTES26"), ("setdefault", "SETDEF26")])
def test_live_code_reading_by_getenvb_or_setdefault(name: str, read: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards (found before this wave too): `os.getenvb(b"X")` and `os.environ.setdefault("X", "1")` read X, alone."""
    from nixlib import pycode

    Path("liveiter26.py").write_text(LIVE_ITERATING)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("liveiter26", None)
    found: set[str] = set()
    pycode.uses([getattr(importlib.import_module("liveiter26"), name)], environ=found)
    assert found == {read}


APP_SCRIPT = '''import os
import sys
app = {k: v for k, v in os.environ.items() if k.startswith("APP26_")}
with open(sys.argv[1], "w") as f:
    f.write(",".join(f"{k}={v}" for k, v in sorted(app.items())) + "\\n")
'''


def test_nw_run_reruns_a_step_whose_script_iterates_the_environment(tmp_path: Path, log: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`nw run experiment.py` with a step running app.py, which collects the APP26_* variables by iterating
    os.environ: setting, changing or unsetting one re-runs it (before, none was keyed: the old result was served);
    going back to a former setting serves the stored result."""
    from tests.helpers import nw

    for name in ("APP26_A", "APP26_B"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "app.py").write_text(APP_SCRIPT)
    exp = root / "experiment.py"
    exp.write_text("from pathlib import Path\nfrom nixlib import output\nHERE = Path(__file__).parent\n"
                   "app = output(f'echo app >> $NW_TEST_LOG; python3 {HERE}/app.py $out/r.txt')\n")

    def run(**variables: str | None) -> tuple[int, str]:
        for k, v in variables.items():
            if v is None:
                monkeypatch.delenv(k, raising=False)
            else:
                monkeypatch.setenv(k, v)
        before = len(log.read_text().split()) if log.exists() else 0
        proc = nw("run", str(exp), cwd=root)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = (root / "nix-workflow-output" / "app" / "r.txt").read_text().strip()
        return len(log.read_text().split()) - before, result

    assert run() == (1, "")
    assert run(APP26_A="1") == (1, "APP26_A=1")
    assert run(APP26_A="2") == (1, "APP26_A=2")
    assert run(APP26_B="x") == (1, "APP26_A=2,APP26_B=x")
    assert run(APP26_B=None) == (0, "APP26_A=2")


HOMED = '''
import os

import luigi

from luigi_nixworkflow import NixTask


class Homed(NixTask):
    def output(self):
        return luigi.LocalTarget("out/home.txt")

    def run(self):
        with open(os.environ["NW_TEST_LOG"], "a") as log:
            log.write("home\\n")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(os.path.expanduser("~/data.csv") + "\\n")
'''


def test_luigi_reruns_a_task_expanding_tilde_when_home_changes(tmp_path: Path, log: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Homed.run() writes `os.path.expanduser("~/data.csv")`: under another HOME it names another file, so it re-runs
    (before, HOME was not keyed: the path under the old HOME was served); the first HOME again serves its result."""
    homes = [tmp_path / "home1", tmp_path / "home2"]
    for home in homes:
        home.mkdir()
    Path("homepipe26.py").write_text(HOMED)

    def run(home: Path) -> tuple[int, str]:
        monkeypatch.setenv("HOME", str(home))
        before = len(log.read_text().split()) if log.exists() else 0
        luigi_cli("--module", "homepipe26", "Homed")
        return len(log.read_text().split()) - before, Path("out/home.txt").read_text().strip()

    assert run(homes[0]) == (1, f"{homes[0]}/data.csv")
    assert run(homes[1]) == (1, f"{homes[1]}/data.csv")
    assert run(homes[0]) == (0, f"{homes[0]}/data.csv")
