"""Probe 27: Snakemake options and rule keywords no test covered, through the real CLI with a private store.

Two gaps closed here (each test failed before its fix):
- a `template_engine:` job (or a `run:` block under `--force-use-threads`) writes its output in Snakemake's own
  process, yet its end was followed by the reaping of leftovers by place: a shell job of another rule, forked
  from Snakemake's process while that output was open (a fork holds every descriptor until it execs), was killed
  as the in-process job's leftover, and failed;
- the `.snakemake/metadata` record of a job restored before scheduling started after it ended (a negative runtime
  in `--report`), or, with a previous record, when a past run started (a runtime of hours).
The rest pins behaviour that matched the local executor already: `--keep-incomplete` (partial outputs stay in
the working directory, the store never keeps or serves them), `--notemp`, `--delete-temp-output`,
`--delete-all-output`, `--summary`, `--report`, and `localrule:`, `handover:`, `default_target:`, `retries:`,
`message:`, `priority:`, jinja2 and yte templates."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


def files(where: Path) -> dict[str, str]:
    """Every file under where/out, by relative path (Snakemake's directory timestamps left out)."""
    return {str(p.relative_to(where)): p.read_text() for p in sorted((where / "out").rglob("*"))
            if p.is_file() and p.name != ".snakemake_timestamp"}


def wipe(where: Path) -> None:
    for p in sorted((where / "out").rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()


# ---------------------------------------------------------------------------------------------------------------
# 1. --keep-incomplete: what a failed job leaves is kept in the working directory, never in the store

INCOMPLETE = {
    "Snakefile": '''
rule all:
    input: "out/miss1.txt", "out/miss2.txt", "out/empty.txt", "out/dir", "out/bad.txt"
rule miss:
    output: "out/miss1.txt", "out/miss2.txt"
    shell: 'echo miss >> "$NW_TEST_LOG"; echo one > {output[0]}; '
           'if [ ! -e "$P27_FAIL" ]; then echo two > {output[1]}; fi'
rule empty:
    output: ensure("out/empty.txt", non_empty=True)
    shell: 'echo empty >> "$NW_TEST_LOG"; if [ -e "$P27_FAIL" ]; then touch {output}; else echo full > {output}; fi'
rule d:
    output: directory("out/dir")
    shell: 'echo dir >> "$NW_TEST_LOG"; mkdir -p {output}; echo a > {output}/a; '
           'if [ -e "$P27_FAIL" ]; then exit 3; fi; echo b > {output}/b'
rule bad:
    output: "out/bad.txt"
    shell: 'echo bad >> "$NW_TEST_LOG"; echo partial > {output}; if [ -e "$P27_FAIL" ]; then exit 1; fi; '
           'echo whole > {output}'
''',
}

WHOLE = {"out/miss1.txt": "one\n", "out/miss2.txt": "two\n", "out/empty.txt": "full\n", "out/dir/a": "a\n",
         "out/dir/b": "b\n", "out/bad.txt": "whole\n"}


def test_keep_incomplete_keeps_partial_outputs_in_the_working_directory_never_in_the_store(
        tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--keep-incomplete -k` with four failing jobs (a missing second output, an empty `ensure(non_empty)` output,
    a directory and a file written partly before a failing exit): as with the local executor the partial files stay
    in the working directory; none is stored, so once the failure's cause (outside the key) is gone and the outputs
    are deleted, every one of those jobs runs again and writes its whole output, which a later run restores."""
    flag = tmp_path / "fail.flag"
    flag.write_text("")
    monkeypatch.setenv("P27_FAIL", str(flag))
    where = write(tmp_path / "wf", INCOMPLETE)
    proc = snakemake(where, "--keep-incomplete", "-k")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert files(where) == {"out/miss1.txt": "one\n", "out/empty.txt": "", "out/dir/a": "a\n",
                            "out/bad.txt": "partial\n"}
    assert executions(log) == Counter({"miss": 1, "empty": 1, "dir": 1, "bad": 1})
    flag.unlink()
    wipe(where)
    ok(snakemake(where))
    assert executions(log) == Counter({"miss": 2, "empty": 2, "dir": 2, "bad": 2})
    assert files(where) == WHOLE
    wipe(where)
    ok(snakemake(where))
    assert executions(log) == Counter({"miss": 2, "empty": 2, "dir": 2, "bad": 2})
    assert files(where) == WHOLE


# ---------------------------------------------------------------------------------------------------------------
# 2. template jobs beside shell jobs

RACE = {
    "Snakefile": '''
N = range(150)
rule all:
    input: expand("out/t{i}.yaml", i=N), expand("out/s{i}.txt", i=N)
rule tpl:
    input: "tpl.yaml.j2"
    output: "out/t{i}.yaml"
    template_engine: "jinja2"
rule sh:
    output: "out/s{i}.txt"
    shell: 'echo {wildcards.i} > {output}'
''',
    "tpl.yaml.j2": "x: {{ wildcards.i }}\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_template_jobs_never_kill_a_shell_job_forked_beside_them(tmp_path: Path) -> None:
    """150 jinja2 template jobs and 150 shell jobs on 4 cores, twice (the second forced): every job succeeds,
    nothing is reported killed (before, in most such runs, a shell job forked while a template's output was open
    was killed as the template job's leftover and failed the run), and a run from an empty out/ restores all 300."""
    pytest.importorskip("jinja2")
    where = write(tmp_path / "wf", RACE)
    expected = {**{f"out/t{i}.yaml": f"x: {i}" for i in range(150)}, **{f"out/s{i}.txt": f"{i}\n" for i in range(150)}}
    for forced in ((), ("--forceall",)):  # (a race: two chances to lose it)
        proc = ok(snakemake(where, "-c", "4", *forced))
        assert "killed" not in proc.stdout + proc.stderr
        assert files(where) == expected
    wipe(where)
    proc = ok(snakemake(where, "-c", "4"))
    assert "nixworkflow: 300 job(s) restored from the store before scheduling" in proc.stdout + proc.stderr
    assert files(where) == expected


THREADED = {
    "Snakefile": '''
N = range(150)
rule all:
    input: expand("out/p{i}.txt", i=N), expand("out/s{i}.txt", i=N)
rule py:
    output: "out/p{i}.txt"
    run:
        with open(output[0], "w") as f:
            f.write(wildcards.i)
rule sh:
    output: "out/s{i}.txt"
    shell: 'echo {wildcards.i} > {output}'
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_run_blocks_in_threads_never_kill_a_shell_job_forked_beside_them(tmp_path: Path) -> None:
    """`--force-use-threads`: 150 `run:` blocks write their outputs in Snakemake's own process beside 150 shell
    jobs, twice (the second forced): every job succeeds and nothing is reported killed (before, in about half
    of such runs, a shell job's fork, not yet exec'd and so holding a copy of a block's open output, was killed as
    that job's leftover)."""
    where = write(tmp_path / "wf", THREADED)
    expected = {**{f"out/p{i}.txt": f"{i}" for i in range(150)}, **{f"out/s{i}.txt": f"{i}\n" for i in range(150)}}
    for forced in ((), ("--forceall",)):
        proc = ok(snakemake(where, "-c", "4", "--force-use-threads", *forced))
        assert "killed" not in proc.stdout + proc.stderr
        assert files(where) == expected


# ---------------------------------------------------------------------------------------------------------------
# 3. metadata, --summary and --report after jobs were restored

CHAIN = {
    "Snakefile": '''
rule all:
    input: "out/final.txt", "out/rep.txt"
rule a:
    output: temp("out/a.tmp")
    shell: 'echo a >> "$NW_TEST_LOG"; echo A > {output}'
rule b:
    input: "out/a.tmp"
    output: "out/final.txt"
    shell: 'echo b >> "$NW_TEST_LOG"; cat {input} > {output}; echo B >> {output}'
rule r:
    input: "out/final.txt"
    output: report("out/rep.txt", caption="cap.rst", category="C")
    message: "reporting {input}"
    priority: 5
    shell: 'echo r >> "$NW_TEST_LOG"; cat {input} > {output}'
''',
    "cap.rst": "A caption.\n",
}


def records(where: Path) -> dict[str, dict]:
    return {r["rule"]: r for r in (json.loads(p.read_text()) for p in (where / ".snakemake/metadata").iterdir())}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_restored_jobs_records_start_when_their_restore_began_and_summary_and_report_read_them(
        tmp_path: Path, log: Path) -> None:
    """A job restored before scheduling gets a metadata record starting when this run restored it, and not after
    its end (before: after its end for a new record, a negative runtime in the report; the previous run's start
    when one existed). `--summary` and `--report` read those records as the local executor's."""
    where = write(tmp_path / "wf", CHAIN)
    ok(snakemake(where, "--notemp"))
    assert files(where) == {"out/a.tmp": "A\n", "out/final.txt": "A\nB\n", "out/rep.txt": "A\nB\n"}
    ok(snakemake(where, "--delete-temp-output"))
    assert set(files(where)) == {"out/final.txt", "out/rep.txt"}
    ok(snakemake(where, "--delete-all-output"))
    assert not files(where)
    began = time.time()
    proc = ok(snakemake(where))  # (records of the first run exist: their start is not this run's)
    assert "3 job(s) restored from the store before scheduling" in proc.stdout + proc.stderr
    assert executions(log) == Counter({"a": 1, "b": 1, "r": 1})
    assert set(files(where)) == {"out/final.txt", "out/rep.txt"}
    for rule, record in records(where).items():
        if rule != "a":  # (the temp file's record is the first run's)
            assert began <= record["starttime"] <= record["endtime"], (rule, record)
    shutil.rmtree(where / ".snakemake/metadata")
    wipe(where)
    ok(snakemake(where))  # (no records: new ones)
    for rule, record in records(where).items():
        assert record["starttime"] <= record["endtime"], (rule, record)
    summary = ok(snakemake(where, "--summary")).stdout
    assert "out/final.txt" in summary and "\tb\t" in summary and "removed temp file" in summary
    ok(snakemake(where, "--report", str(tmp_path / "report.html")))
    report = (tmp_path / "report.html").read_text()
    assert '"runtime": -' not in report and "rep.txt" in report
    assert executions(log) == Counter({"a": 1, "b": 1, "r": 1})


# ---------------------------------------------------------------------------------------------------------------
# 4. rule keywords

KEYWORDS = {
    "Snakefile": '''
rule first:
    input: "out/never.txt"
rule all:
    default_target: True
    input: "out/local.txt", "out/hand.txt", "out/tpl.yaml", "out/yte.yaml", "out/flaky.txt"
rule local:
    localrule: True
    output: "out/local.txt"
    message: "local job for {output}"
    priority: 10
    shell: 'echo local >> "$NW_TEST_LOG"; echo L > {output}'
rule hand:
    handover: True
    output: "out/hand.txt"
    shell: 'echo hand >> "$NW_TEST_LOG"; echo H > {output}'
rule tpl:
    input: "tpl.yaml.j2"
    output: "out/tpl.yaml"
    params: n=3
    template_engine: "jinja2"
rule yte:
    input: "tpl.yte.yaml"
    output: "out/yte.yaml"
    params: n=4
    template_engine: "yte"
rule flaky:
    output: "out/flaky.txt"
    retries: 2
    shell: 'echo flaky >> "$NW_TEST_LOG"; n=$(grep -c flaky "$NW_TEST_LOG"); echo attempt$n > {output}; '
           'if [ $n = 1 ]; then exit 1; fi'
''',
    "tpl.yaml.j2": "n: {{ params.n }}\n",
    "tpl.yte.yaml": "n: ?params.n\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_rule_keywords_run_then_restore_and_a_retried_job_stores_its_successful_attempt(
        tmp_path: Path, log: Path) -> None:
    """`default_target:` picks the targets, `localrule:`, `handover:`, `message:`, `priority:` and jinja2/yte
    templates run as with the local executor; a job failing at its first attempt (`retries:`) stores the
    second's output (never the first's), which a run from an empty out/ restores; an edited template param runs
    its job again."""
    pytest.importorskip("jinja2")
    where = write(tmp_path / "wf", KEYWORDS)
    proc = ok(snakemake(where))
    assert "local job for out/local.txt" in proc.stdout + proc.stderr
    expected = {"out/local.txt": "L\n", "out/hand.txt": "H\n", "out/tpl.yaml": "n: 3", "out/yte.yaml": "n: 4\n",
                "out/flaky.txt": "attempt2\n"}
    assert files(where) == expected
    assert executions(log) == Counter({"local": 1, "hand": 1, "flaky": 2})
    wipe(where)
    ok(snakemake(where))
    assert files(where) == expected
    assert executions(log) == Counter({"local": 1, "hand": 1, "flaky": 2})
    snakefile = where / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace("n=3", "n=5"))
    wipe(where)
    ok(snakemake(where))
    assert files(where) == {**expected, "out/tpl.yaml": "n: 5"}
