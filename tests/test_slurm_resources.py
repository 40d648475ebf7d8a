"""A step's own Slurm resources, where it is defined: experiment.py's `output(..., resources={...})` and
experiment.nix's `resources = { ... };` (docs/slurm.md, "Per-step resources in the experiment").

Same keys and checks as `slurm:` in nixworkflow.yaml; precedence yaml default < experiment < yaml step <
--slurm-* < --slurm-step; never part of a step's placeholder, recipe key or resolved key."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nixlib import dsl, nixfront
from nixlib.config import ConfigError, load_config
from nixlib.errors import NixWorkflowError
from nixlib.slurm import ResourceProblem, SlurmAction, SlurmConfig, SlurmOptions, resources_options
from tests import slurm_cluster as cluster_fixtures
from tests.helpers import nw, tree_snapshot
from tests.nixcheck import require_nix
from tests.slurm_cluster import SbatchCounter

slurm_cluster = cluster_fixtures.slurm_cluster  # the fixtures, for pytest to find
sbatch_counter = cluster_fixtures.sbatch_counter

LIB = "inherit ((import <nixworkflow>).lib) output static;"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _stored(root: Path) -> dict[str, bytes | str]:
    """What a failed evaluation must leave as it was: objects and realisations."""
    return {p: v for p, v in tree_snapshot(root).items() if p.startswith(("store/", "realisations/"))}


def _links() -> dict[str, str]:
    """The output links of the runs here (a failed evaluation must not touch them)."""
    out = Path("nix-workflow-output")
    return {p.name: os.readlink(p) for p in out.iterdir() if p.is_symlink()} if out.exists() else {}


# ---- parsing and checking: the yaml's rules, on a Python/Nix mapping ------------------------------------------

def test_every_key_is_taken_with_numbers_for_time_memory_and_gpus() -> None:
    assert resources_options({"gpus": 1, "mem": "64G", "time": "2:00:00", "cpus": 8, "partition": "gpu",
                              "options": ["--account=lab"]}) == SlurmOptions(
        partition="gpu", time="2:00:00", cpus=8, mem="64G", gpus="1", extra=("--account=lab",))
    assert resources_options({"time": 90, "mem": 4096, "gpus": "a100:2", "options": "--qos=high"}) == SlurmOptions(
        time="90", mem="4096", gpus="a100:2", extra=("--qos=high",))
    assert resources_options(None) == resources_options({}) == resources_options({"options": []}) == SlurmOptions()


@pytest.mark.parametrize("value, words", [
    ({"mem": "64GB"}, "resources.mem: '64GB' is not a memory size"),
    ({"gpu": 1}, "unknown key 'gpu' (did you mean 'gpus'?"),
    ({"cpus": 0}, "resources.cpus: 0 is not a CPU count"),
    ({"cpus": "8"}, "resources.cpus: '8' is not a CPU count"),
    ({"cpus": True}, "resources.cpus: True is not a CPU count"),
    ({"time": "2h"}, "resources.time: '2h' is not a Slurm time"),
    ({"gpus": True}, "resources.gpus: True is not text or a whole number"),
    ({"gpus": 1.5}, "resources.gpus: 1.5 is not text or a whole number"),
    ({"partition": 5}, "resources.partition: 5 is not text"),
    ({"partition": "a b"}, "resources.partition: 'a b' is not a partition name"),
    ({"options": ["--account=lab", "--requeue"]}, "resources.options[1]: '--requeue' cannot be used"),
    # sbatch takes any unambiguous prefix of a long option: `--ar` is --array and `--wr` is --wrap there
    ({"options": "--ar=0-3"}, "resources.options[0]: '--ar=0-3' cannot be used: every array task"),
    ({"options": ["--wr=hostname"]}, "resources.options[0]: '--wr=hostname' cannot be used: the job must run"),
    ({"options": [1]}, "resources.options: expected an sbatch option or a list of them"),
    ("64G", "resources must map partition, time, cpus, mem, gpus or options to values"),
])
def test_bad_values_are_named_by_key(value: object, words: str) -> None:
    with pytest.raises(ResourceProblem) as e:
        resources_options(value)
    assert words in str(e.value), str(e.value)


_TEXT = st.sampled_from(["1", "90", "2:00:00", "1-12", "4G", "100", "200M", "a100:2", "64GB", "2h", "", "-x",
                         "gpu", "debug,batch", "true", "1.5"])
_VALUE = st.one_of(_TEXT, st.integers(-1, 3000))
_ENTRY = st.fixed_dictionaries({}, optional={
    "partition": _TEXT, "time": _VALUE, "mem": _VALUE, "gpus": _VALUE, "cpus": st.integers(-1, 64),
    "options": st.one_of(st.sampled_from(["--qos=high", "--requeue", "--array=1-3", "x"]),
                         st.lists(st.sampled_from(["--account=lab", "--comment=x", "--wrap=ls", "-a1"]), min_size=1,
                                  max_size=3))})  # `options: []`: refused by the yaml reader, nothing in an experiment


@settings(max_examples=60, deadline=None)
@given(entry=_ENTRY)
def test_a_step_entry_means_the_same_in_the_experiment_as_in_nixworkflow_yaml(entry: dict[str, object]) -> None:
    """The experiment's resources and a yaml `slurm.steps.NAME` entry with the same values are accepted or refused
    alike, and give the same sbatch settings: one set of rules, whichever file a user writes them in."""
    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d) / "nixworkflow.yaml", yaml.safe_dump({"slurm": {"steps": {"s": entry}}}))
        try:
            from_yaml: SlurmOptions | None = load_config(path).slurm.steps["s"]  # type: ignore[union-attr]
        except ConfigError:
            from_yaml = None
    try:
        from_experiment: SlurmOptions | None = resources_options(entry)
    except ResourceProblem:
        from_experiment = None
    assert from_experiment == from_yaml, entry


# ---- precedence -------------------------------------------------------------------------------------------

def test_the_experiment_sits_between_the_yaml_default_and_the_yaml_step_entry() -> None:
    cfg = SlurmConfig(Path("nixworkflow.yaml"), True, "", SlurmOptions(mem="4G", cpus=1, time="10"),
                      {"train": SlurmOptions(cpus=4)})
    own = {"train": SlurmOptions(mem="64G", cpus=8, gpus="1", extra=("--constraint=ib",))}
    action = SlurmAction(SlurmOptions(time="60"), {"train": ("--gpus=2",)}, cfg, own)
    # mem: the experiment's 64G over the yaml default's 4G; cpus: the yaml step entry over the experiment;
    # time: the command line over the yaml default; gpus: --slurm-step over the experiment
    assert action.sbatch_args("train") == ["--mem=64G", "--gpus=1", "--constraint=ib", "--cpus-per-task=4",
                                           "--time=60", "--gpus=2"]
    assert action.sbatch_args("other") == ["--cpus-per-task=1", "--mem=4G", "--time=60"]  # no resources of its own


_LAYER = st.one_of(st.none(), st.integers(1, 9))


@settings(max_examples=80, deadline=None)
@given(yaml_default=_LAYER, experiment=_LAYER, yaml_step=_LAYER, cli=_LAYER, cli_step=_LAYER)
def test_the_highest_source_that_gives_cpus_decides(yaml_default: int | None, experiment: int | None,
                                                    yaml_step: int | None, cli: int | None,
                                                    cli_step: int | None) -> None:
    cfg = SlurmConfig(Path("nixworkflow.yaml"), None, "", SlurmOptions(cpus=yaml_default),
                      {"s": SlurmOptions(cpus=yaml_step)})
    action = SlurmAction(SlurmOptions(cpus=cli), {"s": (f"--cpus-per-task={cli_step}",)} if cli_step else {}, cfg,
                         {"s": SlurmOptions(cpus=experiment)})
    given_cpus = [a.split("=")[1] for a in action.sbatch_args("s") if a.startswith("--cpus-per-task=")]
    order = [cli_step, cli, yaml_step, experiment, yaml_default]  # highest first, as docs/slurm.md says
    expected = next((str(v) for v in order if v is not None), None)
    assert (given_cpus[-1] if given_cpus else None) == expected


# ---- experiment.py: beside the recipe, never in its key ---------------------------------------------------

PY = """from nixlib import output
prep = output("echo 1 > $out/v"{prep})
train = output(f"cat {{prep}}/v > $out/m; echo trained >> $out/m"{train})
"""


def _py(tmp_path: Path, prep: str = "", train: str = "", name: str = "exp.py") -> Path:
    return write(tmp_path / name, PY.format(prep=prep, train=train))


def test_python_resources_are_kept_beside_the_recipe_not_in_its_key(tmp_path: Path) -> None:
    plain = dsl.load(_py(tmp_path))
    plain_keys = {n: r.key for n, r in plain.recipes.items()}
    plain_commands = {n: r.command for n, r in plain.recipes.items()}  # upstream placeholders inside
    asked = dsl.load(_py(tmp_path, train=', resources={"gpus": 1, "mem": "64G", "cpus": 8}'))
    assert {n: r.key for n, r in asked.recipes.items()} == plain_keys
    assert {n: r.command for n, r in asked.recipes.items()} == plain_commands
    assert asked.recipes["train"].options == plain.recipes["train"].options  # not in RunOptions
    assert plain.resources == {}
    assert asked.resources == {"train": SlurmOptions(cpus=8, mem="64G", gpus="1")}
    other = dsl.load(_py(tmp_path, train=', resources={"gpus": 2, "time": 600}'))
    assert {n: r.key for n, r in other.recipes.items()} == plain_keys


def test_bad_python_resources_name_file_line_step_and_key_and_nothing_runs(tmp_path: Path, isolated: Path) -> None:
    exp = _py(tmp_path, train=', resources={"mem": "64GB"}')
    nw("run", str(_py(tmp_path, name="warm.py")), check=True)  # an initialised store with objects in it
    before, links = _stored(isolated), _links()
    proc = nw("run", str(exp), "--slurm")
    assert proc.returncode == 1, proc.stderr
    assert f"step 'train' ({exp}:3): resources.mem: '64GB' is not a memory size" in proc.stderr, proc.stderr
    assert "nothing was run" in proc.stderr and "Traceback" not in proc.stderr
    assert _stored(isolated) == before and _links() == links

    proc = nw("run", str(_py(tmp_path, prep=', resources="gpu"')))  # refused without --slurm too: a mistake
    assert proc.returncode == 1 and f"step 'prep' ({exp}:2): resources must map" in proc.stderr, proc.stderr
    assert _stored(isolated) == before and _links() == links


def test_one_step_defined_twice_with_other_resources_is_refused(tmp_path: Path) -> None:
    exp = write(tmp_path / "exp.py", 'from nixlib import output\na = output("echo 1 > $out/v", resources={"cpus": 1})\n'
                'b = output("echo 1 > $out/v", resources={"cpus": 2})\n')
    with pytest.raises(NixWorkflowError, match=re.escape(f"{exp}:3: this step is also defined at {exp}:2 with other "
                                                         "resources")):
        dsl.load(exp)


def test_changing_resources_re_runs_nothing_and_without_slurm_they_are_ignored(tmp_path: Path) -> None:
    """Run locally with resources a laptop cannot give (ignored without --slurm), change them: all cached."""
    first = nw("run", str(_py(tmp_path, train=', resources={"gpus": 8, "mem": "2T", "partition": "gpu"}')),
               check=True)
    assert "done 2" in first.stderr, first.stderr
    assert Path("nix-workflow-output/train/m").read_text() == "1\ntrained\n"
    again = nw("run", str(_py(tmp_path, prep=', resources={"cpus": 4}', train=', resources={"time": "1:00"}')),
               check=True)
    assert "cached 2" in again.stderr and "done 0" in again.stderr, again.stderr


# ---- experiment.nix ---------------------------------------------------------------------------------------

NIX = """let {lib} in
rec {{
  prep = output {{ cmd = "echo 1 > $out/v";{prep} }};
  train = output {{ cmd = "cat ${{prep}}/v > $out/m; echo trained >> $out/m";{train} }};
}}
"""


def _nix(tmp_path: Path, prep: str = "", train: str = "") -> Path:
    return write(tmp_path / "exp.nix", NIX.format(lib=LIB, prep=prep, train=train))


def test_nix_resources_same_keys_as_python_and_as_without(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    from_nix = nixfront.load(_nix(tmp_path, train=' resources = { gpus = 1; mem = "64G"; cpus = 8; '
                                                  'options = [ "--account=lab" ]; };'))
    assert from_nix.resources == {"train": SlurmOptions(cpus=8, mem="64G", gpus="1", extra=("--account=lab",))}
    from_py = dsl.load(_py(tmp_path))  # the same steps in Python, without resources
    assert {n: r.key for n, r in from_nix.recipes.items()} == {n: r.key for n, r in from_py.recipes.items()}
    plain = nixfront.load(_nix(tmp_path))
    assert {n: r.key for n, r in plain.recipes.items()} == {n: r.key for n, r in from_py.recipes.items()}
    assert plain.resources == {}


@pytest.mark.parametrize("train, words", [
    (' resources = { mem = "64GB"; };', ["step 'train' (", "exp.nix:4): resources.mem: '64GB' is not a memory size",
                                         "nothing was run"]),
    (' resources = { gpu = 1; };', ["step 'train' (", "unknown key 'gpu' (did you mean 'gpus'?"]),
    (' resources = { cpus = "8"; };', ["step 'train' (", "resources.cpus: '8' is not a CPU count"]),
    (' resources = "64G";', ["step 'train' (", "exp.nix:4): resources must map partition, time"]),
    (' resources = x: x;', ["output: resources must be a set, not a function"]),
])
def test_bad_nix_resources_name_the_step_and_nothing_runs(tmp_path: Path, isolated: Path, train: str,
                                                          words: list[str]) -> None:
    require_nix("nix-instantiate")
    exp = _nix(tmp_path, train=train)
    before = _stored(isolated)
    proc = nw("run", str(exp), "--slurm")
    assert proc.returncode == 1, proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr
    assert "Traceback" not in proc.stderr and _stored(isolated) == before
    assert not Path("nix-workflow-output/prep").exists()


def test_nix_attributes_of_one_step_with_other_resources_are_refused(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    exp = write(tmp_path / "exp.nix", f"let {LIB} in {{\n  a = output {{ cmd = \"echo 1 > $out/v\"; }};\n"
                "  b = output { cmd = \"echo 1 > $out/v\"; resources = { cpus = 2; }; };\n}\n")
    with pytest.raises(NixWorkflowError, match="is the same step as the one at .* but asks for other resources"):
        nixfront.load(exp)


def test_changing_nix_resources_re_runs_nothing(tmp_path: Path) -> None:
    require_nix("nix-instantiate")
    nw("run", str(_nix(tmp_path, train=' resources = { gpus = 1; };')), check=True)
    again = nw("run", str(_nix(tmp_path, prep=' resources = { cpus = 2; };', train=' resources = { mem = 100; };')),
               check=True)
    assert "cached 2" in again.stderr and "done 0" in again.stderr, again.stderr


# ---- on the real one-node Slurm ---------------------------------------------------------------------------

RES = 'echo "$SLURM_CPUS_PER_TASK ${SLURM_MEM_PER_NODE:-}" > $out/res'


def _job(name: str, cluster: cluster_fixtures.SlurmCluster) -> str:
    job = json.loads(nw("show", name, "--json", check=True).stdout)["provenance"]["slurm"]["job_id"]
    return cluster.client("scontrol", "show", "job", "-o", job).stdout


def test_python_resources_reach_the_job_below_the_yaml_step_entry(tmp_path: Path,
                                                                  sbatch_counter: SbatchCounter) -> None:
    """The experiment's cpus and mem reach the job; the yaml default (cpus 1, mem 100) does not override them, the
    yaml step entry does; changing the experiment's resources afterwards submits nothing."""
    write(tmp_path / "nixworkflow.yaml", "slurm:\n  cpus: 1\n  mem: 100\n  steps:\n    other: {cpus: 1}\n")
    text = ("from nixlib import output\n"
            f"train = output('{RES}', resources={{'cpus': 2, 'mem': '@MEM@', 'time': 30}})\n"
            f"other = output('{RES}; echo other >> $out/res', resources={{'cpus': 2}})\n"
            f"plain = output('{RES}; echo plain >> $out/res')\n")
    exp = write(tmp_path / "exp.py", text.replace("@MEM@", "200M"))
    proc = nw("run", str(exp), "--slurm", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 3, proc.stderr
    out = Path("nix-workflow-output")
    assert (out / "train" / "res").read_text() == "2 200\n"  # the experiment's, over the yaml default
    assert (out / "other" / "res").read_text() == "1 100\nother\n"  # the yaml step entry, over the experiment
    assert (out / "plain" / "res").read_text() == "1 100\nplain\n"  # no resources of its own: the yaml default
    job = _job("train", sbatch_counter.cluster)
    assert "NumCPUs=2 " in job and "MinMemoryNode=200M" in job and "TimeLimit=00:30:00" in job, job

    shutil.rmtree(out)
    write(exp, text.replace("@MEM@", "300M"))
    again = nw("run", str(exp), "--slurm", env=sbatch_counter.env, check=True)
    assert sbatch_counter.count() == 3 and "cached 3" in again.stderr, again.stderr  # not part of any key
    assert (out / "train" / "res").read_text() == "2 200\n"


def test_nix_resources_reach_the_job(tmp_path: Path, sbatch_counter: SbatchCounter) -> None:
    require_nix("nix-instantiate")
    command = RES.replace("${", "''${")  # a literal ${ in a Nix '' string
    exp = write(tmp_path / "exp.nix", f"let {LIB} in {{\n"
                f"  train = output {{ cmd = ''{command}''; resources = {{ cpus = 2; mem = \"150M\"; }}; }};\n}}\n")
    nw("run", str(exp), "--slurm", env=sbatch_counter.env, check=True, timeout=300)
    assert sbatch_counter.count() == 1
    assert Path("nix-workflow-output/train/res").read_text() == "2 150\n"
    assert "MinMemoryNode=150M" in _job("train", sbatch_counter.cluster)

