"""Walks over file trees that work at any depth and any path length.

A step may leave a tree thousands of levels deep, whose paths are far longer than PATH_MAX
(4096 bytes): recursive walks die with RecursionError and path-based calls with
ENAMETOOLONG, half-way through, leaving scratch behind. So every walk here is a loop over
an explicit stack, and every call is relative to an open directory descriptor (`openat`,
`fstatat`, `unlinkat`, ...), so no path longer than one name is ever passed to the kernel.

Only the deepest `_KEEP_OPEN` directories of the chain stay open (a 10,000-deep tree must
not exhaust the descriptor limit); a closed one is reopened through ".." on the way back up
and checked to be the very directory that was left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path

from nixlib import boot, faults, pids
from nixlib.errors import NixWorkflowError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # never follow, never block on a FIFO
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC  # the entry itself, even a symlink; needs no permission on it
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_KEEP_OPEN = 64
_FICLONE = 0x40049409
_COPY_CHUNK = 1 << 20
STAGE_PREFIX = ".stage-"
"""Names in store/ starting with this are objects being published (see `stage_name`), never objects."""


class UnstorableFile(NixWorkflowError, ValueError):
    """A tree holds a FIFO, socket or device: a NAR (and so a store object) cannot hold one."""

    def __init__(self, path: str | bytes | os.PathLike, mode: int, rel: str = "", action: str = "store",
                 label: str | None = None) -> None:
        self.path, self.mode, self.rel, self.action = os.fsdecode(path), mode, rel, action
        what, subject = (self.path, "it") if label is None else (label, rel or "it")
        super().__init__(f"cannot {action} {what}: {subject} {self._why(label is not None)}")

    def _why(self, labelled: bool) -> str:
        advice = " Remove it, or replace it with a regular file, before the step ends." if labelled else ""
        return (f"is {kind_of(self.mode)}, which is not a regular file, directory or symlink, the only kinds of "
                f"file a NAR (and so a store object, like a Nix store path) holds.{advice}")

    def within(self, label: str) -> UnstorableFile:
        """The same error told about `label` (e.g. "output 'out' of step 'fit'"), the path relative to it."""
        return type(self)(self.path, self.mode, self.rel, "store", label)

    def doing(self, action: str) -> UnstorableFile:
        """The same error for another action (e.g. "hash")."""
        return type(self)(self.path, self.mode, self.rel, action)


class UnreadableFile(UnstorableFile):
    """A tree to be copied into the store holds a file or directory its user cannot read (mode 000, say)."""

    def _why(self, labelled: bool) -> str:
        return (f"cannot be read by uid {os.geteuid()} (permission denied), so its bytes cannot be stored. Make it "
                "readable (chmod u+r, or a+rX for a tree) and run again.")


def kind_of(mode: int) -> str:
    """A file type in words, for error messages."""
    for test, words in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "a file of unknown type"


def unstorable(root: str | bytes | os.PathLike, names: list, mode: int, action: str = "store") -> UnstorableFile:
    """The error for a special file at `names` (a list of path components) below `root`."""
    rel = os.path.join(*map(os.fsdecode, names)) if names else ""
    return UnstorableFile(os.path.join(os.fsdecode(root), rel) if rel else root, mode, rel, action)


def unreadable(root: str | bytes | os.PathLike, names: list, action: str = "store") -> UnreadableFile:
    """The error for an unreadable file or directory at `names` (a list of path components) below `root`."""
    rel = os.path.join(*map(os.fsdecode, names)) if names else ""
    return UnreadableFile(os.path.join(os.fsdecode(root), rel) if rel else root, 0, rel, action)


class DirChain:
    """The open directories from a tree's root down to the one being walked (see the module docstring)."""

    def __init__(self, root: str | bytes | os.PathLike, fd: int | None = None) -> None:
        self.fds = [os.open(root, _DIR_FLAGS) if fd is None else fd]
        self.ids: list[tuple[int, int] | None] = [None]
        self.closed = 0  # fds[:closed] are closed; ids[i] says which directory fds[i] was

    @property
    def fd(self) -> int:
        return self.fds[-1]

    def __len__(self) -> int:
        return len(self.fds)

    def push(self, name: str | bytes) -> int:
        """Open subdirectory `name` of the current directory (never through a symlink) and enter it."""
        return self.enter(os.open(name, _DIR_FLAGS, dir_fd=self.fds[-1]))

    def enter(self, fd: int) -> int:
        """Enter a subdirectory of the current directory already opened as `fd` (the chain owns it now)."""
        self.fds.append(fd)
        self.ids.append(None)
        if len(self.fds) - self.closed > _KEEP_OPEN:
            i = self.closed
            st = os.fstat(self.fds[i])
            self.ids[i] = (st.st_dev, st.st_ino)
            os.close(self.fds[i])
            self.fds[i] = -1
            self.closed += 1
        return self.fds[-1]

    def pop(self) -> int:
        """Leave the current directory; returns the descriptor of its parent, reopened if it was closed."""
        child = self.fds.pop()
        self.ids.pop()
        try:
            if self.fds[-1] < 0:
                fd = os.open("..", _DIR_FLAGS, dir_fd=child)
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != self.ids[-1]:
                    os.close(fd)
                    raise OSError(errno.ESTALE, "a directory was moved while its tree was being walked")
                self.fds[-1] = fd
                self.closed -= 1
        finally:
            os.close(child)
        return self.fds[-1]

    def close(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fds = [-1]

    def __enter__(self) -> DirChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_first = itemgetter(0)
_encode = str.encode
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # what os.fsencode uses


def sorted_entries(fd: int) -> list[tuple[bytes, os.DirEntry[str]]]:
    """Entries of an open directory with their names as bytes, sorted bytewise (the order of a NAR; names
    read through a descriptor come as str, whose order differs for undecodable bytes)."""
    with os.scandir(fd) as it:
        entries = list(it)
    names = [_encode(e.name, _FS_ENCODING, _FS_ERRORS) for e in entries]
    return sorted(zip(names, entries, strict=True), key=_first)


def _names(fd: int) -> tuple[list[str], list[str]]:
    """(subdirectories, everything else) of an open directory, read fully before anything is changed."""
    dirs: list[str] = []
    others: list[str] = []
    with os.scandir(fd) as it:
        for e in it:
            (dirs if e.is_dir(follow_symlinks=False) else others).append(e.name)
    return dirs, others


# ---- removal ------------------------------------------------------------------------------


def _open_unlocked(name: str | os.PathLike, fd: int | None = None) -> int | None:
    """Open directory `name` (relative to `fd`, if given) for emptying, made listable and writable first if it was
    sealed read-only; None if `name` is not a directory (then it is unlinked like a file).

    Never through a symlink, and the chmod and the open reach the very inode looked at: both go through one O_PATH
    descriptor (which needs no permission on the directory itself), never through the name again. Whoever can
    rename entries beside `name` (the user who planted another user's dead tmp/ entry) could otherwise swap the
    directory for a symlink between a check and a chmod by name, and the remover (root, or the victim running
    `nw gc`) would make a file of its own choosing writable: a sealed store object, say."""
    pfd = os.open(name, _PATH_FLAGS, dir_fd=fd)
    try:
        st = os.fstat(pfd)
        if not stat.S_ISDIR(st.st_mode):
            return None
        if (st.st_mode & stat.S_IRWXU) != stat.S_IRWXU:
            faults.point("remove-unlock")
            try:
                os.chmod(f"/proc/self/fd/{pfd}", 0o700)  # the inode held open, not a path
            except PermissionError:
                pass  # not ours: removing may still work (root, or it was writable anyway)
        return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(pfd)


def remove(path: str | os.PathLike) -> None:
    """Remove a file or tree, even a sealed read-only one, at any depth; a missing path is not an error.
    Nothing is ever followed through a symlink, even one swapped in for a directory while it is removed
    (`_open_unlocked`): what is removed, and made writable to be removed, is only ever inside the tree."""
    try:
        top = _open_unlocked(path)
    except FileNotFoundError:
        return
    if top is None:
        os.unlink(path)
        return
    with DirChain(path, top) as chain:
        dirs, others = _names(chain.fd)
        todo: list[list[str]] = [dirs]
        names: list[str] = []  # name of each entered directory below the root
        for name in others:
            os.unlink(name, dir_fd=chain.fd)
        while todo:
            if todo[-1]:
                name = todo[-1].pop()
                sub = _open_unlocked(name, chain.fd)
                if sub is None:  # replaced by a file or symlink since it was listed
                    os.unlink(name, dir_fd=chain.fd)
                    continue
                chain.enter(sub)
                names.append(name)
                dirs, others = _names(chain.fd)
                for other in others:
                    os.unlink(other, dir_fd=chain.fd)
                todo.append(dirs)
                continue
            todo.pop()
            if names:
                parent = chain.pop()
                os.rmdir(names.pop(), dir_fd=parent)
    os.rmdir(path)


@contextlib.contextmanager
def beneath(top: str | os.PathLike, path: str | os.PathLike) -> Iterator[str]:
    """`path`, a path below directory `top`, as a path whose directories below `top` are not looked up again by
    name: each is opened in turn, never through a symlink (OSError if one is), and the path given names the
    last component in the last of them (`/proc/self/fd/N/NAME`). For removing entries of directories other users
    can rename or replace (a store's origins/<object>/): a symlink swapped in for one of them must not send a
    removal into a directory of that user's choosing, such as the remover's home."""
    rel = Path(path).relative_to(top).parts
    if not rel:
        raise ValueError(f"{path} is not below {top}")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        yield f"/proc/self/fd/{fd}/{rel[-1]}"
    finally:
        os.close(fd)


# ---- sealing ------------------------------------------------------------------------------


def _seal_file(name: str, fd: int | None, links: int = 1) -> None:
    """Read-only (keeping the owner-execute bit, the only one a NAR keeps), an inode of its own, and flushed to
    disk only where the memos cannot tell boots apart.

    An inode of its own: a step may hard-link a file from outside its output into it (`ln data.csv $out`, `cp
    -l`). Published as it is, that inode would be shared with a name outside the store: sealing it would make the
    user's own file read-only, and any later write through that name would change the object under its name.
    So a file with more than one link is replaced by a private copy (a reflink where the filesystem can) first,
    unless the caller made the other links itself and wants them kept (`links`: how many a file may have, e.g. 2
    for Snakemake's hardlink mode, whose working-directory output is meant to be the read-only store object).
    A file the step left unreadable (`chmod 000`) is made readable, as Nix canonicalises a build's output.

    Lookups do not re-hash an object whose stat signature (size, mtime, ctime, inode, ...) matches its stat-memo
    entry or its verified hit, both written right after the object is published. An OS crash can keep the
    object's inode (same size and times) but lose data not yet written back (ext4 data=writeback); a memo entry
    from before the crash would then vouch for bytes that are not the object's. The memos believe only entries
    of the running boot (nixlib.boot), so after a crash every object is re-hashed once (a corrupt one is
    quarantined) and no fsync is needed, as in Nix; where no boot id can be read, each file is fsynced before
    any memo may vouch for it. (Records never need one: a record lost or truncated by a crash reads as absent
    or invalid, and the step runs again. A kill -9 needs none: the page cache survives it.)"""
    if fd is None:  # a file object: work beside it, in its directory
        parent, base = os.path.split(name)
        dfd = os.open(parent or ".", _DIR_FLAGS)
        try:
            _seal_file(base, dfd, links)
        finally:
            os.close(dfd)
        return
    ffd = _open_own_file(name, fd)
    try:
        st = os.fstat(ffd)
        if st.st_nlink > links:
            private = _unshare(name, fd, ffd, st)
            os.close(ffd)
            ffd = private
        _strip_xattrs(ffd)
        os.fchmod(ffd, 0o555 if st.st_mode & stat.S_IXUSR else 0o444)
        if boot.boot_id() is None:
            os.fsync(ffd)
    finally:
        os.close(ffd)


_KEPT_XATTRS = frozenset({"security.selinux", "security.csm", "system.nfs4_acl"})  # Nix's default ignored-acls


def _strip_xattrs(fd: int) -> None:
    """Remove the extended attributes of an open file or directory, as Nix does for a build's output: a NAR holds
    none, so an object must not either. Among them are file capabilities (`setcap`: privileges for whoever runs
    the file, like a setuid bit) and ACLs, which an identical object of another step would carry into its results
    (objects are shared by content), and which no one who trusts the object's name expects. Those the filesystem
    sets itself (SELinux labels, NFSv4 ACLs) are left, as Nix leaves them."""
    try:
        names = os.listxattr(fd)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENOSYS):
            return  # a filesystem without extended attributes
        raise
    for name in names:
        if name not in _KEPT_XATTRS:
            try:
                os.removexattr(fd, name)
            except OSError as e:  # one a security module keeps (IMA, EVM): no privilege for whoever runs the file
                if name == "security.capability" or e.errno not in (errno.EPERM, errno.EACCES, errno.ENOTSUP):
                    raise


def _open_own_file(name: str, fd: int) -> int:
    """Open file `name` of a staged object for reading; one of ours the step left unreadable is made readable
    first (only the owner-execute bit of its mode is kept anyway)."""
    try:
        return os.open(name, _READ_FLAGS, dir_fd=fd)
    except PermissionError:
        pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            st = os.fstat(pfd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise
            os.chmod(f"/proc/self/fd/{pfd}", (st.st_mode & 0o100) | 0o400)  # the inode held open, not a path
        finally:
            os.close(pfd)
        return os.open(name, _READ_FLAGS, dir_fd=fd)


def _unshare(name: str, fd: int, ffd: int, st: os.stat_result) -> int:
    """Replace hard-linked file `name` (open as `ffd`) by a copy with an inode of its own; returns a descriptor of
    the copy. Its directory is writable: seal opens each directory before sealing its files."""
    tmp = f".nw-unshare-{secrets.token_hex(6)}"
    out = os.open(tmp, _WRITE_FLAGS, 0o600, dir_fd=fd)
    try:
        _copy_fd(ffd, out, "auto", name)
        os.fchmod(out, 0o700 if st.st_mode & stat.S_IXUSR else 0o600)
        os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        os.close(out)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=fd)
        raise
    return out


def seal(path: str | os.PathLike, links: int = 1) -> None:
    """Make a staged file or tree read-only (and, where boots cannot be told apart, flush its bytes:
    _seal_file), so that publishing it never exposes a writable object. The top directory is left
    writable: the caller seals it where no object name can see it yet. Raises UnstorableFile for a FIFO,
    socket or device anywhere in it. `links`: see _seal_file."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISREG(st.st_mode):
        _seal_file(os.fspath(path), None, links)  # type: ignore[arg-type]
        return
    if not stat.S_ISDIR(st.st_mode):
        raise unstorable(path, [], st.st_mode)
    if (st.st_mode & 0o700) != 0o700:
        os.chmod(path, 0o755)  # the top is sealed by the caller after it is moved, which needs u+w
    with DirChain(path) as chain:
        todo = [_seal_entries(chain.fd, path, [], links)]
        names: list[str] = []
        while todo:
            if not todo[-1]:
                todo.pop()
                if names:
                    names.pop()
                    chain.pop()
                continue
            name = todo[-1].pop()
            os.chmod(name, 0o700, dir_fd=chain.fd)  # before entering: it may not even be readable yet, and a
            chain.push(name)                        # hard-linked file in it is replaced (_seal_file)
            names.append(name)
            todo.append(_seal_entries(chain.fd, path, names, links))
            os.fchmod(chain.fd, 0o555)  # its files are sealed; its subdirectories are entered next


def _seal_entries(fd: int, root: str | os.PathLike, names: list[str], links: int = 1) -> list[str]:
    """Seal the files of one directory; return its subdirectories (to be sealed next)."""
    _strip_xattrs(fd)
    dirs: list[str] = []
    with os.scandir(fd) as it:
        entries = list(it)
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            dirs.append(e.name)
        elif e.is_file(follow_symlinks=False):
            _seal_file(e.name, fd, links)
        elif not e.is_symlink():
            raise unstorable(root, [*names, e.name], e.stat(follow_symlinks=False).st_mode)
    return dirs


# ---- copying ------------------------------------------------------------------------------


def can_reflink(src_dir: str | os.PathLike, dst_dir: str | os.PathLike) -> bool:
    """Whether a file of directory `src_dir` can be reflinked into directory `dst_dir` (one filesystem that
    shares blocks): link mode reflink works there. Tried with two scratch files, removed again."""
    src_fd, src = tempfile.mkstemp(prefix=".nw-reflink-", dir=src_dir)
    try:
        os.write(src_fd, b"x")
        dst_fd, dst = tempfile.mkstemp(prefix=".nw-reflink-", dir=dst_dir)
        try:
            fcntl.ioctl(dst_fd, _FICLONE, src_fd)
            return True
        except OSError:
            return False
        finally:
            os.close(dst_fd)
            os.unlink(dst)
    finally:
        os.close(src_fd)
        os.unlink(src)


def _copy_fd(src: int, dst: int, link: str, what: str) -> None:
    """Contents of one open file into another: a reflink where possible (or demanded), else a copy."""
    if link in ("auto", "reflink"):
        try:
            fcntl.ioctl(dst, _FICLONE, src)
            return
        except OSError:
            if link == "reflink":
                raise NixWorkflowError(
                    f"cannot reflink {what}: the filesystem does not support it (link mode auto copies instead)"
                ) from None
    try:
        while os.copy_file_range(src, dst, _COPY_CHUNK):
            pass
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
            raise
    while data := os.read(src, _COPY_CHUNK):
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view):]


def _file_mode(mode: int, writable: bool) -> int:
    exe = mode & stat.S_IXUSR
    return (0o755 if exe else 0o644) if writable else (0o555 if exe else 0o444)


def _copy_file(name: str, sfd: int | None, dfd: int | None, dst_name: str, writable: bool, link: str) -> None:
    if link == "hardlink":
        os.link(name, dst_name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        return
    try:
        s = os.open(name, _READ_FLAGS, dir_fd=sfd)
    except PermissionError:
        raise unreadable(name, [], "copy") from None
    try:
        mode = os.fstat(s).st_mode
        if not stat.S_ISREG(mode):
            raise unstorable(name, [], mode, "copy")
        d = os.open(dst_name, _WRITE_FLAGS, 0o600, dir_fd=dfd)
        try:
            _copy_fd(s, d, link, name)
            os.fchmod(d, _file_mode(mode, writable))
        finally:
            os.close(d)
    finally:
        os.close(s)


def place(src: str | os.PathLike, dest: str | os.PathLike, link: str = "auto") -> None:
    """Put a writable copy of `src` at `dest`, replaced atomically: made under a temporary name beside `dest`,
    then renamed over it (a directory in the way is renamed aside first, then removed). `link` as for `copy`,
    or "symlink" for a link to `src`. Whatever happens to `dest` later never reaches `src` (a store object),
    except in hardlink and symlink modes, which share it. Both temporary names say which process of which host
    made them, so what a process killed meanwhile (SIGKILL, SIGTERM: no `finally`) left is settled by the next
    place in that directory (_settle_dead_places), never left beside the user's files for good."""
    dest = os.fspath(dest)
    parent, name = os.path.split(dest)
    os.makedirs(parent or ".", exist_ok=True)
    _settle_dead_places(parent or ".")
    tmp = os.path.join(parent, f".nw-tmp-{name}.{secrets.token_hex(4)}.{owner()}")
    try:
        if link == "symlink":
            os.symlink(src, tmp)
        else:
            copy(src, tmp, writable=True, link=link)
        faults.point("place-staged")
        if os.path.isdir(dest) and not os.path.islink(dest):
            _replace_aside(tmp, dest, parent, name)
        else:
            try:
                os.replace(tmp, dest)
            except NotADirectoryError:  # a directory over a file or symlink (an output restored as a link before)
                _replace_aside(tmp, dest, parent, name)
            if link == "hardlink" and os.path.lexists(tmp):  # `dest` was already a link to `src`: rename(2) of
                os.unlink(tmp)                                # one hard link over another of the same file is a no-op
    except BaseException:
        remove(tmp)
        raise


def _replace_aside(tmp: str, dest: str, parent: str, name: str) -> None:
    """Replace `dest` by `tmp` where rename(2) cannot (a directory in the way, or a directory over a non-directory):
    `dest` is renamed aside first, then removed."""
    trash = os.path.join(parent, f".nw-old-{name}.{secrets.token_hex(4)}.{owner()}")
    os.rename(dest, trash)
    try:
        faults.point("place-aside")
        os.rename(tmp, dest)
    except BaseException:  # (Ctrl-C, or a failed rename: what was there goes back)
        with contextlib.suppress(OSError):
            os.rename(trash, dest)
        raise
    remove(trash)


def owner() -> str:
    """`<pid>@<host>`: the process that made a temporary name beside a user's files (place, the Luigi adapter's
    asides), so that what it left when killed is settled by the next process there (owner_alive)."""
    return f"{os.getpid()}@{socket.gethostname()}"


def owner_alive(pid: str, host: str) -> bool:
    """False only for an `owner()` that is a process of this host no longer running (another host's processes
    cannot be checked from here: theirs count as alive)."""
    return host != socket.gethostname() or (pid.isdigit() and pids.running(int(pid)))


_PLACED = re.compile(r"\.nw-(tmp|old)-.+\.[0-9a-f]{8}\.(\d+)@(.+)")
_SETTLED: set[tuple[int, str]] = set()  # (pid, directory) this process has settled: one listing each


def _settle_dead_places(parent: str) -> None:
    """Remove what `place` calls of dead processes of this host left in `parent`: a copy not yet renamed into
    place (the store keeps the object), or what was at a destination and had been renamed aside to be replaced
    (what an uninterrupted `place` removes: a killed one may leave the destination missing, which the next run
    restores). Never put back: a job of the next run may be writing at that destination. Names of live processes
    and of other hosts are left alone. Once per directory and process."""
    settled = (os.getpid(), parent)
    if settled in _SETTLED:
        return
    _SETTLED.add(settled)
    with contextlib.suppress(OSError):
        for entry in os.listdir(parent):
            found = _PLACED.fullmatch(entry)
            if found and not owner_alive(found.group(2), found.group(3)):
                with contextlib.suppress(OSError):
                    remove(os.path.join(parent, entry))


def copy(src: str | os.PathLike, dst: str | os.PathLike, writable: bool, link: str = "auto") -> None:
    """Copy a file, symlink or tree keeping only what a NAR keeps (contents, exec bit, symlink targets).
    `dst` must not exist. `link` is auto (reflink, else copy), reflink, copy or hardlink (files only)."""
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        return
    if stat.S_ISREG(st.st_mode):
        _copy_file(os.fspath(src), None, None, os.fspath(dst), writable, link)  # type: ignore[arg-type]
        return
    if not stat.S_ISDIR(st.st_mode):
        raise unstorable(src, [], st.st_mode, "copy")
    dir_mode = 0o755 if writable else 0o555
    try:
        source = DirChain(src)
    except PermissionError:
        raise unreadable(src, [], "copy") from None
    os.mkdir(dst, 0o700)
    with source as s, DirChain(dst) as d:
        todo = [_copy_entries(s.fd, d.fd, src, [], writable, link)]
        names: list[str] = []
        while todo:
            if todo[-1]:
                name = todo[-1].pop()
                os.mkdir(name, 0o700, dir_fd=d.fd)
                try:
                    s.push(name)
                except PermissionError:
                    raise unreadable(src, [*names, name], "copy") from None
                d.push(name)
                names.append(name)
                todo.append(_copy_entries(s.fd, d.fd, src, names, writable, link))
                continue
            todo.pop()
            os.fchmod(d.fd, dir_mode)
            if names:
                names.pop()
                s.pop()
                d.pop()


def _copy_entries(sfd: int, dfd: int, root: str | os.PathLike, names: list[str], writable: bool,
                  link: str) -> list[str]:
    """Copy the files and symlinks of one directory; return its subdirectories (to be copied next)."""
    with os.scandir(sfd) as it:
        entries = list(it)
    dirs: list[str] = []
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            dirs.append(e.name)
        elif e.is_symlink():
            os.symlink(os.readlink(e.name, dir_fd=sfd), e.name, dir_fd=dfd)
        elif e.is_file(follow_symlinks=False):
            try:
                _copy_file(e.name, sfd, dfd, e.name, writable, link)
            except UnreadableFile:
                raise unreadable(root, [*names, e.name], "copy") from None
        else:
            raise unstorable(root, [*names, e.name], e.stat(follow_symlinks=False).st_mode, "copy")
    return dirs


# ---- listing ------------------------------------------------------------------------------


def file_paths(root: Path) -> list[Path]:
    """Every path inside `root` (itself included), parents before children; iterative, so any depth.
    Paths longer than PATH_MAX are listed but cannot be opened by path: prefer the walks above."""
    out = [root]
    if not root.is_dir() or root.is_symlink():
        return out
    with DirChain(root) as chain:
        todo: list[list[str]] = [sorted(os.listdir(chain.fd), reverse=True)]
        here = [root]
        while todo:
            if not todo[-1]:
                todo.pop()
                here.pop()
                if todo:
                    chain.pop()
                continue
            name = todo[-1].pop()
            path = here[-1] / name
            out.append(path)
            if stat.S_ISDIR(os.stat(name, dir_fd=chain.fd, follow_symlinks=False).st_mode):
                chain.push(name)
                here.append(path)
                todo.append(sorted(os.listdir(chain.fd), reverse=True))
    return out


def stat_tree(root: str | os.PathLike) -> Iterator[tuple[Path, os.stat_result]]:
    """(path, lstat) of `root` and everything in it, parents first, at any depth: the stat calls are
    relative to directory descriptors, so a path longer than PATH_MAX is reported, not an error."""
    root = Path(root)
    st = os.lstat(root)
    yield root, st
    if not stat.S_ISDIR(st.st_mode):
        return
    with DirChain(root) as chain:
        todo: list[list[str]] = [[]]
        here = [root]
        while True:
            fd = chain.fd
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
            for e in entries:
                est = e.stat(follow_symlinks=False)
                yield here[-1] / e.name, est
                if stat.S_ISDIR(est.st_mode):
                    todo[-1].append(e.name)
            while len(todo) > 1 and not todo[-1]:
                todo.pop()
                here.pop()
                chain.pop()
            if not todo[-1]:
                return
            name = todo[-1].pop()
            chain.push(name)
            here.append(here[-1] / name)
            todo.append([])


# ---- staged objects in store/ -------------------------------------------------------------


def stage_name() -> str:
    """A hidden name in store/ for an object about to be published: never an object name (those are 52
    base32 characters), and naming this host and process so that leftovers of a dead one are found."""
    return f"{STAGE_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"




def stage_in_use(name: str) -> bool:
    """True for a staging name (`stage_name`) a live process may still be filling or removing: one of this host's
    processes that still runs, or any other host's (whose processes cannot be checked from here)."""
    if not name.startswith(STAGE_PREFIX):
        return False
    rest, here = name[len(STAGE_PREFIX):], f"{socket.gethostname()}-"
    if not rest.startswith(here):
        return True
    pid = rest[len(here):].split("-")[0]
    return pid.isdigit() and pids.running(int(pid))


def dead_stage_leftovers(store_root: str | os.PathLike) -> Iterator[Path]:
    """Staged objects in `store_root`/store left by processes of this host that no longer exist (a kill
    between staging and publishing); remove them with `force_remove`. Another host's are left alone."""
    prefix = f"{STAGE_PREFIX}{socket.gethostname()}-"
    directory = Path(store_root) / "store"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(prefix):
            pid = name[len(prefix):].split("-")[0]
            if pid.isdigit() and not pids.running(int(pid)):
                yield directory / name
