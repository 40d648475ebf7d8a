"""Real Unix users for the multi-user tests: each test runs nw as two unprivileged users on one shared store."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path


def require_root() -> None:
    """Skip (fail when CI sets NW_REQUIRE_USERS=1) unless users can be created and run as."""
    why = None
    if os.getuid() != 0:
        why = "needs root to create Unix users and run as them (CI runs as root with NW_REQUIRE_USERS=1)"
    elif not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("setpriv")):
        why = "needs useradd, userdel and setpriv"
    if why and os.environ.get("NW_REQUIRE_USERS") == "1":
        pytest.fail(f"NW_REQUIRE_USERS=1 but the multi-user test cannot run: {why}")
    if why:
        pytest.skip(why)


def pythonpath() -> str:
    return f"{REPO}:{sysconfig.get_paths()['purelib']}"


def env(store: Path, u: User, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for `u` using the store at `store`."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(u.home), "XDG_CACHE_HOME": str(u.home / ".cache"),
            "PYTHONPATH": pythonpath(), "NIX_WORKFLOW_STORE": str(store), "LANG": "C.UTF-8", **(extra or {})}


def as_user(u: User, *argv: str) -> list[str]:
    """`argv` run as `u` (its uid and group only)."""
    return ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--clear-groups", "--", *argv]


def find_python(u: User, environ: dict[str, str]) -> str:
    """An interpreter the user can execute (the venv's may live under root's 0700 home)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.path.exists(candidate):
            check = as_user(u, candidate, "-c", "import filelock, yaml, nixlib.cli")
            if subprocess.run(check, env=environ, capture_output=True, timeout=60).returncode == 0:
                return candidate
    pytest.fail(f"no Python {version} executable by an unprivileged user with {pythonpath()} found")


def named_user(name: str, base: Path) -> User:
    """The user `name` (created if missing, kept for the next test), with a fresh working directory under `base`."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-U", "-s", "/bin/sh", name], check=True, capture_output=True)
        pw = pwd.getpwnam(name)
    home = base / name
    home.mkdir(mode=0o755)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    return User(name, pw.pw_uid, pw.pw_gid, home)


@dataclass
class SharedStore:
    """A store made by root (`mkdir -m 1777`, as docs/trust.md sets one up) and users "a" and "b", each with a
    working directory of its own; `trusted` is NIX_WORKFLOW_TRUSTED_USERS for their runs ("": each trusts itself)."""

    store: Path
    python: str
    users: dict[str, User]
    trusted: str = ""

    def run(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        u = self.users[who]
        extra = {"NIX_WORKFLOW_TRUSTED_USERS": self.trusted} if self.trusted else None
        return subprocess.run(as_user(u, *args), cwd=u.home, env=env(self.store, u, extra), text=True,
                              capture_output=True, timeout=180)

    def nw(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(who, self.python, "-m", "nixlib.cli", *args)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def experiment(self, who: str, text: str) -> None:
        """Write exp.py (`from nixlib import output` + `text`) into the user's directory, owned by the user."""
        path = self.users[who].home / "exp.py"
        path.write_text("from nixlib import output\n" + text)
        os.chown(path, self.users[who].uid, self.users[who].gid)


@contextlib.contextmanager
def shared_store(tag: str, trusting: bool = False) -> Iterator[SharedStore]:
    """A fresh SharedStore in a temporary directory (removed afterwards), its users named nw<tag>a and nw<tag>b;
    `trusting`: each trusts the other's records."""
    require_root()
    base = Path(tempfile.mkdtemp(prefix=f"nw-{tag}-", dir="/tmp"))
    try:
        base.chmod(0o755)
        store = base / "store"
        store.mkdir()
        store.chmod(0o1777)
        users = {"a": named_user(f"nw{tag}a", base), "b": named_user(f"nw{tag}b", base)}
        trusted = ",".join(u.name for u in users.values()) if trusting else ""
        yield SharedStore(store, find_python(users["a"], env(store, users["a"])), users, trusted)
    finally:
        shutil.rmtree(base, ignore_errors=True)
