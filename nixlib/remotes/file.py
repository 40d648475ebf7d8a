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
from pathlib import Path
from urllib.parse import unquote, urlsplit

from nixlib import faults
from nixlib.remotes import Progress, RemoteDown, Stream


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
        if not self.root.is_dir():
            raise RemoteDown(f"{self.root} is not a directory (not mounted? create it with mkdir -p {self.root})")

    def get(self, key: str) -> Stream | None:
        try:
            f = open(self._path(key), "rb")  # noqa: SIM115 - the caller closes the stream
            return Stream(f, os.fstat(f.fileno()).st_size, str(self._path(key)))
        except FileNotFoundError:
            self._check_root()
            return None
        except OSError as e:
            raise RemoteDown(f"cannot read {self._path(key)}: {e.strerror}") from None

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
            os.replace(tmp, dest)
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
