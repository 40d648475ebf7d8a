"""Probing wave 13: parts of Luigi's library real pipelines lean on (luigi.contrib.external_program, luigi.tools.range,
luigi.util, formats, batching, module-level config), written as plain Luigi and migrated by changing only the base
class, run with the real `luigi` command against a private store. Each test is a bug that probing found, and fails
on the code before its fix. Code digests are memoised per process, so each run is a new `luigi` process."""

from __future__ import annotations

import os
from pathlib import Path

from tests.luigi_run import luigi_cli, runs

# ---- a variable or luigi.cfg section named through a module-level constant ---------------------------------------

CONSTANTS = '''
import os
import luigi
from luigi.configuration import get_config
from luigi_nixworkflow import NixTask
from tests.luigi_run import note

VAR = "NW_PROBE13_SCALE"
SECTION = "cleaning"
NAMES = ("NW_PROBE13_MODE",)


class EnvConst(NixTask):
    def output(self):
        return luigi.LocalTarget("out/env.txt")

    def run(self):
        note("EnvConst")
        with self.output().open("w") as g:
            g.write(os.environ.get(VAR, "unset") + " " + " ".join(os.getenv(n, "-") for n in NAMES))


class CfgConst(NixTask):
    def output(self):
        return luigi.LocalTarget("out/cfg.txt")

    def run(self):
        note("CfgConst")
        with self.output().open("w") as g:
            g.write(get_config().get(SECTION, "scale"))
'''


def _run(task: str, **env: str) -> None:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        luigi_cli("--module", "consts", task)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_variable_or_config_section_named_through_a_module_constant_is_keyed() -> None:
    """`os.environ.get(VAR)` with `VAR = "SCALE"` at module level (or a tuple of names), and
    `get_config().get(SECTION, "scale")` with `SECTION = "cleaning"`: only the string constants of the code itself
    were taken as variable and section names, so `SCALE=2 luigi ...` after `SCALE=1`, or an edited `[cleaning]
    scale` in luigi.cfg, served the result computed with the old value (plain Luigi, its output deleted, writes the
    new one)."""
    Path("consts.py").write_text(CONSTANTS)
    Path("luigi.cfg").write_text("[cleaning]\nscale=3\n")
    _run("EnvConst", NW_PROBE13_SCALE="1", NW_PROBE13_MODE="a")
    _run("CfgConst")
    assert (Path("out/env.txt").read_text(), Path("out/cfg.txt").read_text()) == ("1 a", "3")
    _run("EnvConst", NW_PROBE13_SCALE="1", NW_PROBE13_MODE="a")  # unchanged: served
    assert runs() == {"EnvConst": 1, "CfgConst": 1}
    _run("EnvConst", NW_PROBE13_SCALE="2", NW_PROBE13_MODE="a")
    assert Path("out/env.txt").read_text() == "2 a"
    _run("EnvConst", NW_PROBE13_SCALE="2", NW_PROBE13_MODE="b")
    assert Path("out/env.txt").read_text() == "2 b"
    Path("luigi.cfg").write_text("[cleaning]\nscale=4\n")
    _run("CfgConst")
    assert Path("out/cfg.txt").read_text() == "4"
    assert runs() == {"EnvConst": 3, "CfgConst": 2}
