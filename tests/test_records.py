"""Issue 9, item 1: records are validated on read and never trusted blindly.

Every test tampers with a record the way a crash, a disk or a hand edit would (the owner is
the running user, so trust is not what rejects them: validation is) and runs the real CLI.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib import records
from nixlib.engine import Engine
from nixlib.errors import NixWorkflowError
from nixlib.lineage import find_record, render, tree
from nixlib.recipe import Recipe
from nixlib.store import Store
from tests.helpers import nw, tree_snapshot

EXPERIMENT = """from nixlib import output
a = output('echo A > $out/a.txt')
b = output('echo B > $out/b.txt')
c = output(f'cat {a}/a.txt > $out/c.txt')
"""
RANDOM = "from nixlib import output\nr = output('od -An -tx1 -N16 /dev/urandom > $out/r.txt')\n"


def _run(exp: Path) -> tuple[int, str]:
    proc = nw("run", str(exp))
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc.returncode, proc.stderr


def _key(step: str) -> str:
    return json.loads(Path("nix-workflow-output/.nw-last-run.json").read_text())[step]["resolved_key"]


def _record(store_root: Path, step: str) -> Path:
    return store_root / "realisations" / f"{_key(step)}.json"


def _overwrite(path: Path, text: str) -> None:
    path.unlink()
    path.write_text(text)


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    path = tmp_path / "exp.py"
    path.write_text(EXPERIMENT)
    assert _run(path)[0] == 0
    return path


def test_a_record_naming_another_valid_object_is_not_served(exp: Path, store_root: Path) -> None:
    rec = _record(store_root, "a")
    doc = json.loads(rec.read_text())
    doc["outputs"]["out"] = os.readlink("nix-workflow-output/b").rsplit("/", 1)[1]  # a valid, intact object
    _overwrite(rec, json.dumps(doc))
    verify = nw("verify")
    assert verify.returncode == 1 and f"invalid record {rec}: digest mismatch" in verify.stdout
    rc, err = _run(exp)
    assert rc == 0 and f"ignoring invalid record {rec}" in err
    assert Path("nix-workflow-output/a/a.txt").read_text() == "A\n"
    assert Path("nix-workflow-output/c/c.txt").read_text() == "A\n"  # downstream not recomputed from B
    assert nw("verify").returncode == 0  # the re-run replaced the record with a valid one


@pytest.mark.parametrize("target", ["absolute", "parent"])
def test_an_output_outside_the_store_is_never_touched(exp: Path, store_root: Path, tmp_path: Path,
                                                      target: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    rec = _record(store_root, "a")
    doc = json.loads(rec.read_text())
    doc["outputs"]["out"] = str(victim) if target == "absolute" else "../realisations"
    _overwrite(rec, json.dumps(records.seal(doc)))  # sealed: only name validation can reject it
    before = tree_snapshot(store_root)
    rc, err = _run(exp)
    assert rc == 0 and f"ignoring invalid record {rec}: outputs['out'] is not a store object name" in err
    assert victim.read_text() == "precious\n"
    after = tree_snapshot(store_root)
    assert all(after.get(p) == v for p, v in before.items() if p.startswith("realisations/") and p != str(
        rec.relative_to(store_root)))
    assert not os.listdir(store_root / "quarantine")
    assert Path("nix-workflow-output/a/a.txt").read_text() == "A\n"


@pytest.mark.parametrize("damage", ["truncated", "dangling"])
def test_a_damaged_record_reruns_once_and_is_repaired(tmp_path: Path, store_root: Path, damage: str) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text(RANDOM)
    assert _run(exp)[0] == 0
    rec, first = _record(store_root, "r"), Path("nix-workflow-output/r/r.txt").read_text()
    if damage == "truncated":
        text = rec.read_text()
        _overwrite(rec, text[: len(text) // 2])
    else:  # the object is gone; the step is not deterministic, so the re-run makes a different object
        obj = Path(os.readlink("nix-workflow-output/r"))
        obj.chmod(0o755)
        shutil.rmtree(obj)
    rc, err = _run(exp)
    assert rc == 0 and "done 1" in err
    assert Path("nix-workflow-output/r/r.txt").read_text() != first
    rc, err = _run(exp)
    assert rc == 0 and "cached 1" in err and "done 0" in err  # repaired: served from now on
    assert nw("verify").returncode == 0


@pytest.mark.parametrize("bad", ["[1, 2]", '{"name": "a"}', '{"outputs": {"out": 5}}'])
def test_wrong_shape_records_never_give_a_traceback(exp: Path, store_root: Path, bad: str) -> None:
    rec = _record(store_root, "a")
    _overwrite(rec, bad)
    for args in (["show", "a"], ["lineage", "c"]):
        proc = nw(*args)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.returncode in (0, 1)
    verify = nw("verify")
    assert verify.returncode == 1 and f"invalid record {rec}" in verify.stdout and "Traceback" not in verify.stderr
    gc = nw("gc", "--dry-run", "--min-age", "0")
    assert gc.returncode == 0 and "Traceback" not in gc.stderr
    rc, err = _run(exp)
    assert rc == 0 and "done 1" in err  # a re-runs (its record is absent), c is cached (same bytes)
    assert Path("nix-workflow-output/a/a.txt").read_text() == "A\n"
    gc = nw("gc", "--min-age", "0")
    assert gc.returncode == 0 and "Traceback" not in gc.stderr
    assert nw("verify").returncode == 0


# ---- fuzzing: any JSON as the record of a step's key -----------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=60),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=12,
)
_FIELDS = ["name", "resolved_key", "recipe_key", "outputs", "inputs", "files", "env", "command", "start", "end",
           "duration", "exit", "log", "options", "provenance", "digest"]


@st.composite
def _tampering(draw: st.DrawFn) -> tuple[str, Any, bool, bool]:
    """(field to change, its new value, delete it instead, re-seal the digest); field '' = replace the record."""
    field = draw(st.sampled_from(["", *_FIELDS, "outputs.out"]))
    return field, draw(_json | st.just("../realisations") | st.just("/etc/passwd")), draw(st.booleans()), \
        draw(st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=_tampering())
def test_fuzzed_records_give_success_or_a_clear_error_never_a_wrong_output(tmp_path_factory: pytest.TempPathFactory,
                                                                           change: tuple[str, Any, bool, bool]) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    store = Store(root / "store")
    recipe = Recipe("a", "echo A > $out/a.txt")
    first = Engine(store).realise(recipe)
    rec = store.root / "realisations" / f"{first.resolved_key}.json"
    doc = json.loads(rec.read_text())
    field, value, delete, reseal = change
    if field == "":
        doc = value
    elif field == "outputs.out":
        doc["outputs"]["out"] = value
    elif delete:
        doc.pop(field)
    else:
        doc[field] = value
    if reseal and isinstance(doc, dict):
        try:
            doc = records.seal(doc)
        except ValueError:
            pass
    _overwrite(rec, json.dumps(doc))
    try:
        result = Engine(store).realise(recipe)
    except NixWorkflowError:
        return
    assert (store.object_path(result.outputs["out"]) / "a.txt").read_text() == "A\n"
    try:
        node = tree(store, find_record(store, first.resolved_key))
        render(store, node)
    except NixWorkflowError:
        pass
