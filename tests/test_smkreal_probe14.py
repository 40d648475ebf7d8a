"""Wave 14 probes of whole pipelines under `snakemake --executor nixworkflow`, written the way bioinformatics and
ML groups write them (sample sheets, `rules/*.smk`, `scripts/`, a nested `config/config.yaml`).

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


CONFIG_READERS = {
    "Snakefile": '''
import os

configfile: "config.yaml"


def note(name):
    with open(os.environ["NW_TEST_LOG"], "a") as f:
        f.write(name + "\\n")


def scale():
    return config["hyper"]["scale"]


def bound(cfg=config):
    return cfg["hyper"]["scale"]


rule all:
    input: expand("out/{name}.txt", name=["plot", "summary", "fmt", "helper", "bound", "passed", "named"])

rule plot:
    output: "out/plot.txt"
    log: "logs/plot.log"
    script: "scripts/plot.py"

rule summary:
    output: "out/summary.txt"
    run:
        note("summary")
        with open(output[0], "w") as o:
            o.write("summary\\n")

rule fmt:
    output: "out/fmt.txt"
    run:
        note("fmt")
        shell("echo {config[hyper][scale]} > {output}")

rule helper:
    output: "out/helper.txt"
    run:
        note("helper")
        with open(output[0], "w") as o:
            o.write(f"{scale()}\\n")

rule bound:
    output: "out/bound.txt"
    run:
        note("bound")
        with open(output[0], "w") as o:
            o.write(f"{bound()}\\n")

rule passed:
    output: "out/passed.txt"
    script: "scripts/passed.py"

rule named:
    output: "out/named.txt"
    script: "scripts/named.py"
''',
    # a config as large as a sample list makes it (more than the 64 KiB of a value nixlib.pycode keys as code)
    "config.yaml": "hyper: {scale: 1}\nsamples: [" + ", ".join(f"sample_{i:05d}" for i in range(8000)) + "]\n",
    "scripts/plot.py": '''
import os
from fmt import row

with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("plot\\n")
with open(snakemake.output[0], "w") as o, open(snakemake.log[0], "w") as log:
    o.write(row(["plot", str(snakemake.threads)]))
''',
    "scripts/fmt.py": "def row(fields):\n    return ' | '.join(fields) + '\\n'\n",
    "scripts/passed.py": '''
import os
import lib

with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("passed\\n")
lib.write(snakemake)
''',
    "scripts/lib.py": '''
def write(smk):
    with open(smk.output[0], "w") as o:
        o.write(str(smk.config["hyper"]["scale"]) + "\\n")
''',
    "scripts/named.py": '''
import os

with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("named\\n")
with open(snakemake.output[0], "w") as o:
    o.write(str(snakemake.config["hyper"]["scale"]) + "\\n")
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_config_change_re_runs_only_the_scripts_and_run_blocks_that_read_the_config(tmp_path: Path,
                                                                                     log: Path) -> None:
    """The whole workflow config was keyed for every `script:` and `run:` job: changing one hyperparameter (or
    `--config` in a clone sharing the store) re-ran, after `rm -rf results`, every plotting script and `run:`
    block of the pipeline although none of them reads the config (plain Snakemake re-runs none of them). Now the
    config is keyed only for code that can read it: a script (or a local module it imports) naming `config` or
    handing its `snakemake` object on, a `run:` block (or a helper it calls) naming `config` or formatting it
    into a `shell()` command."""
    wf = write(tmp_path / "wf", CONFIG_READERS)
    ok(snakemake(wf))
    everything = Counter(["plot", "summary", "fmt", "helper", "bound", "passed", "named"])
    assert executions(log) == everything
    assert (wf / "out/plot.txt").read_text() == "plot | 1\n"

    wipe(wf, "out", "logs")
    log.unlink()
    ok(snakemake(wf))
    assert executions(log) == Counter(), "unchanged: everything is restored"

    wipe(wf, "out", "logs")
    ok(snakemake(wf, "--config", "hyper={scale: 7}"))
    assert executions(log) == Counter(["fmt", "helper", "bound", "passed", "named"]), "what reads the config runs"
    for name in ("fmt", "helper", "bound", "passed", "named"):
        assert (wf / f"out/{name}.txt").read_text() == "7\n", name
    assert (wf / "out/plot.txt").read_text() == "plot | 1\n"
    assert (wf / "out/summary.txt").read_text() == "summary\n"

    # each config's results are served to it
    wipe(wf, "out", "logs")
    log.unlink()
    ok(snakemake(wf))
    assert executions(log) == Counter()
    assert (wf / "out/named.txt").read_text() == "1\n"
