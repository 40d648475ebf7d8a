"""Data files a Snakemake job reads without declaring them, named inside a param's string or in its shell command.

`params: extra="-a file:config/adapters.fa --min 3"` (a cutadapt/fastp `extra`), `extra="--ref=config/ref.fa"`,
`shell: "cat config/adapters.fa {input} ..."` or `shell: "cat {config[ref]} ..."`: editing the file and deleting
the outputs (the usual way to make Snakemake re-run a job after changing a file it does not track) made plain
Snakemake write the new result while the executor restored the old one. Such files are now keyed by content.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.test_snakemake import ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

UNDECLARED = {
    "Snakefile": '''
configfile: "config/config.yaml"

rule all:
    input: "out/a.txt", "out/b.txt", "out/c.txt", "out/d.txt", "out/e.txt", "out/f.txt"

rule a:
    input: "in.txt"
    output: "out/a.txt"
    params: extra="-a file:config/adapters.fa --min 3"
    shell: "echo '{params.extra}' | sed 's/.*file://; s/ .*//' | xargs cat > {output}; cat {input} >> {output}"

rule b:
    input: "in.txt"
    output: "out/b.txt"
    params: extra="--ref=config/ref.fa"
    shell: "echo '{params.extra}' | cut -d= -f2 | xargs cat > {output}; cat {input} >> {output}"

rule c:
    input: "in.txt"
    output: "out/c.txt"
    shell: "cat config/adapters.fa {input} > {output}"

rule d:
    input: "in.txt"
    output: "out/d.txt"
    shell: "cat {config[ref]} {input} > {output}"

# Not data it reads: an undeclared log it appends to, and a file another rule produces.
rule e:
    input: "in.txt"
    output: "out/e.txt"
    shell: "cat {input} > {output}; echo ran >> logs/all.log"

rule f:
    input: "in.txt"
    output: "out/f.txt"
    shell: "cat {input} > {output}; ls out/c.txt > /dev/null 2>&1 || true"
''',
    "config/config.yaml": "ref: config/ref.fa\n",
    "config/adapters.fa": ">a1\nACGT\n",
    "data/ref_v1.fa": ">chr1\nAAAA\n",
    "in.txt": "reads\n",
    "logs/all.log": "",
}

OUTPUTS = [f"out/{x}.txt" for x in "abcdef"]


def restored(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """The rules whose jobs this run restored from the store instead of running them."""
    return set(re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr))


def test_a_data_file_named_in_a_param_string_or_the_command_is_keyed_by_content(tmp_path: Path) -> None:
    """Editing a data file a job names only inside a param's string or its shell command, then deleting its
    output, re-runs it with the new content (the executor restored the old output before); unchanged, it is
    restored. The reference is a symlink: it is keyed by the data it points to. An undeclared log the command
    appends to and a file another rule produces are not keyed: their jobs are still restored."""
    wf = write(tmp_path / "wf", UNDECLARED)
    os.symlink("../data/ref_v1.fa", wf / "config/ref.fa")
    ok(snakemake(wf))
    assert (wf / "out/a.txt").read_text() == ">a1\nACGT\nreads\n"
    assert (wf / "out/d.txt").read_text() == ">chr1\nAAAA\nreads\n"

    wipe(wf, *OUTPUTS)
    assert restored(ok(snakemake(wf))) == set("abcdef")

    (wf / "config/adapters.fa").write_text(">a1\nTTTT\n")
    (wf / "data/ref_v1.fa").write_text(">chr1\nCCCC\n")
    wipe(wf, *OUTPUTS)
    proc = ok(snakemake(wf))
    assert restored(proc) == {"e", "f"}, proc.stderr
    assert (wf / "out/a.txt").read_text() == ">a1\nTTTT\nreads\n"
    assert (wf / "out/b.txt").read_text() == ">chr1\nCCCC\nreads\n"
    assert (wf / "out/c.txt").read_text() == ">a1\nTTTT\nreads\n"
    assert (wf / "out/d.txt").read_text() == ">chr1\nCCCC\nreads\n"

    wipe(wf, *OUTPUTS)
    assert restored(ok(snakemake(wf))) == set("abcdef")


def test_luigi_a_data_file_named_inside_a_parameter_string_is_keyed_by_content(store_root: Path) -> None:
    """The same in Luigi's front door: a NixTask parameter `extra="--ref data/ref.fa --min 3"` naming the file the
    task reads inside its string. Editing the file re-runs the task (before, the old result was served)."""
    luigi = pytest.importorskip("luigi")
    from luigi_nixworkflow import NixTask
    from tests.test_luigi_idioms import build, runs

    class Align(NixTask):
        extra = luigi.Parameter()

        def output(self) -> luigi.LocalTarget:
            return luigi.LocalTarget("aligned.txt")

        def run(self) -> None:
            with open("runs.log", "a") as f:
                f.write("Align\n")
            ref = self.extra.split()[1]
            with self.output().open("w") as f:
                f.write(Path(ref).read_text().upper())

    Path("data").mkdir()
    Path("data/ref.fa").write_text("acgt\n")
    task = Align(extra="--ref data/ref.fa --min 3")
    build(task)
    build(task)
    assert runs() == {"Align": 1} and Path("aligned.txt").read_text() == "ACGT\n"
    Path("data/ref.fa").write_text("tttt\n")
    build(task)
    assert runs() == {"Align": 2} and Path("aligned.txt").read_text() == "TTTT\n"
    Path("aligned.txt").unlink()
    build(task)
    assert runs() == {"Align": 2} and Path("aligned.txt").read_text() == "TTTT\n"

