"""The optional per-step sandbox, through bubblewrap (`bwrap`).

A sandboxed step sees the host filesystem read-only (so `/nix/store`, the workflow store
with its inputs, and host tools of unpinned envs are there, but nothing can be changed),
a private empty `/tmp`, and writable `$out`, `$state` and its own `$TMPDIR`. It runs in new
namespaces (user, pid, ipc, uts, cgroup, and network unless the step says `network=True`:
a new network namespace has only its own loopback device, so neither the host's services nor
the internet are reachable). `gpu=True`
passes the GPU device nodes (/dev/nvidia*, /dev/dri, /dev/kfd) through; the driver libraries
are already visible in the read-only host filesystem (/usr/lib, /run/opengl-driver).

The sandbox is opt-in (`sandbox=True`): ML steps often need the network, GPUs and caches in
the home directory, so the default is loose.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess

from nixlib.errors import NixWorkflowError
from nixlib.runner import Build

GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or run the step without sandbox=True"


class SandboxUnavailable(NixWorkflowError):
    """bubblewrap is missing or cannot create namespaces here (e.g. in a container without user namespaces)."""


@functools.cache
def bwrap() -> str:
    """The path of a working `bwrap`, checked once per process by running `true` in a sandbox."""
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(f"a step asks for sandbox=True, but bubblewrap (bwrap) is not on PATH: {INSTALL_HINT}")
    probe = subprocess.run([path, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        why = probe.stderr.strip() or f"exit {probe.returncode}"
        raise SandboxUnavailable(f"a step asks for sandbox=True, but bubblewrap cannot create a sandbox here: {why}. "
                                 "Enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1), "
                                 "make bwrap setuid, or run the step without sandbox=True.")
    return path


def gpu_devices() -> list[str]:
    return sorted(p for pattern in GPU_DEVICES for p in glob.glob(pattern))


def wrap(argv: list[str], build: Build) -> list[str]:
    """`argv` run inside bubblewrap with the step's writable directories and options."""
    opts = build.options
    args = [bwrap(), "--die-with-parent", "--unshare-all"]
    if opts.network:
        args.append("--share-net")
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # Under a private /tmp the store (tests keep one there) must be put back: read-only, then the
    # step's own directories writable on top.
    args += ["--ro-bind", str(build.store_root), str(build.store_root)]
    for writable in dict.fromkeys(p for p in (build.tmp, build.out, build.state) if p is not None):
        os.makedirs(writable, exist_ok=True)
        args += ["--bind", str(writable), str(writable)]
    if opts.gpu:
        for dev in gpu_devices():
            args += ["--dev-bind", dev, dev]
    args += ["--chdir", str(build.out), "--"]
    return args + argv
