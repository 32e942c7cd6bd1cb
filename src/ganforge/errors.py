"""Errors a user can cause. The CLI prints them as one line and exits non-zero, no traceback."""

from __future__ import annotations


class GanforgeError(Exception):
    """A problem with the user's input or environment (not a bug). Exit code 1."""

    exit_code = 1


class ConfigError(GanforgeError):
    """params.yaml or a --set override is invalid. Raised before any work starts. Exit code 2."""

    exit_code = 2


class TrainingDiverged(GanforgeError):
    """A loss became NaN/Inf. The last good checkpoint is left intact. Exit code 3."""

    exit_code = 3
