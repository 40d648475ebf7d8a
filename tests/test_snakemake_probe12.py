"""Wave 12 probes of `snakemake --executor nixworkflow`: its output link modes (`--nixworkflow-link-mode`) against
Snakemake's own post-processing and flags (forced re-runs, shadow rules, checkpoints, --touch, deletions).

Each test is a bug the probe found. The invariant: the store holds and serves only what a successful job
produced, no store object changes, and the working directory holds what the local executor would leave there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import nw
from tests.test_snakemake import ok, snakemake
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_hardlink_mode_restores_a_spawned_job_over_its_own_link_without_leaving_a_temporary_link(
        tmp_path: Path) -> None:
    """A shadow rule or a checkpoint with a `run:` block is prepared by the Snakemake process it spawns, so when
    the store serves it instead, its previous output is still in place. In hardlink mode that output is a link
    to the very store object being restored, and rename(2) of one hard link over another of the same file does
    nothing: the restore's temporary link `.nw-b.txt.<hex>` stayed in the working directory (one more per run,
    each a link to the store object) after `-R a` re-ran the upstream job."""
    wf = write(tmp_path / "wf", {"Snakefile": '''
rule all:
    input: "b.txt", "c.txt"
rule a:
    output: "a.txt"
    shell: "echo a > {output}"
rule b:
    input: "a.txt"
    output: "b.txt"
    shadow: "minimal"
    shell: "cat {input} > {output}; echo b >> {output}"
checkpoint c:
    input: "a.txt"
    output: "c.txt"
    run:
        shell("cat {input} > {output}; echo c >> {output}")
'''})
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store")}
    mode = ("--nixworkflow-link-mode", "hardlink")
    ok(snakemake(wf, *mode, env=env))
    for name in ("a.txt", "b.txt", "c.txt"):
        (wf / name).unlink()
    ok(snakemake(wf, *mode, env=env))  # restored: each output a link to its store object
    assert (wf / "b.txt").stat().st_nlink == 2 and (wf / "c.txt").stat().st_nlink == 2
    proc = ok(snakemake(wf, *mode, "-R", "a", env=env))
    assert "restored the outputs of rule b" in proc.stderr and "restored the outputs of rule c" in proc.stderr
    assert sorted(p.name for p in wf.iterdir() if p.name.startswith(".nw-")) == []
    assert (wf / "b.txt").read_text() == "a\nb\n" and (wf / "c.txt").read_text() == "a\nc\n"
    assert (wf / "b.txt").stat().st_nlink == 2, "the store object gained a stray link"
    verify = nw("verify", cwd=wf, env=env)
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout + verify.stderr, verify.stdout + verify.stderr


RELATIVE_LINKS = '''
rule all:
    input: "c.txt"
rule a:
    output: "a.txt"
    shell: "echo a > {output}; echo a >> runs.log"
rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "ln -s a.txt {output}; echo b >> runs.log"
rule d:
    input: "raw.txt"
    output: directory("d")
    shell: "mkdir -p {output}; ln -s ../raw.txt {output}/raw; echo x > {output}/x; echo d >> runs.log"
rule c:
    input: "b.txt", "d"
    output: "c.txt"
    shell: "cat {input[0]} {input[1]}/raw {input[1]}/x > {output}; echo c >> runs.log"
'''


def test_symlink_mode_restores_outputs_whose_relative_links_would_resolve_inside_the_store(tmp_path: Path) -> None:
    """--nixworkflow-link-mode symlink restores an output as a link to its store object. For a symlink output
    (`ln -s a.txt b.txt`, stored as the link) that made b.txt a link to a link whose relative target resolves in
    the store's directory: it dangled, so the job ran again on every run, under a warning that a.txt does not
    exist here. For a directory output holding a relative link (`d/raw -> ../raw.txt`) it was worse: the check
    for dangling links did not look inside a directory restored as a link, so `d/raw` dangled and the job
    reading it failed (`cat: d/raw: No such file or directory`), where the local executor succeeds. Such a
    product is now put back as a copy, where its links resolve as they did when the job wrote them."""
    wf = write(tmp_path / "wf", {"Snakefile": RELATIVE_LINKS, "raw.txt": "raw\n"})
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store")}
    mode = ("--nixworkflow-link-mode", "symlink")
    ok(snakemake(wf, *mode, env=env))
    assert (wf / "c.txt").read_text() == "a\nraw\nx\n"
    for name in ("b.txt", "c.txt"):
        (wf / name).unlink()
    shutil.rmtree(wf / "d")
    (wf / "runs.log").unlink()
    proc = ok(snakemake(wf, *mode, env=env))
    assert "whose targets do not exist here" not in proc.stderr, proc.stderr
    assert not (wf / "runs.log").exists(), f"jobs ran again: {(wf / 'runs.log').read_text()}"
    assert os.readlink(wf / "b.txt") == "a.txt" and (wf / "b.txt").read_text() == "a\n"
    assert (wf / "d/raw").read_text() == "raw\n"
    proc = ok(snakemake(wf, *mode, "-R", "c", env=env))  # the job reading the restored links runs
    assert (wf / "c.txt").read_text() == "a\nraw\nx\n"
    verify = nw("verify", cwd=wf, env=env)
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout + verify.stderr, verify.stdout + verify.stderr


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_spawned_job_restores_its_directory_over_the_link_an_earlier_symlink_mode_run_left(tmp_path: Path) -> None:
    """A checkpoint with a `run:` block (or a shadow rule) is prepared by the Snakemake process it spawns, so a
    restore on the scheduler's path finds its previous output still in place. After a run in symlink mode, that
    is a link to the store's directory; restoring the directory as a copy (the default mode) then renamed a
    directory over a symlink: a raw `NotADirectoryError: [Errno 20] Not a directory: '.nw-cpd.<hex>' -> 'cpd'`
    traceback, and the job failed."""
    wf = write(tmp_path / "wf", {"Snakefile": '''
import os
rule all:
    input: "agg.txt"
rule a:
    output: "a.txt"
    shell: "echo a > {output}"
checkpoint cp:
    input: "a.txt"
    output: directory("cpd")
    run:
        shell("mkdir -p {output}; for i in 1 2; do cat {input} > {output}/$i.txt; done")
def parts(wildcards):
    d = checkpoints.cp.get().output[0]
    return expand("cpd/{i}.txt", i=glob_wildcards(os.path.join(d, "{i}.txt")).i)
rule agg:
    input: parts
    output: "agg.txt"
    shell: "cat {input} > {output}"
'''})
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store")}
    ok(snakemake(wf, "--nixworkflow-link-mode", "symlink", env=env))
    for name in ("a.txt", "agg.txt"):
        (wf / name).unlink()
    shutil.rmtree(wf / "cpd")
    ok(snakemake(wf, "--nixworkflow-link-mode", "symlink", env=env))
    assert (wf / "cpd").is_symlink()
    proc = snakemake(wf, "-R", "a", env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "restored the outputs of rule cp" in proc.stderr, proc.stderr
    cpd = wf / "cpd"
    assert not cpd.is_symlink() and sorted(p.name for p in cpd.iterdir()) == [".snakemake_timestamp", "1.txt", "2.txt"]
    assert (cpd / "1.txt").read_text() == "a\n"
    assert not [p.name for p in wf.iterdir() if p.name.startswith(".nw-")]
    verify = nw("verify", cwd=wf, env=env)
    assert verify.returncode == 0 and " 0 corrupt" in verify.stdout + verify.stderr, verify.stdout + verify.stderr


def test_reflink_mode_where_the_filesystem_cannot_reflink_fails_before_any_job_naming_the_option(
        tmp_path: Path) -> None:
    """--nixworkflow-link-mode reflink on a filesystem without reflinks (ext4, tmpfs): a job's fresh outputs are
    stored as copies either way, so a first run succeeded and every later run failed each job the store could
    serve, with `cannot reflink ...: the filesystem does not support it (use --link-mode auto)`, an option no
    command has (Snakemake's is --nixworkflow-link-mode). Now the run stops before any job, naming the option."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    if subprocess.run(["cp", "--reflink=always", str(probe), str(tmp_path / "clone")],
                      capture_output=True).returncode == 0:
        pytest.skip("this filesystem can reflink")
    wf = write(tmp_path / "wf", {"Snakefile": 'rule all:\n    input: "a.txt"\n\n'
                                              'rule a:\n    output: "a.txt"\n    shell: "echo a > {output}"\n'})
    env = {"NIX_WORKFLOW_STORE": str(tmp_path / "store")}
    proc = snakemake(wf, "--nixworkflow-link-mode", "reflink", env=env)
    assert proc.returncode != 0, proc.stderr
    assert "use --nixworkflow-link-mode auto" in proc.stderr, proc.stderr
    assert "--link-mode auto)" not in proc.stderr and 'File "' not in proc.stderr, proc.stderr
    assert not (wf / "a.txt").exists()
    assert not [p.name for p in wf.iterdir() if p.name.startswith(".nw-")]
    ok(snakemake(wf, "--nixworkflow-link-mode", "auto", env=env))


def test_a_job_whose_output_has_the_wrong_type_fails_and_stores_nothing(tmp_path: Path) -> None:
    """A rule that makes a directory where it declares a file (no `directory()`) fails under Snakemake once it ended
    (ImproperOutputException). The executor had stored its products first, so the store held a realisation of a job
    Snakemake called failed. Now nothing is stored and Snakemake fails the job with its own message."""
    write(tmp_path, {"Snakefile": 'rule all:\n    input: "d", "f"\n\n'
                                  'rule a:\n    output: "d"\n    shell: "mkdir d; echo x > d/f"\n\n'
                                  'rule b:\n    output: directory("f")\n    shell: "echo x > f"\n'})
    proc = snakemake(tmp_path, "-k", env={"NIX_WORKFLOW_STORE": str(tmp_path / "store")})
    assert proc.returncode != 0
    assert "Outputs of incorrect type" in proc.stderr and "directory()" in proc.stderr, proc.stderr  # Snakemake's own
    assert "its outputs are not stored" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not list((tmp_path / "store" / "realisations").glob("*")), "a failed job's result was recorded"
    assert not list((tmp_path / "store" / "store").glob("*")), "a failed job's output was stored"


def test_reflink_mode_where_no_trial_file_can_be_written_is_a_clear_error(tmp_path: Path) -> None:
    """The reflink check writes a trial file in the working directory; where that fails (a full disk, a directory
    nobody may write, here one made immutable) the error was a Python traceback ending in a raw [Errno]."""
    wf = write(tmp_path / "wf", {"Snakefile": 'rule a:\n    output: "x"\n    shell: "echo x > {output}"\n'})
    (wf / ".snakemake").mkdir()  # (Snakemake's own files go there; the directory itself is what cannot be written)
    if subprocess.run(["chattr", "+i", str(wf)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        proc = snakemake(wf, "--nixworkflow-link-mode", "reflink", env={"NIX_WORKFLOW_STORE": str(tmp_path / "store")})
    finally:
        subprocess.run(["chattr", "-i", str(wf)], check=True)
    assert proc.returncode != 0
    assert "cannot try a reflink" in proc.stderr and "Operation not permitted" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "[Errno" not in proc.stderr, proc.stderr
    assert not (wf / "x").exists()
