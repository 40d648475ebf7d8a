"""The Python front door: every way of building a string carries the dependency."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixlib.dsl import load
from nixlib.errors import NixWorkflowError

WAYS = {
    "f-string": "f'cat {data}/x > $out/y'",
    "format": "'cat {}/x > $out/y'.format(data)",
    "percent": "'cat %s/x > $out/y' % data",
    "concatenation": "'cat ' + data + '/x > $out/y'",
    "join": "' '.join(['cat', data + '/x', '>', '$out/y'])",
    "str()": "'cat ' + str(data) + '/x > $out/y'",
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_interpolation_creates_the_dependency(tmp_path: Path, way: str) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text(f"from nixlib import output\ndata = output('echo 1 > $out/x')\nmodel = output({WAYS[way]})\n")
    wf = load(exp)
    model = wf.recipes["model"]
    assert [u.name for u in model.upstream()] == ["data"]


def test_all_ways_give_one_recipe_key(tmp_path: Path) -> None:
    keys = set()
    for way, expr in WAYS.items():
        exp = tmp_path / f"{way.replace(' ', '_')}.py"
        exp.write_text(f"from nixlib import output\ndata = output('echo 1 > $out/x')\nmodel = output({expr})\n")
        keys.add(load(exp).recipes["model"].key)
    assert len(keys) == 1


def test_names_come_from_variables_dicts_and_lists(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   "models = {'small': output('echo s'), 'big': output('echo b')}\n"
                   "evals = [output(f'cat {m}') for m in models.values()]\n"
                   "helper = output('echo hidden', name='explicit')\n")
    wf = load(exp)
    assert sorted(wf.named) == ["evals.0", "evals.1", "explicit", "models.big", "models.small"]


def test_unnamed_intermediate_steps_still_run_as_dependencies(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\n"
                   "def prep(n):\n    return output(f'echo {n}')\n"
                   "final = output(f'cat {prep(1)} {prep(2)}')\n")
    wf = load(exp)
    assert wf.named == ["final"]
    assert len(wf.recipes["final"].upstream()) == 2


def test_static_inputs_enter_by_content_not_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    keys = []
    for d in ("a", "b"):
        (tmp_path / d / "data.csv").write_text("same\n")
        exp = tmp_path / d / "exp.py"
        exp.write_text("from pathlib import Path\nfrom nixlib import output, static\n"
                       "raw = static(Path(__file__).parent / 'data.csv')\nuse = output(f'cat {raw}')\n")
        keys.append(load(exp).recipes["use"].key)
    assert keys[0] == keys[1]


def test_output_rejects_a_malformed_hash(tmp_path: Path) -> None:
    exp = tmp_path / "exp.py"
    exp.write_text("from nixlib import output\nm = output('true', hash='abc')\n")
    with pytest.raises(NixWorkflowError, match="exp.py:2: hash 'abc' is not a 52-character Nix base32"):
        load(exp)
