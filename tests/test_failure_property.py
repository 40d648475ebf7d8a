"""Property (issue 8): for generated pipelines whose steps randomly fail — a non-zero exit in the middle of a
pipe, a first line that fails, no output, an unset variable — or succeed while a background writer is still
writing, the store never holds a realisation of a failed step, and every stored output is exactly what its
step wrote before it ended (a step ends when all of its processes have ended or been killed)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nixlib import context, nar
from nixlib.engine import Engine, Result
from nixlib.recipe import Input, Recipe
from nixlib.store import Store
from tests.helpers import left_running

# kind -> (command with {up} = the upstream's output dir or "", does it succeed?)
KINDS = {
    "ok": ("cat {up}/v 2>/dev/null > $out/v || true; echo {tag} >> $out/v", True),
    "pipe_fails_in_the_middle": ("cat /nonexistent/{tag} | sort > $out/v", False),
    "first_line_fails": ("false\necho {tag} > $out/v", False),
    "writes_nothing": ("echo {tag} > /dev/null", False),
    "unset_variable": ("echo $undefined_{tag} > $out/v", False),
    # Detached from the log: a leftover, killed when the step's shell ends, so "late" never lands. It would write
    # once the test opens {gate} after the run (one that wrote while its step still ran, on a loaded machine that
    # takes long to end it, wrote into the step's output: no escape).
    "background_writer": ("echo {tag} > $out/v; (until [ -e {gate} ]; do sleep 0.1; done; echo late >> $out/v) "
                          ">/dev/null 2>&1 & echo started", True),
    # Still holding the step's log: the step ends when it does (as a Nix build), so "late" is part of the output.
    "background_on_the_log": ("(sleep 0.3; echo late >> $out/v) & echo {tag} > $out/v", True),
    "fails_after_writing": ("echo {tag} > $out/v; exit 3", False),
}


def pipeline(kinds: list[str], links: list[bool], root: str, gate: Path) -> list[tuple[Recipe, str]]:
    """A chain of steps; each one reads its predecessor's output when `links` says so."""
    steps: list[tuple[Recipe, str]] = []
    for n, kind in enumerate(kinds):
        up = steps[-1][0] if steps and links[n] else None
        tag = f"s{n}-{kind}"
        token = context.placeholder(root, f"{up.key if up else ''}{n}{kind}", up.name)[0] if up else ""
        command = KINDS[kind][0].format(up=token or "/nonexistent", tag=tag, gate=gate)
        inputs = [Input(token, step=up)] if up else []
        steps.append((Recipe(name=f"s{n}", command=command, inputs=inputs), kind))
    return steps


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=5),
       links=st.lists(st.booleans(), min_size=5, max_size=5))
@example(kinds=["background_on_the_log", "ok"], links=[False, True, False, False, False])  # a copy of "late"
@example(kinds=["background_writer", "ok"], links=[False, True, False, False, False])  # a leftover, then a copy
def test_no_failed_step_is_ever_realised(kinds: list[str], links: list[bool]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        gate = Path(tmp) / "gate"
        steps = pipeline(kinds, links, str(store.root), gate)
        results = Engine(store).run_graph([r for r, _ in steps], jobs=2, keep_going=True)
        survivors = left_running(str(gate))  # leftovers that outlived their step (none can write before this)
        gate.touch()
        if survivors:
            time.sleep(1.5)  # (they write and end before their gate's directory goes)
        assert survivors == []
        recorded = {json.loads(p.read_text())["name"] for p in (store.root / "realisations").glob("*.json")}
        expected: dict[str, list[str]] = {}  # the lines each successful step's output must hold
        for recipe, kind in steps:
            outcome = results[recipe]
            ups_ok = all(isinstance(results[u], Result) for u in recipe.upstream())
            should_succeed = KINDS[kind][1] and ups_ok
            assert isinstance(outcome, Result) == should_succeed, (recipe.name, kind, outcome)
            assert (recipe.name in recorded) == should_succeed, (recipe.name, kind)
            if not should_succeed:
                continue
            tag = f"s{recipe.name[1:]}-{kind}"
            copied = expected[recipe.upstream()[0].name] if kind == "ok" and recipe.upstream() else []
            expected[recipe.name] = copied + [tag] + (["late"] if kind == "background_on_the_log" else [])
            obj = store.object_path(outcome.outputs["out"])
            assert nar.nar_hash(obj) == outcome.outputs["out"]
            assert (obj / "v").read_text().splitlines() == expected[recipe.name], (recipe.name, kind)
