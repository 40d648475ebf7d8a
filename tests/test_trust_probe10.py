"""Probe of the first rule (wave 10): step outputs with unusual entries, records with unusual JSON, and a
second local user try to make the store hold or serve bytes a successful step did not produce.

Each test is a case the probe tried; where it found a bug, the docstring says what happened before the fix.
Expected hashes always come from the real `nix-hash` / `nix-store --dump`, never from nixlib. The two-user
tests need root (useradd, setpriv, as in tests/test_multiuser.py): skipped otherwise, failed when
NW_REQUIRE_USERS=1.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, nw
from tests.nixcheck import require_nix
from tests.unixusers import SharedStore, require_root, shared_store


def _nix_hash(path: Path | bytes | str) -> str:
    """The NAR hash real Nix computes for `path` (the name the store must give it)."""
    tool = require_nix("nix-hash")
    return subprocess.run([tool, "--type", "sha256", "--base32", path], check=True, capture_output=True,
                          text=True).stdout.strip()


def _run(experiment: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    work = cwd or Path.cwd()
    (work / "exp.py").write_text("from nixlib import output\n" + experiment)
    done = nw("run", "exp.py", *args, cwd=work)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _object(link: Path) -> Path:
    """The store object an output link points at."""
    target = Path(os.readlink(link))
    assert target.parent.name == "store", target
    return target


# ---- hard links out of an output ------------------------------------------------------------------


@pytest.mark.nix
@pytest.mark.parametrize("where", ["in-a-directory", "as-the-output"])
def test_a_hard_link_to_a_file_outside_the_output_is_stored_as_a_private_copy(tmp_path: Path, where: str) -> None:
    """A step that "copies" a data file cheaply with `ln` (or `cp -l`) into $out: the object was published with
    that very inode, so sealing it chmod-ed the user's own data file to 0444 and every later edit of the data
    file changed the stored object under its name (an object holding bytes no step produced)."""
    data = tmp_path / "data.txt"
    data.write_bytes(b"original\n")
    data.chmod(0o644)
    command = (f"ln {data} $out/data.txt && ln $out/data.txt $out/twice.txt" if where == "in-a-directory"
               else f"rmdir $out && ln {data} $out")
    done = _run(f"a = output('{command}')\n")
    assert done.returncode == 0, done.stderr
    obj = _object(Path("nix-workflow-output/a"))
    stored = obj / "data.txt" if where == "in-a-directory" else obj
    assert stat.S_IMODE(data.stat().st_mode) == 0o644  # the user's file is left as it was
    assert stored.stat().st_ino != data.stat().st_ino
    with open(data, "ab") as f:  # the user edits their data file afterwards
        f.write(b"edited\n")
    assert stored.read_bytes() == b"original\n"
    assert _nix_hash(obj) == obj.name
    if where == "in-a-directory":
        assert (obj / "twice.txt").read_bytes() == b"original\n"
        assert stat.S_IMODE(obj.stat().st_mode) == 0o555


# ---- a real second user ----------------------------------------------------------------------------


@pytest.fixture
def shared() -> Iterator[SharedStore]:
    """A fresh shared store made by root (`mkdir -m 1777`) and two users, "a" and "b", with their own directories."""
    with shared_store("probe10") as s:
        yield s


# ---- unreadable files and directories in an output --------------------------------------------------


@pytest.mark.nix
def test_an_output_the_step_left_unreadable_is_stored_readable_like_nix_does(shared: SharedStore) -> None:
    """A step (not root) that leaves a file of mode 000 in $out: storing it failed with a raw "[Errno 13]
    Permission denied: 'f'". Nix stores such an output (its modes are canonicalised, only the owner-execute bit
    is kept), and so does the store now: the object is exactly the NAR of what the step wrote."""
    shared.experiment("a", "a = output('echo hi > $out/f && chmod 000 $out/f && mkdir $out/d && echo x > $out/d/g "
                           "&& printf run > $out/d/x && chmod 100 $out/d/x && chmod 000 $out/d')\n")
    done = shared.nw("a", "run", "exp.py")
    assert done.returncode == 0, done.stderr
    obj = _object(shared.users["a"].home / "nix-workflow-output" / "a")
    expected = Path(tempfile.mkdtemp(prefix="nw-probe10-ref-")) / "a"
    try:
        (expected / "d").mkdir(parents=True)
        (expected / "f").write_text("hi\n")
        (expected / "d" / "g").write_text("x\n")
        (expected / "d" / "x").write_text("run")
        (expected / "d" / "x").chmod(0o755)
        assert _nix_hash(expected) == obj.name
    finally:
        shutil.rmtree(expected.parent)
    assert _nix_hash(obj) == obj.name
    assert shared.run("b", "cat", str(obj / "f"), str(obj / "d" / "g")).stdout == "hi\nx\n"


def test_an_unreadable_file_copied_into_the_store_is_a_clear_error(shared: SharedStore) -> None:
    """Where the store copies a tree instead of taking it over (a static input, a Snakemake or Luigi output in
    the working directory), a file or directory its user cannot read gave a raw "[Errno 13] Permission denied"
    naming only the entry; now the message names the tree, the entry and what to do, and nothing is stored."""
    home = shared.users["a"].home
    (home / "in" / "sub").mkdir(parents=True)
    (home / "in" / "sub" / "secret").write_text("x\n")
    shared.run("a", "true")
    for path in (home / "in", home / "in" / "sub", home / "in" / "sub" / "secret"):
        os.chown(path, shared.users["a"].uid, shared.users["a"].gid)
    (home / "in" / "sub" / "secret").chmod(0)
    shared.experiment("a", "from nixlib import static\nraw = static('in')\na = output(f'cp -r {raw}/. $out')\n")
    for unreadable in ("in/sub/secret", "in/sub"):
        if unreadable == "in/sub":
            (home / "in" / "sub").chmod(0)
        done = shared.nw("a", "run", "exp.py")
        assert done.returncode != 0
        assert "Errno" not in done.stderr, done.stderr
        assert unreadable.removeprefix("in/") in done.stderr and "cannot be read" in done.stderr, done.stderr
        assert not os.listdir(shared.store / "store"), done.stderr
    # a front door that hands the engine a tree to copy (Snakemake, Luigi) goes through Store.ingest's copy
    (home / "in" / "sub").chmod(0o755)
    code = ("import sys\nfrom nixlib.errors import NixWorkflowError\nfrom nixlib.store import Store\n"
            "try:\n    Store().ingest(sys.argv[1], label=\"output 'o' of step 's'\")\n"
            "except NixWorkflowError as e:\n    print(e)\n")
    done = shared.run("a", shared.python, "-c", code, str(home / "in"))
    assert done.stdout.startswith("cannot store output 'o' of step 's': sub/secret cannot be read"), done
    assert not os.listdir(shared.store / "store") and not os.listdir(shared.store / "tmp")


# ---- a step still writing after it ended ------------------------------------------------------------


@pytest.mark.nix
def test_an_escaped_process_writing_while_the_output_is_hashed_is_never_served(tmp_path: Path) -> None:
    """A process that is no descendant of the run (so no reaping finds it: here a server started beforehand, as a
    daemon some step talks to would be) is asked by the step to append to $out/f once the file is sealed, while the
    engine hashes it. (A descendant that escapes the marker, `setsid env -i`, is now killed before the hashing:
    test_trust_probe25.) The object was published under the hash of what was read and the stat memo vouched for
    the bytes there after the write, so every later lookup served (as "cached") an object whose bytes were not
    its name. Now the object must scan as it did before it was hashed, or it is quarantined and the step fails."""
    done_marker, escaped, request = tmp_path / "written", tmp_path / "escaped", tmp_path / "request"
    server = (f'until [ -s {request} ]; do sleep 0.01; done; exec 3>>"$(cat {request})"; touch {escaped}; '
              f'while [ $(stat -L -c %a /proc/$$/fd/3) != 444 ]; do :; done; sleep 0.02; '
              f'echo late >&3; touch {done_marker}')
    writer = subprocess.Popen(["/bin/sh", "-c", server], start_new_session=True, stdin=subprocess.DEVNULL)
    command = (f"head -c 200000000 /dev/zero > $out/f; [ -e {done_marker} ] || {{ echo $out/f > {request}; "
               f"until [ -e {escaped} ]; do sleep 0.01; done; }}")
    Path("cmd.sh").write_text(command)
    first = _run("a = output(open('cmd.sh').read())\n")
    writer.wait(timeout=30)
    assert done_marker.exists()
    if first.returncode:
        assert "changed while it was being stored" in first.stderr and "Errno" not in first.stderr, first.stderr
        assert not os.listdir(Path(os.environ["NIX_WORKFLOW_STORE"]) / "realisations")
        return
    # Stored (on a slow machine the write may come only after the object was published): a lookup by another
    # process must then find it changed, never vouch for it.
    obj = _object(Path("nix-workflow-output/a"))
    looked = subprocess.run([sys.executable, "-c", "import sys\nfrom nixlib.store import Store\n"
                             "print(Store().has(sys.argv[1]))", obj.name], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert looked.stdout.strip() == "False" or _nix_hash(obj) == obj.name, looked


# ---- unusual entries: the stored object is the NAR real Nix makes of what the step wrote -----------------

_UNUSUAL = r"""
cd $out
mkdir -p empty deep/a/b/c/d/e/f/g/h/i/j 'sp ace' && printf 'x' > deep/a/b/c/d/e/f/g/h/i/j/leaf
printf 'nl' > "$(printf 'new\nline')" && printf 'bs' > 'back\slash' && printf 'raw' > "$(printf 'bad\377name')"
printf 'long' > "$(printf 'L%.0s' $(seq 255))"
printf 'suid' > suid && chmod 4755 suid && printf 'sgid' > sgid && chmod 2644 sgid && chmod 1755 'sp ace'
chmod 2755 deep && printf 'ro' > ro && chmod 400 ro && printf 'wx' > wx && chmod 311 wx
ln -s /etc/hostname absolute && ln -s ../nowhere dangling && ln -s . self && ln -s "$NIX_WORKFLOW_STORE/store" store
"""


def _reference(root: Path) -> None:
    """The tree the step above writes, made here by Python with plain modes (what a NAR keeps of it)."""
    (root / "empty").mkdir(parents=True)
    (root / "sp ace").mkdir()
    leaf = root / "deep/a/b/c/d/e/f/g/h/i/j"
    leaf.mkdir(parents=True)
    (leaf / "leaf").write_bytes(b"x")
    for name, data, mode in ((b"new\nline", b"nl", 0o644), (b"back\\slash", b"bs", 0o644),
                             (b"bad\xffname", b"raw", 0o644), (b"L" * 255, b"long", 0o644), (b"suid", b"suid", 0o755),
                             (b"sgid", b"sgid", 0o644), (b"ro", b"ro", 0o644), (b"wx", b"wx", 0o755)):
        path = os.fsencode(root) + b"/" + name
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
    store = Path(os.environ["NIX_WORKFLOW_STORE"]) / "store"
    for name, target in (("absolute", "/etc/hostname"), ("dangling", "../nowhere"), ("self", "."), ("store", store)):
        (root / name).symlink_to(target)


@pytest.mark.nix
def test_unusual_entries_are_stored_as_the_nar_real_nix_makes_of_them(tmp_path: Path) -> None:
    """Symlinks (absolute, dangling, to itself, into the store), empty and deep directories, names with a newline,
    a backslash, a non-UTF-8 byte or 255 bytes, setuid/setgid/sticky bits, unreadable and write-only files: the
    object's name, its `nix-store --dump` and its permissions are those of the NAR real Nix makes of the same
    tree written independently, and the object holds no special bit and nothing writable."""
    Path("cmd.sh").write_text(_UNUSUAL)
    done = _run("a = output(open('cmd.sh').read())\n")
    assert done.returncode == 0, done.stderr
    obj = _object(Path("nix-workflow-output/a"))
    expected = tmp_path / "expected"
    _reference(expected)
    dump = require_nix("nix-store")
    assert _nix_hash(expected) == obj.name
    assert (subprocess.run([dump, "--dump", obj], check=True, capture_output=True).stdout
            == subprocess.run([dump, "--dump", expected], check=True, capture_output=True).stdout)
    for dirpath, dirnames, filenames in os.walk(os.fsencode(obj)):
        for name in [b"", *dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISLNK(st.st_mode):
                assert stat.S_IMODE(st.st_mode) in (0o444, 0o555), (dirpath, name, oct(st.st_mode))
    again = _run("a = output(open('cmd.sh').read())\n")
    assert again.returncode == 0 and "a: cached" in again.stderr, again.stderr


# ---- records whose bytes are not quite the JSON the store writes ----------------------------------------

def _bom(b: bytes) -> bytes:
    return b"\xef\xbb\xbf" + b


def _garbage(b: bytes) -> bytes:
    return b.rstrip() + b' {"outputs": {}}'


def _nan(b: bytes) -> bytes:
    return b.replace(b'"duration": ', b'"duration": NaN, "was": ', 1)


def _huge(b: bytes) -> bytes:
    return b.replace(b'"exit": 0', b'"exit": 1' + b"0" * 5000, 1)


def _deep(b: bytes) -> bytes:
    return b.replace(b'"options": {', b'"x": ' + b"[" * 100_000 + b"]" * 100_000 + b', "options": {', 1)


def _surrogate(b: bytes) -> bytes:
    return b.replace(b'"host": "', b'"host": "\\udcff', 1)


def _latin1(b: bytes) -> bytes:
    return b.replace(b'"host": "', b'"host": "\xff', 1)


@pytest.mark.parametrize("damage", [_bom, _garbage, _nan, _huge, _deep, _surrogate, _latin1],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_record_that_is_not_quite_json_is_absent_and_the_step_runs_again(tmp_path: Path, damage: object) -> None:
    """A byte-order mark, trailing data, NaN, a 5,000-digit number, 100,000 nested brackets, a lone surrogate or
    a non-UTF-8 byte in a record of a trusted writer: the record is ignored with one line naming it, the step
    runs again and its result is what the command makes; never a traceback, never the damaged record served."""
    from nixlib.engine import Engine
    from nixlib.recipe import Recipe
    from nixlib.store import Store

    store = Store(tmp_path / "s")
    recipe = Recipe("a", "echo A > $out/a.txt")
    first = Engine(store).realise(recipe)
    rec = store.root / "realisations" / f"{first.resolved_key}.json"
    data = damage(rec.read_bytes())  # type: ignore[operator]
    assert data != rec.read_bytes()
    rec.unlink()
    rec.write_bytes(data)
    done = subprocess.run([os.environ.get("PYTHON", sys.executable), "-c",
                           "import sys\nfrom nixlib.engine import Engine\nfrom nixlib.recipe import Recipe\n"
                           "from nixlib.store import Store\n"
                           "r = Engine(Store(sys.argv[1])).realise(Recipe('a', 'echo A > $out/a.txt'))\n"
                           "print(r.cached, r.outputs['out'])", str(store.root)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"ignoring invalid record {rec}: " in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout.split() == ["False", first.outputs["out"]]
    assert _nix_hash(store.object_path(first.outputs["out"])) == first.outputs["out"]


def test_file_capabilities_and_extended_attributes_are_not_stored(tmp_path: Path) -> None:
    """A step (run as root) that gives a binary in $out file capabilities (`setcap cap_dac_override+ep`) or an
    extended attribute: the object kept them, although a NAR (and so its name) holds none, so whoever ran the
    stored file (or an identical result of another step, deduplicated into it, linked in hardlink or symlink
    mode) got root's file access. Nix removes them from a build's output; so does the store now."""
    require_root()
    setcap = shutil.which("setcap")
    if setcap is None:
        pytest.skip("needs setcap (libcap2-bin)")
    command = (f"cp /bin/true $out/t && {setcap} cap_dac_override+ep $out/t && mkdir $out/d && python3 -c "
               "\"import os, sys; [os.setxattr(p, 'user.note', b'x') for p in sys.argv[1:]]\" $out/t $out/d $out")
    Path("cmd.sh").write_text(command)
    done = _run("a = output(open('cmd.sh').read())\n")
    assert done.returncode == 0, done.stderr
    obj = _object(Path("nix-workflow-output/a"))
    for path in (obj, obj / "t", obj / "d"):
        assert os.listxattr(path) == [], path
    assert _nix_hash(obj) == obj.name


# ---- symlinks another user puts in the store's shared directories ---------------------------------------


def _precious(shared: SharedStore) -> Path:
    """A directory of the victim ("b") with old files in it, outside the store."""
    done = shared.run("b", "sh", "-c", "mkdir precious && echo data > precious/thesis.tex && mkdir precious/sub && "
                                       "echo x > precious/sub/y && touch -d '2 days ago' precious/* precious")
    assert done.returncode == 0, done.stderr
    return shared.users["b"].home / "precious"


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_an_origins_symlink_of_another_user_never_sends_gc_or_verify_into_the_victims_files(
        shared: SharedStore) -> None:
    """The attacker ran `nw` first, so owns origins/ (sticky: its owner may rename anything in it). They replaced
    the index directory of the victim's kept object by a symlink to a directory of the victim's: `nw gc` then
    listed that directory as the object's stale index entries and removed every file and subdirectory in it
    (as `nw verify --repair` removed its files), and the index was rebuilt by creating a file in it."""
    assert shared.nw("a", "verify").returncode == 0
    precious = _precious(shared)
    shared.experiment("b", "a = output('echo A > $out/a')\n")
    assert shared.nw("b", "run", "exp.py").returncode == 0
    obj = _object(shared.users["b"].home / "nix-workflow-output" / "a").name
    origins = shared.store / "origins"
    swap = shared.run("a", "sh", "-c", f"mv {origins / obj} {origins}/junk && ln -s {precious} {origins / obj}")
    assert swap.returncode == 0, swap.stderr
    before = _listing(precious)
    for command in (["verify", "--repair"], ["gc", "--min-age", "0"], ["run", "exp.py"]):
        shared.nw("b", *command)
        assert _listing(precious) == before, command
    assert (precious / "thesis.tex").read_text() == "data\n"
    assert shared.nw("b", "run", "exp.py").returncode == 0


@pytest.mark.parametrize("name", ["failed", "nix-gcroots", "temproots"])
def test_a_store_directory_planted_as_a_symlink_is_refused_and_gc_never_follows_it(shared: SharedStore,
                                                                                  name: str) -> None:
    """`failed/` (--keep-failed), `nix-gcroots/` (the Nix GC roots of envs) and `temproots/` were not among the
    directories the store makes and checks, so another user could create one first as a symlink to a directory
    of the victim's; the victim's `nw gc` then removed the files there: those older than --min-age (an hour by
    default; `failed`), or every one (`temproots`: a file nobody holds a lock on is a dead process's roots). Now
    all are checked like every store directory: a run refuses the store, naming the symlink and its owner."""
    precious = _precious(shared)
    if name == "nix-gcroots":
        assert shared.run("b", "mkdir", str(precious / "host")).returncode == 0
        assert shared.run("b", "sh", "-c", f"ln -s /nowhere {precious}/host/x && touch -h -d '3 days ago' "
                                            f"{precious}/host/x").returncode == 0
    assert shared.run("a", "ln", "-s", str(precious), str(shared.store / name)).returncode == 0
    before = _listing(precious)
    for command in (["gc"], ["verify", "--repair"]):
        done = shared.nw("b", *command)
        assert done.returncode == 1, done.stderr
        assert f"{shared.store / name} is not a directory but a symlink" in done.stderr, done.stderr
        assert "belongs to nwprobe10a" in done.stderr, done.stderr
    assert _listing(precious) == before



def test_a_trusted_users_file_that_is_a_hard_link_to_some_file_of_roots_is_ignored(shared: SharedStore,
                                                                                   tmp_path: Path) -> None:
    """`<store>/trusted-users` is honoured if root owns it and nobody else can write it. Where
    fs.protected_hardlinks is off, any user may hard-link any file of root's into the (sticky, world-writable)
    store root under that name: a log of root's that names them as a word made them trusted by every user, root
    included. A trusted-users file with a second link is now ignored, with a warning. (Root makes the link here,
    as such a user could.)"""
    a, b = shared.users["a"], shared.users["b"]
    code = "from nixlib.store import Store\nprint(sorted(Store().trusted))"
    admin = shared.store / "trusted-users"
    admin.write_text(f"{a.name}\n")  # the administrator's own file: honoured
    done = shared.run("b", shared.python, "-c", code)
    assert done.returncode == 0 and a.uid in json.loads(done.stdout), done
    admin.unlink()
    log = tmp_path / "auth.log"
    log.write_text(f"Nov 26 23:50:01 host su: session opened for user {a.name} by (uid=0)\n")
    log.chmod(0o644)
    os.link(log, admin)
    done = shared.run("b", shared.python, "-c", code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == sorted({0, b.uid}), done.stdout
    assert f"ignoring {admin}" in done.stderr and "hard link" in done.stderr, done.stderr


def test_a_step_log_name_hard_linked_to_a_file_of_the_victims_never_overwrites_it(shared: SharedStore) -> None:
    """Where fs.protected_hardlinks is off, another user can hard-link a file of the victim's (their notes, a
    ~/.bashrc) at the name of the victim's next step log, `logs/<key>.log`, in the world-writable logs/: the file
    is the victim's own, so the log was opened there and truncated, and the victim's file replaced by the log.
    (Root makes the link here, as such a user could.)"""
    b = shared.users["b"]
    shared.experiment("b", "a = output('echo step-output; echo A > $out/a')\n")
    assert shared.nw("b", "run", "exp.py").returncode == 0
    (log,) = [p for p in (shared.store / "logs").iterdir() if p.name.endswith(".log")]
    log.unlink()  # (as the victim's own `nw gc` would, with its record: the step runs again below)
    for record in (shared.store / "realisations").iterdir():
        record.unlink()
    notes = b.home / "notes.txt"
    notes.write_text("my notes\n")
    os.chown(notes, b.uid, b.gid)
    os.link(notes, log)
    done = shared.nw("b", "run", "exp.py")
    assert done.returncode == 0, done.stderr
    assert notes.read_text() == "my notes\n"


# ---- a build directory reused while an escaped process still works in it ----------------------------------


def test_a_build_directory_an_escaped_process_works_in_is_never_reused(tmp_path: Path) -> None:
    """A process that leaves the step's session and clears its environment (`setsid env -i`) escapes the reaping,
    and its working directory was the step's build directory, which the next step of the run reused (renamed) as
    its own $TMPDIR: the file it wrote a moment later (`out/planted`, while `b` ran) was stored as part of the next
    step's result. A build directory that a process descended from the runner still works in is now not reused."""
    escaped = ("cd $out/..; (setsid env -i sh -c 'sleep 1; echo evil > out/planted' </dev/null >/dev/null 2>&1 &); "
               "sleep 0.3; echo a > out/a")  # (without the redirections the step's log pipe would wait for it)
    done = _run(f"a = output({escaped!r})\nb = output(f'cat {{a}}/a > $out/b; sleep 2')\n", "-j", "1")
    assert done.returncode == 0, done.stderr
    b = _object(Path("nix-workflow-output/b"))
    assert sorted(os.listdir(b)) == ["b"], sorted(os.listdir(b))


def test_a_failed_steps_leftover_that_cannot_be_removed_never_hides_why_it_failed(tmp_path: Path) -> None:
    """A failed step that left an immutable file (`chattr +i`, root only) in $out: removing its build directory
    failed, and that raw `[Errno 1] Operation not permitted` replaced the step's own failure in the report."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("no immutable files here (not root, or a filesystem without them)")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    try:
        done = _run("a = output('echo x > $out/f; chattr +i $out/f; exit 3')\n")
        assert done.returncode == 1 and "exited with status 3" in done.stderr, done.stderr
        assert "Errno" not in done.stderr
    finally:  # (the leftover, for the test's own clean-up)
        subprocess.run(["chattr", "-R", "-i", str(tmp_path)], capture_output=True)
