"""Cross-front-door probe (wave 11): one store shared by `nw run experiment.py`, `nw run experiment.nix`,
`snakemake --executor nixworkflow` and Luigi's NixTasks, each run in its own working directory.

- a Snakemake output restored as a symlink into the store (`--nixworkflow-link-mode symlink`) is a GC root: an
  `nw gc` started from another front door's directory never leaves it dangling;
- a file matched by content is traced to the step that wrote it in the directory asked from (a legacy Luigi task's
  LocalTarget), never to another front door's job elsewhere that wrote the same bytes at the same relative path;
- an experiment.nix served from the records an experiment.py wrote (one recipe) shows its own step names in
  `nw lineage` and `nw show`, not the names the experiment.py gave them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, nw
from tests.nixcheck import require_nix

DATA = "c\nb\na\n"
SORTED = "a\nb\nc\n"

SNAKEFILE = '''
rule all:
    input: "n.txt"

rule prep:
    input: "data.txt"
    output: "out.txt"
    shell: "sort {input} > {output}"

rule count:
    input: "out.txt"
    output: "n.txt"
    shell: "wc -l < {input} > {output}"
'''

LUIGI = '''
import luigi
from luigi_nixworkflow import NixTask, static


class Prep(NixTask):
    def command(self):
        return f"sort {static('data.txt')} > out.txt"


class LegacyCount(NixTask):
    def requires(self):
        return Prep()

    def output(self):
        return luigi.LocalTarget("n.txt")

    def run(self):
        with open(self.input().path + "/out.txt") as f, self.output().open("w") as o:
            o.write(f"{len(f.readlines())}\\n")
'''

EXPERIMENT_PY = '''
from pathlib import Path
from nixlib import output, static
data = static(Path(__file__).parent / "data.txt")
prep = output(f"sort {data} > out.txt")
count = output(f"wc -l < {prep}/out.txt > n.txt")
'''


def snakemake(wf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("snakemake")
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-c", "1", "--nocolor", "--executor",
                           "nixworkflow", *args], cwd=wf, env=dict(os.environ, PYTHONPATH=str(REPO)), text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def luigi(wf: Path, task: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("luigi")
    proc = subprocess.run([str(Path(sys.executable).with_name("luigi")), "--module", "pipeline", task,
                           "--local-scheduler", "--no-lock", "--retcode-task-failed", "3"], cwd=wf,
                          env=dict(os.environ, PYTHONPATH=f"{wf}{os.pathsep}{REPO}"), text=True, capture_output=True,
                          timeout=300)
    assert proc.returncode == 0 and "This progress looks :)" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def workdir(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    d = tmp_path / name
    d.mkdir()
    for file, text in files.items():
        (d / file).write_text(text)
    return d


def test_gc_from_another_front_doors_directory_keeps_what_snakemake_symlinked_outputs_point_at(
        tmp_path: Path, store_root: Path) -> None:
    smk = workdir(tmp_path, "smk", {"Snakefile": SNAKEFILE, "data.txt": DATA})
    py = workdir(tmp_path, "py", {"experiment.py": EXPERIMENT_PY, "data.txt": DATA})
    snakemake(smk, "--nixworkflow-link-mode", "symlink")
    for f in ("out.txt", "n.txt"):
        (smk / f).unlink()
    snakemake(smk, "--nixworkflow-link-mode", "symlink")  # restored: links into the store
    assert os.path.realpath(smk / "n.txt").startswith(str(store_root / "store") + os.sep)
    nw("run", "experiment.py", cwd=py, check=True)
    gc = nw("gc", "--min-age", "0", cwd=py, check=True)  # from the experiment's directory
    assert "Traceback" not in gc.stderr
    assert (smk / "out.txt").read_text() == SORTED, "nw gc removed what a restored Snakemake output points at"
    assert (smk / "n.txt").read_text() == "3\n"
    assert (py / "nix-workflow-output/count/n.txt").read_text() == "3\n"
    lineage = nw("lineage", "n.txt", cwd=smk, check=True)
    assert lineage.stdout.startswith("count ") and "prep [out.txt]" in lineage.stdout, lineage.stdout
    verify = nw("verify", cwd=smk)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # once the links are replaced by real files, they keep nothing: the next collection takes their objects
    for f in ("out.txt", "n.txt"):
        text = (smk / f).read_text()
        (smk / f).unlink()
        (smk / f).write_text(text)
    nw("gc", "--min-age", "0", cwd=py, check=True)
    assert (py / "nix-workflow-output/prep/out.txt").read_text() == SORTED  # nw's own links still keep theirs
    assert nw("verify", cwd=py).returncode == 0


def test_a_luigi_file_is_traced_to_its_own_task_not_to_a_snakemake_job_elsewhere_with_the_same_bytes(
        tmp_path: Path) -> None:
    smk = workdir(tmp_path, "smk", {"Snakefile": SNAKEFILE, "data.txt": DATA})
    lg = workdir(tmp_path, "lg", {"pipeline.py": LUIGI, "data.txt": DATA})
    snakemake(smk)
    luigi(lg, "LegacyCount")
    assert (smk / "n.txt").read_bytes() == (lg / "n.txt").read_bytes() == b"3\n"  # one object, two producers
    here = nw("lineage", "n.txt", cwd=lg, check=True)
    assert here.stdout.startswith("LegacyCount__"), f"Luigi's n.txt traced to another front door's job:\n{here.stdout}"
    assert "Prep__" in here.stdout and "rule" not in here.stdout
    shown = nw("show", "n.txt", cwd=lg, check=True)
    assert shown.stdout.startswith("step:         LegacyCount__"), shown.stdout
    there = nw("lineage", "n.txt", cwd=smk, check=True)
    assert there.stdout.startswith("count ") and "prep [out.txt]" in there.stdout, there.stdout
    elsewhere = workdir(tmp_path, "elsewhere", {"n.txt": "3\n"})  # a copy: identical bytes say nothing more
    both = nw("lineage", "n.txt", cwd=elsewhere)
    assert both.returncode == 1 and "Traceback" not in both.stderr
    assert "'count'" in both.stderr and "'LegacyCount__" in both.stderr, both.stderr


def test_an_experiment_nix_served_from_an_experiment_pys_records_names_its_own_steps(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    py = workdir(tmp_path, "py", {"experiment.py": EXPERIMENT_PY, "data.txt": DATA})
    nx = workdir(tmp_path, "nx", {"data.txt": DATA})
    digest = nw("hash", str(nx / "data.txt"), check=True).stdout.strip()
    (nx / "experiment.nix").write_text(f'''
let
  inherit ((import <nixworkflow>).lib) output static;
  data = static {{ path = ./data.txt; hash = "{digest}"; }};
in rec {{
  sorted_data = output "sort ${{data}} > out.txt";
  n_lines = output "wc -l < ${{sorted_data}}/out.txt > n.txt";
}}
''')
    nw("run", "experiment.py", cwd=py, check=True)
    served = nw("run", "experiment.nix", cwd=nx, check=True)
    assert "cached 2" in served.stderr, f"the same recipes in experiment.nix ran again:\n{served.stderr}"
    lineage = nw("lineage", "n_lines", cwd=nx, check=True).stdout
    assert lineage.startswith("n_lines ") and "└── sorted_data " in lineage, lineage
    assert "prep" not in lineage and "count" not in lineage, lineage
    shown = nw("show", "n_lines", cwd=nx, check=True).stdout
    assert "\n  sorted_data: " in shown and "\n  prep: " not in shown, shown
    assert "realised by:  step 'count' (the same recipe under another name)" in shown
    mine = nw("lineage", "count", cwd=py, check=True).stdout  # the experiment.py keeps its own names
    assert mine.startswith("count ") and "└── prep " in mine and "sorted_data" not in mine, mine
    shutil.rmtree(py)  # its links gone, nothing but the experiment.nix's links keep the results
    nw("gc", "--min-age", "0", cwd=nx, check=True)
    assert nw("run", "experiment.nix", cwd=nx, check=True).stderr.count("cached") >= 2
    assert nw("verify", cwd=nx).returncode == 0
