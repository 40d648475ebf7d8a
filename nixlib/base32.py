"""Nix's base32 encoding and store-path hash folding.

Nix uses its own base32 alphabet (no e, o, u, t) and emits characters from the
last 5-bit group to the first, so standard base32 libraries do not apply.
"""

from __future__ import annotations

import hashlib

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def encoded_length(nbytes: int) -> int:
    """Number of characters Nix uses for `nbytes` bytes (52 for SHA-256, 32 for 20 bytes)."""
    return (nbytes * 8 - 1) // 5 + 1


def encode(data: bytes) -> str:
    """Encode bytes as Nix base32, most significant 5-bit group first.

    Two characters (10 bits) per step from a table: every key and record digest is one of these."""
    n = encoded_length(len(data))
    value = int.from_bytes(data, "little")
    pairs = "".join([_PAIRS[(value >> shift) & 1023] for shift in range(10 * ((n + 1) // 2 - 1), -1, -10)])
    return pairs[n % 2:]  # an odd count: the leading group of the last pair is the zero above the top


_PAIRS = [ALPHABET[i >> 5] + ALPHABET[i & 31] for i in range(1024)]


def decode(text: str) -> bytes:
    """Decode Nix base32; raises ValueError naming the offending character."""
    nbytes = len(text) * 5 // 8
    if encoded_length(nbytes) != len(text):
        raise ValueError(f"invalid Nix base32 length {len(text)}: {text!r}")
    value = 0
    for pos, char in enumerate(text):
        digit = _INDEX.get(char)
        if digit is None:
            raise ValueError(f"invalid Nix base32 character {char!r} at position {pos} in {text!r}")
        value = (value << 5) | digit
    if value >> (nbytes * 8):
        raise ValueError(f"Nix base32 value {text!r} has non-zero padding bits")
    return value.to_bytes(nbytes, "little")


def fold(digest: bytes, size: int = 20) -> bytes:
    """XOR-fold a digest to `size` bytes the way Nix compresses store path hashes (byte i goes into byte
    i mod size): the digest's `size`-byte chunks XORed together, as integers rather than byte by byte."""
    value = 0
    for start in range(0, len(digest), size):
        value ^= int.from_bytes(digest[start:start + size], "little")
    return value.to_bytes(size, "little")


def store_path(kind: str, inner_hex: str, name: str, store_dir: str = "/nix/store") -> str:
    """The store path Nix derives from a fingerprint `<kind>:sha256:<inner_hex>:<store_dir>:<name>`.

    `kind` is "source" for a recursively added path (inner = NAR sha256), "text" for
    builtins.toFile (inner = sha256 of the text) and "output:out" for fixed outputs (inner =
    sha256 of "fixed:out:<method>sha256:<hash>:"). Used to check our hashes against Nix's own paths.
    """
    fingerprint = f"{kind}:sha256:{inner_hex}:{store_dir}:{name}"
    digest = hashlib.sha256(fingerprint.encode()).digest()
    return f"{store_dir}/{encode(fold(digest))}-{name}"
