"""Issue 9, items 2 and 3: two real Unix users share one 1777 store.

Run as root, the test creates two users (removed afterwards) and runs the real `nw` CLI as
each of them (setpriv). It shows that both can use one store concurrently, each step running
once per trusted set, and that nothing user B plants beforehand (a poisoned realisation for
A's key, lock files nobody can open, a stat-memo entry claiming other bytes for A's input,
A's cache directory, a state directory, a gc root entry, recipes and origins entries) can
block, mislead or poison A. Not root: skipped, or failed when NW_REQUIRE_USERS=1 (CI).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nixlib.store import Store
from tests.unixusers import User, as_user, env, find_python, require_root

EXPERIMENT = """from nixlib import output, static
raw = static('raw.txt')
s1 = output(f'cat {raw} > $out/s1.txt; touch RUNS/s1.$(id -u).$$')
s2 = output(f'tr a-z A-Z < {s1}/s1.txt > $out/s2.txt; echo ok > $state/mark; touch RUNS/s2.$(id -u).$$',
            resumable=True)
"""

ATTACK = r"""
import json, os, sys
from pathlib import Path
from nixlib import records
from nixlib.statmemo import StatMemo, scan
from nixlib.store import Store

home, victim_uid, victim_home = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
store = Store()
evil_dir = home / "evil"
evil_dir.mkdir()
(evil_dir / "s1.txt").write_text("EVIL\n")
(evil_dir / "s2.txt").write_text("EVIL\n")
evil = store.ingest(evil_dir)
(home / "evil.txt").write_text("evil raw\n")
evil_raw = store.ingest(home / "evil.txt")
last = json.loads((home / "nix-workflow-output" / ".nw-last-run.json").read_text())
for step, entry in last.items():
    rk, key = entry["resolved_key"], entry["recipe_key"]
    rec = store.root / "realisations" / f"{rk}.json"
    doc = json.loads(rec.read_text())
    real = doc["outputs"]["out"]
    doc["outputs"] = {"out": evil}                      # a valid, sealed record for A's key, naming B's bytes
    tmp = store.root / "realisations" / f".{rk}.tmp"
    tmp.write_text(json.dumps(records.seal(doc)))
    os.replace(tmp, rec)
    os.chmod(store.root / "locks" / f"{rk}.lock", 0)   # a lock file nobody else can open
    (store.root / "state" / key).mkdir(exist_ok=True, mode=0o700)
    os.chmod(store.root / "origins" / real, 0o755)       # A cannot add its entry here
    (store.root / "origins" / real / rk).touch()
os.chmod(store.root / "locks" / "gc.lock", 0)
import hashlib
for link in [victim_home / "nix-workflow-output", *(victim_home / "nix-workflow-output" / step for step in last)]:
    name = hashlib.sha256(str(link).encode()).hexdigest()[:32]  # the root names of A's link directory and links
    os.symlink("/nonexistent", store.root / "gcroots" / name)
# A's per-user cache directory, with a memo entry saying A's raw.txt has B's bytes
memo = StatMemo(store.root / "cache" / str(victim_uid) / "statmemo")
raw = str(victim_home / "raw.txt")
entry = {"v": 1, "host": memo.host, "path": raw, "signature": scan(raw).signature, "nar_hash": evil_raw}
memo.memo_file(raw).parent.mkdir(parents=True)
memo.memo_file(raw).write_text(json.dumps(entry, sort_keys=True))
(store.root / "cache" / str(victim_uid) / "nix-eval").mkdir()
print(evil, evil_raw)
"""


@dataclass
class Setup:
    base: Path
    store: Path
    runs: Path
    python: str
    a: User
    b: User


def _env(setup: Setup, u: User, extra: dict[str, str] | None = None) -> dict[str, str]:
    return env(setup.store, u, extra)


def _as(u: User, python: str, args: list[str], environ: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(as_user(u, python, *args), cwd=u.home, env=environ, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _nw(setup: Setup, u: User, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = _as(u, setup.python, ["-m", "nixlib.cli", *args], _env(setup, u, extra))
    out, err = p.communicate(timeout=180)
    assert "Traceback" not in err, err
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _make_user(base: Path, tag: str) -> User:
    name = f"nw{tag}{secrets.token_hex(3)}"
    subprocess.run(["useradd", "-M", "-U", "-s", "/bin/sh", name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    home = base / name
    home.mkdir(mode=0o755)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    return User(name, pw.pw_uid, pw.pw_gid, home)


@pytest.fixture
def setup() -> Iterator[Setup]:
    require_root()
    base = Path(tempfile.mkdtemp(prefix="nw-users-", dir="/tmp"))
    base.chmod(0o755)
    users: list[User] = []
    try:
        users += [_make_user(base, "a"), _make_user(base, "b")]
        store = base / "store"
        Store(store)  # created by root, 1777 like /nix-workflow
        runs = base / "runs"
        runs.mkdir()
        runs.chmod(0o1777)
        for u in users:
            (u.home / "raw.txt").write_text("hello\n")
            (u.home / "exp.py").write_text(EXPERIMENT.replace("RUNS", str(runs)))
            for f in ("raw.txt", "exp.py"):
                os.chown(u.home / f, u.uid, u.gid)
        s = Setup(base, store, runs, "", users[0], users[1])
        s.python = find_python(users[0], _env(s, users[0]))
        yield s
    finally:
        for u in users:
            subprocess.run(["userdel", u.name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _runs(setup: Setup, step: str, u: User | None = None) -> int:
    prefix = f"{step}." + (f"{u.uid}." if u else "")
    return sum(1 for n in os.listdir(setup.runs) if n.startswith(prefix))


def _out(u: User, step: str) -> str:
    return (u.home / "nix-workflow-output" / step / f"{step}.txt").read_text()


def test_two_users_run_one_store_concurrently_each_step_once(setup: Setup) -> None:
    a, b = setup.a, setup.b
    procs = [_as(u, setup.python, ["-m", "nixlib.cli", "run", "exp.py"],
                 _env(setup, u, {"NIX_WORKFLOW_TRUSTED_USERS": f"{a.name},{b.uid}"})) for u in (a, b)]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err
    assert _runs(setup, "s1") == 1 and _runs(setup, "s2") == 1  # one trusted set: each recipe ran once
    for u in (a, b):
        assert _out(u, "s1") == "hello\n" and _out(u, "s2") == "HELLO\n"
        verify = _nw(setup, u, "verify", extra={"NIX_WORKFLOW_TRUSTED_USERS": f"{a.name},{b.name}"})
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_nothing_another_user_plants_blocks_misleads_or_poisons_a_run(setup: Setup) -> None:
    a, b = setup.a, setup.b
    assert _nw(setup, b, "run", "exp.py").returncode == 0
    attack = _as(b, setup.python, ["-c", ATTACK, str(b.home), str(a.uid), str(a.home)], _env(setup, b))
    out, err = attack.communicate(timeout=120)
    assert attack.returncode == 0, err
    evil, evil_raw = out.split()

    first = _nw(setup, a, "run", "exp.py")
    assert first.returncode == 0, first.stderr
    assert _out(a, "s1") == "hello\n" and _out(a, "s2") == "HELLO\n"  # exactly what A's steps produce
    assert _runs(setup, "s1", a) == 1 and _runs(setup, "s2", a) == 1
    for step in ("s1", "s2"):
        obj = os.readlink(a.home / "nix-workflow-output" / step).rsplit("/", 1)[1]
        assert obj not in (evil, evil_raw)
    assert "lock file" in first.stderr  # the unopenable locks were noticed, not waited on

    again = _nw(setup, a, "run", "exp.py")
    assert again.returncode == 0 and "cached 2" in again.stderr, again.stderr
    assert _runs(setup, "s1", a) == 1 and _runs(setup, "s2", a) == 1  # A's own records serve A

    show = json.loads(_nw(setup, a, "show", "s1", "--json").stdout)
    assert show["user"] == a.name and show["outputs"]["out"] != evil
    lineage = _nw(setup, a, "lineage", "s2")
    assert lineage.returncode == 0 and evil not in lineage.stdout

    store = Store(setup.store)
    roots = store.rooted_objects()
    for step in ("s1", "s2"):
        obj = os.readlink(a.home / "nix-workflow-output" / step).rsplit("/", 1)[1]
        assert obj in roots  # A's root entry was written beside B's squatted name
    verify = _nw(setup, a, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"written by {b.name}, not a trusted user" in verify.stdout
    assert not (a.home / "nix-workflow-output" / "s1").resolve().is_relative_to(setup.store / "cache")


def test_a_cache_entry_owned_by_another_user_is_never_believed(setup: Setup, tmp_path: Path) -> None:
    from nixlib.evalcache import EvalCache
    from nixlib.statmemo import StatMemo

    root = setup.base / "private"
    root.mkdir()
    cache = EvalCache(root)
    cache.put({"q": 1}, {"tool": "/nix/store/good"}, [])
    assert cache.get({"q": 1}) == {"tool": "/nix/store/good"}
    entry = next(cache.directory.iterdir())
    os.chown(entry, setup.b.uid, setup.b.gid)  # as if B had planted it
    assert cache.get({"q": 1}) is None
    memo = StatMemo(root / "memo")
    f = root / "f"
    f.write_text("x")
    memo.remember(f, "0" * 52, sealed=True)
    assert memo.hash(f) == "0" * 52
    os.chown(memo.memo_file(f), setup.b.uid, setup.b.gid)
    assert memo.hash(f) != "0" * 52
