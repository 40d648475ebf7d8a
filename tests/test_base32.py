"""Nix base32 and store-path hashing: the vectors of shared/nix-vectors.md, properties, and the real nix-hash."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixlib import base32
from tests.nixcheck import require_nix

# (base16, Nix base32) pairs from shared/nix-vectors.md
PAIRS = [
    ("26d367eb6b200dc1b15f7c1fe9a647b595393f2ff74b0cfc67a74a51cc86ea61",
     "0qgahv652jm7czy0qjzp5wzkk5dm8ykfj7vwbyqw2390dgmnglr6"),  # sha256 of the NAR of tree d
    ("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
     "00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq"),  # flat sha256 of d/file.txt
]
FILE_TXT_SHA256 = PAIRS[1][0]
NAR_D_SHA256 = PAIRS[0][0]


@pytest.mark.parametrize(("hex16", "nix32"), PAIRS)
def test_vector_pairs(hex16: str, nix32: str) -> None:
    assert base32.encode(bytes.fromhex(hex16)) == nix32
    assert base32.decode(nix32).hex() == hex16


def test_lengths() -> None:
    assert [base32.encoded_length(n) for n in (0, 1, 16, 20, 32, 64)] == [0, 2, 26, 32, 52, 103]
    assert base32.encode(b"") == ""
    assert base32.decode("") == b""


def test_store_path_of_nix_store_add_d() -> None:
    """`nix-store --add d`: a recursive (NAR) sha256 source path."""
    assert base32.store_path("source", NAR_D_SHA256, "d") == "/nix/store/xym19qjnd3wnnk4srxl8yvlsadarq5nv-d"


def test_store_path_of_add_fixed_flat_sha256() -> None:
    """`nix-store --add-fixed sha256 d/file.txt`: a flat fixed output, hashed twice."""
    inner = hashlib.sha256(f"fixed:out:sha256:{FILE_TXT_SHA256}:".encode()).hexdigest()
    assert base32.store_path("output:out", inner, "file.txt") == "/nix/store/z1rahp9fy11h8yvihxhgj8vr2pb6db1a-file.txt"


def test_store_path_of_to_file() -> None:
    """`builtins.toFile "t.txt" "hello"`: a text path without references."""
    inner = hashlib.sha256(b"hello").hexdigest()
    assert base32.store_path("text", inner, "t.txt") == "/nix/store/9p0nl625gm5mli8h2xfsgma0zz31g9yc-t.txt"


def test_placeholder_out() -> None:
    """`builtins.placeholder "out"`: the full (unfolded) sha256 of "nix-output:out", after a slash."""
    digest = hashlib.sha256(b"nix-output:out").digest()
    assert "/" + base32.encode(digest) == "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"


def test_fold_xors_bytes_into_place() -> None:
    digest = bytes(range(32))
    folded = base32.fold(digest)
    assert len(folded) == 20
    assert folded[0] == 0 ^ 20 and folded[11] == 11 ^ 31 and folded[12] == 12 and folded[19] == 19
    assert base32.fold(b"\x01" * 40) == b"\x00" * 20


def test_decode_names_the_position_of_a_bad_character() -> None:
    text = "0qgahv652jm7czy0qjzp5wzkk5dm8ykfj7vwbyqw2390dgmnglr6"
    for pos, bad in [(0, "e"), (5, "o"), (51, "u"), (30, "T"), (12, "!")]:
        broken = text[:pos] + bad + text[pos + 1:]
        with pytest.raises(ValueError, match=f"{bad!r} at position {pos}"):
            base32.decode(broken)


def test_decode_rejects_bad_length_and_padding() -> None:
    with pytest.raises(ValueError, match="length 51"):
        base32.decode("0" * 51)
    with pytest.raises(ValueError, match="padding"):
        base32.decode("z" + "0" * 51)  # 52 characters carry 260 bits, the top 4 must be zero


@given(st.binary(max_size=80))
def test_round_trip_bytes(data: bytes) -> None:
    text = base32.encode(data)
    assert len(text) == base32.encoded_length(len(data))
    assert set(text) <= set(base32.ALPHABET)
    assert base32.decode(text) == data


@given(st.integers(min_value=0, max_value=(1 << 160) - 1), st.integers(min_value=0, max_value=(1 << 160) - 1))
def test_first_character_is_most_significant(a: int, b: int) -> None:
    """Characters run from the last 5-bit group to the first, so (the alphabet being in ASCII
    order) text order is numeric order."""
    text_a, text_b = (base32.encode(v.to_bytes(20, "little")) for v in (a, b))
    assert sum(base32.ALPHABET.index(c) << (5 * i) for i, c in enumerate(reversed(text_a))) == a
    assert (text_a < text_b) == (a < b)
    assert base32.encode(base32.decode(text_a)) == text_a


@given(st.text(min_size=1, max_size=60))
def test_decode_errors_name_the_first_bad_position(text: str) -> None:
    bad = [i for i, c in enumerate(text) if c not in base32.ALPHABET]
    lengths_ok = base32.encoded_length(len(text) * 5 // 8) == len(text)
    try:
        base32.decode(text)
    except ValueError as err:
        if lengths_ok and bad:
            assert f"at position {bad[0]} " in str(err)
    else:
        assert lengths_ok and not bad


@pytest.mark.nix
@settings(max_examples=10, deadline=None)
@given(st.lists(st.sampled_from(["md5", "sha1", "sha256", "sha512"]).flatmap(
    lambda algo: st.tuples(st.just(algo), st.binary(min_size=hashlib.new(algo).digest_size,
                                                    max_size=hashlib.new(algo).digest_size))),
    min_size=1, max_size=8))
def test_matches_nix_hash_to_base32(digests: list[tuple[str, bytes]]) -> None:
    """`nix-hash --to-base32` / `--to-base16` agree with encode/decode on random digests."""
    nix_hash = require_nix("nix-hash")
    for algo in {a for a, _ in digests}:
        mine = [d for a, d in digests if a == algo]
        out = subprocess.run([nix_hash, "--type", algo, "--to-base32", *(d.hex() for d in mine)],
                             check=True, capture_output=True, text=True).stdout.split()
        assert out == [base32.encode(d) for d in mine]
        back = subprocess.run([nix_hash, "--type", algo, "--to-base16", *out],
                              check=True, capture_output=True, text=True).stdout.split()
        assert back == [base32.decode(t).hex() for t in out]
