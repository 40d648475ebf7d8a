"""A `run:` block calling Snakefile code through a container, an instance, a namespace or a partial is keyed on it.

Before: nixlib.pycode.uses walked only the functions and classes a block names at module level. A function held in
a dict (`STEPS = {"n": n}` called as `STEPS["n"]()`), a method of an instance of a Snakefile class (`HELP.n()`), a
function in a namespace or list, or a partial inside a container was not walked: the config keys, environment
variables and data files it reads were not in the job's key, and for a container neither was its code (editing its
body served the stale result). Now such held user code is walked and keyed like a function the block names."""

from __future__ import annotations

import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nixlib import pycode
from snakemake_executor_nixworkflow.jobs import run_config_read, run_digest, run_variables
from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_config26 import edit, rerun
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

SNAKEFILE = '''
import functools
import os
import types

configfile: "config.yaml"

def logged(name):
    with open(os.environ["NW_TEST_LOG"], "a") as f:
        f.write(name + "\\n")

def d_fn():
    return str(config["thr"]) + "-d1"

class Helper:
    def n(self):
        return str(config["thr"]) + "-h1"

def ns_fn():
    return str(config["thr"]) + "-n1"

def p_fn(suffix):
    return str(config["thr"]) + suffix

def env_fn():
    return os.environ.get("KEYS27_SCALE", "unset")

STEPS = {"d": d_fn}
HELP = Helper()
NS = types.SimpleNamespace(f=ns_fn)
PARTS = [functools.partial(p_fn, "-p1")]
LAMBDAS = [lambda: str(config["thr"]) + "-l1"]
ENV = {"e": env_fn}

rule all:
    input: expand("out/{n}.txt", n=["dict", "inst", "ns", "part", "lam", "env"])

rule dict:
    output: "out/dict.txt"
    run:
        logged("dict")
        open(output[0], "w").write(STEPS["d"]() + "\\n")

rule inst:
    output: "out/inst.txt"
    run:
        logged("inst")
        open(output[0], "w").write(HELP.n() + "\\n")

rule ns:
    output: "out/ns.txt"
    run:
        logged("ns")
        open(output[0], "w").write(NS.f() + "\\n")

rule part:
    output: "out/part.txt"
    run:
        logged("part")
        open(output[0], "w").write(PARTS[0]() + "\\n")

rule lam:
    output: "out/lam.txt"
    run:
        logged("lam")
        open(output[0], "w").write(LAMBDAS[0]() + "\\n")

rule env:
    output: "out/env.txt"
    run:
        logged("env")
        open(output[0], "w").write(ENV["e"]() + "\\n")
'''

FILES = {"config.yaml": "thr: 2\nsamples: [a]\n", "Snakefile": SNAKEFILE}
HIDDEN = ("dict", "inst", "ns", "part", "lam")


def outputs(wf: Path) -> dict[str, str]:
    return {n: (wf / f"out/{n}.txt").read_text().strip() for n in (*HIDDEN, "env")}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_code_held_in_a_structure_is_keyed_by_what_it_reads_and_by_its_code(
        tmp_path: Path, log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wf = write(tmp_path / "wf", FILES)
    ok(snakemake(wf))
    assert executions(log) == Counter({n: 1 for n in (*HIDDEN, "env")})
    assert outputs(wf) == {"dict": "2-d1", "inst": "2-h1", "ns": "2-n1", "part": "2-p1", "lam": "2-l1",
                           "env": "unset"}

    assert rerun(wf, log) == Counter()  # (nothing changed: all hit)

    edit(wf / "config.yaml", "thr: 2", "thr: 3")  # read only by the held functions
    assert rerun(wf, log) == Counter({n: 1 for n in HIDDEN})
    assert outputs(wf)["dict"] == "3-d1" and outputs(wf)["lam"] == "3-l1"

    snakefile = wf / "Snakefile"
    for old, new, rule in [('"-d1"', '"-d2"', "dict"), ('"-h1"', '"-h2"', "inst"), ('"-n1"', '"-n2"', "ns"),
                           ('"-p1"', '"-p2"', "part"), ('"-l1"', '"-l2"', "lam")]:
        edit(snakefile, old, new)  # the held code (or the argument a held partial binds) edited
        assert rerun(wf, log) == Counter({rule: 1}), rule
        assert outputs(wf)[rule] == "3" + new.strip('"')

    monkeypatch.setenv("KEYS27_SCALE", "set")  # read only by a function held in a dict
    assert rerun(wf, log) == Counter({"env": 1})
    assert outputs(wf)["env"] == "set"


FAST = {
    "config.yaml": "thr: 2\nsamples: [a]\n",
    "Snakefile": '''
import os

configfile: "config.yaml"

def d_fn():
    return str(config["thr"]) + "-d1"

STEPS = {"d": d_fn}

rule dict:
    output: "out/dict.txt"
    run:
        with open(os.environ["NW_TEST_LOG"], "a") as f:
            f.write("dict\\n")
        open(output[0], "w").write(STEPS["d"]() + "\\n")
''',
}


def test_a_function_held_in_a_dict_is_keyed_by_its_code(tmp_path: Path, log: Path) -> None:
    wf = write(tmp_path / "wf", FAST)
    ok(snakemake(wf))
    assert executions(log) == Counter({"dict": 1})
    edit(wf / "Snakefile", '"-d1"', '"-d2"')  # the held function's code
    assert rerun(wf, log) == Counter({"dict": 1})
    assert (wf / "out/dict.txt").read_text() == "2-d2\n"
    # (a config key only the held function reads, and the other held shapes: the long test above)


def rule_of(source: str, tmp_path: Path, config: dict[str, Any] | None = None) -> Any:
    """A rule-like object whose `run_func` is `block` of `source`, compiled as a Snakefile is (user code, with the
    config a module-level `config`)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(source)
    namespace: dict[str, Any] = {"__name__": "snakefile",
                                 "config": {"a": 1, "b": [1], "c": 3} if config is None else config}
    exec(compile(source, str(snakefile), "exec"), namespace)  # noqa: S102 - the test's own Snakefile code
    return types.SimpleNamespace(run_func=namespace["block"], module_globals=namespace, run_func_src="block")


HELD = [  # (Snakefile code, the config keys the held code reads); the block never names `config`
    ('def n():\n    return config["b"]\nSTEPS = {"n": n}\ndef block():\n    return STEPS["n"]()\n', {"b"}),
    ('class H:\n    def n(self):\n        return config["b"]\nHELP = H()\ndef block():\n    return HELP.n()\n',
     {"b"}),
    ('import types\nNS = types.SimpleNamespace(f=lambda: config["b"])\ndef block():\n    return NS.f()\n',
     None),  # (nixlib.pydata.opaque_values: a namespace holding code is an object: all of it, the safe side)
    ('FS = [lambda: config["b"]]\ndef block():\n    return FS[0]()\n', {"b"}),
    ('import functools\ndef p(k):\n    return config[k]\nPS = (functools.partial(p, "b"),)\n'
     'def block():\n    return PS[0]()\n', None),  # (a computed key: all of it)
    ('import collections\nD = collections.defaultdict(lambda: config["b"])\ndef block():\n    return D["x"]\n',
     {"b"}),
    ('def n():\n    return config["b"]\nclass S:\n    FS = [n]\ndef block():\n    return S.FS[0]()\n', {"b"}),
    ('def n():\n    return config["b"]\ndef run(steps={"n": n}):\n    return steps["n"]()\n'
     'def block():\n    return run()\n', {"b"}),
    ('F = lambda: config["a"]\nG = lambda: config["b"]\ndef block():\n    return F(), G()\n', {"a", "b"}),
    ('class H:\n    def n(self):\n        return config["b"]\nSTEPS = {"m": H().n}\ndef block():\n'
     '    return STEPS["m"]()\n', None),  # (a bound method: an object to opaque_values, all of it)
]


@pytest.mark.parametrize(("source", "keys"), HELD)
def test_the_config_read_by_held_code_is_keyed(source: str, keys: set[str] | None, tmp_path: Path) -> None:
    expected = None if keys is None else frozenset(keys)
    assert run_config_read(rule_of(source, tmp_path)) == expected


@pytest.mark.parametrize(("source", "keys"), HELD)
def test_the_code_of_held_code_is_keyed(source: str, keys: set[str] | None, tmp_path: Path) -> None:
    """Editing the held code (a constant it returns besides the config) changes the block's code digest."""
    edited = source.replace('config["b"]', '(config["b"], "edited")').replace('config[k]', '(config[k], "edited")')
    assert edited != source
    before = run_digest(rule_of(source, tmp_path / "a"))[0]
    after = run_digest(rule_of(edited, tmp_path / "b"))[0]
    assert before != after


def test_environment_variables_read_by_held_code_are_keyed(tmp_path: Path) -> None:
    source = ('import os\ndef e():\n    return os.environ.get("KEYS27_SCALE")\nSTEPS = {"e": e}\n'
              'def block():\n    return STEPS["e"]()\n')
    assert "KEYS27_SCALE" in run_variables(rule_of(source, tmp_path))


def test_which_key_holds_which_function_is_keyed(tmp_path: Path) -> None:
    """Swapping the functions two keys hold changes what `STEPS["a"]()` runs."""
    source = 'def f():\n    return 1\ndef g():\n    return 2\nSTEPS = {"a": f, "b": g}\ndef block():\n' \
             '    return STEPS["a"]()\n'
    swapped = source.replace('{"a": f, "b": g}', '{"a": g, "b": f}')
    assert run_digest(rule_of(source, tmp_path / "a"))[0] != run_digest(rule_of(swapped, tmp_path / "b"))[0]


UNFOLLOWED = ('import collections\ndef n():\n    return config["b"]\nREG = collections.ChainMap({"n": n})\n'
              'def block():\n    return REG["n"]()\n')


def test_code_held_in_a_library_object_keys_all_the_config_and_the_file(tmp_path: Path) -> None:
    """A function held in a library object (a ChainMap) is not walked: the whole config is keyed, and the text of
    the file that holds it (the Snakefile), so editing that function re-runs the block."""
    rule = rule_of(UNFOLLOWED, tmp_path / "a")
    assert run_config_read(rule) is None
    edited = rule_of(UNFOLLOWED.replace('config["b"]', '(config["b"], "edited")'), tmp_path / "b")
    assert run_digest(rule)[0] != run_digest(edited)[0]
    again = rule_of(UNFOLLOWED, tmp_path / "c")  # (the same text elsewhere: the same key)
    assert run_digest(rule)[0] == run_digest(again)[0]


def test_held_code_keys_alike_in_every_process(tmp_path: Path) -> None:
    """The held form has no addresses in it: the same Snakefile keys alike twice (a hit on the next run)."""
    source = HELD[1][0] + 'X = {"h": HELP, "s": {1, 2}, "o": object()}\ndef block2():\n    return X\n'
    rule = rule_of(source.replace("def block():", "def block_():").replace("def block2():", "def block():"), tmp_path)
    first = pycode.uses([rule.run_func])[0]
    assert "held:" in str(first)
    assert first == pycode.uses([rule_of(source.replace("def block():", "def block_():").replace(
        "def block2():", "def block():"), tmp_path / "again").run_func])[0]


def test_data_files_named_by_held_code_are_looked_for(tmp_path: Path) -> None:
    """A data file a held function opens (`open("data/table.tsv")`) is among the words the job's files are looked
    for by, as for a function the block names (its content is then keyed per job)."""
    from snakemake_executor_nixworkflow.jobs import run_data_words

    source = ('def load():\n    return open("data/table.tsv").read()\nLOADERS = [load]\n'
              'def block():\n    return LOADERS[0]()\n')
    assert "data/table.tsv" in run_data_words(rule_of(source, tmp_path))
