"""Discovery shim: Snakemake finds executor plugins only by this module-name prefix.

The implementation lives in `snakemake_executor_nixworkflow`.
"""

from snakemake_executor_nixworkflow import Executor, ExecutorSettings, common_settings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]
