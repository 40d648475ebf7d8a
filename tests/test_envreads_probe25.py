"""Probing wave 25: ways live Python code (a Luigi task's methods, a Snakemake `run:` block, the helpers they call)
reaches the environment that the bytecode scan (nixlib.envreads.code_variables, through nixlib.pycode.uses) did not
see. Each missed read served a result made under the variable's old value after it changed (a stale result): a
function a factory made from `make(os.environ)` reading `env.get("X")` on its closed-over cell, `getattr(os,
"environ")`, `vars(os)["environ"]`, `os.__dict__`, `G = os.environ.get`, `P = partial(os.getenv, "X")`, a class
attribute `env = os.environ` read as `self.env`, `os.path.expandvars("$X")`. A name read exactly is keyed alone; a use
that cannot be told keys every name-like constant of the walked code (more keyed, never less)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tests.luigi_run import luigi_cli

LIVE = '''
import functools
import operator
import os
import posix
import sys
from os import getenv as fetch


def make(env):
    def read():
        return env.get("CLOSED", "unset")
    return read


def make_getter(get):
    return lambda: get("CLOSED_GET")


def make_task(env):
    class Made:
        def run(self):
            return env["FACTORY"]
    return Made


closed = make(os.environ)
closed_get = make_getter(os.getenv)
factory_run = make_task(os.environ).run
a_plain = make({})
b_env = make(os.environ)


def twice():
    return a_plain() + b_env()


def getattr_environ():
    return getattr(os, "environ").get("GA", "unset")


def getattr_getenv():
    return getattr(os, "getenv")("GG")


def getattr_in():
    return "GI" in getattr(os, "environ")


def getattr_computed(name):
    return getattr(os, name)["GC"]


def vars_os():
    return vars(os)["environ"]["VARS"]


def os_dict():
    return os.__dict__["environ"]["DICT"]


def sys_modules():
    return sys.modules["os"].__dict__["environ"]["SYSMOD"]


def attrgetter():
    return operator.attrgetter("environ")(os)["ATTRG"]


def local_module():
    import os as o
    return getattr(o, "environ")["LOCALMOD"]


GET = os.environ.get
COPY = os.environ.copy
PARTIAL = functools.partial(os.getenv, "PARTIAL")


def bound_get():
    return GET("BOUND", "unset")


def bound_copy():
    return COPY()["BOUNDCOPY"]


def partial_getenv():
    return PARTIAL()


class Holder:
    env = os.environ

    def run(self):
        return self.env.get("CLASSATTR")


def expandvars():
    return os.path.expandvars("$EXPANDED/x")


def fallback_expands():
    return os.environ.copy(), os.path.expandvars("${EXPFALL}/x")


def getenv_alias():
    return fetch("ALIAS")


def copied():
    return os.environ.copy()["COPIED"]


def dicted():
    return dict(os.environ)["DICTED"]


def environb():
    return os.environb[b"ENVB"]


def posix_environ():
    return posix.environ[b"POSIX"]


def os_path_too():
    return os.path.join("a", "b") + os.environ["PATHED"] + os.sep
'''

# The names written by hand: the lookups' own where a read is followed, else (a superset test) every name-like
# constant of the walked code. `old`: whether the scan before this wave found the variable.
EXACT = {
    "closed": {"CLOSED"},  # (not "unset")
    "closed_get": {"CLOSED_GET"},
    "twice": {"CLOSED"},  # (the same code closing over {} first, then os.environ: read with each one's cells)
    "factory_run": {"FACTORY"},
    "getattr_environ": {"GA"},
    "getattr_getenv": {"GG"},
    "local_module": {"LOCALMOD"},
    "bound_get": {"BOUND"},
    "partial_getenv": {"PARTIAL"},
    "expandvars": {"EXPANDED"},
    "getenv_alias": {"ALIAS"},  # (found before too)
    "environb": {"ENVB"},  # (found before too)
    "posix_environ": {"POSIX"},  # (found before too)
    "os_path_too": {"PATHED"},  # (os.path and os.sep are no read: the os module's rule must not fall back on them)
}
INCLUDES = {
    "getattr_in": "GI",
    "getattr_computed": "GC",
    "vars_os": "VARS",
    "os_dict": "DICT",
    "sys_modules": "SYSMOD",
    "attrgetter": "ATTRG",
    "bound_copy": "BOUNDCOPY",
    "copied": "COPIED",  # (found before too)
    "fallback_expands": "EXPFALL",  # (where a use cannot be told, a `${X}` a string expands is still a name read)
    "dicted": "DICTED",  # (found before too)
}


def _found(name: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """pycode.uses(environ=...) over one function of the LIVE module, as Luigi walks run() and Snakemake a block."""
    from nixlib import pycode

    Path("livecode25.py").write_text(LIVE)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("livecode25", None)
    module = importlib.import_module("livecode25")
    target = module.Holder.run if name == "holder" else getattr(module, name)
    found: set[str] = set()
    pycode.uses([target], environ=found)
    return {n for n in found if n.isidentifier()}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_the_live_scan_keys_exactly_the_variable_read(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A closure cell that is os.environ (or os.getenv), `getattr(os, "environ")` with a constant name, a global
    bound to os.environ.get or to partial(os.getenv, "X"), a `$X` a string expands: the name read, alone."""
    assert _found(name, monkeypatch) == EXACT[name]


@pytest.mark.parametrize("name", sorted(INCLUDES))
def test_the_live_scan_keys_the_variable_where_the_use_cannot_be_told(name: str, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    """The os module handed on or reached by a string (`getattr(os, name)`, `vars(os)`, `os.__dict__`,
    `attrgetter("environ")(os)`), the environment copied or bound as a method that is no lookup: every name-like
    constant of the walked code, so the one read among them."""
    assert INCLUDES[name] in _found(name, monkeypatch)


def test_a_class_attribute_that_is_the_environment_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`class Holder: env = os.environ` read as `self.env.get("CLASSATTR")` in a method (before: not seen)."""
    assert "CLASSATTR" in _found("holder", monkeypatch)


def test_envreads_does_not_import_pycode() -> None:
    """One direction between the two (pycode walks code with envreads' nested_code): envreads imported alone in a
    fresh interpreter leaves pycode unimported."""
    import subprocess

    code = "import sys, nixlib.envreads; print('nixlib.pycode' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"


# ---- the front door: luigi --module ... --local-scheduler ----

PIPELINE = '''
import os

import luigi

from luigi_nixworkflow import NixTask


def make(env):
    def read(name):
        return env.get(name, "-")
    return read


def make_reader(env):
    def read():
        return env.get("CLOSED25", "-")
    return read


reader = make_reader(os.environ)


def note(what):
    with open(os.environ["NW_TEST_LOG"], "a") as log:
        log.write(what + "\\n")


class Closed(NixTask):
    def output(self):
        return luigi.LocalTarget("out/closed.txt")

    def run(self):
        note("closed")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(reader() + "\\n")


class Named(NixTask):
    def output(self):
        return luigi.LocalTarget("out/named.txt")

    def run(self):
        note("named")
        os.makedirs("out", exist_ok=True)
        with open(self.output().path, "w") as f:
            f.write(getattr(os, "environ").get("NAMED25", "-") + "\\n")


class EnvAll25(luigi.WrapperTask):
    def requires(self):
        return [Closed(), Named()]
'''


def _luigi(log: Path, monkeypatch: pytest.MonkeyPatch, **variables: str | None) -> tuple[list[str], str, str]:
    """`luigi --module envpipe25 EnvAll25` with these variables (None: unset): the tasks that ran, what each wrote."""
    for k, v in variables.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    before = log.read_text().split() if log.exists() else []
    luigi_cli("--module", "envpipe25", "EnvAll25")
    ran = sorted(log.read_text().split()[len(before):]) if log.exists() else []
    return ran, Path("out/closed.txt").read_text().strip(), Path("out/named.txt").read_text().strip()


def test_luigi_reruns_a_task_reading_through_a_closure_or_getattr(log: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """Closed.run() calls `reader()`, a function `make_reader(os.environ)` made, reading CLOSED25 from its cell;
    Named.run() reads `getattr(os, "environ").get("NAMED25")`. Changing either re-runs its own task only (before,
    neither was keyed: the old result was served), and going back serves the stored one."""
    for name in ("CLOSED25", "NAMED25"):
        monkeypatch.delenv(name, raising=False)
    Path("envpipe25.py").write_text(PIPELINE)
    assert _luigi(log, monkeypatch) == (["closed", "named"], "-", "-")
    assert _luigi(log, monkeypatch, CLOSED25="c") == (["closed"], "c", "-")
    assert _luigi(log, monkeypatch, NAMED25="n") == (["named"], "c", "n")
    assert _luigi(log, monkeypatch, CLOSED25=None, NAMED25=None) == ([], "-", "-")
