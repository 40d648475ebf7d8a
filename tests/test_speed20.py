"""Byte-identity of the pure functions session 20 made faster (keys and signatures must not change)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from nixlib import base32, statmemo


def _nix_reference(data: bytes) -> str:
    """Nix's printHash32, bit by bit (libutil/hash.cc): character n-1-i holds bits 5i..5i+4 of the little-endian
    bit string of `data`."""
    n = (len(data) * 8 - 1) // 5 + 1
    out = []
    for i in range(n - 1, -1, -1):
        b, j = i * 5 // 8, i * 5 % 8
        c = (data[b] >> j) | ((data[b + 1] << (8 - j)) if b + 1 < len(data) else 0)
        out.append(base32.ALPHABET[c & 0x1F])
    return "".join(out)


def test_encode_matches_nix_bit_by_bit_for_every_length() -> None:
    rng = random.Random(20)
    for length in range(0, 70):
        for data in (bytes(length), b"\xff" * length, *(rng.randbytes(length) for _ in range(50))):
            assert base32.encode(data) == _nix_reference(data), (length, data.hex())


def test_rescan_gives_the_signature_of_a_full_scan(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "x").write_text("x")
    (tree / "a" / "y").write_text("yy")
    os.chmod(tree / "a" / "y", 0o755)
    os.chmod(tree / "x", 0o664)  # group-writable: foreign to an owners check
    os.symlink("../x", tree / "a" / "l")
    for path in (tree, tree / "a" / "y", tree / "a" / "l"):
        listing: list[bytes] = []
        full = statmemo.scan(path, listing)
        assert statmemo.rescan(path, listing) == full.signature
        owned = statmemo.scan(path, owners={os.getuid()})
        assert (statmemo.rescan(path, listing, {os.getuid()}) == "") == owned.foreign
        assert statmemo.rescan(path, listing, {os.getuid() + 12345}) == ""
    assert statmemo.scan(tree, owners={os.getuid()}).foreign  # (the tree case did test a foreign entry)
