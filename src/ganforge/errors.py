"""Errors a user can cause. The CLI prints them as one line and exits non-zero, no traceback."""

from __future__ import annotations


def one_line(text: str) -> str:
    """`text` with every character that would break or hide the line (newlines, other control characters,
    U+2028, lone surrogates...) written as its Python escape: what a user sees is always exactly one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class GanforgeError(Exception):
    """A problem with the user's input or environment (not a bug). Exit code 1."""

    exit_code = 1


class ConfigError(GanforgeError):
    """params.yaml or a --set override is invalid. Raised before any work starts. Exit code 2.
    The message is one line, naming the key path (`train.steps: ...`) or the line of the file."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class TrainingDiverged(GanforgeError):
    """A loss became NaN/Inf. The last good checkpoint is left intact. Exit code 3."""

    exit_code = 3
