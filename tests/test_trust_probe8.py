"""Probe of the first rule (wave 8): a second local user, a full disk and a user's own hands attack a shared store.

Each test is a bug the probe found: a store directory another user created first (with a mode that blocks
everyone else, or as a symlink to a directory of theirs) made runs fail half-way with a bare "Permission
denied", or write records where that user chose; `nw verify` said "moved to None" of a corrupt object it could
not move; a full disk while recording a result gave a raw "[Errno 28]"; an output link replaced by a directory
gave an internal error and left a temporary link behind. The two-user tests need root (useradd, setpriv, as in
tests/test_multiuser.py): skipped otherwise, failed when NW_REQUIRE_USERS=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nixlib import nar
from tests.helpers import nw
from tests.unixusers import User, as_user, env, find_python, named_user, require_root

EXPERIMENT = """from nixlib import output, static
raw = static('raw.txt')
s1 = output(f'cat {raw} > $out/s1.txt')
s2 = output(f'tr a-z A-Z < {s1}/s1.txt > $out/s2.txt')
"""


@dataclass
class Two:
    store: Path
    base: Path
    python: str
    attacker: User
    victim: User


def _as(two: Two, u: User, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(as_user(u, *args), cwd=u.home, env=env(two.store, u), text=True, capture_output=True,
                          timeout=180)


def _nw_as(two: Two, u: User, *args: str) -> subprocess.CompletedProcess[str]:
    done = _as(two, u, two.python, "-m", "nixlib.cli", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def two() -> Iterator[Two]:
    """A fresh shared store made by root (`mkdir -m 1777`), an attacker and a victim with their own directories."""
    require_root()
    base = Path(tempfile.mkdtemp(prefix="nw-probe8-", dir="/tmp"))
    try:
        base.chmod(0o755)
        store = base / "store"
        store.mkdir()
        store.chmod(0o1777)
        attacker, victim = named_user("nwprobe", base), named_user("nwprobev", base)
        (victim.home / "raw.txt").write_text("hello\n")
        (victim.home / "exp.py").write_text(EXPERIMENT)
        for f in ("raw.txt", "exp.py"):
            os.chown(victim.home / f, victim.uid, victim.gid)
        yield Two(store, base, find_python(victim, env(store, victim)), attacker, victim)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("plant", ["closed", "symlink"])
def test_a_store_directory_another_user_made_first_is_refused_clearly(two: Two, plant: str) -> None:
    """Nothing in the store exists but its root when the attacker runs first: their `store/` of mode 0755 made every
    ingest of the victim fail with "Permission denied (in _place, store.py...)"; their `recipes` symlink to a
    1777 directory of theirs was followed, so the victim's records went where the attacker can rename them."""
    a = two.attacker
    if plant == "closed":
        made = _as(two, a, "mkdir", "-m", "755", str(two.store / "store"))
        where, why = two.store / "store", "not 1777"
    else:
        theirs = a.home / "elsewhere"
        made = _as(two, a, "sh", "-c", f"mkdir -m 1777 {theirs} && ln -s {theirs} {two.store / 'recipes'}")
        where, why = two.store / "recipes", "symlink"
    assert made.returncode == 0, made.stderr
    for command in (["run", "exp.py"], ["verify"]):
        done = _nw_as(two, two.victim, *command)
        assert done.returncode == 1, done.stderr
        assert f"{where} " in done.stderr and why in done.stderr and "belongs to nwprobe" in done.stderr, done.stderr
        assert "store.py" not in done.stderr, done.stderr
    if plant == "symlink":
        assert os.listdir(a.home / "elsewhere") == []  # nothing of the victim's was written through the link
    assert not (two.victim.home / "nix-workflow-output" / "s1").exists()


def test_verify_says_who_must_move_a_corrupt_object_it_cannot_move(two: Two) -> None:
    """The attacker squats the object name of the victim's input (anyone can hash known bytes) with other bytes:
    the victim's run fails clearly and serves nothing, and `nw verify` said "moved to None"; it now says whose
    object it is and who can move it."""
    h = nar.nar_hash(two.victim.home / "raw.txt")
    squat = f"mkdir -p -m 1777 {two.store / 'store'}; echo garbage > {two.store / 'store' / h}"
    assert _as(two, two.attacker, "sh", "-c", squat).returncode == 0
    run = _nw_as(two, two.victim, "run", "exp.py")
    assert run.returncode == 1 and h in run.stderr and "could not be moved aside" in run.stderr, run.stderr
    assert not (two.victim.home / "nix-workflow-output" / "s1").exists()
    verify = _nw_as(two, two.victim, "verify")
    assert verify.returncode == 1
    line = next(x for x in verify.stdout.splitlines() if x.startswith(f"corrupt: {h}"))
    assert "None" not in line and "belongs to nwprobe" in line, verify.stdout


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only: skipped otherwise, failed when NW_REQUIRE_USERS=1)."""
    require_root()
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_while_recording_fails_the_step_clearly_and_serves_nothing(small_disk: Path,
                                                                               tmp_path: Path) -> None:
    """The step stored its output, then the disk filled up before its record was written: the run said only
    "error: [Errno 28] No space left on device". Now the message names the step and what to do, nothing is
    recorded or linked, and the next run (with space) runs the step again and serves its real output."""
    store, flag, fill = small_disk / "store", tmp_path / "flag", small_disk / "fill"
    (tmp_path / "work" / "exp.py").write_text(
        "from nixlib import output\n"
        f"small = output('echo small > $out/a.txt; if [ -e {flag} ]; then rm {flag}; "
        f"head -c 3000000 /dev/zero > {fill} || true; fi')\n")
    flag.touch()
    env = {"NIX_WORKFLOW_STORE": str(store)}
    first = nw("run", "exp.py", env=env)
    assert first.returncode == 1, first.stderr
    assert "cannot record the result of step 'small'" in first.stderr and "Errno" not in first.stderr, first.stderr
    assert "Traceback" not in first.stderr
    assert not any(n.endswith(".json") for n in os.listdir(store / "realisations"))
    assert not os.path.lexists(tmp_path / "work" / "nix-workflow-output" / "small")
    fill.unlink()
    again = nw("run", "exp.py", env=env)
    assert again.returncode == 0 and "small: done" in again.stderr, again.stderr  # ran again, not served
    assert (tmp_path / "work" / "nix-workflow-output" / "small" / "a.txt").read_text() == "small\n"
    assert nw("verify", env=env).returncode == 0


def test_an_output_link_replaced_by_a_directory_is_a_clear_error_and_leaves_no_litter(tmp_path: Path) -> None:
    """A user put a directory of their own where an output link goes: the cached run failed with
    "Is a directory (in link_output, store.py:...)" and left `.s1.<pid>.<hex>` behind in the output directory."""
    work = tmp_path / "work"
    (work / "raw.txt").write_text("hello\n")
    (work / "exp.py").write_text(EXPERIMENT)
    assert nw("run", "exp.py").returncode == 0
    out = work / "nix-workflow-output"
    (out / "s1").unlink()
    (out / "s1").mkdir()
    (out / "s1" / "s1.txt").write_text("mine\n")
    done = nw("run", "exp.py")
    assert done.returncode == 1 and f"{out / 's1'}" in done.stderr and "move it away" in done.stderr, done.stderr
    assert "store.py" not in done.stderr and "Traceback" not in done.stderr
    assert sorted(n for n in os.listdir(out) if n.startswith(".s")) == []
    assert (out / "s1" / "s1.txt").read_text() == "mine\n"  # the user's directory is left alone
    shutil.rmtree(out / "s1")
    again = nw("run", "exp.py")
    assert again.returncode == 0 and "cached 2" in again.stderr, again.stderr
    assert (out / "s2" / "s2.txt").read_text() == "HELLO\n"


def test_a_step_log_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    """A log's name is checked before a step starts (Store.log_path), but the file was then opened following
    symlinks: a link planted at the name meanwhile redirected the truncating (or appending) write wherever it
    pointed, with the victim's rights. Now the open refuses a link, and the file it points at is untouched."""
    from nixlib.errors import NixWorkflowError
    from nixlib.runner import append_log, open_log

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    log = tmp_path / "key.log"
    log.symlink_to(victim)
    for opener in (open_log, append_log):
        with pytest.raises(NixWorkflowError, match="cannot open the step's log"):
            opener(log)
    assert victim.read_text() == "precious\n"
    plain = tmp_path / "plain.log"
    with open_log(plain) as f:
        f.write(b"$ echo\n")
    with append_log(plain) as f:
        f.write("more\n")
    assert plain.read_text() == "$ echo\nmore\n"


def test_a_recipe_pointer_to_another_steps_realisation_is_not_followed(tmp_path: Path, store_root: Path) -> None:
    """`nw show RECIPE_KEY` and `nw why` follow recipes/<key> to the realisation it last realised to. A (trusted,
    valid) pointer naming another step's realisation made `nw show` present that other step as this recipe's."""
    from nixlib.store import Store
    from tests.helpers import nw

    exp = tmp_path / "exp.py"
    exp.write_text('from nixlib import output\na = output("echo a > $out/v")\n'
                   'b = output(f"cat {a}/v > $out/v; echo b >> $out/v")\nc = output("echo c > $out/v")\n')
    nw("run", str(exp), check=True)
    store = Store(store_root)
    docs = {d["name"]: d for k, p in store.record_files("realisations") if k
            and (d := store.load_record("realisations", k, p)) is not None}
    b, c = docs["b"], docs["c"]
    assert b["recipe_key"] != b["resolved_key"]  # b has an upstream step: its recipe key points via recipes/
    assert "step:         b" in nw("show", b["recipe_key"], check=True).stdout
    store.set_last(b["recipe_key"], c["resolved_key"])  # a buggy writer's pointer to c's realisation
    shown = nw("show", b["recipe_key"])
    assert "step:         c" not in shown.stdout, shown.stdout
    assert shown.returncode == 1 and f"no realisation has key {b['recipe_key']}" in shown.stderr, shown.stderr
