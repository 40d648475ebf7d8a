"""A remote that is a plain directory (a mounted share, an rsync target): `file:///mnt/cache`.

Uploads are written to `<dir>/tmp/` on the same filesystem, flushed, and published with link(2), which fails
if the name exists: first writer wins atomically on any POSIX filesystem with hard links (local disks, NFS).
Where links are not supported (some SMB/FUSE mounts) it falls back to check-then-rename, so two hosts
racing may both publish and the later one's file replaces the earlier (both are valid: objects are
content-addressed and records are signed), and a reader still never sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from nixlib import faults
from nixlib.remotes import NotAFile, Progress, RemoteDown, Stream, UnreadableKey, UnsafeDirectory

# No blocking open (a FIFO nobody writes), no controlling tty, and no symbolic link followed: a link planted under
# nar/, realisations/ or leases/ (to /dev/zero, a FIFO, another user's file) is refused as a symbolic link, never
# read through; what was opened is then checked with fstat (a FIFO, a device, a directory).
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
# The directories a push writes into: never followed if they are links (FileBackend.put).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The directories a read goes through: the same, without needing read permission on them (search is enough).
_LOOKUP_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _ident(st: os.stat_result) -> tuple[int, int, int, int]:
    """Which file this is (a Stream's ident): its inode, and its size and mtime, as an inode freed by one file is
    soon given to the next (a lease renamed aside, then the new lease written)."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _kind(mode: int) -> str:
    """What a non-regular file is, for the warning ("a FIFO")."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


class FileBackend:
    guarantee = ("first writer wins atomically (link(2) refuses an existing name); without hard-link support, "
                 "check-then-rename (a race may keep the later of two valid uploads)")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.root = Path(unquote(parts.path) if parts.scheme else url)

    def _path(self, key: str) -> Path:
        return self.root / key

    def _check_root(self) -> None:
        """RemoteDown saying why the remote's directory cannot be used, if it cannot: a symbolic link that loops
        or cannot be searched is no missing mount (and `mkdir -p`, advised for one, fails on a loop)."""
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise RemoteDown(f"{self.root} does not exist (not mounted? create it with mkdir -p {self.root})") from None
        except OSError as e:
            raise RemoteDown(f"{self.root} cannot be reached: {e.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise RemoteDown(f"{self.root} is not a directory")

    def get(self, key: str) -> Stream | None:
        """Open `key` for reading, refusing (NotAFile) anything but a regular file. It is opened relative to its
        directory's descriptor, each directory below the root opened without following links, and the file itself
        with O_NOFOLLOW: a symbolic link planted in the remote (to /dev/zero, a FIFO, a file elsewhere) is refused,
        as `put` refuses to write through one. The name is opened without blocking (a FIFO nobody writes would
        block open(2) for ever), and what was opened is checked with fstat, not lstat before the open (a swap
        between the two would win); the stream then gives at most the file's size at that moment (a file that
        keeps growing is never read without end). A file this user may not open, in a directory it may search, is
        UnreadableKey: that key's problem, not the remote's."""
        *parents, name = key.split("/")
        path = self._path(key)
        with contextlib.ExitStack() as fds:
            try:
                parent = self._subdir(fds, self._open_root(fds), parents, create=False, flags=_LOOKUP_FLAGS)
            except UnsafeDirectory as e:  # (nar/ itself a link: what it leads to is not the remote's)
                raise NotAFile(str(e)) from None
            if parent is None:
                return None
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                return None
            except OSError as e:
                self._refuse_special(parent, name)  # ELOOP: a symbolic link; ENXIO: a socket
                if e.errno in (errno.EACCES, errno.EPERM) and os.access(path.parent, os.X_OK):
                    raise UnreadableKey(e.strerror) from None  # this one file, in a directory we may search
                raise RemoteDown(f"cannot read {path}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotAFile(_kind(st.st_mode))
            os.set_blocking(fd, True)
            f = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        return Stream(f, st.st_size, str(path), bounded=True, ident=_ident(st))

    @staticmethod
    def _refuse_special(parent: int, name: str) -> None:
        """NotAFile if `name` in `parent` itself (not following it) is something other than a regular file (a
        symbolic link is named with where it leads); nothing if it is one or cannot be looked at (then the failure
        to open it is the remote's: a permission)."""
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        except OSError:
            return
        if stat.S_ISLNK(mode):
            with contextlib.suppress(OSError):
                raise NotAFile(f"a symbolic link (to {os.readlink(name, dir_fd=parent)[:200]})")
        if not stat.S_ISREG(mode):
            raise NotAFile(_kind(mode))

    def exists(self, key: str) -> bool:
        if os.path.lexists(self._path(key)):
            return True
        self._check_root()
        return False

    def put(self, path: str, key: str, replace: bool = False, progress: Progress | None = None) -> bool:
        """Write `key` from the local file `path`. Every file is created, linked and renamed relative to directory
        descriptors opened without following symbolic links (the remote's root is resolved once), so a `tmp/`,
        `nar/`, `realisations/` or `leases/` replaced by a link to the pusher's ~/.ssh or checkout is refused
        (UnsafeDirectory) instead of having files created and renamed there as the pushing user."""
        with contextlib.ExitStack() as fds:
            name, dest_fd, tmp_fd = self._write_dirs(fds, key)
            tmp = _scratch_name()
            try:
                self._write_tmp(path, tmp, tmp_fd, progress)
                return self._publish(tmp, tmp_fd, name, dest_fd, replace)
            except OSError as e:
                raise RemoteDown(f"cannot write {self._path(key)}: {e.strerror}") from None
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=tmp_fd)

    @staticmethod
    def _write_tmp(path: str, tmp: str, tmp_fd: int, progress: Progress | None) -> None:
        """Copy `path` to the new file `tmp` in `tmp_fd` (O_EXCL|O_NOFOLLOW: never an existing name or a link),
        flushed and read-only."""
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=tmp_fd)
        with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
                faults.point("remote-upload-partial")
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o444)

    def _open_root(self, fds: contextlib.ExitStack) -> int:
        """A descriptor of the remote's directory, resolved once (the root itself may be a link: a mount point's)."""
        self._check_root()
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise RemoteDown(f"{self.root} cannot be reached: {e.strerror}") from None
        fds.callback(os.close, fd)
        return fd

    def _subdir(self, fds: contextlib.ExitStack, root: int, parts: list[str], create: bool,
                flags: int = _DIR_FLAGS) -> int | None:
        """A descriptor of the directory `parts` under `root`, each step opened with O_NOFOLLOW|O_DIRECTORY (made
        first if `create`; None if it is missing and not `create`; `flags`: _LOOKUP_FLAGS for a read).
        UnsafeDirectory names a step that is a symbolic link or no directory; RemoteDown if it cannot be made or
        opened (a read-only share, no permission)."""
        doing = "write to" if flags == _DIR_FLAGS else "read"
        fd, done = root, []
        for part in parts:
            done.append(part)
            where = self.root.joinpath(*done)
            if create:
                try:
                    os.mkdir(part, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise RemoteDown(f"cannot write to {self.root}: cannot create {where}: {e.strerror}") from None
            try:
                fd = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if create:
                    raise RemoteDown(f"cannot write to {self.root}: {where} vanished as it was made") from None
                return None
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeDirectory(self._unsafe(fd, part, where, doing)) from None
                raise RemoteDown(f"cannot {doing} {self.root}: cannot open {where}: {e.strerror}") from None
            fds.callback(os.close, fd)
        return fd

    @staticmethod
    def _unsafe(parent: int, part: str, where: Path, doing: str = "write to") -> str:
        """Why `where` is refused, naming it and where a link leads."""
        try:
            target = os.readlink(part, dir_fd=parent)
        except OSError:
            return f"under {where}, which is not a directory" if doing == "read" else f"{where} is not a directory"
        if doing == "read":
            return f"under a symbolic link ({where} leads to {target})"
        return f"{where} is a symbolic link (to {target}), which a push would write through, outside the remote"

    def take_over(self, path: str, key: str, stale: tuple[Any, bytes]) -> bool:
        """Replace `key` with the local file `path` only if `key` is still the file `stale` (the Stream.ident of a
        lease found expired or garbled, and the bytes read from it; ident None: what was found is no regular file,
        a FIFO, directory or link planted or left under the name, which made that key unleasable for ever): of
        several hosts taking over one stale lease, one wins. The stale entry is renamed aside into tmp/ (atomic: it
        is gone from the name, or another taker moved it first; rename(2) moves a link or a directory itself, never
        what a link leads to); if what was moved is not it (another taker's new lease: another identity, or other
        bytes, each lease holding a random token; or a regular file where none was), it is put back, and this one
        loses. The new lease is then published with link(2), which refuses a name another taker published first."""
        with contextlib.ExitStack() as fds:
            name, dest_fd, tmp_fd = self._write_dirs(fds, key)
            aside = _scratch_name() + ".stale"
            try:
                try:
                    os.rename(name, aside, src_dir_fd=dest_fd, dst_dir_fd=tmp_fd)
                except FileNotFoundError:  # another taker moved it first: race it for the name
                    return self.put(path, key)
                if not self._is(tmp_fd, aside, *stale):  # another taker's fresh lease: give it back
                    with contextlib.suppress(FileExistsError):
                        os.link(aside, name, src_dir_fd=tmp_fd, dst_dir_fd=dest_fd, follow_symlinks=False)
                    return False
            except OSError as e:
                raise RemoteDown(f"cannot take over {self._path(key)}: {e.strerror}") from None
            finally:
                _discard(tmp_fd, aside)
        return self.put(path, key)

    def _write_dirs(self, fds: contextlib.ExitStack, key: str) -> tuple[str, int, int]:
        """(key's file name, its directory's descriptor, tmp/'s descriptor), each directory opened (made if
        missing) without following links, closed with `fds`."""
        *parents, name = key.split("/")
        root = self._open_root(fds)
        return name, self._subdir(fds, root, parents, create=True), self._subdir(fds, root, ["tmp"], create=True)

    @staticmethod
    def _is(dir_fd: int, name: str, ident: Any, data: bytes) -> bool:
        """Whether `name` in `dir_fd` is the file `ident` that held `data` (never following a link, never blocking);
        `ident` None: whether it is anything but a regular file (every lease is one)."""
        if ident is None:
            try:
                return not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except OSError:
                return False
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError:
            return False
        with os.fdopen(fd, "rb") as f:
            return _ident(os.fstat(fd)) == tuple(ident) and f.read(len(data) + 1) == data

    def delete(self, key: str) -> None:
        *parents, name = key.split("/")
        with contextlib.ExitStack() as fds:
            parent = self._subdir(fds, self._open_root(fds), parents, create=False)
            if parent is None:
                return
            try:
                os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RemoteDown(f"cannot remove {self._path(key)}: {e.strerror}") from None

    @staticmethod
    def _publish(tmp: str, tmp_fd: int, name: str, dest_fd: int, replace: bool) -> bool:
        """Make `tmp` visible as `name` (link(2): first writer wins; `replace`: rename over it). rename(2) and
        link(2) act on the name itself, never on where a link planted under it leads."""
        if replace:
            try:
                os.replace(tmp, name, src_dir_fd=tmp_fd, dst_dir_fd=dest_fd)
            except IsADirectoryError:  # (a directory planted under the name: one key's problem, not the remote's)
                raise NotAFile("a directory") from None
            return True
        try:
            os.link(tmp, name, src_dir_fd=tmp_fd, dst_dir_fd=dest_fd, follow_symlinks=False)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        try:  # no hard links here: check, then rename (see the module docstring)
            os.stat(name, dir_fd=dest_fd, follow_symlinks=False)
            return False
        except FileNotFoundError:
            pass
        os.rename(tmp, name, src_dir_fd=tmp_fd, dst_dir_fd=dest_fd)
        return True


def _discard(dir_fd: int, name: str) -> None:
    """Remove `name` (moved aside into tmp/) from `dir_fd` if it is still there: a file, FIFO, socket or link (only
    the link: unlink(2) never reaches what it leads to) is unlinked, an empty directory removed; a directory with
    something in it is left in tmp/ under its `….stale` name, for whoever planted it to look at (nothing under it is
    ever deleted, in case it leads outside the remote)."""
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)
        return
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=dir_fd)


def _scratch_name() -> str:
    """A name in tmp/ no other host or process picks."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"
