"""Ed25519 keys and signatures for remote records, in Nix's binary-cache key format.

On a remote there is no file owner to trust (docs/trust.md), so a realisation record is believed only if it
carries a signature by a key the user trusts, exactly like Nix's `secret-key-files` / `trusted-public-keys`.
Keys use Nix's files, so `nix-store --generate-binary-cache-key NAME sec pub` and `nw key generate` make
interchangeable keys:

    secret key file:  NAME:BASE64(32-byte seed + 32-byte public key)
    public key:       NAME:BASE64(32-byte public key)
    signature:        NAME:BASE64(64-byte Ed25519 signature)

The crypto is the `cryptography` library's (OpenSSL); nothing here is hand-written crypto. It is imported only
when a key is made, read or used (`nixworkflow[remote]`): `nw run` with no remote runs without it.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nixlib.errors import NixWorkflowError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def _raw() -> tuple[Any, Any]:
    """The raw public key encoding (its import is the first use of `cryptography`)."""
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.Raw, serialization.PublicFormat.Raw


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: Ed25519PrivateKey

    def sign(self, message: bytes) -> str:
        """`NAME:BASE64` signature of `message`."""
        return f"{self.name}:{base64.b64encode(self.key.sign(message)).decode()}"

    def public(self) -> str:
        """The matching public key line (`NAME:BASE64`), as in a `trusted-public-keys` list."""
        return f"{self.name}:{base64.b64encode(self.key.public_key().public_bytes(*_raw())).decode()}"


def _split(text: str, what: str, size: int, secret: bool = False) -> tuple[str, bytes]:
    """(name, key bytes) of `NAME:BASE64`. The text of a `secret` is never shown in the error: 40 characters of
    a damaged secret key are most of its seed, and errors end up in CI logs."""
    name, sep, data = text.strip().partition(":")
    try:
        raw = base64.b64decode(data, validate=True) if sep else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not name or len(raw) != size:
        shown = "" if secret else repr(text.strip()[:40] + ("…" if len(text.strip()) > 40 else "")) + " "
        raise NixWorkflowError(f"{what} {shown}is not in Nix's key format NAME:BASE64 ({size} bytes); make keys "
                               "with `nw key generate NAME` or `nix-store --generate-binary-cache-key`")
    return name, raw


def generate(name: str) -> SecretKey:
    """A fresh key pair named `name` (e.g. `cache.example.org-1`: the name says whose key it is)."""
    if not name or ":" in name or any(c.isspace() for c in name):
        raise NixWorkflowError(f"key name {name!r} must be non-empty, without ':' or spaces (e.g. 'lab-cache-1')")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return SecretKey(name, Ed25519PrivateKey.generate())


def secret_text(key: SecretKey) -> str:
    """The secret key file's content (Nix's format: seed + public key)."""
    from cryptography.hazmat.primitives import serialization

    seed = key.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    return f"{key.name}:{base64.b64encode(seed + key.key.public_key().public_bytes(*_raw())).decode()}"


def load_secret(path: str | os.PathLike) -> SecretKey:
    """Read a secret key file (ours or `nix-store --generate-binary-cache-key`'s)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not ASCII text"
        raise NixWorkflowError(f"cannot read the secret key file {path}: {reason}") from None
    name, raw = _split(text, f"the secret key file {path}", 64, secret=True)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if key.public_key().public_bytes(*_raw()) != raw[32:]:
        raise NixWorkflowError(f"secret key file {path}: its public half does not match its seed (damaged file?)")
    return SecretKey(name, key)


def parse_public_keys(text: str) -> dict[str, list[Ed25519PublicKey]]:
    """Trusted public keys from a whitespace- or comma-separated list of `NAME:BASE64` (empty: none), by name.
    Two keys listed under one name (a key regenerated under its old name, both listed while records signed by
    either are around) are both trusted: one silently replaced the other, so records signed by the first
    were ignored as "not by a trusted key"."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys: dict[str, list[Ed25519PublicKey]] = {}
    for item in text.replace(",", " ").split():
        name, raw = _split(item, "trusted public key", 32)
        same = keys.setdefault(name, [])
        key = Ed25519PublicKey.from_public_bytes(raw)
        if all(k.public_bytes(*_raw()) != raw for k in same):
            same.append(key)
    return keys


def verify(message: bytes, signature: object, trusted: dict[str, list[Ed25519PublicKey]]) -> str | None:
    """The name of the trusted key that made `signature` over `message`, or None (unknown key, bad
    signature, or not a signature at all: never an exception, the record is simply not believed)."""
    if not isinstance(signature, str):
        return None
    from cryptography.exceptions import InvalidSignature

    name, _, data = signature.partition(":")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    for key in trusted.get(name, ()):
        try:
            key.verify(raw, message)
            return name
        except (InvalidSignature, ValueError):
            continue
    return None
