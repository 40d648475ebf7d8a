"""Probe 22: a `run:` block's shell() running a script named through the job's values, and two everyday
workflows (a bioinformatics-like one: wildcards, expand(), a checkpoint with an aggregate input function, params
lambdas reading the config, Python `script:`s, temp() and directory() outputs, `--configfile`; an ML-like one:
`shell:` rules calling a project CLI of a local package, `resources:`, `threads:`, `log:`) through the real
`snakemake --executor nixworkflow`.

The gap closed here (the test failed before the fix): a script a `run:` block runs through a formatted shell()
template, `shell("python3 {input.script} {output}")`, an f-string or a `.format()`ed command, was keyed by its code
only: a data file it opens by a literal path and an environment variable it reads were not keyed, so editing the
one or changing the other served the old result."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


def counted(where: Path, log: Path, *args: str) -> Callable[..., Counter[str]]:
    """A function running the real snakemake in `where` after removing out/: how many times each job ran."""
    def run(*more: str) -> Counter[str]:
        before = executions(log)
        wipe(where, "out")
        proc = ok(snakemake(where, *args, *more))
        last = where.parent / "last-run.txt"  # (the last two runs' output, for a failing test's message)
        previous = last.read_text().split("=====")[-1] if last.exists() else ""
        last.write_text(previous + "=====" + proc.stdout + proc.stderr)
        return executions(log) - before
    return run


# ---------------------------------------------------------------------------------------------------------------
# 1. a run: block's shell() running a script through its input or params: the data and variables it reads

RUNREADS = {
    "Snakefile": '''
rule all:
    input: "out/a.txt", "out/b.txt", "out/c.txt", "out/d.txt", "out/e.txt"
rule a:
    input: script="tools/a.py"
    output: "out/a.txt"
    run:
        shell("python3 {input.script} {output}; echo a >> $NW_TEST_LOG")
rule b:
    input: script="tools/b.py"
    output: "out/b.txt"
    run:
        shell("python3 {input.script} {output}; echo b >> $NW_TEST_LOG")
rule c:
    input: script="tools/a.py"
    output: "out/c.txt"
    run:
        shell(f"python3 {input.script} {output}; echo c >> $NW_TEST_LOG")
rule d:
    params: script="tools/b.py"
    output: "out/d.txt"
    run:
        cmd = "python3 {} {}; echo d >> $NW_TEST_LOG".format(params.script, output[0])
        shell(cmd)
rule e:
    input: script="tools/a.py"
    output: "out/e.txt"
    run:
        shell("python3 {s} {o}; echo e >> $NW_TEST_LOG".format(s=input.script, o=output))
''',
    "tools/a.py": 'import sys\nopen(sys.argv[1], "w").write(open("config/table.tsv").read())\n',
    "tools/b.py": 'import os, sys\nopen(sys.argv[1], "w").write(os.environ.get("P22_SCALE", "1") + "\\n")\n',
    "config/table.tsv": "t1\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_keys_data_and_variables_a_run_block_script_named_through_job_values_reads(
        tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run: shell("python3 {input.script} {output}")` (also an f-string, a `.format()`ed command, a script named by a
    param): the script's code was keyed, but not the data file it opens by a literal path (config/table.tsv) nor
    the variable it reads (P22_SCALE); editing the one or setting the other served the old result."""
    where = write(tmp_path / "wf", RUNREADS)
    run = counted(where, log)
    assert set(run()) == {"a", "b", "c", "d", "e"}
    assert not run()
    (where / "config/table.tsv").write_text("t2\n")
    assert set(run()) == {"a", "c", "e"}
    assert not run()
    monkeypatch.setenv("P22_SCALE", "3")
    assert set(run()) == {"b", "d"}
    assert not run()
    assert [(where / f"out/{n}.txt").read_text() for n in "abcde"] == ["t2\n", "3\n", "t2\n", "3\n", "t2\n"]


# ---------------------------------------------------------------------------------------------------------------
# 2. a bioinformatics-like workflow: wildcards, expand(), a checkpoint and its aggregate, script:s, temp(), directory()

BIO = {
    "Snakefile": '''
import os

configfile: "config/config.yaml"

SAMPLES = config["samples"]


rule all:
    input: "out/report.tsv"


rule trim:
    input: "data/{sample}.fq"
    output: temp("out/trimmed/{sample}.fq")
    params: minlen=lambda wildcards: config["trim"]["minlen"]
    script: "scripts/trim.py"


rule count:
    input: "out/trimmed/{sample}.fq"
    output: "out/counts/{sample}.tsv"
    params: k=lambda wildcards: int(config["kmer"])
    script: "scripts/count.py"


checkpoint split:
    input: "out/counts/{sample}.tsv"
    output: directory("out/split/{sample}")
    script: "scripts/split.py"


def aggregate(wildcards):
    folder = checkpoints.split.get(sample=wildcards.sample).output[0]
    parts = glob_wildcards(os.path.join(folder, "{part}.tsv")).part
    return expand(os.path.join(folder, "{part}.tsv"), part=sorted(parts))


rule summarise:
    input: aggregate
    output: "out/summary/{sample}.txt"
    script: "scripts/summarise.py"


rule report:
    input: expand("out/summary/{sample}.txt", sample=SAMPLES)
    output: "out/report.tsv"
    params: title=lambda wildcards: config.get("title", "report")
    script: "scripts/report.py"
''',
    "config/config.yaml": "samples: [s1, s2]\nkmer: 2\ntrim: {minlen: 3}\n",
    "config/alt.yaml": "samples: [s1]\nkmer: 3\ntrim: {minlen: 3}\n",
    "data/s1.fq": "ACGTAC\nACG\nAC\nGGTTAA\n",
    "data/s2.fq": "TTTTGG\nACGTTT\n",
    "scripts/log.py": 'import os\n\ndef note(what):\n    open(os.environ["NW_TEST_LOG"], "a").write(what + "\\n")\n',
    "scripts/trim.py": '''from log import note
reads = [r for r in open(snakemake.input[0]).read().split() if len(r) >= snakemake.params.minlen]
open(snakemake.output[0], "w").write("\\n".join(reads) + "\\n")
note("trim:" + snakemake.wildcards.sample)
''',
    "scripts/kmers.py": '''def kmers(read, k):
    return [read[i:i + k] for i in range(len(read) - k + 1)]
''',
    "scripts/count.py": '''from collections import Counter
from kmers import kmers
from log import note
counts = Counter(km for r in open(snakemake.input[0]).read().split() for km in kmers(r, snakemake.params.k))
open(snakemake.output[0], "w").write("".join(f"{km}\\t{n}\\n" for km, n in sorted(counts.items())))
note("count:" + snakemake.wildcards.sample)
''',
    "scripts/split.py": '''import os
from log import note
os.makedirs(snakemake.output[0])
by = {}
for line in open(snakemake.input[0]):
    by.setdefault(line[0], []).append(line)
for first, lines in by.items():
    open(os.path.join(snakemake.output[0], first + ".tsv"), "w").write("".join(lines))
note("split:" + snakemake.wildcards.sample)
''',
    "scripts/summarise.py": '''from log import note
total = sum(int(line.split()[1]) for f in snakemake.input for line in open(f))
open(snakemake.output[0], "w").write(f"{snakemake.wildcards.sample}\\t{len(snakemake.input)}\\t{total}\\n")
note("summarise:" + snakemake.wildcards.sample)
''',
    "scripts/report.py": '''from log import note
header = open("resources/header.txt").read()
rows = "".join(open(f).read() for f in snakemake.input)
open(snakemake.output[0], "w").write(f"# {snakemake.params.title}\\n" + header + rows)
note("report")
''',
    "resources/header.txt": "sample\tparts\ttotal\n",
}

SNAKEFILE_TITLE = ('params: title=lambda wildcards: config.get("title", "report")',
                   'params: title=lambda wildcards: config.get("title", "report").upper()')


@pytest.mark.long
def test_bioinformatics_like_workflow_reruns_exactly_what_each_edit_affects(tmp_path: Path, log: Path) -> None:
    """Everything runs once; an unchanged re-run (outputs deleted) executes nothing; then each kind of edit re-runs
    the jobs it affects and those downstream whose inputs changed, the temp() output being restored, not re-run,
    where a re-running job needs it: a `--config` value, the config file, a script, a module a script imports, a data
    file a script opens by a literal path, a params lambda's source, and `--configfile` another config."""
    where = write(tmp_path / "wf", BIO)
    run = counted(where, log)
    all_jobs = {f"{r}:{s}" for r in ("trim", "count", "split", "summarise") for s in ("s1", "s2")} | {"report"}
    assert set(run()) == all_jobs
    assert not (where / "out/trimmed").exists() or not list((where / "out/trimmed").iterdir())  # temp(): removed
    report = (where / "out/report.tsv").read_text()
    assert report == "# report\nsample\tparts\ttotal\ns1\t4\t12\ns2\t4\t10\n"
    assert not run(), "an unchanged re-run must be restored from the store"
    assert (where / "out/report.tsv").read_text() == report
    assert sorted(p.name for p in (where / "out/split/s1").glob("*.tsv")) == ["A.tsv", "C.tsv", "G.tsv", "T.tsv"]

    # a --config value: every count (k), so everything downstream; trim's temp output restored, not re-run
    downstream = {f"{r}:{s}" for r in ("count", "split", "summarise") for s in ("s1", "s2")} | {"report"}
    assert set(run("--config", "kmer=3")) == downstream
    assert not run("--config", "kmer=3")
    assert not run(), "back to k=2: served from the store"
    # the config file: trim's minlen drops s1's read "ACG", none of s2's: s2's counts are the same bytes
    (where / "config/config.yaml").write_text("samples: [s1, s2]\nkmer: 2\ntrim: {minlen: 4}\n")
    assert set(run()) == {"trim:s1", "trim:s2", "count:s1", "split:s1", "summarise:s1", "report"}
    assert not run()
    # a module a script imports: both counts; a script: both summaries
    (where / "scripts/kmers.py").write_text(BIO["scripts/kmers.py"].replace("len(read) - k + 1", "len(read) - k"))
    assert set(run()) == downstream
    (where / "scripts/summarise.py").write_text(BIO["scripts/summarise.py"].replace("total}", "total * 2}"))
    assert set(run()) == {"summarise:s1", "summarise:s2", "report"}
    # a data file the report script opens by a literal path
    (where / "resources/header.txt").write_text("sample\tn\tsum\n")
    assert set(run()) == {"report"}
    # a params lambda's source (its value changes)
    snakefile = where / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace(*SNAKEFILE_TITLE))
    assert set(run()) == {"report"}
    assert (where / "out/report.tsv").read_text().startswith("# REPORT\nsample\tn\tsum\n")
    assert not run()
    # --configfile: another config (one sample, k=3): only its jobs, none of s2's
    ran = set(run("--configfile", "config/alt.yaml"))
    assert ran == {"count:s1", "split:s1", "summarise:s1", "report"}
    assert not run("--configfile", "config/alt.yaml")


# ---------------------------------------------------------------------------------------------------------------
# 3. an ML-like workflow: shell: rules calling the project's CLI (a local package), threads, resources, log files

ML = {
    "Snakefile": '''
configfile: "config.yaml"


rule all:
    input: expand("out/metrics/{model}.json", model=config["models"])


rule prepare:
    input: "data/raw.csv"
    output: "out/prepared.csv"
    log: "logs/prepare.log"
    shell: "PYTHONPATH=src python3 -m mlkit.cli prepare {input} {output} 2> {log}; echo prepare >> $NW_TEST_LOG"


rule train:
    input: "out/prepared.csv"
    output: "out/models/{model}.json"
    log: "logs/train/{model}.log"
    threads: 2
    resources: mem_mb=200
    params: lr=lambda wildcards: config["lr"] * (2 if wildcards.model == "big" else 1)
    shell:
        "PYTHONPATH=src python3 -m mlkit.cli train --model {wildcards.model} --lr {params.lr} --threads {threads} "
        "{input} {output} > {log} 2>&1; echo train:{wildcards.model} >> $NW_TEST_LOG"


rule evaluate:
    input: model="out/models/{model}.json", data="out/prepared.csv"
    output: "out/metrics/{model}.json"
    log: "logs/evaluate/{model}.log"
    resources: mem_mb=100
    shell:
        "echo evaluate:{wildcards.model} >> $NW_TEST_LOG; "
        "PYTHONPATH=src python3 -m mlkit.cli evaluate {input.model} {input.data} {output} 2> {log}"
''',
    "config.yaml": "models: [small, big]\nlr: 0.5\n",
    "data/raw.csv": "x,y\n1,2\n2,4\n3,6\n",
    "src/mlkit/__init__.py": "",
    "src/mlkit/cli.py": '''import argparse, json, sys
from mlkit import model


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("prepare"); p.add_argument("src"); p.add_argument("dst")
    t = sub.add_parser("train"); t.add_argument("--model"); t.add_argument("--lr", type=float)
    t.add_argument("--threads", type=int); t.add_argument("data"); t.add_argument("dst")
    e = sub.add_parser("evaluate"); e.add_argument("model"); e.add_argument("data"); e.add_argument("dst")
    a = parser.parse_args()
    if a.cmd == "prepare":
        rows = open(a.src).read().split()[1:]
        open(a.dst, "w").write("\\n".join(rows) + "\\n")
        print("prepared", len(rows), file=sys.stderr)
    elif a.cmd == "train":
        w = model.fit(model.load(a.data), a.lr)
        json.dump({"model": a.model, "w": w}, open(a.dst, "w"))
        print("trained", a.model, "threads", a.threads)
    else:
        w = json.load(open(a.model))["w"]
        json.dump({"loss": model.loss(w, model.load(a.data))}, open(a.dst, "w"))


main()
''',
    "src/mlkit/model.py": '''def load(path):
    return [tuple(float(v) for v in line.split(",")) for line in open(path).read().split()]


def fit(rows, lr, steps=20):
    w = 0.0
    for _ in range(steps):
        w -= lr * sum((w * x - y) * x for x, y in rows) / len(rows) / 10
    return round(w, 6)


def loss(w, rows):
    return round(sum((w * x - y) ** 2 for x, y in rows) / len(rows), 6)
''',
}


@pytest.mark.long
def test_ml_like_workflow_with_a_project_cli_reruns_what_each_edit_affects_and_stores_no_failure(
        tmp_path: Path, log: Path) -> None:
    """`shell:` rules running `PYTHONPATH=src python3 -m mlkit.cli ...`: an unchanged re-run executes nothing and
    puts back outputs and logs; a `--config` value re-runs the trainings and evaluations it changes; an edit of a
    module of the package (mlkit/model.py) re-runs what runs it; a failing evaluation fails the run with
    Snakemake's one error block (no traceback of the executor) and is not served afterwards: the next run runs it
    again."""
    where = write(tmp_path / "wf", ML)
    run = counted(where, log)
    everything = {"prepare", "train:small", "train:big", "evaluate:small", "evaluate:big"}
    assert set(run()) == everything
    wipe(where, "logs")
    assert not run(), "an unchanged re-run must be restored from the store"
    assert (where / "logs/train/big.log").read_text() == "trained big threads 2\n"
    assert (where / "logs/prepare.log").read_text() == "prepared 3\n"
    assert set(run("--config", "lr=0.25")) == {"train:small", "train:big", "evaluate:small", "evaluate:big"}
    assert not run("--config", "lr=0.25")
    assert not run()
    model = where / "src/mlkit/model.py"
    model.write_text(ML["src/mlkit/model.py"].replace("/ len(rows), 6)", "/ len(rows) / 2, 6)"))
    assert set(run()) == everything  # (every job runs mlkit.cli, which imports model.py: keyed by the module)
    # a failing job: stored nothing, so the next run runs it again
    broken = "def loss(w, rows):\n    raise ValueError('bad')\n"
    model.write_text(model.read_text().replace("def loss(w, rows):\n", broken))
    for expected in (everything, {"evaluate:small", "evaluate:big"}):  # (then prepare and train: restored)
        before = executions(log)
        wipe(where, "out")
        proc = snakemake(where)
        assert proc.returncode != 0
        assert set(executions(log) - before) == expected
        assert "Error in rule evaluate" in proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        assert not (where / "out/metrics/small.json").exists()
    model.write_text(ML["src/mlkit/model.py"])
    assert not run(), "the original code's results are served again"
