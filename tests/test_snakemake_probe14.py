"""Wave 14 probes of `snakemake --executor nixworkflow`: Snakemake directives and CLI flags that pipelines use
and the other tests barely exercise.

Each test is a bug the probe found, and failed before its fix.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import nw
from tests.test_snakemake import ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


def restored(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """The rules whose jobs this run restored from the store instead of running them."""
    return set(re.findall(r"restored the outputs of rule (\w+)\b", proc.stdout + proc.stderr))


# What the shell prints differs between bash and a POSIX sh: `$BASH_VERSION` is bash's alone.
SHELL_RULE = '''
rule a:
    output: "out/a.txt"
    {resources}
    shell: "echo shell=${{{{BASH_VERSION:+bash}}}} > {{output}}"
'''


@pytest.mark.parametrize("how", ["executable", "resource"])
def test_the_shell_a_command_runs_with_is_keyed(tmp_path: Path, how: str) -> None:
    """`shell.executable("sh")` in the Snakefile (or a rule's `shell_exec` resource) chooses the shell every
    `shell:` command runs with, and the output can depend on it (`echo -e`, `$BASH_VERSION`, bash's strict
    mode). The key ignored it: after switching the Snakefile back to bash and deleting the outputs, the result
    the `sh` run stored was served, where Snakemake runs the command with bash."""
    def snakefile(shell: str) -> str:
        if how == "executable":
            return f'shell.executable("{shell}")\n' + SHELL_RULE.format(resources="")
        return SHELL_RULE.format(resources=f'resources: shell_exec="{shell}"')

    wf = write(tmp_path / "wf", {"Snakefile": snakefile("sh")})
    ok(snakemake(wf))
    wf.joinpath("Snakefile").write_text(snakefile("bash"))
    wipe(wf, "out")
    proc = ok(snakemake(wf))
    assert "a" not in restored(proc), proc.stderr
    assert (wf / "out/a.txt").read_text() == "shell=bash\n"
    # and each shell's result is served to its own Snakefile
    wipe(wf, "out")
    assert restored(ok(snakemake(wf))) == {"a"}
    assert (wf / "out/a.txt").read_text() == "shell=bash\n"


def test_a_failed_job_is_reported_at_its_rule_s_line_in_the_snakefile(tmp_path: Path) -> None:
    """A job nixworkflow fails (here: it exits 0 without writing a declared output) was reported by Snakemake as
    `NixWorkflowJobError in rule a in file "Snakefile", line 6` followed by a message ending `(rule a, line 13,
    .../Snakefile)`: the line of Snakemake's compiled Snakefile, which names no line of the user's file."""
    wf = write(tmp_path / "wf", {"Snakefile": '''
rule all:
    input: "out/a.txt"


rule a:
    output: "out/a.txt", "out/b.txt"
    shell: "echo a > {output[0]}"
'''})
    proc = snakemake(wf, "--latency-wait", "1")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "did not create the declared output(s) out/b.txt" in text, text
    lines = re.findall(r"\bline (\d+)\b", text)
    assert lines and set(lines) == {"6"}, text  # `rule a:` is the Snakefile's sixth line


@pytest.mark.parametrize(("first", "second"), [
    ("--include='*.txt' --exclude='a*'", "--exclude='a*' --include='*.txt'"),  # rsync, grep, aws s3 sync filters
    ("--no-fast --fast --zoom=3", "--fast --no-fast --zoom=3"),  # the last of a flag and its negation wins
])
def test_options_whose_order_is_meaning_are_not_reordered_in_the_key(tmp_path: Path, first: str, second: str) -> None:
    """The key normalises a command by sorting its `--key=value` options, so that listing them in another order
    keeps it. But filter rules apply in order (`grep -r --include=*.txt --exclude=a*` finds other files than
    with the two swapped; rsync's first matching rule wins) and of `--fast` and `--no-fast` the last one wins.
    Swapping them, Snakemake re-ran the rule for its changed code, and the executor restored the result of
    the other order."""
    snakefile = 'rule a:\n    output: "out/a.txt"\n    shell: "python3 show.py {options} > {{output}}"\n'
    wf = write(tmp_path / "wf", {"Snakefile": snakefile.format(options=first),
                                 "show.py": "import sys\nprint(' '.join(sys.argv[1:]))\n"})
    ok(snakemake(wf))
    wf.joinpath("Snakefile").write_text(snakefile.format(options=second))
    proc = ok(snakemake(wf))
    assert "a" not in restored(proc), proc.stderr
    assert (wf / "out/a.txt").read_text() == second.replace("'", "") + "\n"


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_run_block_s_shell_calls_are_keyed_with_the_snakefile_s_shell_prefix(tmp_path: Path) -> None:
    """`shell.prefix(...)` in the Snakefile is prepended to every `shell()` call, a `run:` block's too (its
    Snakemake process reads the Snakefile). It was keyed for `shell:` rules only: after the prefix changed
    and the outputs were deleted, the `run:` job's result of the old prefix was restored."""
    snakefile = ('shell.prefix("export GREETING={greeting}; ")\n'
                 'rule a:\n    output: "out/a.txt"\n    run:\n        shell("echo $GREETING > {{output}}")\n')
    wf = write(tmp_path / "wf", {"Snakefile": snakefile.format(greeting="hello")})
    ok(snakemake(wf))
    assert (wf / "out/a.txt").read_text() == "hello\n"
    wf.joinpath("Snakefile").write_text(snakefile.format(greeting="bye"))
    wipe(wf, "out")
    proc = ok(snakemake(wf))
    assert "a" not in restored(proc), proc.stderr
    assert (wf / "out/a.txt").read_text() == "bye\n"
    wipe(wf, "out")
    assert restored(ok(snakemake(wf))) == {"a"}
    assert (wf / "out/a.txt").read_text() == "bye\n"


def test_a_command_naming_the_job_s_tmpdir_is_served_in_another_session(tmp_path: Path) -> None:
    """`sort -T {resources.tmpdir}` (Snakemake's documented idiom for scratch space) formats `$TMPDIR` into the
    command, and the command is keyed: a run in another session, on another machine or inside a cluster job
    (each with its own `$TMPDIR`) never found the stored result and ran the job again."""
    wf = write(tmp_path / "wf", {
        "Snakefile": 'rule a:\n    input: "in.txt"\n    output: "out/a.txt"\n'
                     '    params: scratch=lambda wc, resources: resources.tmpdir + "/a"\n'
                     '    shell: "mkdir -p {params.scratch} && sort -T {resources.tmpdir} {input} > {output}"\n',
        "in.txt": "b\na\n",
    })
    for name in ("t1", "t2"):
        (tmp_path / name).mkdir()
    ok(snakemake(wf, env={"TMPDIR": str(tmp_path / "t1")}))
    assert (wf / "out/a.txt").read_text() == "a\nb\n"
    wipe(wf, "out")
    proc = ok(snakemake(wf, env={"TMPDIR": str(tmp_path / "t2")}))
    assert restored(proc) == {"a"}, proc.stderr
    assert (wf / "out/a.txt").read_text() == "a\nb\n"
    # the command itself still keys: another sort order runs
    wf.joinpath("Snakefile").write_text(wf.joinpath("Snakefile").read_text().replace("sort -T", "sort -r -T"))
    wipe(wf, "out")
    proc = ok(snakemake(wf, env={"TMPDIR": str(tmp_path / "t2")}))
    assert "a" not in restored(proc)
    assert (wf / "out/a.txt").read_text() == "b\na\n"


@pytest.mark.parametrize("mode", ["symlink", "hardlink"])
def test_a_job_re_run_over_a_restored_benchmark_link_leaves_the_store_intact(tmp_path: Path, mode: str) -> None:
    """Snakemake removes a job's old outputs and logs before running it, but writes its benchmark file in place.
    A benchmark restored as a link into the store (`symlink`/`hardlink` mode) was written through when the job
    ran again for a changed input: the earlier realisation's benchmark object changed (`nw verify`: corrupt, set
    aside), and in symlink mode the new realisation recorded the link to that object instead of its benchmark."""
    wf = write(tmp_path / "wf", {
        "Snakefile": 'rule a:\n    input: "in.txt"\n    output: "out/a.txt"\n    benchmark: "bench/a.tsv"\n'
                     '    shell: "cat {input} > {output}"\n',
        "in.txt": "v1\n",
    })
    link = ("--nixworkflow-link-mode", mode)
    ok(snakemake(wf, *link))
    wipe(wf, "out", "bench")
    assert restored(ok(snakemake(wf, *link))) == {"a"}
    (wf / "in.txt").write_text("v2\n")
    proc = ok(snakemake(wf, *link))
    assert "a" not in restored(proc)
    assert not (wf / "bench/a.tsv").is_symlink()
    assert (wf / "bench/a.tsv").read_text().startswith("s\th:m:s")
    check = nw("verify", cwd=wf)
    assert check.returncode == 0 and " 0 corrupt" in check.stdout + check.stderr, check.stdout + check.stderr
    # both realisations restore whole, benchmark included
    for version in ("v1", "v2"):
        (wf / "in.txt").write_text(f"{version}\n")
        wipe(wf, "out", "bench")
        assert restored(ok(snakemake(wf, *link))) == {"a"}
        assert (wf / "out/a.txt").read_text() == f"{version}\n"
        assert (wf / "bench/a.tsv").read_text().startswith("s\th:m:s")


DIRECTORY_INPUT = '''
rule all:
    input: "out/b.txt"

rule a:
    output: directory("out/d")
    shell: "mkdir -p {output} && echo 1,2 > {output}/x.csv"

rule b:
    input: "out/d"
    output: "out/b.txt"
    shell: "cat out/d/x.csv > {output}"
'''


def test_a_file_inside_a_declared_input_directory_is_not_keyed_again_as_undeclared_data(tmp_path: Path) -> None:
    """A command naming a file inside its declared input directory (`cat out/d/x.csv`) keyed that file a second
    time as an undeclared data file (`command:out/d/x.csv`), and `nw lineage` listed it beside the directory: the
    lineage said the job read a project file nobody declared, which the directory already covers."""
    wf = write(tmp_path / "wf", {"Snakefile": DIRECTORY_INPUT})
    ok(snakemake(wf))
    lineage = nw("lineage", "out/b.txt", cwd=wf, check=True).stdout
    assert "out/d" in lineage, lineage
    assert "command:" not in lineage, lineage
    # and both jobs are still served from the store after the outputs are deleted
    wipe(wf, "out")
    proc = ok(snakemake(wf))
    assert restored(proc) == {"a", "b"}, proc.stderr


PREFIX_RULE = '''{prefix}
rule a:
    output: "out/a.txt"
    shell: "false | true; echo ok > {{output}}"
'''


def test_an_empty_shell_prefix_is_not_keyed_as_the_default_strict_mode(tmp_path: Path) -> None:
    """`shell.prefix("")` replaces Snakemake's bash strict mode (`set -euo pipefail; `) by nothing, so
    `false | true; ...` succeeds; the key spelled that prefix as no prefix at all, and after the line was removed
    (strict mode back, under which the command fails) the result of the non-strict run was restored as a success."""
    wf = write(tmp_path / "wf", {"Snakefile": PREFIX_RULE.format(prefix='shell.prefix("")')})
    ok(snakemake(wf))
    assert (wf / "out/a.txt").read_text() == "ok\n"
    wf.joinpath("Snakefile").write_text(PREFIX_RULE.format(prefix=""))
    wipe(wf, "out")
    proc = snakemake(wf)
    assert "a" not in restored(proc), proc.stderr
    assert proc.returncode != 0, proc.stdout + proc.stderr  # as plain Snakemake: pipefail fails the job
    assert not (wf / "out/a.txt").exists()
