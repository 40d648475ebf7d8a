"""Signed object sizes on a remote: a record names the NAR size of each object (`nar_sizes`, under its signature,
as Nix's narinfo signs NarSize), and a pull stops an object that streams more than that before it fills the disk.

Before, a bucket writer without any key could replace an object with a huge (or endlessly compressed) archive: it
was never used (it fails its hash), but it was unpacked whole onto the puller's disk first."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given

from nixlib import nar, signing
from nixlib.recipe import canonical_json
from tests.nixcheck import require_nix
from tests.test_nar import PROPERTY, build, trees
from tests.test_remote import Host, Remote, experiment, keys, ran  # noqa: F401 - fixture used here


@pytest.mark.nix
@PROPERTY
@given(tree=trees)
def test_nar_size_is_the_length_of_real_nix_dump(tree: tuple) -> None:
    """nar_size walks the tree without reading contents; its answer is the length of `nix-store --dump`."""
    nix_store = require_nix("nix-store")
    with tempfile.TemporaryDirectory() as tmp:
        root = os.fsencode(tmp) + b"/root"
        build(root, tree)
        dumped = subprocess.run([nix_store, "--dump", root], check=True, capture_output=True).stdout
        assert nar.nar_size(root) == len(dumped)


def test_nar_size_of_a_large_executable_file(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(3 * (1 << 20) + 5)  # > the 1 MiB streaming threshold, not a multiple of 8
    big.chmod(0o755)
    dumped = subprocess.run(["nix-store", "--dump", str(big)], check=True, capture_output=True).stdout
    assert nar.nar_size(big) == len(dumped)


def pushed(tmp_path: Path, keys: dict[str, str]) -> tuple[Remote, Path, Path, dict]:  # noqa: F811
    remote = Remote("file", tmp_path, None)
    exp, count = experiment(tmp_path)
    a = Host(tmp_path, "a", remote, keys["k1.pub"])
    a.run(exp, "--push", "--secret-key-file", keys["k1"], step="data")
    (record,) = (remote.dir / "realisations").iterdir()
    return remote, exp, count, json.loads(record.read_text())


def test_a_pushed_record_signs_the_size_of_each_object(tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    remote, _, _, doc = pushed(tmp_path, keys)
    (obj,) = doc["outputs"].values()
    store_copy = tmp_path / "store-a" / "store" / obj
    assert doc["nar_sizes"] == {obj: len(subprocess.run(["nix-store", "--dump", str(store_copy)], check=True,
                                                         capture_output=True).stdout)}


def test_an_object_larger_than_its_signed_size_is_stopped_and_the_step_runs_locally(
        tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    """The object is replaced by a well-formed archive header announcing a 64 MiB file (a sparse file: no disk
    used on the remote side). The old code unpacked all 64 MiB before rejecting it by its hash."""
    remote, exp, count, doc = pushed(tmp_path, keys)
    (obj,) = doc["outputs"].values()
    for p in (remote.dir / "nar").iterdir():
        p.unlink()
    fake = remote.dir / "nar" / f"{obj}.nar"  # (a pull tries .nar.xz, then .nar)
    size = 64 << 20
    header = (nar._str(b"nix-archive-1") + nar._str(b"(") + nar._str(b"type") + nar._str(b"regular")
              + nar._str(b"contents") + size.to_bytes(8, "little"))
    with open(fake, "wb") as f:
        f.write(header)
        f.truncate(len(header) + size + 8 + len(nar._str(b")")))

    b = Host(tmp_path, "b", remote, keys["k1.pub"])
    result = b.run(exp, step="data")
    assert f"larger than the {doc['nar_sizes'][obj]} bytes its signed record names" in result.stderr, result.stderr
    assert ran(count) == ["data", "data"]  # built on B
    assert "Traceback" not in result.stderr


def test_a_record_whose_signed_sizes_were_changed_is_ignored(tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    remote, exp, count, doc = pushed(tmp_path, keys)
    (record,) = (remote.dir / "realisations").iterdir()
    (obj,) = doc["outputs"].values()
    record.chmod(0o644)
    record.write_text(json.dumps(doc | {"nar_sizes": {obj: 1 << 40}}))
    result = Host(tmp_path, "b", remote, keys["k1.pub"]).run(exp, step="data")
    assert "is not by a trusted key or does not match" in result.stderr, result.stderr
    assert ran(count) == ["data", "data"]


def test_a_record_signed_without_sizes_is_still_substituted(tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    """Records pushed before sizes were signed carry none: they are used as before (their objects uncapped)."""
    remote, exp, count, doc = pushed(tmp_path, keys)
    (record,) = (remote.dir / "realisations").iterdir()
    body = {k: v for k, v in doc.items() if k not in ("sig", "nar_sizes")}
    secret = signing.load_secret(keys["k1"])
    record.chmod(0o644)
    record.write_text(json.dumps(body | {"sig": secret.sign(canonical_json(body).encode())}))
    b = Host(tmp_path, "b", remote, keys["k1.pub"])
    result = b.run(exp, step="data")
    assert ran(count) == ["data"], result.stderr  # substituted, not built
    assert (b.cwd / "nix-workflow-output/data/x").read_text() == "hello\n"


def test_malformed_signed_sizes_make_the_record_invalid(tmp_path: Path, keys: dict[str, str]) -> None:  # noqa: F811
    remote, exp, count, doc = pushed(tmp_path, keys)
    (record,) = (remote.dir / "realisations").iterdir()
    body = {k: v for k, v in doc.items() if k != "sig"} | {"nar_sizes": {"not-a-name": -1}}
    secret = signing.load_secret(keys["k1"])
    record.chmod(0o644)
    record.write_text(json.dumps(body | {"sig": secret.sign(canonical_json(body).encode())}))
    result = Host(tmp_path, "b", remote, keys["k1.pub"]).run(exp, step="data")
    assert "nar_sizes is not a map of object names to sizes" in result.stderr, result.stderr
    assert ran(count) == ["data", "data"]
