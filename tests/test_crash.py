"""SIGKILL at every phase of running, storing and recording a step (nixlib.faults), for `nw run`, Luigi and
Snakemake; after each kill the store must be consistent (issue 9, item 5):

- every object re-hashes to its name and is read-only; every realisation record is valid and names
  present objects;
- `nw gc` removes every leftover of the dead process (build scratch and record temp files in tmp/,
  hidden staging names in store/, its temp-roots file) and keeps what a later run needs;
- the next run succeeds, executes only the steps that had not completed (executions are counted in a
  side file outside the store), and its outputs equal a clean run's;
- `nw gc --min-age 0` afterwards keeps the whole lineage of the linked output even when the kill left
  an origins index entry missing (the run after that executes nothing).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nixlib import nar, records
from nixlib.store import Store
from tests.helpers import REPO, nw

# Steps a, b, c form a chain; only c is module-level, so a and b are kept by gc only through c's lineage.
EXPERIMENT = '''
from nixlib import output


def _chain():
    a = output("echo a >> COUNT; echo 1 > $out/v", name="a")
    b = output(f"echo b >> COUNT; cat {a}/v > $out/v; echo 2 >> $out/v", name="b")
    return output(f"echo c >> COUNT; cat {b}/v > $out/v; echo 3 >> $out/v", name="c")


c = _chain()
'''
CLEAN = "1\n2\n3\n"  # c's output of a clean run

# (point as NIX_WORKFLOW_FAULT, executions after the kill and the second run): the kill hits step b;
# b counts as completed once its realisation record exists.
POINTS = [
    ("step-ran:2", {"a": 1, "b": 2, "c": 1}),
    ("ingest-staged:2", {"a": 1, "b": 2, "c": 1}),
    ("ingested:2", {"a": 1, "b": 2, "c": 1}),
    ("record-temp-written:3", {"a": 1, "b": 2, "c": 1}),  # each step writes its realisation, then its recipe
    ("realisation-written:2", {"a": 1, "b": 1, "c": 1}),
    ("origins-written:2", {"a": 1, "b": 1, "c": 1}),
    ("recorded:2", {"a": 1, "b": 1, "c": 1}),
    ("before-links", {"a": 1, "b": 1, "c": 1}),
]


def counts(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def check_store(root: Path) -> None:
    """Objects intact and read-only; every realisation record valid and naming present objects."""
    store = Store(root)
    for name in os.listdir(root / "store"):
        path = root / "store" / name
        if not records.is_name(name):
            continue  # a hidden staging leftover: never an object name, removed by gc (checked there)
        assert nar.nar_hash(path) == name, f"object {name} does not re-hash to its name"
        for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
            mode = os.lstat(p).st_mode
            assert stat.S_ISLNK(mode) or not mode & 0o222, f"{p} is writable"
    for key, path in store.record_files("realisations"):
        assert key is not None, f"unexpected file {path}"
        doc = store.load_record("realisations", key, path)
        assert doc is not None, f"invalid record {path}"
        assert all((root / "store" / h).exists() for h in doc["outputs"].values()), f"dangling record {path}"


def check_no_leftovers(root: Path) -> None:
    """After `nw gc`: nothing of a dead process is left."""
    assert not list((root / "tmp").iterdir()), list((root / "tmp").iterdir())
    assert not [n for n in os.listdir(root / "store") if not records.is_name(n)]
    assert not list((root / "temproots").iterdir()) if (root / "temproots").exists() else True


def killed(argv: list[str], fault: str, cwd: Path | None = None, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    full = dict(env if env is not None else dict(os.environ, PYTHONPATH=str(REPO)), NIX_WORKFLOW_FAULT=fault)
    proc = subprocess.run(argv, cwd=cwd, env=full, text=True, capture_output=True, timeout=300)
    assert proc.returncode == -9, f"expected SIGKILL at {fault}, got {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.parametrize(("fault", "expected"), POINTS, ids=[p for p, _ in POINTS])
def test_nw_run_killed_at_each_phase_leaves_a_consistent_store(tmp_path: Path, store_root: Path, fault: str,
                                                              expected: dict[str, int]) -> None:
    count = tmp_path / "count"
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT.replace("COUNT", str(count)))
    killed([sys.executable, "-m", "nixlib.cli", "run", str(exp)], fault)
    check_store(store_root)
    nw("gc", check=True)  # the default min-age keeps the unlinked results; leftovers of the dead run go
    check_no_leftovers(store_root)
    check_store(store_root)
    nw("run", str(exp), check=True)
    assert counts(count) == expected
    assert Path("nix-workflow-output/c/v").read_text() == CLEAN
    check_store(store_root)
    nw("gc", "--min-age", "0", check=True)  # only the link to c roots a, b and c now
    check_store(store_root)
    assert "cached 3" in nw("run", str(exp), check=True).stderr
    assert counts(count) == expected, "gc dropped part of the linked output's lineage"


def test_gc_reindexes_an_origins_entry_lost_to_a_kill(tmp_path: Path, store_root: Path) -> None:
    """A kill right after a record is written keeps its origins entry (written first, since crash27); an entry lost
    anyway (a store an older version wrote, the record then the entry, killed between) is put back by `nw gc`."""
    count = tmp_path / "count"
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT.replace("COUNT", str(count)))
    killed([sys.executable, "-m", "nixlib.cli", "run", str(exp)], "realisation-written:2")
    store = Store(store_root)
    [(key, _)] = [(k, p) for k, p in store.record_files("realisations")
                  if (d := store.read_record("realisations", k)) and d["name"] == "b"]
    b = store.read_record("realisations", key)
    assert b is not None
    [h] = b["outputs"].values()
    assert (store_root / "origins" / h / key).exists()
    (store_root / "origins" / h / key).unlink()  # (as the older order left it)
    gc = nw("gc", check=True)
    assert f"re-indexed origins/{h}/{key}" in gc.stderr
    assert (store_root / "origins" / h / key).exists()


# ---- Luigi ----------------------------------------------------------------------------------------

LUIGI_GRAPH = '''
from luigi_nixworkflow import NixTask


class A(NixTask):
    def command(self):
        return f"echo a >> {count}; echo 1 > {{self.output()}}/v"


class B(NixTask):
    def requires(self):
        return A()

    def command(self):
        return f"echo b >> {count}; cat {{self.input()}}/v > {{self.output()}}/v; echo 2 >> {{self.output()}}/v"


class C(NixTask):
    def requires(self):
        return B()

    def command(self):
        return f"echo c >> {count}; cat {{self.input()}}/v > {{self.output()}}/v; echo 3 >> {{self.output()}}/v"
'''


def test_luigi_worker_killed_before_the_origins_index(tmp_path: Path, store_root: Path) -> None:
    count, modules = tmp_path / "count", tmp_path / "modules"
    modules.mkdir()
    (modules / "nwcrash.py").write_text(LUIGI_GRAPH.format(count=count))
    env = dict(os.environ, PYTHONPATH=f"{modules}{os.pathsep}{REPO}")
    argv = [str(Path(sys.executable).with_name("luigi")), "--module", "nwcrash", "C", "--local-scheduler", "--no-lock",
            "--retcode-task-failed", "3", "--retcode-unhandled-exception", "5"]
    killed(argv, "realisation-written:2", env=env)  # B's record is written, its index entry is not
    check_store(store_root)
    nw("gc", check=True)
    check_no_leftovers(store_root)
    again = subprocess.run(argv, env=env, text=True, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert counts(count) == {"a": 1, "b": 1, "c": 1}
    assert (next(Path("nix-workflow-output").glob("C*")) / "v").read_text() == CLEAN
    check_store(store_root)
    nw("gc", "--min-age", "0", check=True)  # C's link keeps B (whose index entry the kill lost) and A
    third = subprocess.run(argv, env=env, text=True, capture_output=True, timeout=300)
    assert third.returncode == 0, third.stdout + third.stderr
    assert counts(count) == {"a": 1, "b": 1, "c": 1}


# ---- Snakemake ------------------------------------------------------------------------------------

SNAKEFILE = '''
rule all:
    input: "c.txt"

rule a:
    output: "a.txt"
    shell: "echo a >> {count}; echo 1 > {{output}}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "echo b >> {count}; cat {{input}} > {{output}}; echo 2 >> {{output}}"

rule c:
    input: "b.txt"
    output: "c.txt"
    shell: "echo c >> {count}; cat {{input}} > {{output}}; echo 3 >> {{output}}"
'''


def test_snakemake_killed_before_the_origins_index_then_completes(tmp_path: Path, store_root: Path) -> None:
    """Killed while storing rule b's output, after its record and before its index entry. The next run
    completes, rules a and b never execute again, and a clone sharing the store executes nothing."""
    pytest.importorskip("snakemake")
    count = tmp_path / "count"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    one, two = tmp_path / "one", tmp_path / "two"
    for wf in (one, two):
        wf.mkdir()
        (wf / "Snakefile").write_text(SNAKEFILE.format(count=count))
    argv = [sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow"]
    first = killed(argv, "realisation-written:2", cwd=one, env=env)
    check_store(store_root)
    nw("gc", check=True)
    check_no_leftovers(store_root)
    unlock = subprocess.run(argv + ["--unlock"], cwd=one, env=env, text=True, capture_output=True, timeout=300)
    assert unlock.returncode == 0, unlock.stderr  # Snakemake's own lock, left by the kill
    again = subprocess.run(argv + ["--rerun-incomplete"], cwd=one, env=env, text=True, capture_output=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert (one / "c.txt").read_text() == CLEAN
    assert counts(count)["a"] == counts(count)["b"] == 1, first.stderr + "\n=====\n" + again.stderr + str(counts(count))
    check_store(store_root)
    executed = counts(count)
    clone = subprocess.run(argv, cwd=two, env=env, text=True, capture_output=True, timeout=300)
    assert clone.returncode == 0, clone.stderr
    assert counts(count) == executed, "every job is in the store: a clone executes nothing"
    assert (two / "c.txt").read_text() == CLEAN
