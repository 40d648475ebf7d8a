"""A step calling user code kept in a library container that holds it outside any `__dict__` is keyed on that code.

Before: nixlib.pycode looked for held user code only in dicts, lists, tuples, sets, namespaces, partials, functions'
defaults and objects' `__dict__` (keys27). A Snakefile or pipeline function kept in a `collections.deque`, a
`types.MappingProxyType`, an `itertools.cycle`, a `contextvars.ContextVar` default, a weak reference (a
`WeakValueDictionary`), or a deque inside a `queue.Queue` was neither keyed by its code nor noticed as unfollowed:
editing it served the stale result. A function stored as an Enum member's value (`N = enum.member(n)`) crashed the
keying (`TypeError: function`), and the implementations a `@functools.singledispatch` function registers (its
`registry`) were not followed. Now objects of C-implemented or `__slots__` library types are looked into by what
they report holding (gc.get_referents; a weak reference by its target): the code found is keyed by its digest; code
still out of reach (a library object's `__dict__`: a Queue's deque) is noticed, and a `run:` block then keys all of
the config and the whole text of that code's file (the safe side)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from snakemake_executor_nixworkflow.jobs import run_config_read, run_digest
from tests.luigi_run import luigi_cli, runs
from tests.test_keys27 import rule_of
from tests.test_snakemake import executions, ok, snakemake
from tests.test_snakemake_config26 import edit, rerun
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

FAST = {
    "config.yaml": "thr: 2\n",
    "Snakefile": '''
import collections
import os

configfile: "config.yaml"

def q_fn():
    return "q1"

STEPS = collections.deque([q_fn])

rule deque:
    output: "out/deque.txt"
    run:
        with open(os.environ["NW_TEST_LOG"], "a") as f:
            f.write("deque\\n")
        open(output[0], "w").write(STEPS[0]() + "\\n")
''',
}


def test_a_function_held_in_a_deque_is_keyed_by_its_code(tmp_path: Path, log: Path) -> None:
    wf = write(tmp_path / "wf", FAST)
    ok(snakemake(wf))
    assert executions(log) == Counter({"deque": 1})
    assert rerun(wf, log) == Counter()  # (nothing changed: a hit)
    edit(wf / "Snakefile", '"q1"', '"q2"')  # the held function's code
    assert rerun(wf, log) == Counter({"deque": 1}), "editing a function kept in a deque served the old result"
    assert (wf / "out/deque.txt").read_text() == "q2\n"


SNAKEFILE = '''
import collections
import contextvars
import enum
import itertools
import os
import queue
import types
import weakref

configfile: "config.yaml"

def logged(name):
    with open(os.environ["NW_TEST_LOG"], "a") as f:
        f.write(name + "\\n")

def p_fn():
    return "p1"

def e_fn():
    return "e1"

def c_fn():
    return "c1"

def v_fn():
    return "v1"

def w_fn():
    return "w1"

def u_fn():
    return "u1"

PROXY = types.MappingProxyType({"p": p_fn})

class Op(enum.Enum):
    E = enum.member(e_fn)

CYCLE = itertools.cycle([c_fn])
VAR = contextvars.ContextVar("v", default=v_fn)
WEAK = weakref.WeakValueDictionary({"w": w_fn})
QUEUE = queue.Queue()
QUEUE.put(u_fn)

rule all:
    input: expand("out/{n}.txt", n=["proxy", "enum", "cycle", "var", "weak", "queue"])

rule proxy:
    output: "out/proxy.txt"
    run:
        logged("proxy")
        open(output[0], "w").write(PROXY["p"]() + "\\n")

rule enum:
    output: "out/enum.txt"
    run:
        logged("enum")
        open(output[0], "w").write(Op.E.value() + "\\n")

rule cycle:
    output: "out/cycle.txt"
    run:
        logged("cycle")
        open(output[0], "w").write(next(CYCLE)() + "\\n")

rule var:
    output: "out/var.txt"
    run:
        logged("var")
        open(output[0], "w").write(VAR.get()() + "\\n")

rule weak:
    output: "out/weak.txt"
    run:
        logged("weak")
        open(output[0], "w").write(WEAK["w"]() + "\\n")

rule queue:
    output: "out/queue.txt"
    run:
        logged("queue")
        open(output[0], "w").write(QUEUE.queue[0]() + "\\n")
'''

HELD = ("proxy", "enum", "cycle", "var", "weak", "queue")


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_code_held_in_library_containers_is_keyed(tmp_path: Path, log: Path) -> None:
    wf = write(tmp_path / "wf", {"config.yaml": "thr: 2\n", "Snakefile": SNAKEFILE})
    ok(snakemake(wf))
    assert executions(log) == Counter(HELD)
    assert rerun(wf, log) == Counter()  # (nothing changed: all hit)
    for rule, letter in [("proxy", "p"), ("enum", "e"), ("cycle", "c"), ("var", "v")]:
        edit(wf / "Snakefile", f'"{letter}1"', f'"{letter}2"')  # keyed by its code: its rule re-runs (and the
        assert rerun(wf, log) == Counter({rule: 1, "weak": 1, "queue": 1}), rule  # two keyed on the file's text)
        assert (wf / f"out/{rule}.txt").read_text() == f"{letter}2\n"
    # A weakly held function and a Queue's deque (in the Queue's `__dict__`, a library object's state): noticed as
    # unfollowed, so those blocks key the whole Snakefile's text (any edit re-runs them: the safe side).
    edit(wf / "Snakefile", '"w1"', '"w2"')
    assert rerun(wf, log) == Counter({"weak": 1, "queue": 1})
    assert (wf / "out/weak.txt").read_text() == "w2\n"
    edit(wf / "Snakefile", '"u1"', '"u2"')
    assert rerun(wf, log) == Counter({"weak": 1, "queue": 1})
    assert (wf / "out/queue.txt").read_text() == "u2\n"


PIPELINE = '''
import collections
import types

import luigi
from luigi_nixworkflow import NixTask
from tests.luigi_run import note


def fmt(x):
    return f"v1:{x}"


def label():
    return "l1"


STEPS = collections.deque([fmt])
NAMES = types.MappingProxyType({"label": label})


class Report(NixTask):
    def output(self):
        return luigi.LocalTarget("out/report.txt")

    def run(self):
        note("Report")
        with self.output().open("w") as f:
            f.write(STEPS[0](3) + NAMES["label"]())


class Other(NixTask):
    def output(self):
        return luigi.LocalTarget("out/other.txt")

    def run(self):
        note("Other")
        with self.output().open("w") as f:
            f.write("other")


class All(luigi.WrapperTask):
    def requires(self):
        return [Report(), Other()]
'''


def test_a_luigi_task_calling_code_in_a_deque_or_a_mapping_proxy_is_keyed_by_it() -> None:
    Path("pipeline.py").write_text(PIPELINE)
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Report": 1, "Other": 1}
    for old, new, text in [('"v1:', '"v2:', "v2:3l1"), ('"l1"', '"l2"', "v2:3l2")]:
        Path("pipeline.py").write_text(Path("pipeline.py").read_text().replace(old, new))
        Path("runs.log").unlink()
        luigi_cli("--module", "pipeline", "All")
        assert runs() == {"Report": 1}, f"editing {old} served the old result"
        assert Path("out/report.txt").read_text() == text


QUEUED = PIPELINE.replace("STEPS = collections.deque([fmt])", "import queue\nSTEPS = queue.Queue()\nSTEPS.put(fmt)"
                          ).replace("STEPS[0](3)", "STEPS.queue[0](3)")


def test_a_luigi_task_calling_code_out_of_reach_keys_its_files_text() -> None:
    """A function in a `queue.Queue` (its deque is in the Queue's `__dict__`, a library object's state, which the
    keying does not walk) called by a task: the Snakemake side keyed the file's whole text for such code, the Luigi
    side had no such fallback and served the stale result after the function was edited. Now Luigi keys the text of
    the file too (nixlib.pycode.unfollowed_texts): editing the function re-runs the task that calls it, and only
    that one (a task calling no such code keeps its key)."""
    Path("pipeline.py").write_text(QUEUED)
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Report": 1, "Other": 1}
    Path("pipeline.py").write_text(QUEUED.replace('"v1:', '"v2:'))
    Path("runs.log").unlink()
    luigi_cli("--module", "pipeline", "All")
    assert runs() == {"Report": 1}, "editing the queued function served the old result"
    assert Path("out/report.txt").read_text() == "v2:3l1"


# Snakefile code whose block calls a function through a library object; the block never names `config`
CONTAINERS = {
    "deque": 'import collections\ndef n():\n    return config["b"]\nQ = collections.deque([n])\n'
             'def block():\n    return Q[0]()\n',
    "proxy": 'import types\ndef n():\n    return config["b"]\nP = types.MappingProxyType({"n": n})\n'
             'def block():\n    return P["n"]()\n',
    "enum": 'import enum\ndef n():\n    return config["b"]\nclass Op(enum.Enum):\n    N = enum.member(n)\n'
            'def block():\n    return Op.N.value()\n',
    "enum_member": 'import enum, functools\ndef n():\n    return config["b"]\nclass Op(enum.Enum):\n'
                   '    N = functools.partial(n)\nM = Op.N\ndef block():\n    return M.value()\n',
    "cycle": 'import itertools\ndef n():\n    return config["b"]\nC = itertools.cycle([n])\n'
             'def block():\n    return next(C)()\n',
    "contextvar": 'import contextvars\ndef n():\n    return config["b"]\nV = contextvars.ContextVar("v", default=n)\n'
                  'def block():\n    return V.get()()\n',
    "weakvalue": 'import weakref\ndef n():\n    return config["b"]\nW = weakref.WeakValueDictionary({"n": n})\n'
                 'def block():\n    return W["n"]()\n',
    "weakmethod": 'import weakref\nclass H:\n    def n(self):\n        return config["b"]\nh = H()\n'
                  'WM = weakref.WeakMethod(h.n)\ndef block():\n    return WM()()\n',
    "queue": 'import queue\ndef n():\n    return config["b"]\nQ = queue.Queue()\nQ.put(n)\n'
             'def block():\n    return Q.queue[0]()\n',
    "singledispatch": 'import functools\n@functools.singledispatch\ndef f(x):\n    return 0\n@f.register\n'
                      'def _(x: int):\n    return config["b"]\ndef block():\n    return f(1)\n',
    "in_a_dict": 'import collections\ndef n():\n    return config["b"]\nD = {"q": collections.deque([n])}\n'
                 'def block():\n    return D["q"][0]()\n',
}


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_editing_code_held_in_a_library_container_changes_the_key(name: str, tmp_path: Path) -> None:
    source = CONTAINERS[name]
    edited = source.replace('config["b"]', '(config["b"], "edited")')
    before = rule_of(source, tmp_path / "a")
    assert run_digest(before)[0] != run_digest(rule_of(edited, tmp_path / "b"))[0]
    assert run_digest(before)[0] == run_digest(rule_of(source, tmp_path / "c"))[0]  # (stable: a hit next run)
    assert run_config_read(before) in ({"b"}, None)  # the config key the held code reads (or all of it)


PLAIN = ('import pathlib, re\nimport numpy as np\nimport pandas as pd\n'
         'TABLE = pd.DataFrame({"a": ["x", "y"], "b": [1, 2]})\nARR = np.arange(5)\n'
         'OBJ = np.array(["x"], dtype=object)\n'
         'PAT = re.compile(r"\\d+")\nHERE = pathlib.Path("data")\n'
         'def block():\n    return TABLE, ARR, OBJ, PAT, HERE, config["b"]\n')


def test_library_objects_holding_no_code_key_only_the_config_read(tmp_path: Path) -> None:
    """A DataFrame, arrays, a regex, a Path: looked into, they hold no user code, so nothing counts as unfollowed."""
    pytest.importorskip("pandas")
    assert run_config_read(rule_of(PLAIN, tmp_path)) == {"b"}
