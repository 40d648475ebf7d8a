"""Snakemake executor plugin for nixworkflow: `snakemake --executor nixworkflow` on an unchanged Snakefile.

Each job runs in the Nix env its rule names (`resources: nix_env="NAME"`, defined in a side-car
`nixworkflow.yaml`), and is served from or recorded in the content-addressed store through
nixlib's engine. Snakemake discovers executor plugins by the module prefix
`snakemake_executor_plugin_`; the `snakemake_executor_plugin_nixworkflow` package re-exports
this one.
"""

from snakemake_executor_nixworkflow.executor import Executor, common_settings
from snakemake_executor_nixworkflow.settings import ExecutorSettings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]
