"""Issue 11: the executor behaves as Snakemake's local executor does, through the real `snakemake` CLI.

Shadow rules without code, lazily evaluated resources, directory() outputs that are symlinks,
checkpoints that write files they do not declare, forced re-runs, and what `run:`/`script:` code can
read without it appearing in its command (threads, resources, local modules).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.test_snakemake import executions, ok, snakemake

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


def write(where: Path, files: dict[str, str]) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_text(text)
    return where


def wipe(where: Path, *names: str) -> None:
    """`rm -rf` the named outputs and Snakemake's metadata, so the next run is a cached re-run."""
    for name in (*names, ".snakemake"):
        path = where / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            for d, _, _ in os.walk(path):
                os.chmod(d, 0o755)
            shutil.rmtree(path)



# ---- bugs -------------------------------------------------------------------------------------


SHADOW_NO_CODE = '''
rule all:
    input: "done.txt"

rule make:
    output: "made.txt"
    shell: "echo made > {output}"

rule check:
    input: "made.txt"
    output: "done.txt"
    shadow: "minimal"
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_shadow_rule_without_code_behaves_as_with_the_local_executor(tmp_path: Path) -> None:
    """A shadow rule with no shell/run code crashed the executor (`Value after * must be an iterable`); it
    must end as with the local executor, which spawns it like any shadow rule."""
    local = write(tmp_path / "local", {"Snakefile": SHADOW_NO_CODE})
    mine = write(tmp_path / "mine", {"Snakefile": SHADOW_NO_CODE})
    expected = snakemake(local, nixworkflow=False)
    proc = snakemake(mine)
    out = proc.stdout + proc.stderr
    assert "TypeError" not in out and "must be an iterable" not in out, out
    assert proc.returncode == expected.returncode, out
    assert (mine / "made.txt").read_text() == "made\n"


LAZY = '''
import os

rule all:
    input: "results/bar.txt"

rule foo:
    output: "results/foo.txt"
    shell: "echo foo > {output}"

def get_resources(wc):
    assert os.path.isfile("results/foo.txt"), "bug: resource function is not evaluated in a lazy way"
    return os.path.getsize("results/foo.txt")

rule bar:
    input: "results/foo.txt"
    output: "results/bar.txt"
    resources: test=get_resources
    shell: "echo {resources.test} > {output}"
'''


def test_resource_functions_are_evaluated_lazily(tmp_path: Path) -> None:
    """Snakemake's `lazy_resources`: checking envs at start-up must not evaluate resource functions."""
    wf = write(tmp_path / "wf", {"Snakefile": LAZY})
    ok(snakemake(wf))
    assert (wf / "results/bar.txt").read_text() == "4\n"


SYMLINKED_DIR = '''
rule all:
    input: "copy.txt"

rule link:
    output: directory("link")
    shell: "ln -s $PWD/ref {output}"

rule read:
    input: "link"
    output: "copy.txt"
    shell: "cat {input}/data.txt > {output}"
'''


def test_directory_symlink_output_is_not_written_through(tmp_path: Path) -> None:
    """Snakemake keeps a directory symlink's mtime on the link itself and never writes
    `.snakemake_timestamp` into the directory it points to; nor may the executor."""
    wf = write(tmp_path / "wf", {"Snakefile": SYMLINKED_DIR, "ref/data.txt": "ref\n"})
    ok(snakemake(wf, "copy.txt"))
    assert (wf / "link").is_symlink()
    assert sorted(os.listdir(wf / "ref")) == ["data.txt"], "nothing may be written through the link"
    assert (wf / "copy.txt").read_text() == "ref\n"


def test_restored_symlink_that_would_dangle_runs_the_job_again(tmp_path: Path, store_root: Path) -> None:
    """A directory() output that is a symlink is stored as the link (what Snakemake considers the output).
    Restored where its target does not exist (here: a clone, after the first checkout was deleted), it
    would dangle and Snakemake would fail with MissingOutputException: the job runs again instead."""
    files = {"Snakefile": SYMLINKED_DIR, "ref/data.txt": "ref\n"}
    one = write(tmp_path / "one", files)
    ok(snakemake(one, "copy.txt"))
    assert os.readlink(one / "link") == str(one / "ref")
    two = write(tmp_path / "two", files)
    shutil.rmtree(one)
    proc = ok(snakemake(two, "copy.txt"))
    assert os.readlink(two / "link") == str(two / "ref")
    assert (two / "copy.txt").read_text() == "ref\n"
    assert "targets do not exist here: it runs again" in proc.stderr


CHECKPOINT = '''
shell.executable("bash")

rule all:
    input: "data/corpus.txt"

checkpoint shard:
    output: "data/batches.{lang}"
    shell:
        """
        for i in 0 1; do
            mkdir -p data/{wildcards.lang}/$i; echo "hello {wildcards.lang} $i" > data/{wildcards.lang}/$i/text
        done
        echo "$NW_SHARD" >> "$NW_TEST_LOG"
        ls -d data/{wildcards.lang}/* > {output}
        """

rule combine:
    input: l1="data/es/{shard}/text", l2="data/en/{shard}/text"
    output: "data/es_en/{shard}.combined"
    shell: "paste {input.l1} {input.l2} > {output}"

def shards(wildcards):
    with checkpoints.shard.get(lang="es").output[0].open() as f:
        names = [line.strip().split("/")[-1] for line in f]
    checkpoints.shard.get(lang="en")
    return [f"data/es_en/{s}.combined" for s in names]

rule corpus:
    input: shards
    output: "data/corpus.txt"
    shell: "cat {input} > {output}"
'''


def test_checkpoint_whose_downstream_reads_files_it_did_not_declare(tmp_path: Path, log: Path) -> None:
    """Snakemake's `github_issue806`: the checkpoint writes `data/<lang>/<i>/text` without declaring them and
    downstream rules read them. The store cannot restore undeclared files, so the re-run after deleting the
    outputs must run the checkpoint again (with a warning), not restore it and fail with
    MissingInputException."""
    wf = write(tmp_path / "wf", {"Snakefile": CHECKPOINT})
    env = {"NW_SHARD": "shard"}
    ok(snakemake(wf, env=env))
    first = (wf / "data/corpus.txt").read_text()
    assert first == "hello es 0\thello en 0\nhello es 1\thello en 1\n"
    wipe(wf, "data")
    proc = ok(snakemake(wf, env=env))
    assert (wf / "data/corpus.txt").read_text() == first
    assert executions(log) == Counter({"shard": 4}), "the checkpoint runs again; nothing else is needed"
    assert "writes files it does not declare" in proc.stderr


DIR_CHECKPOINT = '''
rule all:
    input: "total.txt"

checkpoint split:
    output: directory("parts")
    shell: 'echo split >> "$NW_TEST_LOG"; mkdir -p {output}; for i in 1 2 3; do echo $i > {output}/$i.txt; done'

def parts(wildcards):
    d = checkpoints.split.get().output[0]
    return sorted(f"{d}/{name}" for name in os.listdir(d))

rule total:
    input: parts
    output: "total.txt"
    shell: 'echo total >> "$NW_TEST_LOG"; cat {input} > {output}'
'''


def test_checkpoint_directory_output_restores_whole(tmp_path: Path, log: Path) -> None:
    """A checkpoint that declares what it writes (a directory() output) is restored whole, not re-run."""
    wf = write(tmp_path / "wf", {"Snakefile": "import os\n" + DIR_CHECKPOINT})
    ok(snakemake(wf))
    wipe(wf, "parts", "total.txt")
    proc = ok(snakemake(wf))
    assert executions(log) == Counter({"split": 1, "total": 1})
    assert (wf / "total.txt").read_text() == "1\n2\n3\n"
    assert sorted(os.listdir(wf / "parts")) == [".snakemake_timestamp", "1.txt", "2.txt", "3.txt"]
    assert "does not declare" not in proc.stderr


# ---- forced re-runs ---------------------------------------------------------------------------


NOISY = '''
rule all:
    input: "out/b.txt"

rule a:
    output: "out/a.txt"
    shell: 'echo a >> "$NW_TEST_LOG"; n=$(grep -c . "$NW_TEST_LOG"); echo "run $n" > {output}'

rule b:
    input: "out/a.txt"
    output: "out/b.txt"
    shell: 'echo b >> "$NW_TEST_LOG"; cat {input} > {output}'
'''


@pytest.mark.parametrize("flags", [["--forceall"], ["-R", "a"], ["--forcerun", "a"], ["-f", "out/a.txt"]],
                         ids=["forceall", "R", "forcerun", "f"])
def test_forced_jobs_execute_and_replace_the_recorded_result(tmp_path: Path, log: Path, flags: list[str]) -> None:
    """Snakemake reports forced jobs as run: they must run, not be restored; a result that differs from the
    recorded one is reported as non-determinism naming the file, and replaces the record."""
    wf = write(tmp_path / "wf", {"Snakefile": NOISY})
    ok(snakemake(wf))
    assert (wf / "out/a.txt").read_text() == "run 1\n"
    proc = ok(snakemake(wf, *flags))
    assert executions(log)["a"] == 2, "the forced job must execute"
    forced = (wf / "out/a.txt").read_text()
    assert forced != "run 1\n"
    assert "rule a" in proc.stderr and "is not deterministic" in proc.stderr and "out/a.txt" in proc.stderr
    wipe(wf, "out")
    ok(snakemake(wf))
    assert executions(log)["a"] == 2, "the re-run after deleting outputs is served from the store"
    assert (wf / "out/a.txt").read_text() == forced, "the forced run's result replaced the recorded one"


def test_forced_deterministic_job_reports_nothing(tmp_path: Path, log: Path) -> None:
    wf = write(tmp_path / "wf", {"Snakefile": NOISY.replace('echo "run $n"', 'echo "same"')})
    ok(snakemake(wf))
    proc = ok(snakemake(wf, "--forceall"))
    assert executions(log) == Counter({"a": 2, "b": 2})
    assert "not deterministic" not in proc.stderr


KILLED_IN_B = '''
rule all:
    input: "out/c.txt"

rule a:
    output: "out/a.txt"
    shell: 'echo a >> "$NW_TEST_LOG"; echo 1 > {output}'

rule b:
    input: "out/a.txt"
    output: "out/b.txt"
    shell: 'echo b >> "$NW_TEST_LOG"; cat {input} > {output}; echo 2 >> {output}; if [ -e ../kill ]; then '
           'while [ ! -s ../pid ]; do sleep 0.05; done; kill -9 $(cat ../pid); sleep 30; fi'

rule c:
    input: "out/b.txt"
    output: "out/c.txt"
    shell: 'echo c >> "$NW_TEST_LOG"; cat {input} > {output}; echo 3 >> {output}'
'''


def test_rerun_incomplete_restores_a_job_the_store_recorded(tmp_path: Path, log: Path) -> None:
    """`--rerun-incomplete` forces the jobs whose outputs a killed run left marked incomplete. The files are
    untrusted, not the store: a job whose result the store recorded (complete and verified) is restored,
    not executed again. CI once saw rule b executed twice when a kill left b.txt marked incomplete."""
    wf = write(tmp_path / "wf", {"Snakefile": KILLED_IN_B})
    ok(snakemake(wf))
    assert executions(log) == Counter({"a": 1, "b": 1, "c": 1})
    (tmp_path / "kill").touch()  # rule b kills Snakemake after writing out/b.txt: it stays marked incomplete
    argv = [sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow", "-R", "b"]
    proc = subprocess.Popen(argv, cwd=wf, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    (tmp_path / "pid").write_text(str(proc.pid))
    assert proc.wait(timeout=300) == -9
    (tmp_path / "kill").unlink()
    assert executions(log)["b"] == 2
    ok(snakemake(wf, "--unlock"))
    proc = ok(snakemake(wf, "--rerun-incomplete"))
    assert executions(log) == Counter({"a": 1, "b": 2, "c": 1}), proc.stderr
    assert (wf / "out/c.txt").read_text() == "1\n2\n3\n"
    ok(snakemake(wf))  # the incomplete mark is gone: no --rerun-incomplete needed, nothing runs
    assert executions(log) == Counter({"a": 1, "b": 2, "c": 1})


# ---- what run:/script: code can read -------------------------------------------------------


READS = '''
rule all:
    input: "threads.txt", "mem.txt", "script.txt"

rule threads:
    output: "threads.txt"
    threads: 3
    run:
        with open(output[0], "w") as f:
            f.write(str(threads))

rule mem:
    output: "mem.txt"
    resources: mem_mb=100
    run:
        with open(output[0], "w") as f:
            f.write(str(resources.mem_mb))

rule script:
    output: "script.txt"
    threads: 2
    script: "scripts/job.py"
'''

JOB = '''
from helper import VALUE
with open(snakemake.output[0], "w") as f:
    f.write(f"{VALUE} {snakemake.threads}")
'''


def cores(wf: Path, n: int, *extra: str) -> None:
    """Run with `-c n` (the test helper passes `-c 2`; the last `-c` wins)."""
    ok(snakemake(wf, "-c", str(n), *extra))


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_threads_and_resources_of_run_and_script_rules_are_keyed(tmp_path: Path) -> None:
    """After a `-c 1` run and deleting the outputs, `-c 3` (or `--set-resources`) must not restore what
    `run:`/`script:` code computed from the old threads or resources."""
    files = {"Snakefile": READS, "scripts/job.py": JOB, "scripts/helper.py": "VALUE = 'one'\n"}
    wf = write(tmp_path / "wf", files)
    cores(wf, 1)
    assert [(wf / f).read_text() for f in ("threads.txt", "mem.txt", "script.txt")] == ["1", "100", "one 1"]
    wipe(wf, "threads.txt", "mem.txt", "script.txt")
    cores(wf, 3, "--set-resources", "mem:mem_mb=200")
    assert [(wf / f).read_text() for f in ("threads.txt", "mem.txt", "script.txt")] == ["3", "200", "one 2"]


def test_a_local_module_a_script_imports_is_keyed(tmp_path: Path) -> None:
    """Editing `helper.py` next to a script (imported by it) must not restore the stale output."""
    files = {"Snakefile": READS, "scripts/job.py": JOB, "scripts/helper.py": "VALUE = 'one'\n"}
    wf = write(tmp_path / "wf", files)
    cores(wf, 2, "script.txt")
    assert (wf / "script.txt").read_text() == "one 2"
    wipe(wf, "script.txt")
    (wf / "scripts/helper.py").write_text("VALUE = 'two'\n")
    cores(wf, 2, "script.txt")
    assert (wf / "script.txt").read_text() == "two 2"


def test_unchanged_threads_and_resources_still_restore(tmp_path: Path, store_root: Path) -> None:
    """Keying must not cost the cache: the same -c and resources restore everything."""
    files = {"Snakefile": READS, "scripts/job.py": JOB, "scripts/helper.py": "VALUE = 'one'\n"}
    wf = write(tmp_path / "wf", files)
    cores(wf, 3)
    wipe(wf, "threads.txt", "mem.txt", "script.txt")
    proc = ok(snakemake(wf, "-c", "3"))
    assert proc.stderr.count("nixworkflow: restored the outputs") == 3
    records = [json.loads(p.read_text()) for p in (store_root / "realisations").iterdir()]
    assert {r["name"] for r in records} == {"threads", "mem", "script"}
