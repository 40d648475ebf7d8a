"""The optional per-step sandbox, through bubblewrap (`bwrap`).

A sandboxed step sees a filesystem built for it, not the host's:

- read-only: `/nix/store` (the env's store paths; other store paths of an env are bound one by one),
  the system directories host tools need (`/usr`, `/bin`, `/lib*`, `/sbin`, `/opt`, `/sys`), a
  curated `/etc` (users and groups, name resolution, TLS certificates, the dynamic loader's cache,
  the time zone, ...; no `shadow`, `gshadow`, `sudoers`, SSH host keys or TLS private keys), and the
  workflow store's objects (`<root>/store`: the step's inputs);
- writable: `$out`, `$state`, `$TMPDIR` (where `$HOME` points too), a private empty `/tmp` and
  `/dev/shm`; `/dev` basics and its own `/proc`;
- absent: the user's home and every other home (`/home`, `/root`), `/run` and `/var` (host Unix
  sockets, the host's `/tmp`), the store's records, logs and other steps' state.

Everything else of the sandbox's root is read-only. It runs in new namespaces (user, pid, ipc,
uts, cgroup, and network unless the step says `network=True`: a new network namespace has
only its own loopback device, so neither the host's services, its abstract Unix sockets nor
the internet are reachable). Its pid namespace ends with the step's main process: nothing it
started survives it, and `--die-with-parent` ties it to the runner. `gpu=True` passes the GPU
device nodes (/dev/nvidia*, /dev/dri, /dev/kfd) and NixOS's /run/opengl-driver through.

The sandbox is opt-in (`sandbox=True`): ML steps often need the network, GPUs and caches in
the home directory, so the default is loose (see docs/steps.md for what each protects).
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


# System directories host tools need, bound read-only when present.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/sys")
# The parts of /etc programs read to run, resolve names and verify TLS; nothing secret.
ETC_FILES = (
    "passwd", "group", "hosts", "hostname", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf", "services",
    "protocols", "networks", "localtime", "timezone", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl/certs",
    "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf", "pki/tls/certs", "pki/ca-trust/extracted",
    "crypto-policies", "alternatives", "mime.types", "magic", "magic.mime", "os-release", "lsb-release",
    "debian_version", "redhat-release", "system-release", "locale.alias", "locale.conf", "inputrc", "terminfo",
    "fonts", "gitconfig", "OpenCL/vendors", "vulkan", "glvnd", "nvidia", "login.defs",
)


def _ro(path: str) -> list[str]:
    """Bind `path` read-only at the same place: a symlink into a bound tree stays a symlink (to its
    resolved target: /etc/static on NixOS is not bound), anything else is bound by content."""
    if not os.path.lexists(path):
        return []
    if os.path.islink(path):
        target = os.path.realpath(path)
        if target.startswith(("/usr/", "/nix/store/")) or os.path.dirname(path) == "/":
            return ["--symlink", target, path]
    return ["--ro-bind-try", path, path]


def _filesystem(build: Build) -> list[str]:
    """The bind mounts of a step's view of the filesystem (order matters: later mounts go on top)."""
    args = ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--dir", "/var/tmp"]
    for d in SYSTEM_DIRS:
        args += _ro(d)
    for name in ETC_FILES:
        args += _ro(f"/etc/{name}")
    if os.path.isdir("/nix/store"):
        args += ["--ro-bind", "/nix/store", "/nix/store"]
    args += [a for p in build.env_paths if not p.startswith("/nix/store/") for a in _ro(p)]
    args += ["--ro-bind", str(build.store_root / "store"), str(build.store_root / "store")]
    for writable in dict.fromkeys(p for p in (build.tmp, build.out, build.state) if p is not None):
        os.makedirs(writable, exist_ok=True)
        args += ["--bind", str(writable), str(writable)]
    return args


def wrap(argv: list[str], build: Build) -> list[str]:
    """`argv` run inside bubblewrap with the step's writable directories and options."""
    opts = build.options
    args = [bwrap(), "--die-with-parent", "--new-session", "--unshare-all"]
    if opts.network:
        args.append("--share-net")
    args += _filesystem(build)
    if opts.gpu:
        for dev in gpu_devices():
            args += ["--dev-bind", dev, dev]
        args += _ro("/run/opengl-driver")
    home = build.tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    args += ["--setenv", "HOME", str(home), "--remount-ro", "/", "--chdir", str(build.out), "--"]
    return args + argv
