"""Probe 23 of the front doors' bad inputs (helper cli23): a clear error naming the option, variable or file, a
non-zero exit and no traceback, through the real `nw`, `snakemake` and `luigi` commands.

- a remote URL urllib cannot parse (`http://[`, a port that is not a number in `?endpoint=`) raised a bare
  ValueError with a traceback from nixlib/remotes wherever it came from: --remote, NIX_WORKFLOW_REMOTE, `remote:` in
  nixworkflow.yaml, luigi.cfg, --nixworkflow-remote; a push setting that is no boolean (`maybe`) pushed nothing;
- luigi.cfg [nixworkflow]: an unknown key was ignored, an `out_link` that is a file raised "[Errno 17] File exists"
  with a traceback out of every complete(), a `config` that is a directory was said not to exist;
- Ctrl-C while `nw` imports its modules or builds its parsers printed a KeyboardInterrupt traceback;
- hypothesis: any remote URL is refused with a clear error or opens (never another exception).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlib.errors import NixWorkflowError
from tests.helpers import REPO, clean_failure, nw

EXPERIMENT = 'from nixlib import output\na = output("echo hi > $out/x")\n'


# ---- nw: a remote URL that does not parse -----------------------------------------------------------------

@pytest.mark.parametrize("args", [["run", "exp.py", "--remote", "http://["], ["status", "exp.py", "--remote", "http://["],
                                  ["pull", "--remote", "s3://b/p?endpoint=http://[", "exp.py"],
                                  ["push", "--remote", "file://[x", "a"]])
def test_a_remote_url_that_does_not_parse_is_a_clear_error(tmp_path: Path, store_root: Path, args: list[str]) -> None:
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    clean_failure(nw(*args, cwd=tmp_path), "--remote", "not a valid URL")
    assert not (store_root / "realisations").exists() or not any((store_root / "realisations").iterdir())


def test_a_remote_url_from_the_environment_or_the_config_is_named(tmp_path: Path) -> None:
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    clean_failure(nw("run", "exp.py", cwd=tmp_path, env={"NIX_WORKFLOW_REMOTE": "s3://b/p?endpoint=http://h:port"}),
                  "NIX_WORKFLOW_REMOTE", "not a valid URL")
    (tmp_path / "nixworkflow.yaml").write_text('env: host\nremote:\n  url: "http://["\n')
    clean_failure(nw("run", "exp.py", cwd=tmp_path), "nixworkflow.yaml:3: remote.url", "not a valid URL")


def test_a_push_setting_that_is_no_boolean_is_refused(tmp_path: Path) -> None:
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    remote = tmp_path / "cache"
    remote.mkdir()
    clean_failure(nw("run", "exp.py", "--remote", f"file://{remote}", cwd=tmp_path, env={"NIX_WORKFLOW_PUSH": "maybe"}),
                  "NIX_WORKFLOW_PUSH", "'maybe'")


# ---- nw: Ctrl-C at startup ---------------------------------------------------------------------------------

# A script named `nw`, as the console script is, that receives a real SIGINT at a chosen point of the startup.
NW_SCRIPT = """\
import os, signal, sys
sys.path.insert(0, {repo!r})
import nixlib.cli as cli
if sys.argv[1] == "imported":  # the signal arrives while the script is still importing (after nixlib.cli's top)
    os.kill(os.getpid(), signal.SIGINT)
    signal.pause()
original = cli._parser
def parser():  # the signal arrives while argparse builds the parsers, before main's try ran
    os.kill(os.getpid(), signal.SIGINT)
    return original()
cli._parser = parser
sys.exit(cli.main(["status", "exp.py"]))
"""


@pytest.mark.parametrize("when", ["imported", "parsing"])
def test_ctrl_c_while_nw_starts_is_one_line(tmp_path: Path, when: str) -> None:
    (tmp_path / "exp.py").write_text(EXPERIMENT)
    script = tmp_path / "bin" / "nw"
    script.parent.mkdir()
    script.write_text(NW_SCRIPT.format(repo=str(REPO)))
    proc = subprocess.run([sys.executable, str(script), when], cwd=tmp_path, text=True, capture_output=True,
                          timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "nw: interrupted", proc.stderr


def test_importing_the_cli_leaves_ctrl_c_alone() -> None:
    """Only the `nw` process itself gets the startup handler: a program (or test run) importing nixlib.cli keeps
    Python's KeyboardInterrupt."""
    code = "import signal, nixlib.cli; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    proc = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.strip() == "True", proc.stderr


# ---- Snakemake: --nixworkflow-remote and the remote's variables ------------------------------------------

SNAKEFILE = 'rule a:\n    output: "a.txt"\n    shell: "echo hi > {output}"\n'


@pytest.mark.parametrize(("args", "env", "words"), [
    (["--nixworkflow-remote", "http://["], {}, "--nixworkflow-remote"),
    ([], {"NIX_WORKFLOW_REMOTE": "http://["}, "NIX_WORKFLOW_REMOTE"),
    ([], {"NIX_WORKFLOW_PUSH": "maybe"}, "NIX_WORKFLOW_PUSH"),
])
def test_snakemake_remote_settings_that_cannot_work_are_a_setup_error(tmp_path: Path, args: list[str],
                                                                      env: dict[str, str], words: str) -> None:
    pytest.importorskip("snakemake")
    from tests.test_snakemake import snakemake

    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    proc = snakemake(tmp_path, *args, env=env, timeout=300)
    clean_failure(proc, words)
    assert 'File "' not in proc.stdout + proc.stderr
    assert not (tmp_path / "a.txt").exists()


# ---- Luigi: luigi.cfg [nixworkflow] and its variables ----------------------------------------------------

TASKS = """\
import luigi
from luigi_nixworkflow import NixTask


class A(NixTask):
    def command(self):
        return "echo hi > $out/x"
"""


def luigi(where: Path, cfg: str, env: dict[str, str] | None = None) -> str:
    """The real `luigi` command on task A with `cfg` as luigi.cfg's [nixworkflow] section; its output."""
    (where / "tasks.py").write_text(TASKS)
    (where / "luigi.cfg").write_text(f"[nixworkflow]\n{cfg}\n")
    full = dict(os.environ, PYTHONPATH=f"{where}{os.pathsep}{REPO}", **(env or {}))
    proc = subprocess.run([str(Path(sys.executable).with_name("luigi")), "--module", "tasks", "A",
                           "--local-scheduler", "--no-lock"], cwd=where, env=full, text=True, capture_output=True,
                          timeout=300)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(("cfg", "env", "words"), [
    ("remote = http://[", {}, "luigi.cfg [nixworkflow] remote: 'http://[' is not a valid URL"),
    ("", {"NIX_WORKFLOW_REMOTE": "http://["}, "NIX_WORKFLOW_REMOTE: 'http://[' is not a valid URL"),
    ("push = maybe", {}, "luigi.cfg [nixworkflow] push: 'maybe' is not true or false"),
    ("", {"NIX_WORKFLOW_PUSH": "maybe"}, "NIX_WORKFLOW_PUSH: 'maybe' is not true or false"),
    ("forced = A", {}, "luigi.cfg [nixworkflow]: unknown key 'forced'"),
    ("out_link = afile", {}, "out_link (or NIX_WORKFLOW_OUT_LINK) names afile, which is a file"),
    ("", {"NIX_WORKFLOW_OUT_LINK": "afile"}, "out_link (or NIX_WORKFLOW_OUT_LINK) names afile, which is a file"),
    ("config = adir", {}, "config names adir, which is a directory"),
])
def test_luigi_settings_that_cannot_work_are_named(tmp_path: Path, cfg: str, env: dict[str, str], words: str) -> None:
    pytest.importorskip("luigi")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    out = luigi(tmp_path, cfg, env)
    assert words in out, out[-3000:]
    assert "Traceback" not in out and "[Errno" not in out, out[-3000:]
    assert "This progress looks :(" in out, out[-3000:]


def test_luigi_accepts_its_dashed_spelling_of_a_known_key(tmp_path: Path) -> None:
    """Luigi reads `out-link` for `out_link`: not an unknown key."""
    pytest.importorskip("luigi")
    out = luigi(tmp_path, "out-link = links")
    assert "This progress looks :)" in out, out[-3000:]


# ---- hypothesis: remote URLs -------------------------------------------------------------------------------

PIECES = ["s3://", "file://", "http://", "/", "[", "]", ":", "::1", "%", "%5B", "?", "&", "#", "=", "endpoint=",
          "region=", "b", "p", "80", "x", "localhost", "\x00", "é", "\uff03", " "]
urls = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=12).map("".join) | st.text(max_size=20)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(urls)
def test_any_remote_url_is_refused_clearly_or_opens(url: str) -> None:
    """What the front doors check before opening a remote: a URL it lets through opens, or fails with a
    NixWorkflowError; one it refuses is named in a one-line message."""
    from nixlib.config import remote_url_problem
    from nixlib.remotes import open_backend

    problem = remote_url_problem(url)
    if problem is not None:
        assert repr(url) in problem and "\n" not in problem.replace(repr(url), "")
        return
    try:
        open_backend(url)
    except NixWorkflowError:
        pass
