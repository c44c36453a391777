"""Error hierarchy: every user-facing failure is an :class:`SsddError` with an exit code.

The CLI turns these into a one-line ``error: ...`` on stderr and a non-zero exit status; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SsddError(Exception):
    """Base class of every error a user can cause (bad option, missing file, ...)."""

    exit_code = 1


class ConfigError(SsddError):
    """A bad option or configuration value."""

    exit_code = 2


class DataError(SsddError):
    """A missing, unreadable or invalid dataset."""

    exit_code = 3


class BundleError(SsddError):
    """An unreadable, invalid or incompatible bundle or teacher file."""

    exit_code = 4


class CheckpointError(SsddError):
    """A teacher checkpoint that cannot be imported."""

    exit_code = 5


class DeviceError(SsddError):
    """A requested device that is not available."""

    exit_code = 6


class OutputError(SsddError):
    """An output path that exists (without ``--overwrite``) or cannot be written."""

    exit_code = 7


class NumericalError(SsddError):
    """A run whose loss or parameters stopped being finite numbers."""

    exit_code = 8


class Interrupted(SsddError):
    """A run stopped by SIGINT/SIGTERM after saving its checkpoint (resume with ``--resume``)."""

    exit_code = 130
