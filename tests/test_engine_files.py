"""What a cold step creates in the store, and the build directory it runs in (bench/README-engine.md).

Creating a file or directory (an inode) is the engine's main per-step cost on a cache miss, so three
creations per step were cut: a step's build directory ($TMPDIR, holding $out) is emptied and reused by
the next step of the same process instead of made and removed each time; an origins index entry is a
hard link to the user's empty marker file instead of a new empty file; and the recipes/ entry of a step
without upstream steps is a hard link to its realisation. These tests pin the cuts and the promises they
must keep: every step starts with an empty, private $TMPDIR whatever the step before left or did to it,
no build directory outlives the run, and the linked entries read (and `nw verify` accepts them) as before.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from nixlib import records
from nixlib.store import Store
from tests.helpers import nw

KEY = "0" * 52
OBJ = "1" * 52


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text)
    return path


def read_out(name: str, file: str) -> str:
    return (Path("nix-workflow-output") / name / file).read_text()


def test_each_step_gets_an_empty_private_tmpdir_and_none_is_left_behind(store_root: Path) -> None:
    # a -> b -> c run one after the other (-j 1): each reports its $TMPDIR and what was in it when it started,
    # then litters it (a file, a directory it makes read-only), which the next step must not see.
    litter = "echo junk > $TMPDIR/junk; mkdir -p $TMPDIR/d/e; echo x > $TMPDIR/d/e/f; chmod -R a-w $TMPDIR/d"
    report = ("echo $TMPDIR > $out/tmpdir; ls -A $TMPDIR > $out/seen; stat -c %a $TMPDIR > $out/mode; "
              'stat -c "%i %.9W" $TMPDIR > $out/made')  # inode and birth time: which directory it is
    write("exp.py", "from nixlib import output\n"
                    f"a = output('{report}; {litter}')\n"
                    f"b = output(f'cat {{a}}/tmpdir > $out/up; {report}; {litter}')\n"
                    f"c = output(f'cat {{b}}/tmpdir > $out/up; {report}')\n")
    nw("run", "exp.py", "-j", "1", check=True)
    for step in ("a", "b", "c"):
        assert read_out(step, "seen") == "out\n", step  # only its own $out: nothing an earlier step left
        assert read_out(step, "mode") == "700\n", step
        tmpdir = Path(read_out(step, "tmpdir").strip())
        assert tmpdir.parent == store_root / "tmp", tmpdir
    # one build directory served all three steps (it was made once, not once per step), each time under a
    # new name (a process of an earlier step still holding its path must not reach a later step's) ...
    assert read_out("a", "made") == read_out("b", "made") == read_out("c", "made")
    assert len({read_out(step, "tmpdir") for step in ("a", "b", "c")}) == 3
    # ... and is gone once the run ended, like every build directory
    assert not os.listdir(store_root / "tmp")


def test_a_step_that_changes_its_tmpdir_or_fails_hands_on_nothing(store_root: Path) -> None:
    # `bad` opens its $TMPDIR to everyone: the next step must get a fresh private one, not that directory.
    write("exp.py", "from nixlib import output\n"
                    "bad = output('stat -c \"%i %.9W\" $TMPDIR > $out/made; chmod 777 $TMPDIR')\n"
                    "after = output(f'cat {bad}/made > $out/up; stat -c \"%i %.9W\" $TMPDIR > $out/made; "
                    "ls -A $TMPDIR > $out/seen; stat -c %a $TMPDIR > $out/mode')\n")
    nw("run", "exp.py", "-j", "1", check=True)
    assert read_out("after", "made") != read_out("bad", "made")
    assert read_out("after", "seen") == "out\n" and read_out("after", "mode") == "700\n"
    assert not os.listdir(store_root / "tmp")
    # A failed step's partial $out and $TMPDIR contents are gone before its build directory serves again.
    write("exp2.py", "from nixlib import output\n"
                     "fails = output('echo partial > $out/p; echo t > $TMPDIR/t; false')\n"
                     "ok = output('ls -A $TMPDIR > $out/seen')\n")
    proc = nw("run", "exp2.py", "-j", "1", "--keep-going")
    assert proc.returncode == 1 and "step 'fails' failed" in proc.stderr, proc.stderr
    assert read_out("ok", "seen") == "out\n"
    assert not os.listdir(store_root / "tmp")


def test_origins_entries_are_links_to_one_marker_and_verify_accepts_them(store_root: Path) -> None:
    write("exp.py", "from nixlib import output\n" + "".join(f"s{i} = output('echo {i} > $out/v')\n" for i in range(3)))
    nw("run", "exp.py", "-j", "1", check=True)
    entries = [e for d in (store_root / "origins").iterdir() for e in d.iterdir()]
    assert len(entries) == 3
    inodes = {(os.lstat(e).st_dev, os.lstat(e).st_ino) for e in entries}
    assert len(inodes) == 1, "each origins entry was created as a file of its own"
    st = os.lstat(entries[0])
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o444 and st.st_nlink == 4  # the marker and the three entries
    proc = nw("verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # gc and verify --repair unlink an entry's name only: the others and the marker stay
    entries[0].unlink()
    assert os.lstat(entries[1]).st_nlink == 3
    proc = nw("verify", "--repair")
    assert "rebuilt index entry" in proc.stdout + proc.stderr and entries[0].exists()
    assert os.lstat(entries[0]).st_ino == st.st_ino


def test_an_unusable_marker_falls_back_to_an_entry_of_its_own(store_root: Path) -> None:
    write("exp.py", "from nixlib import output\ns = output('echo 1 > $out/v')\n")
    Store(store_root)  # creates the store layout (`nw run --dry-run` no longer does: it creates no store)
    marker = store_root / "cache" / str(os.getuid()) / "origins-entry"
    marker.write_text("not empty")  # not an empty file: never linked to
    nw("run", "exp.py", check=True)
    (entry,) = [e for d in (store_root / "origins").iterdir() for e in d.iterdir()]
    st = os.lstat(entry)
    assert st.st_nlink == 1 and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o444
    assert nw("verify").returncode == 0


def test_a_step_without_upstream_indexes_its_recipe_by_a_link_to_its_realisation(store_root: Path) -> None:
    write("exp.py", "from nixlib import output\na = output('echo 1 > $out/v')\nb = output(f'cat {a}/v > $out/w')\n")
    nw("run", "exp.py", check=True)
    store = Store(store_root)
    docs = {d["name"]: d for d in (json.loads(p.read_text()) for p in (store_root / "realisations").iterdir())}
    a, b = docs["a"], docs["b"]
    assert a["recipe_key"] == a["resolved_key"] and b["recipe_key"] != b["resolved_key"]
    # `a` realises to its own recipe key: its recipes/ entry is its realisation (one inode, two names) ...
    a_index, a_record = store_root / "recipes" / f"{a['recipe_key']}.json", store_root / "realisations" / \
        f"{a['resolved_key']}.json"
    assert os.lstat(a_index).st_ino == os.lstat(a_record).st_ino and os.lstat(a_index).st_nlink == 2
    # ... while `b`, whose key depends on its upstream's output, has a record of its own
    b_index = store_root / "recipes" / f"{b['recipe_key']}.json"
    assert os.lstat(b_index).st_nlink == 1 and json.loads(b_index.read_text())["last_resolved_key"] == b["resolved_key"]
    assert store.last(a["recipe_key"]) == a["resolved_key"] and store.last(b["recipe_key"]) == b["resolved_key"]
    assert nw("verify").returncode == 0
    assert "would not run" in nw("why", "a").stdout


def test_a_realisation_is_a_recipe_record_only_for_its_own_key() -> None:
    doc = records.seal({
        "v": 1, "name": "a", "resolved_key": KEY, "recipe_key": KEY, "recipe": {}, "outputs": {"out": OBJ},
        "command": "true", "inputs": [], "files": {}, "env": {"identity": {}, "paths": []}, "options": {},
        "start": 0.0, "end": 1.0, "duration": 1.0, "exit": 0, "host": "h", "user": "u", "tool": "t", "log": "l",
        "provenance": {}})
    assert records.check("recipes", KEY, doc)["last_resolved_key"] == KEY
    assert "last_resolved_key" not in records.check("realisations", KEY, doc)  # read as a realisation: unchanged
    with pytest.raises(records.InvalidRecord):
        records.check("recipes", OBJ, doc)  # another key's: its recipe_key is not the file's key
    other = records.seal({k: v for k, v in doc.items() if k != "digest"} | {"recipe_key": OBJ})
    with pytest.raises(records.InvalidRecord):
        records.check("recipes", KEY, other)  # realised to KEY but a recipe of another key
    broken = records.seal({k: v for k, v in doc.items() if k not in ("digest", "outputs")})
    with pytest.raises(records.InvalidRecord):
        records.check("recipes", KEY, broken)  # not a valid realisation: not a recipe record either


def test_nw_run_roots_its_link_directory_once_and_gc_keeps_each_linked_output(store_root: Path) -> None:
    """One gc root entry (the link directory) instead of one per step; a link removed from the directory no
    longer keeps its object (nw run runs in its own process, so no temp root of this one keeps anything)."""
    exp = write("exp.py", "from nixlib import output\na = output('echo A > $out/v')\nb = output('echo B > $out/v')\n")
    assert nw("run", str(exp)).returncode == 0
    assert len(os.listdir(store_root / "gcroots")) == 1
    objects = {n: os.readlink(Path("nix-workflow-output") / n) for n in ("a", "b")}
    nw("gc", "--min-age", "0", check=True)
    assert all(os.path.isdir(o) for o in objects.values())
    (Path("nix-workflow-output") / "b").unlink()
    nw("gc", "--min-age", "0", check=True)
    assert os.path.isdir(objects["a"]) and not os.path.exists(objects["b"])
