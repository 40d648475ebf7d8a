"""Snakemake jobs in Nix envs from nixworkflow.yaml, the showcase example, and bad input.

Envs come from a local package set packed as a file:// tarball pinned by sha256 (the code path
of a real nixpkgs pin); each package `NAME` installs `bin/NAME` printing "NAME VERSION".
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import nixsets
from tests.helpers import REPO, nw
from tests.nixcheck import require_nix
from tests.test_snakemake import executions, ok, remove_products, snakemake

pytest.importorskip("snakemake")

pytestmark = [pytest.mark.slow, pytest.mark.nix]

SNAKEFILE = '''
envvars: "NW_TEST_LOG"

rule all:
    input: "one.txt", "two.txt"

rule one:
    output: "one.txt"
    shell: 'echo one >> "$NW_TEST_LOG"; hello > {output}'

rule two:
    output: "two.txt"
    resources: nix_env="v2"
    shell:
        'echo two >> "$NW_TEST_LOG"; hello > {output}; '
        'if command -v python3 >/dev/null; then echo host-python >> {output}; fi'
'''

CONFIG = """\
nixpkgs:
  url: {url}
  sha256: "{sha256}"
env:
  packages: [hello]
envs:
  v2:
    packages: [hello]
    nixpkgs: {{url: {url2}, sha256: "{sha2}"}}
"""


def pin(tmp_path: Path, version: str) -> tuple[str, str]:
    src = nixsets.package_set(tmp_path / f"set-{version}" / "pkgs", {"hello": version})
    return nixsets.tarball(src, tmp_path / f"pkgs-{version}.tar.gz")



@pytest.fixture
def envs_workflow(tmp_path: Path) -> Path:
    require_nix("nix-instantiate")
    (url, sha256), (url2, sha2) = pin(tmp_path, "1.0"), pin(tmp_path, "2.0")
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)
    (wf / "nixworkflow.yaml").write_text(CONFIG.format(url=url, sha256=sha256, url2=url2, sha2=sha2))
    return wf


def test_rules_run_in_their_nix_envs_and_env_changes_rekey(envs_workflow: Path, log: Path) -> None:
    wf = envs_workflow
    ok(snakemake(wf))
    assert (wf / "one.txt").read_text() == "hello 1.0\n"
    assert (wf / "two.txt").read_text().splitlines()[0] == "hello 2.0"
    assert executions(log) == {"one": 1, "two": 1}

    # --set-resources moves rule one into env v2: a different env identity, so it runs again.
    ok(snakemake(wf, "--forcerun", "one", "--set-resources", "one:nix_env=v2"))
    assert (wf / "one.txt").read_text() == "hello 2.0\n"
    assert executions(log) == {"one": 2, "two": 1}

    # Back in the default env: served from the store, not run (a forced job would run: delete the output).
    (wf / "one.txt").unlink()
    ok(snakemake(wf))
    assert (wf / "one.txt").read_text() == "hello 1.0\n"
    assert executions(log) == {"one": 2, "two": 1}


SCRIPT = '''
import subprocess
from snakemake.shell import shell
said = subprocess.run(["hello"], capture_output=True, text=True, check=True).stdout
shell("hello >> {snakemake.output[0]}")
with open(snakemake.output[0], "a") as f:
    f.write(said)
'''


def test_python_scripts_and_run_blocks_see_their_env(envs_workflow: Path, log: Path) -> None:
    wf = envs_workflow
    (wf / "say.py").write_text(SCRIPT)
    (wf / "Snakefile").write_text(SNAKEFILE + '''
rule script:
    output: "script.txt"
    script: "say.py"

rule block:
    output: "block.txt"
    run:
        shell("hello > {output}")
''')
    ok(snakemake(wf, "script.txt", "block.txt", "--nixworkflow-pure"))
    assert (wf / "script.txt").read_text() == "hello 1.0\nhello 1.0\n"
    assert (wf / "block.txt").read_text() == "hello 1.0\n"


def test_steps_in_the_config_choose_a_rules_env(envs_workflow: Path, log: Path) -> None:
    wf = envs_workflow
    config = wf / "nixworkflow.yaml"
    config.write_text(config.read_text() + "steps:\n  one: v2\n")
    ok(snakemake(wf, "one.txt"))
    assert (wf / "one.txt").read_text() == "hello 2.0\n"


def test_pure_mode_hides_host_tools(envs_workflow: Path, log: Path) -> None:
    wf = envs_workflow
    ok(snakemake(wf, "two.txt"))
    assert "host-python" in (wf / "two.txt").read_text()  # impure: the env is in front of the host's PATH
    remove_products(wf)
    (wf / "two.txt").unlink()
    ok(snakemake(wf, "two.txt", "--nixworkflow-pure", "--nixworkflow-no-cache"))
    assert (wf / "two.txt").read_text() == "hello 2.0\n"


def test_sandbox_keeps_jobs_inside_the_working_directory(envs_workflow: Path, log: Path, tmp_path: Path) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    wf = envs_workflow
    outside = Path("/var/tmp") / f"nw-sandbox-escape-{tmp_path.name}-{os.getpid()}"
    (wf / "Snakefile").write_text(SNAKEFILE + f'''
rule escape:
    output: "escape.txt"
    shell: 'hello > {{output}}; echo leaked > {outside}'
''')
    try:
        proc = snakemake(wf, "escape.txt", "--nixworkflow-sandbox")
        assert proc.returncode != 0
        assert "Read-only file system" in proc.stdout + proc.stderr
        assert not outside.exists()
    finally:
        outside.unlink(missing_ok=True)
    ok(snakemake(wf, "one.txt", "--nixworkflow-sandbox"))
    assert (wf / "one.txt").read_text() == "hello 1.0\n"


def test_showcase_example_runs_caches_and_explains_its_lineage(tmp_path: Path, log: Path) -> None:
    require_nix("nix-instantiate")
    examples = tmp_path / "checkout" / "examples"
    shutil.copytree(REPO / "examples" / "snakemake", examples / "snakemake")
    shutil.copytree(REPO / "examples" / "showcase", examples / "showcase",
                    ignore=shutil.ignore_patterns("nix-workflow-output", "__pycache__"))
    wf = examples / "snakemake"
    proc = ok(snakemake(wf))
    assert proc.stderr.count("nixworkflow: restored") == 0
    results = {p.relative_to(wf): p.read_bytes() for p in (wf / "results").rglob("*") if p.is_file()}
    assert len(results) >= 11

    lineage = nw("lineage", "results/models/base/model.json", cwd=wf, check=True).stdout
    assert lineage.startswith("train ")
    assert "train --batch-size=32 --data=results/dataset/data.csv --epochs=10 --lr=0.001" in lineage
    assert "[env: nix]" in lineage and "build_data [results/dataset]" in lineage

    remove_products(wf)
    proc = ok(snakemake(wf))
    assert proc.stderr.count("nixworkflow: restored") == 11  # every job but `rule all`, nothing executed
    assert {p.relative_to(wf): p.read_bytes() for p in (wf / "results").rglob("*") if p.is_file()} == results

    # The same Snakefile without nixworkflow: the local executor, the host's tools, the same bytes.
    remove_products(wf)
    ok(snakemake(wf, nixworkflow=False))
    assert {p.relative_to(wf): p.read_bytes() for p in (wf / "results").rglob("*") if p.is_file()} == results


BAD_CONFIG = {
    "unknown key": ("env:\n  packages: [hello]\nenvz:\n  x: host\n", "nixworkflow.yaml:3: envz: unknown key"),
    "not yaml": ("env:\n  packages: [hello\n", "nixworkflow.yaml:3"),
    "bad value": ("env:\n  packages: [hello]\n  pure: maybe\n", "nixworkflow.yaml:3: env.pure: expected true or false"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_bad_config_is_an_error_before_any_job_runs(tmp_path: Path, log: Path, case: str) -> None:
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)
    text, message = BAD_CONFIG[case]
    (wf / "nixworkflow.yaml").write_text(text)
    proc = snakemake(wf)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert executions(log) == {}


def test_rule_naming_an_unknown_env_is_an_error_before_any_job_runs(tmp_path: Path, log: Path) -> None:
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)
    (wf / "nixworkflow.yaml").write_text("env: host\nenvs:\n  v1: host\n")
    proc = snakemake(wf)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "rule two asks for env 'v2'" in out and "no env named 'v2' (envs: v1)" in out
    assert executions(log) == {}


def test_env_that_fails_to_evaluate_fails_its_jobs_with_nix_message(tmp_path: Path, log: Path) -> None:
    require_nix("nix-instantiate")
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "Snakefile").write_text(SNAKEFILE)
    (wf / "broken.nix").write_text("{ }:\nlet\n  x = 1;\nin no_such_package\n")
    (wf / "nixworkflow.yaml").write_text("env: {file: broken.nix}\nenvs:\n  v2: host\n")
    proc = snakemake(wf, "--keep-going")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Error in rule one" in out
    assert "undefined variable 'no_such_package'" in out
    assert executions(log) == {"two": 1}  # the rule in a working env still ran
