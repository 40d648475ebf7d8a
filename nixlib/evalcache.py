"""The Nix evaluation cache: an unchanged env or experiment.nix is never evaluated twice.

An entry is keyed by what was asked (the spec, which Nix evaluates) and is valid while
every local file the evaluation read still has the content it had: the files come from
the evaluation itself (nixlib.nix traces imports and reads, Nix logs copied sources), and
their content is checked through the store's stat memo, so a hit costs a few `lstat`s and
no Nix process; environment variables it read (`builtins.getEnv`) are checked by value, and the path
literals of its local Nix files (when package-set code ran, which reads files untraced) by stat. Store
paths need no check: they are content-addressed. Entries live in the running user's private
cache (`<store root>/cache/<uid>/nix-eval/`, see statmemo.user_cache_dir) as one JSON file
each, written atomically; an unreadable entry, or one not owned by the running user, is a
miss, never an error (a planted entry once made a victim's step run another user's tool).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nixlib.nix import ENV_DEP, LITERAL_DEP, VOLATILE_DEP
from nixlib.recipe import canonical_json, digest
from nixlib.statmemo import StatMemo, now_ns, user_cache_dir

VERSION = 1
ABSENT = "-"
_CHANGING = "changing:"  # (a random suffix: a value no later check matches)
_LITERAL_ENTRIES = 100_000  # a path literal naming a larger tree is evaluated again on every run


class EvalCache:
    """Evaluation results by request, validated against the content of the files they read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = user_cache_dir(root, "nix-eval")
        self.memo = StatMemo.for_store(root)

    def _path(self, request: Any) -> Path:
        return self.directory / f"{digest({'v': VERSION, 'request': request})}.json"

    def get(self, request: Any, still_valid: Callable[[Any], bool] = lambda _: True) -> Any | None:
        """The cached value for `request`, if every file it depended on is unchanged."""
        try:
            fd = os.open(self._path(request), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            with open(fd, "rb") as f:
                if os.fstat(f.fileno()).st_uid != os.getuid():
                    return None  # planted by another user: never believed
                entry = json.loads(f.read())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("deps", {}), dict):
            return None
        if entry.get("request") != json.loads(canonical_json(request)):
            return None
        deps: dict[str, str] = entry.get("deps", {})
        if any(self.content(p) != h for p, h in deps.items()):
            return None
        value = entry.get("value")
        return value if still_valid(value) else None

    def put(self, request: Any, value: Any, deps: Iterable[str]) -> None:
        """Remember `value`; an unwritable cache only costs speed."""
        entry = {"request": request, "value": value, "deps": {p: self.content(p) for p in deps}}
        path = self._path(request)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(canonical_json(entry))
            os.replace(tmp, path)
        except OSError:
            pass

    def content(self, path: str) -> str:
        """NAR hash of a local file or tree (through the stat memo), or ABSENT; for a `$NAME` dep (a
        `builtins.getEnv` the evaluation made), the variable's value, so changing it re-evaluates; for a `!WHAT`
        dep (it read the clock), a value no later check matches."""
        if path.startswith(VOLATILE_DEP):
            return _CHANGING + os.urandom(8).hex()
        if path.startswith(ENV_DEP):
            value = os.environ.get(path[len(ENV_DEP):])
            return ABSENT if value is None else "=" + digest(value)  # (by digest: a token stays out of the cache)
        if path.startswith(LITERAL_DEP):
            return self.stat(path[len(LITERAL_DEP):])
        if not os.path.lexists(path):
            return ABSENT
        try:
            return self.memo.hash(path)
        except OSError:
            return ABSENT

    def stat(self, path: str) -> str:
        """A path literal's signature (an `@PATH` dep, nixlib.nix._parse_log): the names, types, sizes, times
        and inodes of the tree, or ABSENT. By stat, not by content: a literal may name a large data directory
        Nix never reads (`toString ./data`), and hashing it on every run would cost more than evaluating. The
        out-link directories and the store nw writes into are left out (every run changes them), and so are
        directories' own times. A tree changed in the last seconds, or too large to list, gives a value no
        later check matches (so the experiment is evaluated again: never a stale evaluation)."""
        records: list[str] = []
        newest = 0
        skip = os.path.realpath(self.root)

        def record(rel: str, st: os.stat_result, entry: str) -> None:
            nonlocal newest
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
            target = os.readlink(entry) if stat.S_ISLNK(st.st_mode) else ""
            records.append(f"{rel}\0{stat.S_IFMT(st.st_mode)} {st.st_mode & 0o111} {st.st_size} {st.st_mtime_ns} "
                           f"{st.st_ino} {st.st_dev}\0{target}")

        try:
            top = os.lstat(path)
            if not stat.S_ISDIR(top.st_mode):
                record("", top, path)
            todo = [(path, "")] if stat.S_ISDIR(top.st_mode) else []
            while todo:
                directory, rel = todo.pop()
                if os.path.realpath(directory) == skip or os.path.lexists(os.path.join(directory, ".nw-last-run.json")):
                    records.append(f"{rel}\0skipped")
                    continue
                records.append(f"{rel}\0d")
                with os.scandir(directory) as entries:
                    for entry in sorted(entries, key=lambda e: e.name):
                        st = entry.stat(follow_symlinks=False)
                        if stat.S_ISDIR(st.st_mode):
                            todo.append((entry.path, f"{rel}/{entry.name}"))
                        else:
                            record(f"{rel}/{entry.name}", st, entry.path)
                if len(records) > _LITERAL_ENTRIES:
                    return _CHANGING + os.urandom(8).hex()
        except FileNotFoundError:
            return ABSENT if not records else _CHANGING + os.urandom(8).hex()  # (removed while we looked)
        except OSError as e:
            return f"unreadable:{e.errno}"
        if newest >= now_ns() - StatMemo.racy_ns:
            return _CHANGING + os.urandom(8).hex()
        return "stat:" + digest("\n".join(records))
