"""Probe 24: opening the store from each front door, and remote URLs urllib cannot parse.

- The "cannot use X as the store" error told Snakemake and Luigi users to pass nw's `--store DIR`: each front door
  now names its own way (Snakemake --nixworkflow-store, luigi.cfg `store`, nw --store; NIX_WORKFLOW_STORE for all).
- A store on a read-only filesystem was reported as "permission denied".
- The commands that only read a store (nw show, log, lineage, why, diff) refused one they could not write (a
  read-only mount; another user's store whose directories they may not write); they now read it, creating nothing.
- nw --store refused a store whose parent directories were missing, while NIX_WORKFLOW_STORE, Luigi and Snakemake
  created them: every way of naming the store now creates them (as `mkdir -p`, and as Nix does).
- nixlib.remotes.open_backend let urllib's ValueError ("Invalid IPv6 URL", a bad endpoint port) escape.

The read-only mounts need root (a tmpfs remounted read-only): skipped otherwise, failed when NW_REQUIRE_MOUNT=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nixlib.errors import NixWorkflowError
from tests.helpers import REPO, clean_failure, nw

EXPERIMENT = ("from nixlib import output\n"
              "a = output('echo hi > $out/a.txt')\n"
              "b = output(f'cat {a}/a.txt > $out/b.txt; echo made b')\n")


def _cannot_mount(why: str) -> None:
    if os.environ.get("NW_REQUIRE_MOUNT") == "1":
        pytest.fail(f"{why} (NW_REQUIRE_MOUNT=1 makes a test that cannot mount a failure)")
    pytest.skip(why)


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """A fresh tmpfs (root only), world-readable; unmounted at the end. Remount it read-only with `read_only`."""
    if os.geteuid() != 0:
        _cannot_mount("needs root to mount a tmpfs")
    where = Path(tempfile.mkdtemp(prefix="nw-probe24-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        where.rmdir()
        _cannot_mount(f"cannot mount a tmpfs: {mounted.stderr[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        where.rmdir()


def read_only(mount: Path) -> None:
    done = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not os.access(mount, os.W_OK) or os.statvfs(mount).f_flag & os.ST_RDONLY


def _made_store(where: Path, corrupt: bool = False) -> tuple[Path, Path]:
    """A store at where/store with steps a and b run from where/work (made world-readable); with `corrupt`, b's
    output object is changed afterwards. (store, work directory)"""
    store, work = where / "store", where / "work"
    work.mkdir()
    (work / "exp.py").write_text(EXPERIMENT)
    nw("run", "exp.py", cwd=work, env={"NIX_WORKFLOW_STORE": str(store)}, check=True)
    if corrupt:
        target = (work / "nix-workflow-output" / "b").resolve() / "b.txt"
        target.chmod(0o644)
        target.write_text("changed\n")
    return store, work


READS = [(["show", "a"], "echo hi"), (["log", "b"], "made b"), (["lineage", "b"], "└── a"),
         (["why", "b"], "'b' would not run"), (["diff", "a", "b"], "b.txt (only in the second)")]


# ---- 1. the store error names the front door's own setting -----------------------------------------------------

def test_nw_names_its_own_store_setting(tmp_path: Path) -> None:
    """(A guard: nw's message was right; it must stay so.)"""
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    (tmp_path / "afile").write_text("x")
    out = clean_failure(nw("run", "exp.py", cwd=tmp_path, env={"NIX_WORKFLOW_STORE": str(tmp_path / "afile")}),
                        f"cannot use {tmp_path / 'afile'} as the store")
    assert "--store DIR or NIX_WORKFLOW_STORE=DIR" in out, out


SNAKEFILE = 'rule a:\n    output: "a.txt"\n    shell: "echo hi > {output}"\n'


def test_snakemake_names_its_own_store_option(tmp_path: Path) -> None:
    pytest.importorskip("snakemake")
    from tests.test_snakemake import snakemake

    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "afile").write_text("x")
    out = clean_failure(snakemake(tmp_path, "--nixworkflow-store", str(tmp_path / "afile")),
                        f"cannot use {tmp_path / 'afile'} as the store", "--nixworkflow-store DIR")
    assert "--store DIR" not in out, out
    assert not (tmp_path / "a.txt").exists()


TASKS = """\
from luigi_nixworkflow import NixTask


class A(NixTask):
    def command(self):
        return "echo hi > $out/x"
"""


def luigi(where: Path, cfg: str) -> str:
    """The real `luigi` command on task A with `cfg` as luigi.cfg's [nixworkflow] section; its output."""
    (where / "tasks.py").write_text(TASKS)
    (where / "luigi.cfg").write_text(f"[nixworkflow]\n{cfg}\n")
    full = dict(os.environ, PYTHONPATH=f"{where}{os.pathsep}{REPO}")
    proc = subprocess.run([str(Path(sys.executable).with_name("luigi")), "--module", "tasks", "A",
                           "--local-scheduler", "--no-lock"], cwd=where, env=full, text=True, capture_output=True,
                          timeout=300)
    return proc.stdout + proc.stderr


def test_luigi_names_its_own_store_key(tmp_path: Path) -> None:
    pytest.importorskip("luigi")
    (tmp_path / "afile").write_text("x")
    out = luigi(tmp_path, f"store = {tmp_path / 'afile'}")
    assert f"cannot use {tmp_path / 'afile'} as the store" in out, out[-3000:]
    assert "the `store` key of [nixworkflow] in luigi.cfg" in out and "--store DIR" not in out, out[-3000:]
    assert "Traceback" not in out and "[Errno" not in out, out[-3000:]


# ---- 2. a read-only filesystem is named as such ----------------------------------------------------------------

def test_a_store_on_a_read_only_filesystem_is_named_so(tmpfs: Path) -> None:
    store, work = _made_store(tmpfs)
    read_only(tmpfs)
    out = clean_failure(nw("run", "exp.py", cwd=work, env={"NIX_WORKFLOW_STORE": str(store)}),
                        f"the store at {store} is on a read-only filesystem", "NIX_WORKFLOW_STORE=DIR")
    assert "permission denied" not in out.lower(), out


def test_a_store_to_create_on_a_read_only_filesystem_is_named_so(tmpfs: Path, tmp_path: Path) -> None:
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    read_only(tmpfs)
    out = clean_failure(nw("run", "exp.py", cwd=tmp_path, env={"NIX_WORKFLOW_STORE": str(tmpfs / "store")}),
                        "read-only filesystem")
    assert f"cannot create the store at {tmpfs / 'store'}" in out, out


# ---- 3. the commands that only read work on a store they cannot write -----------------------------------------

@pytest.mark.parametrize(("args", "says"), READS)
def test_reading_commands_read_a_read_only_store(tmpfs: Path, args: list[str], says: str) -> None:
    store, work = _made_store(tmpfs)
    read_only(tmpfs)
    proc = nw(*args, cwd=work, env={"NIX_WORKFLOW_STORE": str(store)})
    assert proc.returncode == 0 and says in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_a_corrupt_object_in_a_read_only_store_is_still_not_served(tmpfs: Path) -> None:
    """Reading does not quarantine (it cannot write), but a corrupt object is still reported, never vouched for."""
    store, work = _made_store(tmpfs, corrupt=True)
    read_only(tmpfs)
    proc = nw("show", "b", cwd=work, env={"NIX_WORKFLOW_STORE": str(store)})
    assert proc.returncode == 0, proc.stderr
    assert "MISSING: it no longer re-hashes to its name" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr


def _as_nobody(args: list[str], cwd: Path, store: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """nw run as uid/gid 65534 (setpriv), with its own HOME."""
    env = dict(os.environ, PYTHONPATH=str(REPO), NIX_WORKFLOW_STORE=str(store), HOME=str(home))
    env.pop("XDG_CACHE_HOME", None)
    return subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable,
                           "-m", "nixlib.cli", *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=120)


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_reading_commands_read_another_users_store_and_create_nothing(tmpfs: Path) -> None:
    """A store whose directories only its owner may write (0755): another user's queries read it, and write
    nothing into it (no tmp/ scratch, lock or temp root); only a command that writes is refused."""
    store, work = _made_store(tmpfs)
    for d in [store, *(p for p in store.iterdir() if p.is_dir() and not p.is_symlink())]:
        d.chmod(0o755)
    home = tmpfs / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    before = _listing(store)
    for args, says in READS:
        proc = _as_nobody(args, work, store, home)
        if proc.returncode != 0 and "setpriv" in proc.stderr:
            _cannot_mount(f"cannot run as another user: {proc.stderr[:200]}")
        assert proc.returncode == 0 and says in proc.stdout, (args, proc.stdout + proc.stderr)
    assert _listing(store) == before
    out = clean_failure(_as_nobody(["run", "exp.py"], work, store, home), "is not writable")
    assert "read-only filesystem" not in out, out


# ---- 4. every front door makes a store's missing parent directories alike ------------------------------------

def test_nw_store_option_creates_the_stores_missing_parents_as_the_variable_does(tmp_path: Path) -> None:
    """`nw --store DIR` refused a missing parent while NIX_WORKFLOW_STORE, Luigi and Snakemake created it: the
    same path worked or not depending on how it was given. All now create it (as `mkdir -p`, and as Nix does for
    a `--store` path); only the store directory itself is made 1777."""
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    store = tmp_path / "new" / "deeper" / "store"
    nw("--store", str(store), "run", "exp.py", cwd=tmp_path, check=True)
    assert oct(store.stat().st_mode & 0o7777) == "0o1777"
    assert oct((tmp_path / "new").stat().st_mode & 0o7777) != "0o1777"
    assert (tmp_path / "nix-workflow-output" / "b" / "b.txt").read_text() == "hi\n"


def test_nw_creates_the_store_and_its_parents_from_the_variable(tmp_path: Path) -> None:
    """(A guard: the store itself is made on first use, 1777, wherever the variable points.)"""
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    store = tmp_path / "fresh" / "store"
    nw("run", "exp.py", cwd=tmp_path, env={"NIX_WORKFLOW_STORE": str(store)}, check=True)
    assert oct(store.stat().st_mode & 0o7777) == "0o1777"


def test_snakemake_creates_the_store_and_its_parents(tmp_path: Path) -> None:
    pytest.importorskip("snakemake")
    from tests.test_snakemake import snakemake

    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    store = tmp_path / "new" / "deeper" / "store"
    proc = snakemake(tmp_path, "--nixworkflow-store", str(store))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "a.txt").read_text() == "hi\n"
    assert any((store / "realisations").iterdir())


def test_missing_parents_on_a_read_only_filesystem_are_refused_clearly(tmpfs: Path, tmp_path: Path) -> None:
    """Missing parents that cannot be made (the nearest existing directory is on a read-only filesystem) are one
    clear error naming the store, the read-only filesystem and the setting."""
    read_only(tmpfs)
    store = tmpfs / "new" / "store"
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    clean_failure(nw("--store", str(store), "run", "exp.py", cwd=tmp_path), f"cannot create the store at {store}",
                  "read-only filesystem", "--store DIR")


# ---- 5. open_backend: a URL urllib cannot parse is named, not a ValueError --------------------------------------

@pytest.mark.parametrize(("url", "says"), [
    ("http://[", "remote 'http://[' is not a valid URL (Invalid IPv6 URL)"),
    ("file://[x", "remote 'file://[x' is not a valid URL (Invalid IPv6 URL)"),
    ("s3://[/prefix", "remote 's3://[/prefix' is not a valid URL (Invalid IPv6 URL)"),
    ("s3://b/p?endpoint=http://[", "remote 's3://b/p?endpoint=http://[': endpoint 'http://[' is not a valid URL"),
    ("s3://b/p?endpoint=http://h:port", "endpoint 'http://h:port' is not a valid URL (Port could not be cast"),
])
def test_open_backend_names_a_url_it_cannot_parse(url: str, says: str) -> None:
    from nixlib.remotes import open_backend

    if url.startswith("s3:"):
        pytest.importorskip("boto3")
    with pytest.raises(NixWorkflowError) as caught:
        open_backend(url)
    assert says in str(caught.value)
