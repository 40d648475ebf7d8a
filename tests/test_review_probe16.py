"""Review 16 probes (real snakemake CLI, real Nix, temporary store): results served although what the job read
changed. Each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_semantics import wipe, write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow


TEMPLATES = {
    "Snakefile": '''
import os

rule all:
    input: "out/file.txt", "out/config.txt", "out/script.txt", "out/cores.txt", "out/file_script.txt"

rule file:
    output: "out/file.txt"
    run:
        shell("echo file >> $NW_TEST_LOG")
        shell(open(os.path.join(workflow.basedir, "templates/mem.txt")).read())

rule config:
    output: "out/config.txt"
    run:
        shell("echo config >> $NW_TEST_LOG")
        shell(config["command"])

rule script:
    output: "out/script.txt"
    script: "scripts/job.py"

rule file_script:
    output: "out/file_script.txt"
    script: "scripts/file_job.py"

rule cores:
    output: "out/cores.txt"
    threads: 4
    run:
        shell("echo cores >> $NW_TEST_LOG")
        template = open(os.path.join(workflow.basedir, "templates/cores.txt")).read()
        shell(template)
''',
    "scripts/file_job.py": '''
import os
from snakemake.shell import shell

shell("echo file_script >> $NW_TEST_LOG")
with open(os.path.join(snakemake.scriptdir, "..", "templates", "script.txt")) as f:
    shell(f.read())
''',
    "templates/script.txt": "echo mem={snakemake.resources.mem_mb} > {snakemake.output[0]}\n",
    "config.yaml": 'command: "echo mem={resources.mem_mb} > {output}"\n',
    "templates/mem.txt": "echo mem={resources.mem_mb} > {output}\n",
    "templates/cores.txt": "echo cores={threads} > {output}\n",
    "scripts/job.py": '''
import os
from snakemake.shell import shell

shell("echo script >> $NW_TEST_LOG")
shell(snakemake.config["script_command"])
''',
}
TEMPLATES["config.yaml"] += 'script_command: "echo mem={snakemake.resources.mem_mb} > {snakemake.output[0]}"\n'


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_shell_template_the_code_does_not_hold_keys_every_resource_and_threads(tmp_path: Path, log: Path) -> None:
    """`shell(open("templates/mem.txt").read())`, `shell(config["command"])` in a `run:` block (or a script): the
    template Snakemake's shell() formats with the job's `resources` and `threads` is text the job's code does not
    hold, so which of them it reads is unknown. Keyed by the names its code holds (none), a job run with
    mem_mb=1000 was restored for mem_mb=2000 with `mem=1000` in its output, and one run with 2 threads for 1."""
    wf = write(tmp_path / "wf", TEMPLATES)
    ok(snakemake(wf, "--configfile", "config.yaml", "--default-resources", "mem_mb=1000"))
    outputs = ("file.txt", "config.txt", "script.txt", "cores.txt", "file_script.txt")
    assert [(wf / "out" / f).read_text() for f in outputs] == \
        ["mem=1000\n", "mem=1000\n", "mem=1000\n", "cores=2\n", "mem=1000\n"]
    wipe(wf, "out")
    ok(snakemake(wf, "--configfile", "config.yaml", "--default-resources", "mem_mb=2000", "-c", "1"))
    assert {f: (wf / "out" / f).read_text() for f in outputs} == \
        {"file.txt": "mem=2000\n", "config.txt": "mem=2000\n", "script.txt": "mem=2000\n", "cores.txt": "cores=1\n",
         "file_script.txt": "mem=2000\n"}
    assert executions(log) == {"file": 2, "config": 2, "script": 2, "cores": 2, "file_script": 2}


# ---- Luigi: a task writing into a plain required task's directory (statics.hashed_without) -------------------------

THROUGH_LINK = '''
import os
import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


class Setup(luigi.Task):  # plain Luigi: a work directory whose data/ is a link to a shared data directory
    def output(self):
        return luigi.LocalTarget("work")

    def run(self):
        os.makedirs("work")
        os.symlink(os.path.abspath("shared"), "work/data")


class Summary(NixTask):  # migrated: reads work/data/raw.csv and writes its summary beside it
    def requires(self):
        return Setup()

    def output(self):
        return luigi.LocalTarget("work/data/summary.txt")

    def run(self):
        note("Summary")
        with self.output().open("w") as f:
            f.write(open("work/data/raw.csv").read())
'''


def test_a_file_read_through_a_linked_directory_beside_the_own_output_is_keyed() -> None:
    """Setup (plain Luigi) declares work/, whose data/ links to a shared directory; Summary writes
    work/data/summary.txt and reads work/data/raw.csv. Keyed by work/ without its own output, the linked data/ on
    the way to that output was left out whole (neither hashed nor looked into), so a changed raw.csv was served
    Summary's old result."""
    from tests.luigi_run import luigi_cli, runs

    Path("shared").mkdir()
    Path("shared/raw.csv").write_text("alpha\n")
    Path("mod_link.py").write_text(THROUGH_LINK)
    luigi_cli("--module", "mod_link", "Summary")
    luigi_cli("--module", "mod_link", "Summary")
    assert runs() == {"Summary": 1}
    assert Path("work/data/summary.txt").read_text() == "alpha\n"
    Path("shared/raw.csv").write_text("beta\n")
    luigi_cli("--module", "mod_link", "Summary")
    assert Path("work/data/summary.txt").read_text() == "beta\n"
    assert runs() == {"Summary": 2}


# ---- nw why / checkpoints with the arguments the last run recorded ---------------------------------------------------

def test_an_error_from_recorded_arguments_says_they_were_recorded(tmp_path: Path) -> None:
    """`nw run experiment.nix --arg scale 2`, then the experiment renames its parameter: `nw why model` (no
    argument given) evaluates it with the recorded --arg scale and failed with "takes no parameter scale (given by
    --arg/--argstr)", pointing at a command line that has none. It says the arguments are the last run's, which,
    and how to give others."""
    from tests.helpers import nw
    from tests.nixcheck import require_nix

    require_nix("nix-instantiate")
    exp = tmp_path / "experiment.nix"
    body = 'let inherit ((import <nixworkflow>).lib) output; in {{ model = output "echo ${{toString {p}}} > $out/x"; }}'
    exp.write_text("{ scale ? 1 }:\n" + body.format(p="scale"))
    nw("run", str(exp), "--arg", "scale", "2", cwd=tmp_path, check=True)
    exp.write_text("{ size ? 1 }:\n" + body.format(p="size"))
    for command in (["why", "model"], ["checkpoints", "model"]):
        proc = nw(*command, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert "takes no parameter scale" in proc.stderr and "last `nw run` here" in proc.stderr
        assert "--arg scale 2" in proc.stderr and f"--file {exp}" in proc.stderr
    assert "would run" in nw("why", "model", "--file", str(exp), cwd=tmp_path, check=True).stdout


THREAD_VARIABLE = {
    "Snakefile": '''
rule all:
    input: "out/run.txt", "out/shell.txt"

rule run:
    output: "out/run.txt"
    threads: 2
    run:
        shell("echo run >> $NW_TEST_LOG; echo $OMP_NUM_THREADS > {output}")

rule shell:
    output: "out/shell.txt"
    threads: 2
    shell: "echo shell >> $NW_TEST_LOG; echo ${{MKL_NUM_THREADS}} > {output}"
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_command_naming_a_thread_variable_keys_the_threads(tmp_path: Path, log: Path) -> None:
    """Snakemake's shell() sets OMP_NUM_THREADS, MKL_NUM_THREADS, … to the job's threads. A `run:` block's
    `shell("... $OMP_NUM_THREADS ...")` (and a `shell:` command naming one) reads them, but neither names `threads`:
    run with 2 threads under -c 2, it was restored under -c 1 (1 thread) with "2" in its output."""
    wf = write(tmp_path / "wf", THREAD_VARIABLE)
    ok(snakemake(wf))
    assert [(wf / "out" / f).read_text() for f in ("run.txt", "shell.txt")] == ["2\n", "2\n"]
    wipe(wf, "out")
    ok(snakemake(wf, "-c", "1"))
    assert [(wf / "out" / f).read_text() for f in ("run.txt", "shell.txt")] == ["1\n", "1\n"]
    assert executions(log) == {"run": 2, "shell": 2}
    wipe(wf, "out")
    ok(snakemake(wf, "-c", "1"))  # the same threads: restored
    assert executions(log) == {"run": 2, "shell": 2}
