"""Recipe keys and the engine's realise(), without any front door."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from nixlib import context
from nixlib.engine import Engine, topological
from nixlib.errors import NixWorkflowError, StepFailed
from nixlib.recipe import Input, Recipe
from nixlib.store import Store


def step(name: str, command: str, *ups: Recipe, root: str = "/r") -> Recipe:
    """A recipe whose command mentions each upstream's placeholder as `{0}`, `{1}`, …"""
    tokens = [context.placeholder(root, u.name + u.command, u.name)[0] for u in ups]
    return Recipe(name=name, command=command.format(*tokens),
                  inputs=[Input(t, step=u) for t, u in zip(tokens, ups, strict=True)])


def test_recipe_key_ignores_name_store_root_and_placeholder_identity() -> None:
    a1, a2 = step("a", "echo a"), step("renamed", "echo a")
    b1 = step("b", "cat {0}/x", a1, root="/one")
    b2 = step("other", "cat {0}/x", a2, root="/elsewhere/store-root")
    assert a1.key == a2.key and b1.key == b2.key


def test_recipe_key_changes_with_command_env_files_extra_and_upstream() -> None:
    base = Recipe(name="s", command="echo 1")
    variants = [
        Recipe(name="s", command="echo 2"),
        Recipe(name="s", command="echo 1", env={"kind": "nix", "drvs": ["/nix/store/x.drv"]}),
        Recipe(name="s", command="echo 1", files={"in.csv": "0" * 52}),
        Recipe(name="s", command="echo 1", extra={"params": {"lr": 0.1}}),
        Recipe(name="s", command="echo 1", outputs=("out", "log")),
    ]
    keys = {base.key} | {v.key for v in variants}
    assert len(keys) == len(variants) + 1
    up1, up2 = step("u", "echo u1"), step("u", "echo u2")
    assert step("d", "cat {0}", up1).key != step("d", "cat {0}", up2).key


def test_resolved_key_depends_only_on_upstream_content() -> None:
    up1, up2 = step("u", "echo u1"), step("u", "echo u2")
    d1, d2 = step("d", "cat {0}", up1), step("d", "cat {0}", up2)
    same = {d1.inputs[0].token: "1" * 52}
    assert d1.resolved_key(same) == d2.resolved_key({d2.inputs[0].token: "1" * 52})
    assert d1.resolved_key(same) != d1.resolved_key({d1.inputs[0].token: "2" * 52})


def test_cycle_is_an_error_naming_the_steps() -> None:
    a = Recipe(name="a", command="x")
    b = Recipe(name="b", command="y", inputs=[Input("T", step=a)])
    a.inputs.append(Input("U", step=b))
    with pytest.raises(NixWorkflowError, match="cycle: a -> b -> a|cycle: b -> a -> b"):
        topological([a])


def test_realise_runs_once_then_serves_from_store(tmp_path: Path) -> None:
    count = tmp_path / "count"
    recipe = Recipe(name="s", command=f"echo ran >> {count}; echo hi > $out/hi")
    engine = Engine(Store(tmp_path / "s"))
    first = engine.realise(recipe)
    assert not first.cached
    again = Engine(Store(tmp_path / "s")).realise(Recipe(name="s", command=recipe.command))
    assert again.cached and again.outputs == first.outputs
    assert count.read_text() == "ran\n"


def test_threads_racing_on_one_key_run_it_once(tmp_path: Path) -> None:
    count = tmp_path / "count"
    command = f"echo ran >> {count}; sleep 0.3; echo hi > $out/hi"
    store = Store(tmp_path / "s")
    results = []
    threads = [threading.Thread(target=lambda: results.append(Engine(store).realise(Recipe(name="s",
                                                                                          command=command))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count.read_text() == "ran\n"
    assert len({tuple(r.outputs.values()) for r in results}) == 1


def test_failed_step_stores_nothing_and_keeps_its_log(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(StepFailed, match="step 's' failed: command exited with status 4") as e:
        Engine(store).realise(Recipe(name="s", command="echo partial > $out/p; echo oops; exit 4"))
    assert not list((store.root / "store").iterdir())
    assert not list((store.root / "realisations").iterdir())
    assert "oops" in Path(str(e.value.log)).read_text()


def test_action_missing_a_declared_output_is_a_step_failure(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    recipe = Recipe(name="s", command="true", outputs=("out", "extra"))
    with pytest.raises(StepFailed, match="did not create the declared output"):
        Engine(store).realise(recipe, action=lambda build, cmd: {"out": build.out})
    assert not list((store.root / "store").iterdir())


def test_working_directory_outputs_are_copied_not_moved(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    target = tmp_path / "results.txt"

    def action(build, command):  # a step that writes into a working directory, as a Snakemake job does
        target.write_text("result")
        return {"out": target}

    result = Engine(store).realise(Recipe(name="s", command="wd"), action=action)
    assert target.read_text() == "result"
    assert store.object_path(result.outputs["out"]).read_text() == "result"


def test_env_paths_come_first_on_path(tmp_path: Path) -> None:
    tool = tmp_path / "env" / "bin" / "hello-tool"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho from-env\n")
    tool.chmod(0o755)
    store = Store(tmp_path / "s")
    recipe = Recipe(name="s", command="hello-tool > $out/said", env={"kind": "test"},
                    env_paths=(str(tmp_path / "env"),))
    result = Engine(store).realise(recipe)
    assert (store.object_path(result.outputs["out"]) / "said").read_text() == "from-env\n"


def test_a_step_whose_env_is_missing_fails_instead_of_running_with_the_hosts_tools(store_root: Path) -> None:
    """The runner leaves a missing env directory off PATH, so a step whose Nix env was collected (or never built
    on this host) ran with the host's tools, and its result was stored under the Nix env's key. Now it fails,
    naming the missing path, and nothing is stored."""
    store = Store(store_root)
    gone = "/nix/store/" + "0" * 32 + "-collected-tool"
    recipe = Recipe(name="s", command="echo ran > $out/x", env={"kind": "nix", "drvs": [gone + ".drv"]},
                    env_paths=(gone,))
    with pytest.raises(StepFailed, match="collected-tool"):
        Engine(store).realise(recipe)
    assert not list((store_root / "realisations").rglob("*.json"))
