"""The identity of the running boot: the memos believe only what was written since it.

The stat memo and the verified-hit memo vouch for bytes by stat signature (size, times, inode...)
instead of re-reading them. After an OS crash a file can keep its inode and times but lose data the
kernel had not written back (ext4 data=writeback, for one). A memo entry written before the crash
would then vouch for bytes that are gone. Two ways out: flush every stored file to disk before a memo
may vouch for it (an fsync per output file, a journal commit each), or distrust every entry written
before the last boot and re-hash once. Linux names each boot (`/proc/sys/kernel/random/boot_id`, a
random UUID made at boot), so the memos record it and the store flushes nothing; where no boot id
can be read, the store keeps the fsync (nixlib.trees) and the memos cannot tell boots apart.

A kill -9 needs neither: the page cache outlives the process. NFS clients flush a file's dirty pages
to the server when it is closed, long before the engine hashes it.
"""

from __future__ import annotations

import functools

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


@functools.cache
def boot_id() -> str | None:
    """This boot's id, or None where the system does not name boots (then the store fsyncs)."""
    try:
        with open(BOOT_ID_FILE, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, ValueError):
        return None
    return text if 16 <= len(text) <= 64 else None
