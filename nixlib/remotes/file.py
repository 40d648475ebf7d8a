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
import shutil
import socket
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from nixlib import faults
from nixlib.remotes import RemoteDown


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

    def get(self, key: str) -> BinaryIO | None:
        try:
            return open(self._path(key), "rb")  # noqa: SIM115 - the caller closes the stream
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

    def put(self, path: str, key: str, replace: bool = False) -> bool:
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
                shutil.copyfileobj(src, out, 1 << 20)
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
