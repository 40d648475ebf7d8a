"""`snakemake --executor nixworkflow` through the real Snakemake command line.

Every job of the workflow below appends a line to $NW_TEST_LOG (a file outside the working
directory), so "executed exactly once" and "nothing executed" are counted from side effects.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REPO, nw

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

SNAKEFILE = '''
import os

SAMPLES = ["a", "b"]


rule all:
    input: "results/summary.txt", "results/tree", "results/report.txt", "results/lines.txt"


rule gen:
    output: "data/{s}.txt"
    log: "logs/gen_{s}.log"
    benchmark: "bench/gen_{s}.tsv"
    params: greeting="sample"
    shell:
        'echo gen-{wildcards.s} >> "$NW_TEST_LOG"; echo {params.greeting} {wildcards.s} > {output}; echo made > {log}'


rule double:
    input: "data/{s}.txt"
    output: temp("tmp/{s}.double")
    shell: 'echo double-{wildcards.s} >> "$NW_TEST_LOG"; sleep 0.2; cat {input} {input} > {output}'


rule summary:
    input: expand("tmp/{s}.double", s=SAMPLES)
    output: protected("results/summary.txt")
    shell: 'echo summary >> "$NW_TEST_LOG"; cat {input} > {output}'


rule tree:
    input: "data/a.txt"
    output: directory("results/tree")
    shell: 'echo tree >> "$NW_TEST_LOG"; mkdir -p {output}/sub; cp {input} {output}/sub/a.txt'


rule report:
    input: "results/summary.txt"
    output: "results/report.txt"
    script: "report.py"


rule announce:
    input: "results/summary.txt"
    shell: 'echo announce >> "$NW_TEST_LOG"'


rule lines:
    input: "results/summary.txt"
    output: "results/lines.txt"
    run:
        with open(os.environ["NW_TEST_LOG"], "a") as f:
            f.write("lines\\n")
        with open(input[0]) as i, open(output[0], "w") as o:
            o.write(str(len(i.readlines())) + "\\n")
'''

REPORT = '''
import os
with open(os.environ["NW_TEST_LOG"], "a") as f:
    f.write("report\\n")
with open(snakemake.input[0]) as i, open(snakemake.output[0], "w") as o:
    o.write(i.read().upper())
'''

EVERY_JOB = Counter({"gen-a": 1, "gen-b": 1, "double-a": 1, "double-b": 1, "summary": 1, "tree": 1, "report": 1,
                     "lines": 1})
PRODUCTS = ["data/a.txt", "data/b.txt", "logs/gen_a.log", "results/summary.txt", "results/tree/sub/a.txt",
            "results/report.txt", "results/lines.txt"]


def snakemake(workdir: Path, *args: str, nixworkflow: bool = True, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `snakemake` CLI (this interpreter's) in `workdir`."""
    argv = [sys.executable, "-m", "snakemake", "-c", "2", "--nocolor"]
    if nixworkflow:
        argv += ["--executor", "nixworkflow"]
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run(argv + list(args), cwd=workdir, env=full_env, text=True, capture_output=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def executions(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def workflow(where: Path, log: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "Snakefile").write_text(SNAKEFILE)
    (where / "report.py").write_text(REPORT)
    return where


def remove_products(where: Path) -> None:
    """Delete every output and Snakemake's metadata as `rm -rf` does: read-only files need no chmod, only
    directories do (a chmod of a file hard-linked with the store would change the store object)."""
    for name in ("data", "logs", "bench", "results", "tmp", ".snakemake"):
        path = where / name
        if path.exists():
            for p in [path, *path.rglob("*")]:
                if p.is_dir() and not p.is_symlink():
                    p.chmod(p.stat().st_mode | stat.S_IWUSR)
            shutil.rmtree(path)


def read_only(path: Path) -> bool:
    return not path.stat().st_mode & 0o222


def snapshot(where: Path) -> dict[str, bytes]:
    return {p: (where / p).read_bytes() for p in PRODUCTS}



def test_cold_run_then_everything_restored_byte_identical(tmp_path: Path, log: Path) -> None:
    wf = workflow(tmp_path / "wf", log)
    ok(snakemake(wf))
    assert executions(log) == EVERY_JOB
    first = snapshot(wf)
    assert not (wf / "tmp").exists() or not any((wf / "tmp").iterdir()), "temp outputs are removed as usual"
    assert read_only(wf / "results/summary.txt"), "protected outputs are write-protected"

    remove_products(wf)
    proc = ok(snakemake(wf))
    assert executions(log) == EVERY_JOB, "nothing may execute again"
    assert snapshot(wf) == first
    assert proc.stderr.count("nixworkflow: restored the outputs") == sum(EVERY_JOB.values())
    assert (wf / "bench/gen_a.tsv").read_text().startswith("s\th:m:s"), "the benchmark file is restored"
    assert (wf / "results/tree/.snakemake_timestamp").exists()
    assert read_only(wf / "results/summary.txt")
    assert not (wf / "tmp").exists() or not any((wf / "tmp").iterdir())

    ok(snakemake(wf))  # up to date: Snakemake itself schedules nothing
    assert executions(log) == EVERY_JOB


def test_clone_elsewhere_sharing_the_store_executes_nothing(tmp_path: Path, log: Path) -> None:
    ok(snakemake(workflow(tmp_path / "one", log)))
    clone = workflow(tmp_path / "elsewhere" / "two", log)
    ok(snakemake(clone))
    assert executions(log) == EVERY_JOB
    assert snapshot(clone) == snapshot(tmp_path / "one")


def test_edited_rule_with_identical_output_restores_downstream(tmp_path: Path, log: Path) -> None:
    wf = workflow(tmp_path / "wf", log)
    ok(snakemake(wf))
    snakefile = wf / "Snakefile"
    snakefile.write_text(SNAKEFILE.replace("'echo gen-", "'true; echo gen-"))
    assert "true; echo gen-" in snakefile.read_text()
    ok(snakemake(wf))  # Snakemake re-runs gen (its code changed) and, by default, everything downstream
    again = executions(log) - EVERY_JOB
    assert again == Counter({"gen-a": 1, "gen-b": 1}), f"only the edited rule may run again, not {again}"


def test_two_processes_on_two_clones_execute_every_job_once(tmp_path: Path, log: Path) -> None:
    one, two = workflow(tmp_path / "one", log), workflow(tmp_path / "two", log)
    argv = [sys.executable, "-m", "snakemake", "-c", "2", "--nocolor", "--executor", "nixworkflow"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen(argv, cwd=wf, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for wf in (one, two)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    assert executions(log) == EVERY_JOB
    assert snapshot(one) == snapshot(two)


def test_failing_job_stores_nothing_and_fails(tmp_path: Path, log: Path, store_root: Path) -> None:
    wf = workflow(tmp_path / "wf", log)
    (wf / "Snakefile").write_text(SNAKEFILE.replace("cat {input} > {output}'", "cat {input} > {output}; exit 3'"))
    proc = snakemake(wf, "results/summary.txt")
    assert proc.returncode != 0
    assert "Error in rule summary" in proc.stdout + proc.stderr
    assert not (wf / "results/summary.txt").exists()
    names = {doc_name(p) for p in (store_root / "realisations").iterdir()}
    assert "summary" not in names and {"gen", "double"} <= names


def test_job_missing_its_declared_output_is_an_error_and_stores_nothing(tmp_path: Path, log: Path,
                                                                         store_root: Path) -> None:
    wf = workflow(tmp_path / "wf", log)
    (wf / "Snakefile").write_text(SNAKEFILE.replace(
        "mkdir -p {output}/sub; cp {input} {output}/sub/a.txt'", "true'").replace(
        'directory("results/tree")', '"results/tree.txt"'))
    proc = snakemake(wf, "results/tree.txt")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "did not create the declared output(s) results/tree.txt" in out
    assert "tree" not in {doc_name(p) for p in (store_root / "realisations").iterdir()}


def doc_name(path: Path) -> str:
    import json

    return json.loads(path.read_text())["name"]


def test_no_cache_runs_everything_and_records_nothing(tmp_path: Path, log: Path, store_root: Path) -> None:
    wf = workflow(tmp_path / "wf", log)
    ok(snakemake(wf, "--nixworkflow-no-cache"))
    assert executions(log) == EVERY_JOB
    assert not any((store_root / "realisations").iterdir())


def test_lineage_of_a_working_directory_file(tmp_path: Path, log: Path) -> None:
    wf = workflow(tmp_path / "wf", log)
    ok(snakemake(wf))
    proc = nw("lineage", "results/report.txt", cwd=wf, check=True)
    text = proc.stdout
    assert text.startswith("report ")
    assert "script: report.py" in text
    assert "summary [results/summary.txt]" in text
    assert "double [tmp/a.double]" in text and "gen [data/a.txt]" in text
    assert "echo gen-" in text and "[env: host]" in text


def test_outputs_match_the_local_executor(tmp_path: Path, log: Path) -> None:
    local = workflow(tmp_path / "local", log)
    ok(snakemake(local, nixworkflow=False))
    mine = workflow(tmp_path / "mine", log)
    ok(snakemake(mine))
    assert snapshot(local) == snapshot(mine)
    for p in PRODUCTS:
        a, b = (local / p).stat(), (mine / p).stat()
        assert stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode), p


def test_restored_outputs_are_newer_than_inputs(tmp_path: Path, log: Path) -> None:
    """A cached re-run leaves a tree Snakemake considers up to date (no re-run is triggered)."""
    wf = workflow(tmp_path / "wf", log)
    ok(snakemake(wf))
    remove_products(wf)
    time.sleep(0.05)
    ok(snakemake(wf))
    proc = ok(snakemake(wf, "--dry-run"))
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_jobs_without_outputs_run_every_time(tmp_path: Path, log: Path) -> None:
    wf = workflow(tmp_path / "wf", log)
    ok(snakemake(wf, "announce"))
    ok(snakemake(wf, "announce"))
    assert executions(log)["announce"] == 2


PIPES = '''
rule all:
    input: "counted.txt"

rule produce:
    output: pipe("stream.txt")
    shell: 'echo produce >> "$NW_TEST_LOG"; seq 1 1000 > {output}'

rule count:
    input: "stream.txt"
    output: "counted.txt"
    shell: 'echo count >> "$NW_TEST_LOG"; wc -l < {input} > {output}'
'''


def test_pipe_groups_run_as_with_the_local_executor(tmp_path: Path, log: Path, store_root: Path) -> None:
    """Jobs joined by a pipe run together, uncached (a pipe is never a file at rest)."""
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(PIPES)
    ok(snakemake(wf))
    assert (wf / "counted.txt").read_text().strip() == "1000"
    assert executions(log) == {"produce": 1, "count": 1}
    assert not any((store_root / "realisations").iterdir())


SYMLINKED = '''
rule copy:
    input: "in.txt"
    output: "out.txt"
    shell: 'echo copy >> "$NW_TEST_LOG"; cp {input} {output}'
'''


def test_symlinked_input_is_keyed_by_the_data_behind_it(tmp_path: Path, log: Path) -> None:
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SYMLINKED)
    data = tmp_path / "data.txt"
    data.write_text("one\n")
    (wf / "in.txt").symlink_to(data)
    ok(snakemake(wf))
    data.write_text("two\n")
    ok(snakemake(wf, "--forcerun", "copy"))
    assert (wf / "out.txt").read_text() == "two\n"
    assert executions(log) == {"copy": 2}


@pytest.mark.parametrize("mode", ["hardlink", "symlink"])
def test_link_modes_restore_the_same_bytes_and_keep_the_store_intact(tmp_path: Path, log: Path,
                                                                      store_root: Path, mode: str) -> None:
    wf = workflow(tmp_path / "wf", log)
    ok(snakemake(wf, "--nixworkflow-link-mode", mode))
    first = snapshot(wf)
    if mode == "hardlink":  # fresh outputs are not copied either: the file is the read-only store object
        assert (wf / "data/a.txt").stat().st_nlink == 2 and read_only(wf / "data/a.txt")
    remove_products(wf)
    ok(snakemake(wf, "--nixworkflow-link-mode", mode))
    assert executions(log) == EVERY_JOB
    assert snapshot(wf) == first
    if mode == "symlink":
        assert os.path.realpath(wf / "data/a.txt").startswith(str(store_root / "store"))
    protected = wf / "results/summary.txt"  # Snakemake chmods protected outputs: never shared with the store
    assert not protected.is_symlink() and protected.stat().st_nlink == 1 and read_only(protected)
    verify = nw("verify", cwd=wf)
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout + verify.stderr
    ok(snakemake(wf, "--nixworkflow-link-mode", mode, "--dry-run"))


ABSOLUTE = '''
rule stamp:
    output: "stamp.txt"
    shell: 'echo stamp >> "$NW_TEST_LOG"; cat {workflow.basedir}/data.txt $PWD/data.txt > {output}'
'''


def test_absolute_paths_of_the_checkout_do_not_key_a_job(tmp_path: Path, log: Path) -> None:
    """`{workflow.basedir}` expands to each clone's own directory: keyed as a placeholder, so clones share."""
    for clone in ("one", "elsewhere/two"):
        wf = tmp_path / clone
        wf.mkdir(parents=True)
        (wf / "Snakefile").write_text(ABSOLUTE)
        (wf / "data.txt").write_text("data\n")
        ok(snakemake(wf))
        assert (wf / "stamp.txt").read_text() == "data\ndata\n"
    assert executions(log) == {"stamp": 1}


HELPERS = '''
import os

SCALE = 2


def fmt(n):
    # how a number is written
    return f"n={n}"


rule all:
    input: "out.txt"


rule out:
    output: "out.txt"
    run:
        with open(os.environ["NW_TEST_LOG"], "a") as f:
            f.write("out\\n")
        with open(output[0], "w") as o:
            o.write(fmt(SCALE) + "\\n")
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_run_block_is_keyed_with_the_helpers_it_calls(tmp_path: Path, log: Path) -> None:
    """Editing a Snakefile function or constant a `run:` block uses re-runs the rule (before, the result of
    the old helper was restored); editing a comment restores it."""
    wf = tmp_path / "wf"
    wf.mkdir()
    snakefile, out = wf / "Snakefile", wf / "out.txt"
    runs = []
    for source, expected in [(HELPERS, "n=2"), (HELPERS.replace("# how", "# how exactly"), "n=2"),
                             (HELPERS.replace('f"n={n}"', 'f"N={n}"'), "N=2"),
                             (HELPERS.replace("SCALE = 2", "SCALE = 3"), "n=3"), (HELPERS, "n=2")]:
        snakefile.write_text(source)
        remove_products(wf)
        out.unlink(missing_ok=True)
        ok(snakemake(wf))
        assert out.read_text() == expected + "\n"
        runs.append(executions(log)["out"])
    assert runs == [1, 1, 2, 3, 3]  # the comment restores; each edit runs; the first version is restored again


NAMED_CODE = '''
rule all:
    input: "out.txt"


rule clean:
    input: "in.txt"
    output: "out.txt"
    shell:
        'echo clean >> "$NW_TEST_LOG"; echo run >> errors.log; '
        'python3 scripts/clean.py {input} > {output}; ./bin/tag >> {output}'
'''


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_code_files_a_shell_command_names_are_keyed(tmp_path: Path, log: Path) -> None:
    """A script the command runs without declaring it (and a local module it imports, and an executable called
    by path) is keyed by content: editing it re-runs the job (before, the old script's result was restored);
    a file the command only appends to is not keyed, so the job is still restored."""
    wf = tmp_path / "wf"
    (wf / "scripts").mkdir(parents=True)
    (wf / "bin").mkdir()
    (wf / "Snakefile").write_text(NAMED_CODE)
    (wf / "in.txt").write_text("abc\n")
    (wf / "scripts" / "util.py").write_text("def shout(text):\n    return text.upper()\n")
    (wf / "scripts" / "clean.py").write_text("import sys\nfrom util import shout\n"
                                             "print(shout(open(sys.argv[1]).read()), end='')\n")
    tag = wf / "bin" / "tag"
    tag.write_text("#!/bin/sh\necho v1\n")
    tag.chmod(0o755)
    out = wf / "out.txt"

    def run() -> tuple[str, int]:
        remove_products(wf)
        out.unlink(missing_ok=True)
        ok(snakemake(wf))
        return out.read_text(), executions(log)["clean"]

    assert run() == ("ABC\nv1\n", 1)
    assert run() == ("ABC\nv1\n", 1)  # restored: errors.log grew, and it is not keyed
    (wf / "scripts" / "util.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
    assert run() == ("ABC\n!v1\n", 2)
    (wf / "scripts" / "clean.py").write_text("import sys\nprint(open(sys.argv[1]).read(), end='')\n")
    assert run() == ("abc\nv1\n", 3)
    tag.write_text("#!/bin/sh\necho v2\n")
    assert run() == ("abc\nv2\n", 4)
    assert run() == ("abc\nv2\n", 4)


PARAM_FILES = '''
rule all:
    input: "out.txt"


rule use_ref:
    output: "out.txt"
    params: ref="ref.txt", extra=["more.txt", "not-a-file"], me="out.txt"
    shell: 'echo use_ref >> "$NW_TEST_LOG"; cat {params.ref} {params.extra[0]} > {output}'
'''


def test_files_named_by_params_are_keyed_by_content(tmp_path: Path, log: Path) -> None:
    """A file the job reads through params instead of input: editing it re-runs the job (before, the result
    for its old content was restored); a param naming the job's own output keys only its text."""
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(PARAM_FILES)
    out = wf / "out.txt"

    def run() -> tuple[str, int]:
        remove_products(wf)
        out.unlink(missing_ok=True)
        ok(snakemake(wf))
        return out.read_text(), executions(log)["use_ref"]

    (wf / "ref.txt").write_text("r1\n")
    (wf / "more.txt").write_text("m1\n")
    assert run() == ("r1\nm1\n", 1)
    assert run() == ("r1\nm1\n", 1)
    (wf / "ref.txt").write_text("r2\n")
    assert run() == ("r2\nm1\n", 2)
    (wf / "more.txt").write_text("m2\n")
    assert run() == ("r2\nm2\n", 3)
    assert run() == ("r2\nm2\n", 3)
