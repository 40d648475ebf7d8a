"""Who a run trusts: which writers' records it may serve.

A shared store's record directories are world-writable (1777, like /tmp), so a file's
content says nothing about who wrote it; its owner does (in a sticky directory nobody can
replace another user's file, and nobody but root can make a file owned by someone else).
A run trusts records owned by:

- the user running it, and root;
- users named in `<store root>/trusted-users`, honoured only if that file is a regular file
  owned by root (the administrator of a shared store) or by the running user, writable
  by nobody else, and with no other hard link;
- users named in NIX_WORKFLOW_TRUSTED_USERS (the running user's own choice).

Both lists hold user names or numeric uids, separated by whitespace or commas; `#` starts a
comment. Everything else is ignored (treated as absent, so the step re-runs). See docs/trust.md.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from collections.abc import Container
from pathlib import Path

ENV = "NIX_WORKFLOW_TRUSTED_USERS"
FILE = "trusted-users"
_warned: set[str] = set()


def trusted_uids(root: Path) -> frozenset[int]:
    """The uids whose records a run against the store at `root` trusts."""
    uids = {os.getuid(), 0}
    uids |= parse(os.environ.get(ENV, ""), ENV)
    text = _read_admin_file(Path(root) / FILE)
    if text is not None:
        uids |= parse(text, str(Path(root) / FILE))
    return frozenset(uids)


def parse(text: str, source: str) -> set[int]:
    """uids named in `text` (names or numbers); unknown names are warned about once and skipped."""
    uids: set[int] = set()
    for line in text.splitlines():
        for word in line.split("#", 1)[0].replace(",", " ").split():
            uid = _uid(word)
            if uid is None:
                _warn(f"warning: {source} names unknown user '{word}'; ignored")
            else:
                uids.add(uid)
    return uids


def _uid(word: str) -> int | None:
    if word.isdigit() and word.isascii():
        return int(word)
    try:
        return pwd.getpwnam(word).pw_uid
    except KeyError:
        return None


def _read_admin_file(path: Path) -> str | None:
    """The trusted-users file's text if root or the running user wrote it and nobody else can change it."""
    try:
        got = read_owned(path, (0, os.getuid()), 1 << 20, private=True)
    except NotTrusted:
        _warn(f"warning: ignoring {path}: it must be a regular file owned by root (or you), writable by "
              "nobody else, with no other hard link")
        return None
    return None if got is None else got[0].decode("utf-8", errors="replace")


class NotTrusted(Exception):
    """A file that exists but is not a regular file of a trusted owner (or is writable by others)."""


def read_owned(path: Path, owners: Container[int], limit: int, *, private: bool = False,
               tail: bool = False) -> tuple[bytes, os.stat_result] | None:
    """The first (with `tail`, the last) `limit` bytes of `path` and its stat, if it is a regular file owned by
    one of `owners` (and, with `private`, writable by nobody else and with no other name). A symlink is never
    followed and the checks are made on the opened file, so nothing can be swapped in between. None when it
    cannot be opened (absent, a symlink, unreadable); NotTrusted when it can but fails a check."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())
        # A second link: any file of root's, hard-linked here by anyone where fs.protected_hardlinks is off
        # (a log that names users word by word, say), would make its words trusted users.
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in owners or (
                private and (st.st_mode & 0o022 or st.st_nlink != 1)):
            raise NotTrusted(str(path))
        if tail:
            f.seek(max(0, st.st_size - limit))
        return f.read(limit), st


def user_name(uid: int) -> str:
    """A user's name for messages (the uid if it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _warn(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)
