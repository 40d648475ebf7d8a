"""A package's source distribution from PyPI, downloaded and unpacked once: the compat harnesses run the test
suites Snakemake and Luigi ship in theirs (tests/snakemake_compat.py, tests/luigi_compat.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path


def installed(package: str) -> str:
    """The version of `package` installed here: the one whose test suite is run."""
    from importlib.metadata import version

    return version(package)


def unpacked(package: str, version: str, folder: str, cache: Path) -> Path:
    """`folder` of `package==version`'s unpacked source distribution under `cache/version`; downloaded and unpacked
    once, under a lock, and published by rename, so concurrent test workers never see half a tree. Raises
    subprocess.CalledProcessError or TimeoutExpired when PyPI cannot be reached."""
    from filelock import FileLock

    root = cache / version
    tree = root / f"{package}-{version}" / folder
    if tree.is_dir():
        return tree
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        if tree.is_dir():
            return tree
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                            "--quiet", "-d", tmp, f"{package}=={version}"], check=True, timeout=600)
            archive = next(Path(tmp).glob(f"{package}-*.tar.gz"))
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            os.replace(Path(tmp) / f"{package}-{version}", root / f"{package}-{version}")
    return tree


def tests_or_skip(source_tests: Callable[[], Path], who: str, required: str) -> Path:
    """`source_tests()` for a pytest test (the sample of a compat harness in `make test`): when the source
    distribution cannot be downloaded, skipped, or failed if CI requires it (`required=1` in the environment)."""
    import pytest

    try:
        return source_tests()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        why = f"{who}'s source distribution cannot be downloaded here: {e}"
        if os.environ.get(required) == "1":
            pytest.fail(why)
        pytest.skip(why)
