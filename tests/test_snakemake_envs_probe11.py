"""Wave 11 probe of how Snakemake pipelines declare software (`conda:`, `container:`, `envmodules:`, `--sdm`) and
what `snakemake --executor nixworkflow` does with it: what it keys, what it records, what it tells the user.

There is no network here, so conda and Lmod cannot be installed: `conda` and `module` are small stand-ins on PATH
that answer exactly the commands Snakemake 9.27 sends them (`conda info --json`, `conda --version`, `conda config
--get channel_priority --json`, `conda env create --file F --prefix P`, `conda clean`; `module purge`, `module
load`), so Snakemake's own deployment code runs unchanged around them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import nixsets
from tests.helpers import nw
from tests.nixcheck import require_nix
from tests.test_snakemake import ok, snakemake
from tests.test_snakemake_semantics import write

pytest.importorskip("snakemake")

pytestmark = pytest.mark.slow

# `conda env create --file F --prefix P` makes P/bin/tool, which prints the file it was created from: the job's
# output says which env (or pin file) it ran with.
FAKE_CONDA = r'''#!/bin/sh
here=$(cd "$(dirname "$0")/.." && pwd)
case "$1" in
  info) echo "{\"conda_prefix\": \"$here\", \"platform\": \"linux-64\"}" ;;
  --version) echo "conda 24.9.2" ;;
  config) echo '{"get": {"channel_priority": "strict"}, "rc_path": "", "success": true, "warnings": []}' ;;
  clean) ;;
  env|create)
    file=""; prefix=""
    while [ $# -gt 0 ]; do
      case "$1" in --file) file=$2; shift;; --prefix) prefix=$2; shift;; esac; shift
    done
    mkdir -p "$prefix/bin"
    { printf '#!/bin/sh\ncat <<"EOF"\n'; cat "$file"; printf '\nEOF\n'; } > "$prefix/bin/tool"
    chmod +x "$prefix/bin/tool"
    echo "$file" >> "$here/created.log" ;;
  *) echo "fake conda: unexpected $*" >&2; exit 1 ;;
esac
'''
ACTIVATE = 'PATH="$1/bin:$PATH"; export PATH\n'
FAKE_MODULE = '#!/bin/sh\necho "module $*" >> "$MODULE_LOG"\n'

CONDA_RULE = '''
rule all:
    input: "a.txt"

rule a:
    output: "a.txt"
    conda: "envs/tools.yaml"
    shell: "tool > {output}"
'''
ENV_YAML = "channels: [conda-forge, bioconda]\ndependencies:\n  - bioconda::samtools=1.17\n  - python>=3.10\n"


def fake_conda(tmp_path: Path) -> dict[str, str]:
    """A conda installation on PATH that works offline (see the module docstring)."""
    base = tmp_path / "fakeconda"
    write(base, {"bin/conda": FAKE_CONDA, "bin/activate": ACTIVATE})
    (base / "bin/conda").chmod(0o755)
    return {"PATH": f"{base / 'bin'}:{os.environ['PATH']}"}


@pytest.mark.long  # (runs in `make test-long`: make test keeps the suite under 20 minutes)
def test_a_conda_pin_file_is_part_of_the_key_under_sdm_conda(tmp_path: Path) -> None:
    """With `--sdm conda`, Snakemake installs a rule's env from its pin file (`envs/tools.linux-64.pin.txt`: exact
    package versions) when there is one, and re-runs the rule when the pin file changes (its software-env
    trigger). The executor keyed only the environment.yaml, so adding or updating the pin file served the result
    the old env wrote: Snakemake re-ran the job, the store restored the stale output. Likewise the post-deploy
    script."""
    env = fake_conda(tmp_path)
    wf = write(tmp_path / "wf", {"Snakefile": CONDA_RULE, "envs/tools.yaml": ENV_YAML})
    ok(snakemake(wf, "--sdm", "conda", env=env))
    assert "samtools=1.17" in (wf / "a.txt").read_text()

    (wf / "envs/tools.linux-64.pin.txt").write_text("https://conda.anaconda.org/bioconda/samtools-1.18.tar.bz2\n")
    proc = ok(snakemake(wf, "--sdm", "conda", env=env))
    assert "samtools-1.18" in (wf / "a.txt").read_text(), proc.stderr  # made in the pinned env, not restored
    assert "restored the outputs of rule a" not in proc.stderr, proc.stderr

    (wf / "envs/tools.post-deploy.sh").write_text("#!/bin/sh\necho deployed\n")
    (wf / "a.txt").unlink()  # Snakemake schedules it again; the store must not serve the pre-deploy-script result
    proc = ok(snakemake(wf, "--sdm", "conda", env=env))
    assert "restored the outputs of rule a" not in proc.stderr, proc.stderr

    # an unchanged env is restored; an edited environment.yaml runs again (keyed before too)
    (wf / "a.txt").unlink()
    assert "restored the outputs of rule a" in ok(snakemake(wf, "--sdm", "conda", env=env)).stderr
    (wf / "envs/tools.linux-64.pin.txt").unlink()
    (wf / "envs/tools.yaml").write_text(ENV_YAML.replace("1.17", "1.19"))
    proc = ok(snakemake(wf, "--sdm", "conda", env=env))
    assert "samtools=1.19" in (wf / "a.txt").read_text(), proc.stderr


def test_envmodules_are_part_of_the_key_under_sdm_env_modules(tmp_path: Path) -> None:
    """With `--sdm env-modules`, Snakemake runs `module load samtools/1.9; <command>`. The executor did not key the
    modules: a job run with `module load tool/1.0` had the key of the same command on the host, and changing the
    rule to `tool/2.0` (Snakemake re-runs it: software-env trigger) restored what tool/1.0 wrote."""
    modules = tmp_path / "modules.log"
    write(tmp_path / "bin", {"module": FAKE_MODULE})
    (tmp_path / "bin/module").chmod(0o755)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "MODULE_LOG": str(modules)}
    snakefile = CONDA_RULE.replace('conda: "envs/tools.yaml"', 'envmodules: "tool/1.0"').replace("tool >", "echo >")
    wf = write(tmp_path / "wf", {"Snakefile": snakefile})
    ok(snakemake(wf, "--sdm", "env-modules", env=env))
    assert modules.read_text().splitlines() == ["module purge", "module load tool/1.0"]

    (wf / "Snakefile").write_text(snakefile.replace("tool/1.0", "tool/2.0"))
    proc = ok(snakemake(wf, "--sdm", "env-modules", env=env))
    assert "module load tool/2.0" in modules.read_text(), proc.stderr
    assert "restored the outputs of rule a" not in proc.stderr, proc.stderr

    # without --sdm env-modules the modules are not loaded: the job is the host's, not the tool/2.0 one
    (wf / "a.txt").unlink()
    proc = ok(snakemake(wf, env=env))
    assert "restored the outputs of rule a" not in proc.stderr, proc.stderr


def test_rules_left_on_the_host_are_warned_of_once_with_how_to_pin_a_conda_rule(tmp_path: Path) -> None:
    """A nixworkflow.yaml without a default `env:` leaves rules that name no env on the host's tools. Only a run
    without any nixworkflow.yaml said so: with the file, such rules ran unpinned without a word (nw run and Luigi
    warn). A rule's `conda:` (or `container:`, `envmodules:`) that no --sdm deploys is not used at all: the
    warning names it and shows how to give the rule a Nix env instead, with the env file's packages."""
    snakefile = CONDA_RULE + '''
rule b:
    output: "b.txt"
    envmodules: "bwa/0.7"
    shell: "echo b > {output}"

rule c:
    output: "c.txt"
    resources: nix_env="legacy"
    shell: "echo c > {output}"
'''
    snakefile = snakefile.replace('input: "a.txt"', 'input: "a.txt", "b.txt", "c.txt"').replace("tool >", "echo >")
    wf = write(tmp_path / "wf", {"Snakefile": snakefile, "envs/tools.yaml": ENV_YAML,
                                 "nixworkflow.yaml": "envs:\n  legacy: host\n"})
    proc = ok(snakemake(wf))
    warned = [line for line in proc.stderr.splitlines() if "not pinned" in line]
    assert len(warned) == 1, proc.stderr  # one paragraph, once
    text = warned[0]
    assert "3 rule(s) of this run use the host's tools, not pinned by Nix" in text and ": a, b, c." in text, text
    assert "rule a (conda: envs/tools.yaml)" in text and "rule b (envmodules: bwa/0.7)" in text, text
    assert "packages: [samtools, python]" in text and "steps: {a: tools}" in text, text

    # no nixworkflow.yaml at all: the same advice
    (wf / "nixworkflow.yaml").unlink()
    (wf / "Snakefile").write_text(CONDA_RULE.replace("tool >", "echo >"))
    bare = ok(snakemake(wf, "--forceall"))
    assert "no nixworkflow.yaml next to the Snakefile" in bare.stderr, bare.stderr
    assert "rule a (conda: envs/tools.yaml) declares software this run does not deploy" in bare.stderr, bare.stderr


def test_a_job_run_with_sdm_conda_in_a_nix_env_is_not_recorded_as_pinned(tmp_path: Path) -> None:
    """`--sdm conda` puts the rule's conda env in front of its Nix env on PATH: the job's `tool` is conda's. The
    record said only "pinned by Nix" (nw show), a false claim; it now says what Snakemake deployed and that Nix
    does not pin it, and the run warns once."""
    require_nix("nix-instantiate")
    url, sha256 = nixsets.tarball(nixsets.package_set(tmp_path / "set" / "pkgs", {"tool": "9.9"}),
                                  tmp_path / "pkgs.tar.gz")
    config = f'nixpkgs: {{url: "{url}", sha256: "{sha256}"}}\nenv:\n  packages: [tool]\n'
    wf = write(tmp_path / "wf", {"Snakefile": CONDA_RULE, "envs/tools.yaml": ENV_YAML, "nixworkflow.yaml": config})
    proc = ok(snakemake(wf, "--sdm", "conda", env=fake_conda(tmp_path)))
    assert "samtools=1.17" in (wf / "a.txt").read_text()  # conda's tool ran, not the Nix env's `tool 9.9`
    assert "rule a (conda: envs/tools.yaml) runs with software Snakemake deploys" in proc.stderr, proc.stderr
    shown = nw("show", "a.txt", cwd=wf)
    assert shown.returncode == 0, shown.stderr
    assert "conda: envs/tools.yaml (deployed by Snakemake's --sdm, not pinned by Nix)" in shown.stdout, shown.stdout
    record = json.loads(nw("show", "a.txt", "--json", cwd=wf).stdout)
    assert record["provenance"]["deployed"] == ["conda: envs/tools.yaml"]

    # the same rule without --sdm runs in the Nix env alone: another key, recorded as pinned without a caveat
    (wf / "a.txt").unlink()
    ok(snakemake(wf))
    assert (wf / "a.txt").read_text() == "tool 9.9\n"
    assert "deployed by Snakemake" not in nw("show", "a.txt", cwd=wf).stdout
