"""SIGKILL at every engine phase (nixlib.faults) of a real Luigi build and a real `snakemake --executor nixworkflow`
run, on their first and second pass, and during a restore of stored outputs into the working tree (wave 27).

The Luigi graph mixes the two shapes: a legacy task writing a LocalTarget through `self.output().open('w')`, a legacy
task writing a directory in place, and a store-native command() reading it. The Snakefile has a file rule, a
directory rule and a rule reading both. After each kill:

- `nw verify` finds nothing wrong, and every object re-hashes to its name (test_crash.check_store);
- every realisation record names exactly the objects a clean, uninterrupted run (in a store of its own) recorded
  for that step: a half-written or killed step's files are never recorded as its result;
- `nw gc` removes every leftover of the dead process;
- the next ordinary build (after Snakemake's own --unlock) succeeds and leaves byte-identical files to the clean
  run, with no `.nw-*` temporary beside the outputs, and the store is still consistent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nixlib.store import Store
from tests.helpers import REPO, nw
from tests.test_chaos_probe13 import ONE_STEP, _make_store, _start, _wait_for
from tests.test_crash import CLEAN, EXPERIMENT, check_no_leftovers, check_store, counts, killed
from tests.test_crash_probe14 import files, verify_clean

LONG = pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)

# ---- shared checks --------------------------------------------------------------------------------------------------


def realisations(root: Path) -> list[dict]:
    """Every realisation record of the store at `root` (check_store has checked each one is valid)."""
    store = Store(root)
    found = []
    for key, path in store.record_files("realisations"):
        doc = store.load_record("realisations", key, path)
        assert doc is not None, f"invalid record {path}"
        found.append(doc)
    return found


def recorded(root: Path) -> dict[str, dict[str, str]]:
    """{step name: its outputs' objects} of a store holding one record per step."""
    docs = realisations(root)
    result = {d["name"]: dict(d["outputs"]) for d in docs}
    assert len(result) == len(docs), "one record per step expected in a clean run"
    return result


def records_match(root: Path, clean: dict[str, dict[str, str]]) -> None:
    """Every record names exactly what the clean run stored for that step (objects are named by content)."""
    for doc in realisations(root):
        assert doc["name"] in clean, f"record of an unknown step {doc['name']}"
        assert dict(doc["outputs"]) == clean[doc["name"]], f"{doc['name']} recorded {doc['outputs']}, a clean " \
            f"run recorded {clean[doc['name']]}"


def stray(work: Path, roots: tuple[str, ...]) -> list[str]:
    """`.nw-*` names beside or inside the outputs (under `roots` of the working directory `work`)."""
    return [os.path.join(d, n) for r in roots for d, dirs, names in os.walk(work / r) for n in dirs + names
            if n.startswith(".nw-")]


def after_kill(store_root: Path, clean: dict[str, dict[str, str]]) -> None:
    check_store(store_root)
    verify_clean()
    records_match(store_root, clean)
    nw("gc", check=True)
    check_no_leftovers(store_root)
    check_store(store_root)


def without_luigi_temps(found: dict[str, bytes | str]) -> dict[str, bytes | str]:
    """`found` without the temporary files of Luigi's own atomic writes (`text.txt-luigi-tmp-<n>`): a plain Luigi
    run killed while its task writes through `self.output().open('w')` leaves one too, and it is never read as the
    output."""
    return {k: v for k, v in found.items() if "-luigi-tmp-" not in k}


def after_rerun(store_root: Path, work: Path, clean_files: dict[str, bytes | str],
                clean: dict[str, dict[str, str]], roots: tuple[str, ...]) -> None:
    assert {r: without_luigi_temps(files(work / r)) for r in roots} == clean_files
    assert not stray(work, roots), stray(work, roots)
    check_store(store_root)
    verify_clean()
    records_match(store_root, clean)


def in_other_store(tmp_path: Path, name: str) -> tuple[Path, Path, dict[str, str]]:
    """A working directory and a store of a clean reference run, and the environment that uses that store."""
    work, root = tmp_path / name, tmp_path / f"{name}-store"
    work.mkdir()
    return work, root, {"NIX_WORKFLOW_STORE": str(root)}


# ---- Luigi ----------------------------------------------------------------------------------------------------------

LUIGI_GRAPH = '''
import os
import signal

import luigi

from luigi_nixworkflow import NixTask

COUNT = {count!r}


def tick(name):
    with open(COUNT, "a") as f:
        f.write(name + "\\n")


def die(where):
    if os.environ.get("DIE_IN_RUN") == where:
        os.kill(os.getpid(), signal.SIGKILL)


class Text(NixTask):
    """Legacy: a LocalTarget written through self.output().open('w')."""

    def output(self):
        return luigi.LocalTarget("data/text.txt")

    def run(self):
        tick("text")
        with self.output().open("w") as f:
            f.write("alpha\\n")
            f.flush()
            die("text")
            f.write("beta\\n")


class Parts(NixTask):
    """Legacy: a directory written in place, file by file."""

    def requires(self):
        return Text()

    def output(self):
        return luigi.LocalTarget("data/parts")

    def run(self):
        tick("parts")
        words = self.input().open().read().split()
        os.makedirs(self.output().path)
        for i, word in enumerate(words):
            with open(os.path.join(self.output().path, f"{{i}}.txt"), "w") as f:
                f.write(word.upper())
                f.flush()
                die("parts")
                f.write("\\n")


class Joined(NixTask):
    """Store-native: a command reading the legacy directory."""

    def requires(self):
        return Parts()

    def command(self):
        return f"echo joined >> {{COUNT}}; cat {{self.input().path}}/0.txt {{self.input().path}}/1.txt > $out/all.txt"
'''
LUIGI_ROOTS = ("data", "nix-workflow-output")


def luigi_build(work: Path, modules: Path, env: dict[str, str] | None = None, fault: str | None = None
                ) -> subprocess.CompletedProcess[str]:
    argv = [str(Path(sys.executable).with_name("luigi")), "--module", "nwcrash27", "Joined", "--local-scheduler",
            "--no-lock"]
    full = dict(os.environ, PYTHONPATH=f"{modules}{os.pathsep}{REPO}", **(env or {}))
    if fault is not None:
        return killed(argv, fault, cwd=work, env=full)
    proc = subprocess.run(argv, cwd=work, env=full, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0 and "This progress looks :)" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def luigi_clean(tmp_path: Path) -> tuple[Path, dict[str, dict[str, str]], dict[str, bytes | str]]:
    """The graph's module (its executions counted in tmp/count), and what a clean run in a store of its own
    recorded and left in its working directory."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "nwcrash27.py").write_text(LUIGI_GRAPH.format(count=str(tmp_path / "count")))
    work, root, env = in_other_store(tmp_path, "clean")
    luigi_build(work, modules, env)
    clean_files = {r: files(work / r) for r in LUIGI_ROOTS}
    assert clean_files["data"] == {"parts": "dir", "parts/0.txt": b"ALPHA\n", "parts/1.txt": b"BETA\n",
                                   "text.txt": b"alpha\nbeta\n"}
    (tmp_path / "count").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NIX_WORKFLOW_STORE", str(root))
        clean = recorded(root)
    assert len(clean) == 3
    return modules, clean, clean_files


# Steps pass in the order Text, Parts, Joined: `NAME` kills in Text (legacy file), `NAME:2` in Parts (legacy
# directory), or for record-temp-written (a record, then a recipe link for a step without upstream steps) in Text's
# recipe link.
_RUN_SIDE = ["step-ran", "ingest-staged", "ingested"]
_RECORD_SIDE = ["origins-indexed", "record-temp-written", "realisation-written", "origins-written", "recorded"]
LUIGI_RUN_FAULTS = [
    pytest.param(f"{p}{n}", marks=() if (p, n) in {("ingest-staged", ":2"), ("realisation-written", ":2")} else LONG)
    for p in _RUN_SIDE + _RECORD_SIDE for n in ("", ":2", ":3")]


@pytest.mark.parametrize("fault", LUIGI_RUN_FAULTS)
def test_luigi_build_killed_at_each_phase(tmp_path: Path, store_root: Path, fault: str,
                                          luigi_clean: tuple[Path, dict[str, dict[str, str]], dict[str, bytes | str]]
                                          ) -> None:
    modules, clean, clean_files = luigi_clean
    work = Path.cwd()
    luigi_build(work, modules, fault=fault)
    after_kill(store_root, clean)
    luigi_build(work, modules)
    after_rerun(store_root, work, clean_files, clean, LUIGI_ROOTS)


@pytest.mark.parametrize("where", ["text", pytest.param("parts", marks=LONG)])
def test_luigi_legacy_run_killed_mid_write_is_never_stored(tmp_path: Path, store_root: Path, where: str,
                                                           luigi_clean: tuple[Path, dict[str, dict[str, str]],
                                                                              dict[str, bytes | str]]) -> None:
    """run() killed with its output half written in place: the next build runs it again, and only the complete
    output is ever recorded."""
    modules, clean, clean_files = luigi_clean
    work = Path.cwd()
    proc = luigi_build(work, modules, env={"DIE_IN_RUN": where}, fault="never-passed")
    assert proc.returncode == -9
    after_kill(store_root, clean)
    luigi_build(work, modules)
    assert counts(tmp_path / "count")[where] == 2
    after_rerun(store_root, work, clean_files, clean, LUIGI_ROOTS)


LUIGI_RESTORE_FAULTS = [pytest.param(f, marks=() if f == "place-aside" else LONG)
                        for f in ("place-staged", "place-staged:2", "place-aside")]  # (two outputs restored)


@pytest.mark.parametrize("fault", LUIGI_RESTORE_FAULTS)
def test_luigi_restore_killed(tmp_path: Path, store_root: Path, fault: str,
                              luigi_clean: tuple[Path, dict[str, dict[str, str]], dict[str, bytes | str]]) -> None:
    """Built, then the outputs deleted (the directory edited, so its restore renames it aside first): the restore
    is killed."""
    modules, clean, clean_files = luigi_clean
    work = Path.cwd()
    luigi_build(work, modules)
    (work / "data" / "text.txt").unlink()
    (work / "data" / "parts" / "0.txt").write_text("edited\n")
    (work / "data" / "parts" / "extra.txt").write_text("user\n")
    shutil.rmtree(work / "nix-workflow-output")
    executed = counts(tmp_path / "count")
    luigi_build(work, modules, fault=fault)
    after_kill(store_root, clean)
    luigi_build(work, modules)
    assert counts(tmp_path / "count") == executed, "restored from the store: nothing runs again"
    after_rerun(store_root, work, clean_files, clean, LUIGI_ROOTS)


# ---- Snakemake ------------------------------------------------------------------------------------------------------

SNAKEFILE = '''
rule all:
    input: "res/c.txt"

rule a:
    output: "res/a.txt"
    shell: "echo a >> {count}; echo 1 > {{output}}"

rule b:
    input: "res/a.txt"
    output: directory("res/bdir")
    shell: "echo b >> {count}; mkdir -p {{output}}; cat {{input}} > {{output}}/x; echo 2 > {{output}}/y"

rule c:
    input: "res/a.txt", "res/bdir"
    output: "res/c.txt"
    shell: "echo c >> {count}; cat {{input[0]}} {{input[1]}}/x {{input[1]}}/y > {{output}}"
'''
SNAKE_ROOTS = ("res",)


def snakemake(work: Path, *more: str, env: dict[str, str] | None = None, fault: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "snakemake", "-c", "1", "--nocolor", "--executor", "nixworkflow", *more]
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    if fault is not None:
        return killed(argv, fault, cwd=work, env=full)
    proc = subprocess.run(argv, cwd=work, env=full, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def snake_clean(tmp_path: Path) -> tuple[dict[str, dict[str, str]], dict[str, bytes | str]]:
    """The Snakefile in the working directory (executions counted in tmp/count), and what a clean run in a store
    of its own recorded and left."""
    pytest.importorskip("snakemake")
    snakefile = SNAKEFILE.format(count=str(tmp_path / "count"))
    Path("Snakefile").write_text(snakefile)
    work, root, env = in_other_store(tmp_path, "clean")
    (work / "Snakefile").write_text(snakefile)
    snakemake(work, env=env)
    clean_files = {r: files(work / r) for r in SNAKE_ROOTS}
    assert clean_files["res"] == {"a.txt": b"1\n", "bdir": "dir", "bdir/.snakemake_timestamp": b"",
                                  "bdir/x": b"1\n", "bdir/y": b"2\n", "c.txt": b"1\n1\n2\n"}
    (tmp_path / "count").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NIX_WORKFLOW_STORE", str(root))
        clean = recorded(root)
    assert len(clean) == 3
    return clean, clean_files


# Jobs run in the order a, b, c: `NAME` kills in a (a file), `NAME:2` in b (a directory) or a's second record.
SNAKE_RUN_FAULTS = [
    pytest.param(f"{p}{n}", marks=() if (p, n) in {("step-ran", ":2"), ("origins-written", ":2")} else LONG)
    for p in _RUN_SIDE + _RECORD_SIDE for n in ("", ":2", ":3")]


@pytest.mark.parametrize("fault", SNAKE_RUN_FAULTS)
def test_snakemake_killed_at_each_phase(tmp_path: Path, store_root: Path, fault: str,
                                        snake_clean: tuple[dict[str, dict[str, str]], dict[str, bytes | str]]) -> None:
    clean, clean_files = snake_clean
    work = Path.cwd()
    snakemake(work, fault=fault)
    after_kill(store_root, clean)
    snakemake(work, "--unlock")
    snakemake(work, "--rerun-incomplete")  # Snakemake's own marker of a job it started: as plain Snakemake
    after_rerun(store_root, work, clean_files, clean, SNAKE_ROOTS)


SNAKE_RESTORE_FAULTS = [pytest.param(f, marks=() if f == "restore-placed:2" else LONG)
                        for f in ("place-staged", "place-staged:2", "place-staged:3", "restore-placed",
                                  "restore-placed:2", "restore-placed:3")]


@pytest.mark.parametrize("fault", SNAKE_RESTORE_FAULTS)
def test_snakemake_restore_killed(tmp_path: Path, store_root: Path, fault: str,
                                  snake_clean: tuple[dict[str, dict[str, str]], dict[str, bytes | str]]) -> None:
    """Built, then the outputs deleted: the restore of the stored jobs is killed."""
    clean, clean_files = snake_clean
    work = Path.cwd()
    snakemake(work)
    shutil.rmtree(work / "res")
    executed = counts(tmp_path / "count")
    snakemake(work, fault=fault)
    after_kill(store_root, clean)
    snakemake(work, "--unlock")
    snakemake(work)  # (no --rerun-incomplete: a restored job's outputs are never marked incomplete)
    assert counts(tmp_path / "count") == executed, "restored from the store: nothing runs again"
    after_rerun(store_root, work, clean_files, clean, SNAKE_ROOTS)


# ---- the origins index and the record -------------------------------------------------------------------------------


def test_a_kill_after_a_record_never_leaves_it_without_its_origins_entry(tmp_path: Path, store_root: Path) -> None:
    """Killed right after step b's record was written: its origins entry (how `nw why` finds the step that produced
    an object) used to be written after the record, so it was missing until the next `nw gc`, and `nw verify`
    reported a problem. The entry is written first now."""
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT.replace("COUNT", str(tmp_path / "count")))
    killed([sys.executable, "-m", "nixlib.cli", "run", str(exp)], "realisation-written:2")
    [b] = [d for d in realisations(store_root) if d["name"] == "b"]
    [h] = b["outputs"].values()
    assert (store_root / "origins" / h / b["resolved_key"]).exists()
    verify_clean()


def test_a_kill_between_the_origins_entry_and_the_record_leaves_only_a_stale_entry(tmp_path: Path,
                                                                                   store_root: Path) -> None:
    """Killed after b's origins entry, before its record: the entry names no record. Readers skip it, `nw verify`
    notes it (no problem), `nw gc` removes it, and the next run records b."""
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT.replace("COUNT", str(tmp_path / "count")))
    killed([sys.executable, "-m", "nixlib.cli", "run", str(exp)], "origins-indexed:2")
    assert [d["name"] for d in realisations(store_root)] == ["a"]
    [entry] = [e for e in (store_root / "origins").glob("*/*") if e.name != realisations(store_root)[0]["resolved_key"]]
    proc = nw("verify")
    assert proc.returncode == 0 and f"stale index entry {entry}" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    nw("gc", check=True)
    assert not entry.exists()
    nw("run", str(exp), check=True)
    assert counts(tmp_path / "count") == {"a": 1, "b": 2, "c": 1}
    assert Path("nix-workflow-output/c/v").read_text() == CLEAN
    verify_clean()


def test_verify_repair_beside_a_run_between_its_origins_entry_and_its_record_keeps_the_entry(tmp_path: Path,
                                                                                              store_root: Path) -> None:
    """A run paused between writing its origins entry and its record (it holds the key's lock): `nw verify --repair`
    must not call the entry stale and remove it, which would leave the record it writes next without its entry."""
    (tmp_path / "experiment.py").write_text(ONE_STEP)
    _make_store(tmp_path)
    before = set((store_root / "origins").glob("*/*"))
    run = _start(["run", "experiment.py"], tmp_path, "origins-indexed:10")
    try:
        _wait_for("the run's origins entry", lambda: set((store_root / "origins").glob("*/*")) - before, run)
        [entry] = set((store_root / "origins").glob("*/*")) - before
        v = nw("verify", "--repair")
        assert run.poll() is None, "the run's pause ended before verify finished: the window was missed"
        assert v.returncode == 0 and "stale" not in v.stdout + v.stderr, v.stdout + v.stderr
        assert entry.exists()
    finally:
        out = run.communicate(timeout=120)[0]
    assert run.returncode == 0, out
    verify_clean()
