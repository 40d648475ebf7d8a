"""Wave 15 probes of `snakemake --executor nixworkflow`: stale results from code that reaches the workflow config (or
a value of the Snakefile) without naming it, and Snakemake idioms that change what a job computes.

Each test is a bug the probe found, and failed before its fix.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


# Snakefile-level objects built from the config: run blocks read it through them, never naming `config`.
HIDDEN_CONFIG = {
    "Snakefile": '''
import os

configfile: "config.yaml"


def note(name):
    with open(os.environ["NW_TEST_LOG"], "a") as f:
        f.write(name + "\\n")


class Inner:
    def __init__(self, cfg):
        self.cfg = cfg


class Settings:
    def __init__(self, cfg):
        self.lr = cfg["train"]["lr"]
        self.inner = Inner(cfg)


class Holder:
    def __init__(self, settings):
        self.settings = settings


settings = Settings(config)
holder = Holder(Settings(config))


def write(path, value):
    with open(path, "w") as f:
        f.write(f"{value}\\n")


rule all:
    input: expand("out/{name}.txt", name=["settings", "nested", "holder", "plain"])

rule settings:
    output: "out/settings.txt"
    run:
        note("settings")
        write(output[0], settings.lr)

rule nested:
    output: "out/nested.txt"
    run:
        note("nested")
        write(output[0], settings.inner.cfg["train"]["lr"])

rule holder:
    output: "out/holder.txt"
    run:
        note("holder")
        write(output[0], holder.settings.lr)

rule plain:
    output: "out/plain.txt"
    run:
        note("plain")
        write(output[0], "plain")
''',
    "config.yaml": "train: {lr: 1}\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_run_block_reading_the_config_through_a_snakefile_object_re_runs_when_it_changes(tmp_path: Path,
                                                                                           log: Path) -> None:
    """`settings = Settings(config)` at the top of the Snakefile, read in `run:` blocks as `settings.lr` (the
    object also keeping an object built from the config) or `holder.settings.lr` (two levels deep): no code of
    those blocks names `config`, so the config was not keyed for them, and the objects were keyed by their class
    only (an attribute that is an object is not rendered). After a config change and `rm -rf out`, the results
    built with the old learning rate were served. A block that reads no such object is still restored, as
    Snakemake re-runs none."""
    wf = write(tmp_path / "wf", HIDDEN_CONFIG)
    ok(snakemake(wf))
    assert executions(log) == Counter(["settings", "nested", "holder", "plain"])

    wipe(wf, "out")
    log.unlink()
    (wf / "config.yaml").write_text("train: {lr: 2}\n")
    ok(snakemake(wf))
    for name in ("settings", "nested", "holder"):
        assert (wf / f"out/{name}.txt").read_text() == "2\n", name
    assert executions(log) == Counter(["settings", "nested", "holder"])
    assert (wf / "out/plain.txt").read_text() == "plain\n"


DATACLASS = '''
import os
from dataclasses import dataclass


@dataclass
class Opts:
    k: int = 2


OPTS = Opts({k})

rule b:
    output: "out/b.txt"
    run:
        with open(os.environ["NW_TEST_LOG"], "a") as f:
            f.write("b\\n")
        with open(output[0], "w") as f:
            f.write(f"{{OPTS.k}}\\n")
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_dataclass_instance_of_the_snakefile_is_keyed_by_its_values(tmp_path: Path, log: Path) -> None:
    """A dataclass defined in the Snakefile (`OPTS = Opts(3)`) read by a `run:` block: its class has no function
    written by the user (the dataclass module generates `__init__`) and no module (a Snakefile is run without a
    module name), so it was not taken for a user class and the instance was keyed by nothing. Editing `Opts(3)`
    to `Opts(4)` served the result computed with 3."""
    wf = write(tmp_path / "wf", {"Snakefile": DATACLASS.format(k=3)})
    ok(snakemake(wf))
    assert (wf / "out/b.txt").read_text() == "3\n"
    wf.joinpath("Snakefile").write_text(DATACLASS.format(k=4))
    wipe(wf, "out")
    ok(snakemake(wf))
    assert (wf / "out/b.txt").read_text() == "4\n"
    assert executions(log) == Counter(["b", "b"])


RULES_PROXY = {
    "Snakefile": '''
rule all:
    input: "out/b.txt"

rule a:
    output: "out/a.txt"
    shell: "echo a > {output}"

rule b:
    input: rules.a.output
    output: "out/b.txt"
    run:
        with open(output[0], "w") as f:
            f.write(rules.a.output[0] + "\\n")
''',
}


def test_a_run_block_naming_rules_runs(tmp_path: Path) -> None:
    """A `run:` block reading `rules.a.output[0]` failed with `WorkflowError: Rule __func__ is not defined in this
    workflow` and no other message: deciding whether the block reads the config looked up `__func__` on Snakemake's
    `rules` object, which raises that error for any attribute it does not know."""
    wf = write(tmp_path / "wf", RULES_PROXY)
    ok(snakemake(wf))
    assert (wf / "out/b.txt").read_text() == "out/a.txt\n"
