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
from urllib.parse import unquote, urlsplit

from nixlib import faults
from nixlib.remotes import NotAFile, Progress, RemoteDown, Stream

# No blocking open (a FIFO nobody writes), no controlling tty. Symbolic links are followed (a remote directory
# put together from links to files elsewhere is a fine one); what they lead to is checked with fstat, so a link to
# /dev/zero or to a FIFO is refused as what it leads to (and a loop as a symbolic link).
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


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
        """Open `key` for reading, refusing (NotAFile) anything but a regular file. The name is opened without
        blocking (a FIFO nobody writes would block open(2) for ever), and what was opened is checked with fstat,
        not lstat before the open (a swap between the two would win); the stream then gives at most the file's
        size at that moment (a file that keeps growing is never read without end)."""
        path = self._path(key)
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            self._check_root()
            return None
        except OSError as e:
            self._refuse_special(path)  # ELOOP: a symbolic link that loops; ENXIO: a socket
            self._check_root()  # (the remote's own directory: say so, not a key under it)
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
        return Stream(f, st.st_size, str(path), bounded=True)

    @staticmethod
    def _refuse_special(path: Path) -> None:
        """NotAFile if `path` itself (not following it) is something other than a regular file; nothing if it is
        one or cannot be looked at (then the failure to open it is the remote's: a permission, a loop above it)."""
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return
        if not stat.S_ISREG(mode):
            raise NotAFile(_kind(mode))

    def exists(self, key: str) -> bool:
        if os.path.lexists(self._path(key)):
            return True
        self._check_root()
        return False

    def put(self, path: str, key: str, replace: bool = False, progress: Progress | None = None) -> bool:
        self._check_root()
        dest = self._path(key)
        tmpdir = self.root / "tmp"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmpdir.mkdir(exist_ok=True)
        except OSError as e:
            raise RemoteDown(f"cannot write to {self.root}: {e.strerror}") from None
        tmp = tmpdir / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            with open(path, "rb") as src, open(tmp, "xb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
                    faults.point("remote-upload-partial")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)
            return self._publish(tmp, dest, replace)
        except OSError as e:
            raise RemoteDown(f"cannot write {dest}: {e.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise RemoteDown(f"cannot remove {self._path(key)}: {e.strerror}") from None

    def _publish(self, tmp: Path, dest: Path, replace: bool) -> bool:
        if replace:
            try:
                os.replace(tmp, dest)
            except IsADirectoryError:  # (a directory planted under the name: one key's problem, not the remote's)
                raise NotAFile("a directory") from None
            return True
        try:
            os.link(tmp, dest)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        if os.path.lexists(dest):  # no hard links here: check, then rename (see the module docstring)
            return False
        os.rename(tmp, dest)
        return True
