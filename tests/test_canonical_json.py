"""canonical_json is json.dumps with the canonical options, byte for byte: every recipe key and record digest
depends on it, so the encoder built once (nixlib.recipe) must never write anything dumps would not."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixlib.recipe import canonical_json

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=30)


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_canonical_json_is_dumps_with_the_canonical_options(value: object) -> None:
    assert canonical_json(value) == _dumps(value)


def test_known_document() -> None:
    """A fixed document written out by hand: sorted keys, no spaces, non-ASCII kept, control characters escaped."""
    doc = {"b": [1, 2.5, None, True], "a": {"z": "é\n\x01", "y": -0.0}, "c": 10**30}
    assert canonical_json(doc) == '{"a":{"y":-0.0,"z":"é\\n\\u0001"},"b":[1,2.5,null,true],"c":' + "1" + "0" * 30 + "}"
    assert canonical_json("only a string") == '"only a string"'


@pytest.mark.parametrize("bad", [{"x": math.nan}, [math.inf], {"x": {1, 2}}, {"x": object()}])
def test_what_dumps_refuses_is_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        _dumps(bad)
    with pytest.raises(expected.type):
        canonical_json(bad)
