"""Small local package sets for tests with the real Nix: no nixpkgs, no network.

A package set is a directory with a default.nix taking `{ }` and returning derivations built
by /bin/sh; each package installs `bin/<name>`, which prints "<name> <version>". Packed as
a tarball it is used through `fetchTarball { url = "file://..."; sha256; }`, the code path
of a real nixpkgs pin; the sha256 comes from the real `nix-prefetch-url --unpack`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests.nixcheck import require_nix

PACKAGE = """  {name} = builtins.derivation {{
    name = "{name}";
    version = "{version}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ''
      PATH=/usr/bin:/bin
      {body}
    '' ];
  }};
"""
INSTALL = """mkdir -p $out/bin
      printf '#!/bin/sh\\necho {name} {version}\\n' > $out/bin/{name}
      chmod 555 $out/bin/{name}"""


def package_set(directory: Path, versions: dict[str, str], broken: tuple[str, ...] = ()) -> Path:
    """Write a package set: one package per name (printing its version); `broken` ones fail to build."""
    directory.mkdir(parents=True, exist_ok=True)
    packages = []
    for name, version in versions.items():
        body = (f"echo 'compiling {name} failed: missing header' >&2; exit 1" if name in broken
                else INSTALL.format(name=name, version=version))
        packages.append(PACKAGE.format(name=name, version=version, body=body))
    (directory / "default.nix").write_text("{ }:\n{\n" + "".join(packages) + "}\n")
    return directory


def tarball(directory: Path, dest: Path) -> tuple[str, str]:
    """Pack `directory` as a .tar.gz; returns (file:// URL, sha256 of the unpacked tree per nix-prefetch-url)."""
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    url = f"file://{dest}"
    return url, prefetch(url)


def prefetch(url: str) -> str:
    tool = require_nix("nix-prefetch-url")
    proc = subprocess.run([tool, "--unpack", url], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def instantiate(expr: str) -> list[str]:
    """The .drv paths the real nix-instantiate gives for an expression (a list of derivations)."""
    tool = require_nix("nix-instantiate")
    proc = subprocess.run([tool, "-E", expr], capture_output=True, text=True, check=True)
    return proc.stdout.split()


def outputs(drv: str) -> list[str]:
    tool = require_nix("nix-store")
    proc = subprocess.run([tool, "--query", "--outputs", drv], capture_output=True, text=True, check=True)
    return proc.stdout.split()


def nix_shim(directory: Path, log: Path) -> dict[str, str]:
    """A PATH whose Nix tools log each call to `log` before running the real ones (to count Nix calls)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("nix-instantiate", "nix-store", "nix-build", "nix"):
        real = shutil.which(name)
        if real is None:
            continue
        shim = directory / name
        shim.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexec "{real}" "$@"\n')
        shim.chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []
