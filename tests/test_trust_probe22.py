"""Probe of the store's trust guarantees (wave 22): ways to make the store serve something no successful step of
that key produced, through its private memos, its records and its garbage collector.

Each test is an attack tried with real processes (a lookup in a fresh `python` process reads every memo from its
file, as the next run would); its docstring says what happened before a fix, or which guarantee it pins down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixlib import hits, statmemo, temproots
from nixlib.engine import Engine
from nixlib.recipe import Recipe
from nixlib.store import Store
from tests.helpers import REPO

LOOKUP = r'''
import json, sys
from nixlib.engine import Engine
from nixlib.recipe import Recipe
from nixlib.store import Store
found = Engine(Store()).lookup(Recipe(name=sys.argv[1], command=sys.argv[2]))
print(json.dumps(None if found is None else dict(found.outputs)))
'''


def _recipe(name: str) -> Recipe:
    return Recipe(name=name, command=f"echo made-by-{name} > $out/{name}.txt")


def _lookup_in_new_process(name: str) -> dict[str, str] | None:
    """The outputs a fresh process finds for step `name` (None: a miss), reading every memo from its file."""
    r = _recipe(name)
    done = subprocess.run([sys.executable, "-c", LOOKUP, r.name, r.command], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _settled_hits(monkeypatch: pytest.MonkeyPatch, *names: str) -> dict[str, tuple[str, str]]:
    """Realise each step, then have the verified-hit memo vouch for its hit as *settled* (checked as if 10 s later,
    so its record's stat identity alone stands for it) and save the memo: {name: (resolved key, object)}."""
    made = {n: Engine(Store()).realise(_recipe(n)) for n in names}
    with monkeypatch.context() as m:
        m.setattr(statmemo, "_now_ns", lambda: time.time_ns() + 10_000_000_000)
        hits.forget()
        for n in names:
            assert Engine(Store()).lookup(_recipe(n)) is not None
        hits.forget()
    return {n: (d.resolved_key, d.outputs["out"]) for n, d in made.items()}


# ---- the verified-hit memo: an entry must say nothing about a key that the key's record does not say -------------

def test_a_hit_memo_entry_edited_to_name_another_steps_object_is_never_served(monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    """A settled entry is served from its fields (the record is only lstat'ed), so its outputs were believed as
    they stood in the shard: an entry of step b edited (by hand, a bad copy, a damaged disk) to name step a's object,
    with a's object signatures, kept b's record identity and served a's object as b's result. Each entry is now
    sealed with a digest over its key and text, so an entry changed since it was written is a miss of the memo and
    the full check serves b's own record."""
    made = _settled_hits(monkeypatch, "a", "b")
    (key_a, obj_a), (key_b, obj_b) = made["a"], made["b"]
    shard_a, shard_b = Store().hits.path_of(key_a), Store().hits.path_of(key_b)
    entry_a = json.loads(hits.decode(shard_a.read_bytes())[key_a])
    entries_b = hits.decode(shard_b.read_bytes())
    entry_b = json.loads(entries_b[key_b])
    assert entry_b[10] == {"out": obj_b} and entry_a[10] == {"out": obj_a}
    forged = entry_b[:8] + entry_a[8:9] + entry_b[9:10] + entry_a[10:12]  # b's record identity, a's objects
    header = shard_b.read_bytes().split(b"\n", 1)[0]
    lines = [header.decode()] + [f"{k}\t{json.dumps(forged) if k == key_b else v}" for k, v in entries_b.items()]
    shard_b.write_text("\n".join(lines) + "\n")
    assert _lookup_in_new_process("b") == {"out": obj_b}
    assert _lookup_in_new_process("a") == {"out": obj_a}


def test_a_hit_memo_entry_moved_to_another_key_is_never_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry is bound to its key's record names: a's entry put under b's key (b's record removed, so only the
    entry could answer) names a record file b does not have; b is a miss, never a's object."""
    made = _settled_hits(monkeypatch, "a", "b")
    (key_a, _), (key_b, _) = made["a"], made["b"]
    entry_a = hits.decode(Store().hits.path_of(key_a).read_bytes())[key_a]
    shard_b = Store().hits.path_of(key_b)
    shard_b.write_bytes(shard_b.read_bytes() + f"{key_b}\t{entry_a}\n".encode())
    (Store().root / "realisations" / f"{key_b}.json").unlink()
    assert _lookup_in_new_process("b") is None


# ---- a step's input objects: changed, then removed, is still changed ---------------------------------------------

TAMPER = "chmod -R u+w {a} && echo evil >> {a}/v && cat {a}/v > $out/v && {hide}"


@pytest.mark.parametrize("hide", ["rm -rf {a}", "mv {a} {a}.hidden"])
def test_a_step_that_changes_its_input_object_then_removes_it_fails_and_nothing_is_served(tmp_path: Path,
                                                                                           hide: str) -> None:
    """A step that changes its input object (its own, made writable again) is failed by the input check after it
    ends, but only if the object was still there: one that changed it, used the changed bytes, then removed it (or
    renamed it away, as the object's owner may in the sticky store/) succeeded, and its output made from the
    changed bytes was recorded as the result of the true input: once a's object was rebuilt, b's record was
    served ("cached"). An input object gone after the step now fails the step as a changed one does (gc keeps a
    running step's inputs: only the step, or a tamperer, removes one)."""
    exp = tmp_path / "exp.py"
    command = TAMPER.replace("{hide}", hide)
    exp.write_text(f"from nixlib import output\na = output('echo base > $out/v', name='a')\n"
                   f"b = output(f'{command}', name='b')\n")
    first = _nw("run", str(exp))
    assert first.returncode == 1, first.stderr
    assert "step 'b' failed: its input object" in first.stderr and "Traceback" not in first.stderr, first.stderr
    assert _nw("run", str(exp), "a").returncode == 0  # a's object is rebuilt: the true input is there again
    plan = _nw("run", str(exp), "--dry-run")
    assert "would run         b" in plan.stdout, f"b's output made from changed bytes is served:\n{plan.stdout}"
    assert not Path("nix-workflow-output/b").exists()


def _nw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nixlib.cli", *args], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=180)


# ---- a record is bound to its key by its content, whichever of the key's names it is put at -----------------------

@pytest.mark.parametrize("name", ["{key}.json", "{key}.{uid}.json"])
def test_a_record_copied_to_another_keys_name_is_never_served(name: str) -> None:
    """Step a's realisation, copied byte for byte (by its own writer, so its owner is trusted) to step b's shared
    name or to b's per-user name, with b's own record gone: b is a miss (the record's resolved key is not the
    file's key), never a's object served as b's result."""
    made = {n: Engine(Store()).realise(_recipe(n)) for n in ("a", "b")}
    hits.forget()
    d = Store().root / "realisations"
    for path in d.glob(f"{made['b'].resolved_key}*"):
        path.unlink()
    target = d / name.format(key=made["b"].resolved_key, uid=os.getuid())
    target.write_bytes((d / f"{made['a'].resolved_key}.json").read_bytes())
    target.chmod(0o444)
    shutil.rmtree(Store().hits.directory, ignore_errors=True)
    assert _lookup_in_new_process("b") is None
    assert _lookup_in_new_process("a") == {"out": made["a"].outputs["out"]}


# ---- gc between a lookup and the use of what it found -----------------------------------------------------------

HOLDER = r'''
import os, sys, time
from pathlib import Path
from nixlib.engine import Engine
from nixlib.recipe import Recipe
from nixlib.store import Store
store = Store()
found = Engine(store).lookup(Recipe(name=sys.argv[1], command=sys.argv[2]))
signal = Path(sys.argv[3])
signal.with_suffix(".part").write_text("none" if found is None else found.outputs["out"])
signal.with_suffix(".part").rename(signal.with_suffix(".looked"))  # (whole: the test reads it once it exists)
while not signal.with_suffix(".go").exists():
    time.sleep(0.05)
store.materialise(found.outputs["out"], signal.with_suffix(".copy"), mode="copy")
'''


@pytest.mark.parametrize("memo", ["full check", "verified-hit memo"])
def test_gc_between_a_lookup_and_its_use_keeps_what_the_lookup_found(tmp_path: Path, store_root: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      memo: str) -> None:
    """A process looks a step up (through the full check, or served by its verified-hit memo without reading the
    record), then `nw gc --min-age 0` runs with nothing rooting the step, then the process copies what it found:
    the lookup's temp root kept the object and its record, so the copy is the step's true output."""
    if memo == "verified-hit memo":
        _settled_hits(monkeypatch, "a")
    else:
        Engine(Store()).realise(_recipe("a"))
    temproots.of(Store().root).release()  # (this process made it: only the holder below may keep it now)
    r = _recipe("a")
    signal = tmp_path / "signal"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, r.name, r.command, str(signal)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if signal.with_suffix(".looked").exists() or holder.poll() is not None:
                break
            time.sleep(0.05)
        found = signal.with_suffix(".looked").read_text()
        assert found != "none"
        gc = _nw("gc", "--min-age", "0")
        assert gc.returncode == 0, gc.stderr
        assert (store_root / "store" / found).exists(), "gc removed an object a live process had looked up"
        signal.with_suffix(".go").touch()
        assert holder.wait(timeout=60) == 0, holder.stderr.read() if holder.stderr else ""
    finally:
        if holder.poll() is None:
            holder.kill()
    assert (signal.with_suffix(".copy") / "a.txt").read_text() == "made-by-a\n"
    assert _nw("gc", "--min-age", "0").returncode == 0
    assert not (store_root / "store" / found).exists(), "once the process ended, gc removes the unrooted object"
