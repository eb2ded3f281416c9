"""The subprocess executor: process groups, signals, output capture."""

from adapters.executor.subprocess import SubprocessExecutor, SubprocessRunningProcess

__all__ = ["SubprocessExecutor", "SubprocessRunningProcess"]
