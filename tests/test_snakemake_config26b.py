"""A `run:` block reads the config keys it names, not the whole config.

Before: a `run:` block that named the config at all (`config["threshold"]`, a helper's `config["threshold"]`, a
`shell("echo {config[threshold]}")` template) was keyed on the whole config, so adding a sample to `samples:` re-ran
it. Now a block whose every use of the config (in its code and in the code it uses) is a read of one top-level key
by a constant name is keyed on those keys' values; any other use (`cfg = config`, a computed key, a template the
code does not hold, a function it runs that is not walked) keys all of it."""

from __future__ import annotations

import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from snakemake_executor_nixworkflow.jobs import run_config_read
from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_config26 import edit, rerun
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

FILES = {
    "config.yaml": "threshold: 2\nsamples: [a, b]\nextra: {depth: 1}\n",
    "Snakefile": '''
import os

configfile: "config.yaml"

def thr():
    return config["threshold"]

def logged(name):
    with open(os.environ["NW_TEST_LOG"], "a") as f:
        f.write(name + "\\n")

rule all:
    input: "out/direct.txt", "out/helper.txt", "out/template.txt", "out/whole.txt", "out/absent.txt"

rule direct:
    output: "out/direct.txt"
    run:
        logged("direct")
        open(output[0], "w").write(str(config["threshold"]) + "\\n")

rule helper:
    output: "out/helper.txt"
    run:
        logged("helper")
        open(output[0], "w").write(str(thr()) + "\\n")

rule template:
    output: "out/template.txt"
    run:
        logged("template")
        shell("echo {config[threshold]} > {output}")

rule whole:
    output: "out/whole.txt"
    run:
        logged("whole")
        cfg = config
        open(output[0], "w").write(str(cfg["threshold"]) + "\\n")

rule absent:
    output: "out/absent.txt"
    run:
        logged("absent")
        open(output[0], "w").write(str(config.get("label", "none")) + "\\n")
''',
}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_run_block_is_keyed_on_the_config_keys_it_reads(tmp_path: Path, log: Path) -> None:
    wf = write(tmp_path / "wf", FILES)
    ok(snakemake(wf))
    assert executions(log) == Counter({"direct": 1, "helper": 1, "template": 1, "whole": 1, "absent": 1})
    config = wf / "config.yaml"

    edit(config, "[a, b]", "[a, b, c]")  # a key only `whole` may read (it holds the config whole)
    assert rerun(wf, log) == Counter({"whole": 1})

    edit(config, "threshold: 2", "threshold: 3")  # read by all but `absent`
    assert rerun(wf, log) == Counter({"direct": 1, "helper": 1, "template": 1, "whole": 1})
    for name in ("direct", "helper", "template"):
        assert (wf / f"out/{name}.txt").read_text() == "3\n"

    config.write_text(config.read_text() + "label: hello\n")  # a key absent before, read by `absent`
    assert rerun(wf, log) == Counter({"whole": 1, "absent": 1})
    assert (wf / "out/absent.txt").read_text() == "hello\n"


def rule_of(source: str, tmp_path: Path, config: dict[str, Any] | None = None) -> Any:
    """A rule-like object whose `run_func` is `block` of `source`, compiled as a Snakefile is (user code, with the
    config a module-level `config`)."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(source)
    namespace: dict[str, Any] = {"__name__": "snakefile",
                                 "config": {"a": 1, "b": [1], "cmd": "x"} if config is None else config}
    exec(compile(source, str(snakefile), "exec"), namespace)  # noqa: S102 - the test's own Snakefile code
    return types.SimpleNamespace(run_func=namespace["block"], module_globals=namespace)


@pytest.mark.parametrize(("source", "keys"), [
    ('def block():\n    return config["a"], config.get("b", {}), "c" in config\n', {"a", "b", "c"}),
    ('def h():\n    return [config["b"] for _ in "x"]\ndef block():\n    return config["a"], h()\n', {"a", "b"}),
    ('def block():\n    shell("echo {config[a]} {config[b][0]:>3}")\n', {"a", "b"}),
    ('CMD = "echo {config[b]}"\ndef block():\n    shell(CMD)\n    return config["a"]\n', {"a", "b"}),
    ("def block():\n    return 1\n", set()),
])
def test_constant_key_reads_of_a_run_block_are_found(source: str, keys: set[str], tmp_path: Path) -> None:
    assert run_config_read(rule_of(source, tmp_path)) == frozenset(keys)


@pytest.mark.parametrize("source", [
    'def block():\n    cfg = config\n    return cfg["a"]\n',  # an alias
    'CFG = config\ndef block():\n    return CFG["a"], config["a"]\n',  # a module-level alias
    'def block():\n    return print(config), config["a"]\n',  # handed on
    'def block(k="a"):\n    return config[k]\n',  # a computed key
    'def block():\n    return config.get("a" + "x".upper())\n',
    'def block():\n    return [k for k in config]\n',  # iterated
    'def block():\n    config["a"] = 2\n',  # written
    'def block():\n    return config[0]\n',  # not a str key
    'def block():\n    shell("echo {config[0]}")\n',  # an int key in a template
    'def block():\n    shell("echo {config}")\n',  # the whole config formatted
    'def block():\n    open("config/x.tsv")\n    return config["a"]\n',  # another string naming it
    'def block():\n    shell(open("cmd.txt").read())\n    return config["a"]\n',  # a template the code does not hold
    'def block():\n    shell(config["cmd"])\n',  # a template held by the config (below: it names the config)
    'def block():\n    shell(f"echo {config[\'a\']} {{config[b]}}")\n',  # an f-string: a computed template
    'def block():\n    return globals()["config"]["a"]\n',
    'def block():\n    return workflow.config["a"], config["a"]\n',
    'def n():\n    return config["b"]\nSTEPS = {"n": n}\ndef block():\n    return config["a"], STEPS["n"]()\n',
    'class H:\n    def n(self):\n        return config["b"]\nHELP = H()\n'
    'def block():\n    return config["a"], HELP.n()\n',
    'import collections\nD = collections.defaultdict(lambda: config["b"])\n'
    'def block():\n    return config["a"], D["x"]\n',
    'def h(config):\n    return config["a"]\ndef block():\n    return h({"a": config["a"]})\n',  # a local `config`
])
def test_any_other_use_of_the_config_in_a_run_block_reads_all_of_it(source: str, tmp_path: Path) -> None:
    config = {"a": 1, "b": [1], "cmd": "echo {config[b]}"}
    assert run_config_read(rule_of(source, tmp_path, config)) is None


def test_a_config_of_another_module_reads_all_of_it(tmp_path: Path) -> None:
    """A helper whose globals hold another `config` (a module of its own) reads that one: the block's keys of the
    workflow's config say nothing of what it reads."""
    rule = rule_of('def block():\n    return config["a"], helper()\n', tmp_path)
    other: dict[str, Any] = {"config": dict(rule.module_globals["config"])}
    exec(compile('def helper():\n    return config["b"]\n', str(tmp_path / "Snakefile"), "exec"), other)  # noqa: S102
    rule.module_globals["helper"] = other["helper"]
    assert run_config_read(rule) is None
