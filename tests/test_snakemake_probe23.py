"""Probe 23: a Python `script:` running another project script through subprocess, and Snakemake's everyday CLI
options and rule features under `snakemake --executor nixworkflow` (the real CLI).

The gap closed here (the test failed before the fix): a `script:` that runs a second project script,
`subprocess.run([sys.executable, snakemake.input.tool, ...])` or `subprocess.run(["bash", "tools/prep.sh"])`, was
keyed without what that second script imports (an input script's local modules), the data files it (or what it
runs in turn) opens by a literal path, and the environment variables it reads: an edit of any of them, or another
value of the variable, served the old result."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_probe22 import counted
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow




# ---------------------------------------------------------------------------------------------------------------
# 1. a script: running a second project script through subprocess

LOGGED = 'import os\nopen(os.environ["NW_TEST_LOG"], "a").write("{name}\\n")\n'

SUBPROCESS = {
    "Snakefile": '''
rule all:
    input: "out/a.txt", "out/b.txt"
rule a:
    input: tool="tools/tool.py"
    output: "out/a.txt"
    script: "scripts/a.py"
rule b:
    output: "out/b.txt"
    script: "scripts/b.py"
''',
    "scripts/a.py": LOGGED.format(name="a") + (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, snakemake.input.tool, snakemake.output[0]], check=True)\n"),
    "scripts/b.py": LOGGED.format(name="b") + (
        'import subprocess\nsubprocess.run(["bash", "tools/prep.sh", snakemake.output[0]], check=True)\n'),
    # the input tool imports a module beside it, which reads a table and a variable
    "tools/tool.py": "import sys\nimport toolhelp\nopen(sys.argv[1], 'w').write(toolhelp.value())\n",
    "tools/toolhelp.py": ('import os\n\ndef value():\n'
                          '    return open("config/a.tsv").read() + os.environ.get("P23_A", "1") + "\\n"\n'),
    # a literal bash script running a Python script beside it, which imports a module reading a variable and a table
    "tools/prep.sh": 'python3 "$(dirname "$0")/inner.py" "$1"\n',
    "tools/inner.py": "import sys\nimport innerhelp\nopen(sys.argv[1], 'w').write(innerhelp.value())\n",
    "tools/innerhelp.py": ('import os\n\ndef value():\n'
                           '    return open("config/b.tsv").read() + os.environ.get("P23_B", "1") + "\\n"\n'),
    "config/a.tsv": "a1\n",
    "config/b.tsv": "b1\n",
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_snakemake_keys_what_a_script_run_by_a_script_through_subprocess_imports_reads_and_expands(
        tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `script:` running `[sys.executable, snakemake.input.tool]` (an input script importing a module beside it)
    or `["bash", "tools/prep.sh"]` (running inner.py, importing a module): the module's code, the table it opens and
    the variable it reads each change the result, and each served the old one before."""
    where = write(tmp_path / "wf", SUBPROCESS)
    run = counted(where, log)
    assert set(run()) == {"a", "b"}
    assert not run(), (where.parent / "last-run.txt").read_text()
    edits = [
        (lambda: (where / "tools/toolhelp.py").write_text(
            SUBPROCESS["tools/toolhelp.py"].replace('+ "\\n"', '+ "!\\n"')), {"a"}),
        (lambda: (where / "config/a.tsv").write_text("a2\n"), {"a"}),
        (lambda: monkeypatch.setenv("P23_A", "2"), {"a"}),
        (lambda: (where / "config/b.tsv").write_text("b2\n"), {"b"}),
        (lambda: monkeypatch.setenv("P23_B", "2"), {"b"}),
    ]
    for edit, expected in edits:
        edit()
        assert set(run()) == expected
        assert not run(), (where.parent / "last-run.txt").read_text()
    assert (where / "out/a.txt").read_text() == "a2\n2!\n"
    assert (where / "out/b.txt").read_text() == "b2\n2\n"


# ---------------------------------------------------------------------------------------------------------------
# 2. everyday CLI options and rule features

CHAIN = {
    "Snakefile": '''
rule all:
    input: "out/c.txt"
rule a:
    output: "out/a.txt"
    shell: 'echo a >> "$NW_TEST_LOG"; wc -l < "$NW_TEST_LOG" > {output}'
rule b:
    input: ancient("out/a.txt")
    output: "out/b.txt"
    shell: 'echo b >> "$NW_TEST_LOG"; cat {input} > {output}; echo b >> {output}'
rule c:
    input: "out/b.txt"
    output: protected("out/c.txt")
    shell: 'echo c >> "$NW_TEST_LOG"; cat {input} > {output}; echo c >> {output}'
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_forcerun_until_and_omit_from_store_the_forced_result_and_run_only_what_is_asked(
        tmp_path: Path, log: Path) -> None:
    """`--until b` runs a and b only, `--omit-from b` a only; a forced job (`--forcerun a`, `-R a`) runs and its new
    result (a's output counts the log's lines: another on every run) replaces the stored one: a later run from an
    empty directory restores the forced result, not the first."""
    where = write(tmp_path / "wf", {"Snakefile": CHAIN["Snakefile"].replace('ancient("out/a.txt")', '"out/a.txt"')})
    run = counted(where, log)
    assert run("--omit-from", "b") == Counter({"a": 1})
    assert run("--until", "b") == Counter({"b": 1})
    assert run() == Counter({"c": 1})
    assert (where / "out/c.txt").read_text() == "1\nb\nc\n"
    assert not run()
    before = executions(log)
    ok(snakemake(where, "--forcerun", "a"))  # (outputs present: only the forced job and what its bytes change)
    assert executions(log) - before == Counter({"a": 1, "b": 1, "c": 1})
    assert (where / "out/c.txt").read_text() == "4\nb\nc\n"
    assert not run()
    assert (where / "out/c.txt").read_text() == "4\nb\nc\n"
    assert run("-R", "a") == Counter({"a": 1, "b": 1, "c": 1})
    assert (where / "out/c.txt").read_text() == "7\nb\nc\n"
    assert not run()
    assert (where / "out/c.txt").read_text() == "7\nb\nc\n"


def test_an_ancient_input_changed_is_not_served_the_old_result_once_snakemake_runs_the_job(
        tmp_path: Path, log: Path) -> None:
    """`ancient()` makes Snakemake ignore the input's time, not its bytes: once the job runs (its output deleted), the
    key follows the input's current content, so the result made from the old content is not restored."""
    where = write(tmp_path / "wf", CHAIN)
    run = counted(where, log)
    assert set(run()) == {"a", "b", "c"}
    before = executions(log)
    ok(snakemake(where, "--forcerun", "a", "--until", "a"))  # a: new bytes ("4"); b's ancient input: not re-run
    assert executions(log) - before == Counter({"a": 1})
    (where / "out/c.txt").chmod(0o644)
    for name in ("b", "c"):
        (where / f"out/{name}.txt").unlink()
    before = executions(log)
    ok(snakemake(where))
    assert executions(log) - before == Counter({"b": 1, "c": 1})
    assert (where / "out/c.txt").read_text() == "4\nb\nc\n"


GROUPS = {
    "Snakefile": '''
localrules: all, gather
rule all:
    input: "out/gather.txt", "out/shadowed.txt", "out/counted.txt"
rule one:
    output: "out/one.txt"
    group: "g"
    shell: 'echo one >> "$NW_TEST_LOG"; echo one > {output}'
rule two:
    input: "out/one.txt"
    output: "out/two.txt"
    group: "g"
    shell: 'echo two >> "$NW_TEST_LOG"; cat {input} > {output}; echo two >> {output}'
rule gather:
    input: "out/two.txt"
    output: "out/gather.txt"
    shell: 'echo gather >> "$NW_TEST_LOG"; cat {input} > {output}'
rule shadowed:
    output: "out/shadowed.txt"
    shadow: "minimal"
    shell: 'echo shadowed >> "$NW_TEST_LOG"; echo scratch > tmp.txt; cat tmp.txt > {output}'
rule produce:
    output: pipe("out/stream.txt")
    shell: 'echo produce >> "$NW_TEST_LOG"; seq 1 100 > {output}'
rule count:
    input: "out/stream.txt"
    output: "out/counted.txt"
    shell: 'echo count >> "$NW_TEST_LOG"; wc -l < {input} > {output}'
''',
}


def test_group_shadow_pipe_and_local_rules_run_then_restore(tmp_path: Path, log: Path) -> None:
    """`group:` jobs, a `shadow: "minimal"` rule, a `pipe()` pair and `localrules` run under the executor and give
    Snakemake's results; from an empty directory every cacheable job is restored (a pipe pair is not cached: it runs
    again), and a shadow rule's scratch file is left in no directory of the project."""
    where = write(tmp_path / "wf", GROUPS)
    run = counted(where, log)
    assert set(run()) == {"one", "two", "gather", "shadowed", "produce", "count"}
    assert run() == Counter({"produce": 1, "count": 1})
    assert (where / "out/gather.txt").read_text() == "one\ntwo\n"
    assert (where / "out/shadowed.txt").read_text() == "scratch\n"
    assert (where / "out/counted.txt").read_text().strip() == "100"
    assert not (where / "tmp.txt").exists()


KEEPGOING = {
    "Snakefile": '''
rule all:
    input: "out/good1.txt", "out/good2.txt", "out/bad.txt"
rule good:
    output: "out/good{n}.txt"
    shell: 'echo good{wildcards.n} >> "$NW_TEST_LOG"; echo {wildcards.n} > {output}'
rule bad:
    output: "out/bad.txt"
    shell: 'echo bad >> "$NW_TEST_LOG"; echo partial > {output}; if [ -e "$P23_FAIL" ]; then exit 1; fi; '
           'echo whole > {output}'
''',
}


def test_keep_going_stores_the_good_branches_never_the_failed_one(tmp_path: Path, log: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`--keep-going` with one failing job: the others succeed and are stored, the failed one leaves nothing (its
    partial output is removed, nothing recorded); the next run (the failure's cause gone, outside the key) runs only
    it, and a run from an empty directory then runs nothing."""
    flag = tmp_path / "fail.flag"
    flag.write_text("")
    monkeypatch.setenv("P23_FAIL", str(flag))
    where = write(tmp_path / "wf", KEEPGOING)
    proc = snakemake(where, "--keep-going")
    assert proc.returncode != 0
    assert "rule bad" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert executions(log) == Counter({"good1": 1, "good2": 1, "bad": 1})
    assert not (where / "out/bad.txt").exists()
    flag.unlink()
    before = executions(log)
    ok(snakemake(where))
    assert executions(log) - before == Counter({"bad": 1})
    assert (where / "out/bad.txt").read_text() == "whole\n"
    assert not counted(where, log)()


def test_dry_run_and_touch_run_and_store_nothing(tmp_path: Path, log: Path) -> None:
    """`-n` executes and stores nothing (the real run after it runs every job); `--touch` after a rule's code
    changed marks the outputs current without running or storing anything, so a later run from an empty directory
    runs the edited rule (its new code has no stored result) instead of restoring a result of the old code."""
    where = write(tmp_path / "wf", CHAIN)
    ok(snakemake(where, "-n"))
    assert not executions(log) and not (where / "out").exists()
    run = counted(where, log)
    assert set(run()) == {"a", "b", "c"}
    snakefile = where / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace("echo c >> {output}", "echo C >> {output}"))
    before = executions(log)
    ok(snakemake(where, "--touch"))
    assert executions(log) == before
    assert (where / "out/c.txt").read_text() == "1\nb\nc\n"
    assert run() == Counter({"c": 1})
    assert (where / "out/c.txt").read_text() == "1\nb\nC\n"


def test_rerun_triggers_mtime_keeps_an_edited_rule_until_its_output_is_gone_then_runs_the_new_code(
        tmp_path: Path, log: Path) -> None:
    """`--rerun-triggers mtime`: an edited rule is not re-run while its outputs exist (Snakemake's choice); once they
    are deleted the job is looked up with its current code, so the store never serves the old code's result."""
    where = write(tmp_path / "wf", CHAIN)
    run = counted(where, log)
    assert set(run()) == {"a", "b", "c"}
    snakefile = where / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace("echo b >> {output}", "echo B >> {output}"))
    before = executions(log)
    ok(snakemake(where, "--rerun-triggers", "mtime"))
    assert executions(log) == before
    assert run("--rerun-triggers", "mtime") == Counter({"b": 1, "c": 1})
    assert (where / "out/c.txt").read_text() == "1\nB\nc\n"
