"""A task's key covers the module-level code its methods use (nixlib/pycode.py), not only its class.

A legacy pipeline keeps its logic in helpers: `from utils import clean`, `utils.fmt(...)`, a constant, a helper
class, a helper that calls another one, a luigi.Config read only by a helper. Editing any of them must re-run
the task that uses them (before, the cached result of the old code was served: silently stale); editing a
comment, or a function nothing uses, must not; and an upstream task named in requires() stays keyed by its
result, not its source, so an edit there that produces the same bytes re-runs nothing downstream.
Each run is a fresh `luigi` process (real CLI, local scheduler), so nothing is remembered in between."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.helpers import REPO

LUIGI = str(Path(sys.executable).with_name("luigi"))

UTILS = '''
import luigi

SCALE = 2  # a plain value


def _strip(text):
    return text.strip()


def clean(text):
    return _strip(text).lower()


def fmt(n):
    return f"n={n}"


def unrelated():
    return 1


class Joiner:
    sep = "+"

    def join(self, parts):
        return self.sep.join(parts)


class Threshold(luigi.Config):
    value = luigi.IntParameter(default=5)


def limit():
    return Threshold().value
'''

PIPELINE = '''
import os

import luigi

import nwhelp_utils
from luigi_nixworkflow import NixTask
from nwhelp_utils import SCALE, Joiner, clean


def note(what):
    with open(os.environ["NW_TEST_LOG"], "a") as log:
        log.write(what + "\\n")


class Upstream(NixTask):
    def output(self):
        return luigi.LocalTarget("up.txt")

    def run(self):
        note("up")
        with self.output().open("w") as f:
            f.write(" Hello World \\n")


class Report(NixTask):
    def requires(self):
        return Upstream()

    def output(self):
        return luigi.LocalTarget("report.txt")

    def run(self):
        note("report")
        with self.input().open() as f:
            text = f.read()
        with self.output().open("w") as f:
            f.write(Joiner().join([clean(text), nwhelp_utils.fmt(SCALE), str(nwhelp_utils.limit())]))
'''


class Pipeline:
    """The two modules in a directory of their own, edited between runs of the real luigi CLI."""

    def __init__(self, tmp_path: Path) -> None:
        self.modules = tmp_path / "modules"
        self.modules.mkdir()
        self.log = tmp_path / "runs.log"
        self.cfg = tmp_path / "luigi.cfg"
        self.cfg.write_text("")
        self.sources = {"nwhelp_utils.py": UTILS, "nwhelp.py": PIPELINE}
        for name, text in self.sources.items():
            (self.modules / name).write_text(text)

    def edit(self, name: str, old: str, new: str) -> None:
        text = (self.modules / name).read_text()
        assert old in text, old
        (self.modules / name).write_text(text.replace(old, new))

    def run(self, tasks: list[str] | None = None) -> Counter[str]:
        env = dict(os.environ, NW_TEST_LOG=str(self.log), LUIGI_CONFIG_PATH=str(self.cfg),
                   PYTHONPATH=os.pathsep.join([str(self.modules), str(REPO)]), PYTHONDONTWRITEBYTECODE="1")
        argv = [LUIGI, "--module", "nwhelp", *(tasks or ["Report"]), "--local-scheduler", "--retcode-task-failed", "3",
                "--retcode-scheduling-error", "4"]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return Counter(self.log.read_text().split()) if self.log.exists() else Counter()


def test_helpers_a_task_uses_are_in_its_key(tmp_path: Path, store_root: Path) -> None:
    p = Pipeline(tmp_path)
    assert p.run() == {"up": 1, "report": 1}
    assert Path("report.txt").read_text() == "hello world+n=2+5"

    p.edit("nwhelp_utils.py", "SCALE = 2  # a plain value", "SCALE = 2  # a comment changes no code")
    p.edit("nwhelp_utils.py", "    return 1\n", "    return 2\n")  # a function nothing uses
    assert p.run() == {"up": 1, "report": 1}

    p.edit("nwhelp_utils.py", "return text.strip()", "return text.strip(' \\n')")  # a helper's helper
    assert p.run() == {"up": 1, "report": 2}
    p.edit("nwhelp_utils.py", 'return f"n={n}"', 'return f"N={n}"')  # through the module: utils.fmt(...)
    assert p.run() == {"up": 1, "report": 3}
    p.edit("nwhelp_utils.py", "SCALE = 2", "SCALE = 3")  # a constant imported by name
    assert p.run() == {"up": 1, "report": 4}
    p.edit("nwhelp_utils.py", 'sep = "+"', 'sep = "|"')  # a helper class
    assert p.run() == {"up": 1, "report": 5}
    assert Path("report.txt").read_text() == "hello world|N=3|5"
    p.cfg.write_text("[Threshold]\nvalue = 7\n")  # a Config read only by a helper
    assert p.run() == {"up": 1, "report": 6}
    assert Path("report.txt").read_text() == "hello world|N=3|7"
    assert p.run() == {"up": 1, "report": 6}

    # an upstream task's code changes and it writes the same bytes: it runs, the task below does not
    p.edit("nwhelp.py", '        note("up")\n', '        note("up")\n        unused = 1  # noqa\n')
    assert p.run() == {"up": 2, "report": 6}


def test_what_the_walk_follows_and_leaves(tmp_path: Path) -> None:
    """Pure: which names of a class's code are keyed, looked up where its code looks them up."""
    (tmp_path / "nwwalk_lib.py").write_text(
        "import re\nimport luigi\nPATTERN = re.compile('x')\nBIG = list(range(100000))\nLIMIT = 3\n"
        "def helper():\n    return LIMIT\n"
        "class Up(luigi.Task):\n    pass\n"
    )
    (tmp_path / "nwwalk.py").write_text(
        "import json\nimport luigi\nfrom nwwalk_lib import PATTERN, BIG, Up, helper\n"
        "class T(luigi.Task):\n"
        "    def requires(self):\n        return Up()\n"
        "    def run(self):\n        return [json.dumps(helper()), PATTERN, BIG, (lambda: helper())()]\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import nwwalk  # noqa: PLC0415

        from luigi_nixworkflow import keying

        uses, configs = keying._uses(nwwalk.T)[:2]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("nwwalk", None)
        sys.modules.pop("nwwalk_lib", None)
    # helper and what it reads are keyed, and so is the compiled regex (by pattern and flags); json (stdlib), the
    # upstream task Up and a list too large to be code are not
    assert sorted(uses) == ["nwwalk.PATTERN", "nwwalk_lib.LIMIT", "nwwalk_lib.helper"]
    assert uses["nwwalk_lib.helper"].startswith("def:") and uses["nwwalk_lib.LIMIT"].startswith("value:")
    assert configs == (nwwalk.Up,)  # returned to the caller, keyed by its result


SCRIPTS = '''
import os
import subprocess
import sys

import luigi

from luigi_nixworkflow import NixTask

HERE = os.path.dirname(os.path.abspath(__file__))


def note(what):
    with open(os.environ["NW_TEST_LOG"], "a") as log:
        log.write(what + "\\n")


class Cleaned(NixTask):
    def output(self):
        return luigi.LocalTarget("cleaned.txt")

    def run(self):
        note("cleaned")
        text = subprocess.run([sys.executable, "scripts/clean.py"], check=True, capture_output=True, text=True).stdout
        with self.output().open("w") as f:
            f.write(text)


class Tagged(NixTask):
    def requires(self):
        return Cleaned()

    def command(self):
        return f'echo tagged >> "$NW_TEST_LOG"; sh {HERE}/tag.sh {self.input().path} > {self.output()}/v'
'''


def test_scripts_a_task_runs_are_in_its_key(tmp_path: Path, store_root: Path) -> None:
    """A project script named in a legacy run()'s code (relative to where Luigi runs) or in a command() (by an
    absolute path in the module's directory), and a local module it imports, are keyed by content: editing one
    re-runs the task that runs it (before, the old script's result was served)."""
    p = Pipeline(tmp_path)
    (p.modules / "nwhelp.py").write_text(SCRIPTS)
    scripts = Path("scripts")
    scripts.mkdir()
    (scripts / "words.py").write_text("WORDS = ['a', 'b']\n")
    (scripts / "clean.py").write_text("from words import WORDS\nprint('-'.join(WORDS))\n")
    (p.modules / "tag.sh").write_text('echo "tag: $(cat "$1")"\n')

    def run() -> Counter[str]:
        return p.run(["Tagged"])

    assert run() == {"cleaned": 1, "tagged": 1}
    assert run() == {"cleaned": 1, "tagged": 1}
    (scripts / "words.py").write_text("WORDS = ['a', 'c']\n")  # a module the script imports
    assert run() == {"cleaned": 2, "tagged": 2}
    (scripts / "clean.py").write_text("from words import WORDS\nprint('+'.join(WORDS))\n")
    assert run() == {"cleaned": 3, "tagged": 3}
    assert Path("cleaned.txt").read_text() == "a+c\n"
    (p.modules / "tag.sh").write_text('echo "TAG: $(cat "$1")"\n')
    assert run() == {"cleaned": 3, "tagged": 4}
    assert run() == {"cleaned": 3, "tagged": 4}


QUOTED = '''
import os
import shlex

import luigi

from luigi_nixworkflow import NixTask

HERE = os.path.dirname(os.path.abspath(__file__))


class Tag(NixTask):
    def command(self):
        return f'echo tag >> "$NW_TEST_LOG"; sh {shlex.quote(HERE + "/tag.sh")} > {self.output()}/v'
'''


def test_a_script_named_by_a_quoted_path_with_a_space_is_keyed(tmp_path: Path, store_root: Path) -> None:
    """A project in a directory whose path has a space names its scripts quoted (shlex.quote); the quoted path
    is keyed whole (before, the command's words stopped at the space and editing tag.sh served the old result)."""
    p = Pipeline(tmp_path)
    p.modules = tmp_path / "my modules"
    p.modules.mkdir()
    (p.modules / "nwhelp.py").write_text(QUOTED)
    (p.modules / "tag.sh").write_text("echo v1\n")
    assert p.run(["Tag"]) == {"tag": 1}
    assert p.run(["Tag"]) == {"tag": 1}
    (p.modules / "tag.sh").write_text("echo v2\n")
    assert p.run(["Tag"]) == {"tag": 2}
    assert (next(Path("nix-workflow-output").glob("Tag*")) / "v").read_text() == "v2\n"


MODULE_RUN = '''
import subprocess
import sys

import luigi

from luigi_nixworkflow import NixTask


class Trained(NixTask):
    def output(self):
        return luigi.LocalTarget("model.txt")

    def run(self):
        with open(__import__("os").environ["NW_TEST_LOG"], "a") as log:
            log.write("trained\\n")
        out = subprocess.run([sys.executable, "-m", "mypkg.train"], check=True, capture_output=True, text=True)
        with self.output().open("w") as f:
            f.write(out.stdout)
'''


def test_a_project_module_run_with_python_m_is_keyed(tmp_path: Path, store_root: Path) -> None:
    """`subprocess.run([sys.executable, "-m", "mypkg.train"])` runs a project package as a script does; editing
    it (or a module it imports) re-runs the task (before, only paths and names with a code suffix were keyed,
    and the old result was served)."""
    p = Pipeline(tmp_path)
    (p.modules / "nwhelp.py").write_text(MODULE_RUN)
    pkg = Path("mypkg")
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text("from mypkg import util\nprint(util.RATE)\n")
    (pkg / "util.py").write_text("RATE = 1\n")
    assert p.run(["Trained"]) == {"trained": 1}
    assert p.run(["Trained"]) == {"trained": 1}
    (pkg / "util.py").write_text("RATE = 2\n")
    assert p.run(["Trained"]) == {"trained": 2}
    assert Path("model.txt").read_text() == "2\n"
    (pkg / "train.py").write_text("from mypkg import util\nprint(util.RATE * 10)\n")
    assert p.run(["Trained"]) == {"trained": 3}
    assert Path("model.txt").read_text() == "20\n"


READS = '''
import subprocess
import sys

import luigi

from luigi_nixworkflow import NixTask

SCRIPT = "scripts/clean.py"  # a module-level string naming the script run() runs
RATES = {f"sample{i}": i for i in range(5000)}  # too large to count as code: data


def note(what):
    with open(__import__("os").environ["NW_TEST_LOG"], "a") as log:
        log.write(what + "\\n")


class Inner(NixTask):
    def output(self):
        return luigi.LocalTarget("inner.txt")

    def run(self):
        note("inner")
        import nwinner  # imported inside the method, as many tasks do to keep imports lazy
        with self.output().open("w") as f:
            f.write(nwinner.VALUE)


class Script(NixTask):
    def output(self):
        return luigi.LocalTarget("script.txt")

    def run(self):
        note("script")
        out = subprocess.run([sys.executable, SCRIPT], check=True, capture_output=True, text=True).stdout
        with self.output().open("w") as f:
            f.write(out)


class Rates(NixTask):
    def output(self):
        return luigi.LocalTarget("rates.txt")

    def run(self):
        note("rates")
        with self.output().open("w") as f:
            f.write(str(RATES["sample7"]))


class Every(luigi.WrapperTask):
    def requires(self):
        return [Inner(), Script(), Rates()]
'''


def test_what_a_tasks_methods_read_beyond_their_code_is_keyed(tmp_path: Path, store_root: Path) -> None:
    """A module imported inside run(), a script named by a module-level string, a module-level dict too large to
    count as code: editing each re-runs the task that reads it (before, each served the old result)."""
    p = Pipeline(tmp_path)
    (p.modules / "nwhelp.py").write_text(READS)
    (p.modules / "nwinner.py").write_text('VALUE = "one"\n')
    Path("scripts").mkdir()
    Path("scripts/clean.py").write_text("print('clean 1')\n")
    every = ["Every"]
    assert p.run(every) == {"inner": 1, "script": 1, "rates": 1}
    assert p.run(every) == {"inner": 1, "script": 1, "rates": 1}  # (unchanged: nothing runs)
    (p.modules / "nwinner.py").write_text('VALUE = "two"\n')
    assert p.run(every) == {"inner": 2, "script": 1, "rates": 1}
    assert Path("inner.txt").read_text() == "two"
    Path("scripts/clean.py").write_text("print('clean 2')\n")
    assert p.run(every) == {"inner": 2, "script": 2, "rates": 1}
    assert Path("script.txt").read_text() == "clean 2\n"
    p.edit("nwhelp.py", 'f"sample{i}": i for', 'f"sample{i}": 2 * i for')
    assert p.run(every) == {"inner": 2, "script": 2, "rates": 2}
    assert Path("rates.txt").read_text() == "14"
