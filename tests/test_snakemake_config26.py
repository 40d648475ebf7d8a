"""A script reads the config keys it names, not the whole config.

Before: a script job that named the config at all (`snakemake.config["threshold"]`) was keyed on the whole config,
so adding a sample to `samples:`, or any other edit of a key it never reads, re-ran it (and, with a changed output,
everything below it). Now a script (with the local code it imports) that reads the config only by constant top-level
keys (`snakemake.config["k"]`, `.get("k", ...)`, R's `snakemake@config[["k"]]`) is keyed on those keys' values; any
other mention of the config (`cfg = snakemake.config`, a loop over it, R's `$`, a comment) keys all of it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from snakemake_executor_nixworkflow.jobs import config_keys_read
from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

FILES = {
    "config.yaml": "threshold: 2\nsamples: [a, b]\nextra: {depth: 1}\n",
    "Snakefile": '''
configfile: "config.yaml"

rule all:
    input: "out/keyed.txt", "out/whole.txt", "out/absent.txt"

rule keyed:
    output: "out/keyed.txt"
    script: "keyed.py"

rule whole:
    output: "out/whole.txt"
    script: "whole.py"

rule absent:
    output: "out/absent.txt"
    script: "absent.py"
''',
    "keyed.py": '''
import os
open(os.environ["NW_TEST_LOG"], "a").write("keyed\\n")
depth = snakemake.config.get("extra", {}).get("depth")
open(snakemake.output[0], "w").write(f"{snakemake.config['threshold']} {depth}\\n")
''',
    "whole.py": '''
import os
open(os.environ["NW_TEST_LOG"], "a").write("whole\\n")
cfg = snakemake.config
open(snakemake.output[0], "w").write(str(cfg["threshold"]) + "\\n")
''',
    "absent.py": '''
import os
open(os.environ["NW_TEST_LOG"], "a").write("absent\\n")
open(snakemake.output[0], "w").write(str(snakemake.config.get("label", "none")) + "\\n")
''',
}


def rerun(wf: Path, log: Path) -> Counter[str]:
    """Delete the outputs and Snakemake's metadata, run again, return what executed."""
    wipe(wf, "out")
    log.unlink(missing_ok=True)
    ok(snakemake(wf))
    return executions(log)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.slow
def test_a_script_is_keyed_on_the_config_keys_it_reads(tmp_path: Path, log: Path) -> None:
    wf = write(tmp_path / "wf", FILES)
    ok(snakemake(wf))
    assert executions(log) == Counter({"keyed": 1, "whole": 1, "absent": 1})
    config = wf / "config.yaml"

    edit(config, "[a, b]", "[a, b, c]")  # a key only `whole.py` may read (it holds the config whole)
    assert rerun(wf, log) == Counter({"whole": 1})

    edit(config, "threshold: 2", "threshold: 3")  # read by keyed.py and whole.py
    assert rerun(wf, log) == Counter({"keyed": 1, "whole": 1})
    assert (wf / "out/keyed.txt").read_text() == "3 1\n"

    edit(config, "depth: 1", "depth: 5")  # inside a key keyed.py reads
    assert rerun(wf, log) == Counter({"keyed": 1, "whole": 1})
    assert (wf / "out/keyed.txt").read_text() == "3 5\n"

    config.write_text(config.read_text() + "label: hello\n")  # a key absent before, read by absent.py
    assert rerun(wf, log) == Counter({"whole": 1, "absent": 1})
    assert (wf / "out/absent.txt").read_text() == "hello\n"


@pytest.mark.parametrize(("texts", "keys"), [
    (['x = snakemake.config["a"]\ny = snakemake.config.get(\'b\', 3)'], {"a", "b"}),
    (['x = snakemake.config["a"]["inner"]', "import helper\n"], {"a"}),
    (['t <- snakemake@config[["thr"]]'], {"thr"}),
    (["print(1)"], set()),
])
def test_constant_key_reads_are_found(texts: list[str], keys: set[str]) -> None:
    assert config_keys_read(texts) == frozenset(keys)


@pytest.mark.parametrize("text", [
    "cfg = snakemake.config",
    "for k in snakemake.config: print(k)",
    '# see the config\nx = snakemake.config["a"]',
    "x = snakemake@config$thr",  # R's `$` matches a key by prefix
    'x = snakemake.config["a" + suffix]',
    'x = snakemake.config[f"s_{i}"]',
    "x = ${snakemake_config[a]}",
    'x = snakemake.config["a", "b"]',
    'x = snakemake.config.get(key)',
    'x = other.snakemake.config["a"]',
    'import config_helpers\nx = snakemake.config["a"]',
])
def test_any_other_mention_of_the_config_may_read_all_of_it(text: str) -> None:
    assert config_keys_read([text]) is None
