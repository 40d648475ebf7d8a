"""The pieces under remotes: the NAR reader (against the real nix-store when present), Nix-format ed25519 keys,
`remote:` in nixworkflow.yaml, and the `nw key` / `nw push` / `nw pull` command line."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nixlib import nar, narread, signing
from nixlib.config import ConfigError, load_config
from nixlib.errors import NixWorkflowError
from tests.helpers import nw

HAVE_NIX = shutil.which("nix-store") is not None
REQUIRE_NIX = os.environ.get("NW_REQUIRE_NIX") == "1"
needs_nix = pytest.mark.skipif(not HAVE_NIX and not REQUIRE_NIX, reason="nix-store not installed")


def sample_tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "f").write_text("hi")
    (root / "empty").write_bytes(b"")
    (root / "a" / "b" / "x").write_text("#!/bin/sh\n")
    (root / "a" / "b" / "x").chmod(0o755)
    (root / "a" / "l").symlink_to("../empty")
    (root / "big").write_bytes(os.urandom(3 << 20))  # several read chunks
    (root / "emptydir").mkdir()
    return root


def dump(path: Path) -> bytes:
    buf = io.BytesIO()
    nar.dump(path, buf.write)
    return buf.getvalue()


@needs_nix
def test_reader_round_trips_nix_dump_and_nix_restores_ours(tmp_path: Path) -> None:
    src = sample_tree(tmp_path / "src")
    real = subprocess.run(["nix-store", "--dump", str(src)], capture_output=True, check=True).stdout
    got = narread.restore(io.BytesIO(real).read, tmp_path / "ours")
    assert got == subprocess.run(["nix-hash", "--type", "sha256", "--base32", str(src)], capture_output=True,
                                 text=True, check=True).stdout.strip()
    # what we unpacked, Nix dumps to the very same bytes (exec bit, symlink, empty file and dir kept)
    assert subprocess.run(["nix-store", "--dump", str(tmp_path / "ours")], capture_output=True,
                          check=True).stdout == real
    assert os.access(tmp_path / "ours/a/b/x", os.X_OK) and not os.access(tmp_path / "ours/a/f", os.X_OK)


def test_reader_round_trips_a_single_file_and_our_writer(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 13)
    assert narread.restore(io.BytesIO(dump(f)).read, tmp_path / "g") == nar.nar_hash(f)
    assert (tmp_path / "g").read_bytes() == b"x" * 13
    tree = sample_tree(tmp_path / "t")
    assert narread.restore(io.BytesIO(dump(tree)).read, tmp_path / "u") == nar.nar_hash(tree)


@pytest.mark.parametrize("damage", ["truncated", "trailing", "unsorted", "dotdot", "padding", "type"])
def test_reader_refuses_what_is_not_a_canonical_nar(tmp_path: Path, damage: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("1")
    (src / "b").write_text("2")
    data = dump(src)
    bad = {
        "truncated": data[:-8],
        "trailing": data + b"\0" * 8,
        "unsorted": data.replace(b"\x01\0\0\0\0\0\0\0a\0", b"\x01\0\0\0\0\0\0\0c\0", 1),  # c before b
        "dotdot": data.replace(b"\x01\0\0\0\0\0\0\0a\0\0\0\0\0\0\0", b"\x02\0\0\0\0\0\0\0..\0\0\0\0\0\0"),
        "padding": data.replace(b"\x01\0\0\0\0\0\0\x001\0\0\0\0\0\0\0", b"\x01\0\0\0\0\0\0\x001\0\0\0\0\0\0\x07"),
        "type": data.replace(b"regular\0", b"regulaR\0", 1),
    }[damage]
    assert bad != data
    with pytest.raises(narread.NarError):
        narread.restore(io.BytesIO(bad).read, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) in (["src", "work"], ["out", "src", "work"])  # nowhere else


def test_keys_sign_and_verify_and_refuse_others(tmp_path: Path) -> None:
    k1, k2 = signing.generate("k1"), signing.generate("k2")
    trusted = signing.parse_public_keys(k1.public())
    sig = k1.sign(b"record")
    assert signing.verify(b"record", sig, trusted) == "k1"
    assert signing.verify(b"record!", sig, trusted) is None  # changed message
    assert signing.verify(b"record", k2.sign(b"record"), trusted) is None  # untrusted key
    forged = "k1:" + k2.sign(b"record").partition(":")[2]  # another key's signature under a trusted name
    assert signing.verify(b"record", forged, trusted) is None
    assert signing.verify(b"record", None, trusted) is None and signing.verify(b"record", "k1:%%%", trusted) is None
    (tmp_path / "k1.sec").write_text(signing.secret_text(k1))
    assert signing.load_secret(tmp_path / "k1.sec").public() == k1.public()


@needs_nix
def test_keys_are_interchangeable_with_nix_binary_cache_keys(tmp_path: Path) -> None:
    sec, pub = tmp_path / "n.sec", tmp_path / "n.pub"
    subprocess.run(["nix-store", "--generate-binary-cache-key", "nixkey-1", str(sec), str(pub)], check=True)
    key = signing.load_secret(sec)
    assert key.public() == pub.read_text().strip()
    assert signing.verify(b"m", key.sign(b"m"), signing.parse_public_keys(pub.read_text())) == "nixkey-1"


def test_bad_key_text_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NixWorkflowError, match="Nix's key format"):
        signing.parse_public_keys("k1:not-base64")
    (tmp_path / "bad.sec").write_text("k1:" + "A" * 10)
    with pytest.raises(NixWorkflowError, match="bad.sec"):
        signing.load_secret(tmp_path / "bad.sec")


def test_key_generate_writes_private_secret_and_never_overwrites(tmp_path: Path) -> None:
    made = nw("key", "generate", "lab-1", check=True)
    pub = Path("lab-1.pub").read_text().strip()
    assert made.stdout.strip() == pub and pub.startswith("lab-1:")
    assert Path("lab-1.sec").stat().st_mode & 0o777 == 0o600
    assert nw("key", "public", "lab-1.sec", check=True).stdout.strip() == pub
    again = nw("key", "generate", "lab-1")
    assert again.returncode == 1 and "never overwrites" in again.stderr
    assert Path("lab-1.pub").read_text().strip() == pub


@pytest.mark.parametrize("command", [("push",), ("pull",), ("key",), ("key", "generate")])
def test_remote_commands_have_help_that_teaches(command: tuple[str, ...]) -> None:
    out = nw(*command, "--help", check=True).stdout
    assert "examples:" in out and ("trusted" in out.lower() or "NIX_WORKFLOW_TRUSTED_KEYS" in out)


def test_push_without_remote_or_key_says_what_to_do(tmp_path: Path) -> None:
    no_remote = nw("push", "x")
    assert no_remote.returncode == 1 and "needs a remote" in no_remote.stderr
    no_key = nw("push", "x", "--remote", f"file://{tmp_path}")
    assert no_key.returncode == 1 and "nw key generate" in no_key.stderr


def test_config_remote_section(tmp_path: Path) -> None:
    cfg = tmp_path / "nixworkflow.yaml"
    cfg.write_text("remote:\n  url: s3://b/p?endpoint=http://h:1\n  push: true\n"
                   "  trusted-public-keys: [k1:AAAA]\n  secret-key-file: keys/k.sec\n")
    remote = load_config(cfg).remote
    assert remote == {"url": "s3://b/p?endpoint=http://h:1", "push": True, "trusted-public-keys": ["k1:AAAA"],
                      "secret-key-file": str(tmp_path / "keys/k.sec")}
    cfg.write_text("remote: file:///mnt/cache\n")
    assert load_config(cfg).remote == {"url": "file:///mnt/cache"}
    cfg.write_text("remote:\n  url: file:///x\n  pushh: true\n")
    with pytest.raises(ConfigError, match="did you mean 'push'"):
        load_config(cfg)


@pytest.mark.parametrize(("url", "says"), [
    ("file://cache/dir", "'cache' was read as a host name"),
    ("s3://b/p?endpoint=minio:9000", "is not an http:// or https:// URL"),
    ("s3://b/p?endpiont=http://127.0.0.1:1", "unknown setting 'endpiont'"),
    ("s3://b/p?profile=no-such-profile", "no-such-profile"),
])
def test_a_malformed_remote_url_is_a_clear_error_before_anything_runs(tmp_path: Path, url: str, says: str) -> None:
    """A misspelt setting was silently dropped (requests then went to AWS), a bad endpoint was a botocore
    traceback, and `file://dir` (two slashes) quietly used '/…' on a host it names."""
    exp = tmp_path / "exp.py"
    exp.write_text(f"from nixlib import output\na = output('echo x > $out/x; touch {tmp_path}/ran')\n")
    env = {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    proc = nw("run", str(exp), "--remote", url, env=env)
    assert proc.returncode != 0 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "ran").exists()
