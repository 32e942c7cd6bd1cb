"""Loading torch files that may come from someone else (checkpoints, classifiers): as data, never as code.

`torch.load(..., weights_only=True)` refuses pickled code, but three things still get through it, and each is
refused here with one line (GanforgeError) before anything large is allocated:

- a zip bomb: torch's reader inflates deflate-compressed records, so a 200 KB file can fill 200 MB (and 20 MB,
  20 GB). `torch.save` writes uncompressed (stored) records only: anything else is refused, as are files that
  are not a zip archive at all (the legacy format reads storage sizes from the file and allocates them);
- a pickle bomb: a 1 KB pickle can hold 10**12 values through shared references ("billion laughs"), harmless to
  load and fatal to whatever walks it later (a checksum, `str`, `json.dumps`). At most MAX_VALUES values,
  nested at most MAX_DEPTH deep, are accepted, shared references counted each time they are met;
- an architecture bomb: the file names the network it holds (a spec, an `arch`), and building that network
  allocates its weights before the stored ones are copied in. `check_weights` builds it on the meta device
  first (no memory), then requires the stored tensors to match it name for name and shape for shape, and the
  whole network to need no more memory than the file's size (plus SLACK_BYTES).
"""

from __future__ import annotations

import math
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganforge.errors import GanforgeError

MAX_VALUES = 200_000  # a real checkpoint holds ~600 (every tensor counts as one)
MAX_DEPTH = 32
MAX_ARCH_INT = 1 << 20  # bounds the layers a constructor loops over (log2 of a resolution, say)
SLACK_BYTES = 64 << 20  # what a network may need beyond its file (e.g. a D whose weights the file leaves out)
_LEAVES = (str, bytes, bool, int, float, complex, type(None), torch.Tensor, torch.dtype, torch.device)


def read_torch_file(path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """What `torch.save` wrote to `path`, loaded with weights_only=True and within the bounds above.
    Anything else: GanforgeError "<path>: not a readable <what> (<why>)"."""

    def refuse(why: str) -> GanforgeError:
        return GanforgeError(f"{path}: not a readable {what} ({why})")

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"  # where torch itself looks: the first local file header
        if not is_zip:
            raise refuse("not a torch.save zip archive")
        with zipfile.ZipFile(path) as z:
            records = z.infolist()
    except zipfile.BadZipFile:
        raise refuse("not a torch.save zip archive") from None
    except OSError as exc:
        raise refuse(exc.strerror or exc.__class__.__name__) from None
    if any(r.compress_type != zipfile.ZIP_STORED for r in records):
        raise refuse("compressed records: torch.save writes none, a zip bomb does")
    if sum(r.file_size for r in records) > size:
        raise refuse("its records claim more bytes than the file has")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": one line on stderr, not three
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, or holds objects weights_only refuses (code, unknown classes)
        raise refuse(exc.__class__.__name__) from None
    _check_plain(obj, refuse)
    return obj


def _check_plain(obj: Any, refuse: Callable[[str], GanforgeError]) -> None:
    """Only containers and plain values, at most MAX_VALUES of them (each visit counts), at most MAX_DEPTH deep."""
    budget = MAX_VALUES
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, _LEAVES):
            continue
        if isinstance(value, dict):
            children: list[Any] | tuple[Any, ...] = [*value.keys(), *value.values()]
        elif isinstance(value, list | tuple | set | frozenset):
            children = list(value)
        else:
            raise refuse(f"holds a {type(value).__name__}")
        budget -= len(children)
        if budget < 0 or depth >= MAX_DEPTH:
            raise refuse(f"more than {MAX_VALUES:,} values or nested over {MAX_DEPTH} deep: a pickle bomb?")
        stack.extend((child, depth + 1) for child in children)


def arch_kwargs(value: Any, path: Path, what: str, field: str) -> dict[str, Any]:
    """`value` (a file's `field`) as keyword arguments of a network constructor: a dict of str keys and short
    strings, bools, None, finite floats or ints within +-MAX_ARCH_INT, or one level of such dicts (a model
    spec's family config). Else GanforgeError."""

    def plain(v: Any) -> bool:
        if isinstance(v, str):
            return len(v) <= 100
        if isinstance(v, bool) or v is None:
            return True
        if isinstance(v, int | float):
            return math.isfinite(v) and abs(v) <= MAX_ARCH_INT
        return False

    def settings(d: Any, nested: bool) -> bool:
        return isinstance(d, dict) and all(
            isinstance(k, str) and (plain(v) or (nested and settings(v, False))) for k, v in d.items()
        )

    if not settings(value, True):
        raise GanforgeError(f"{path}: not a {what} (its {field} is not a set of plain settings)")
    return dict(value)


def check_weights(
    path: Path,
    what: str,
    build: Callable[[], Mapping[str, nn.Module]],
    key: Any,
    weights: Mapping[str, Any],
) -> None:
    """Refuse `weights` ({name: state dict}) unless each one fits the network `build()[name]` exactly, and the
    networks `build()` makes need at most the file's size + SLACK_BYTES of memory. The networks are built on the
    meta device (shapes, no memory), once per `key` (a hashable description of what `build` builds)."""
    try:
        shapes, nbytes = _meta_shapes(build, key)
    except Exception as exc:  # a bad spec: unknown model, wrong argument names or types
        why = " ".join(str(exc).split())[:160] or exc.__class__.__name__
        raise GanforgeError(f"{path}: not a {what} (its architecture does not build: {why})") from None
    size = path.stat().st_size
    if nbytes > size + SLACK_BYTES:
        raise GanforgeError(
            f"{path}: not a {what} (its architecture needs {nbytes:,} bytes of weights, the file holds {size:,})"
        )
    for name, state in weights.items():
        expected = shapes.get(name)
        fits = (
            expected is not None
            and isinstance(state, dict)
            and state.keys() == expected.keys()
            and all(isinstance(t, torch.Tensor) and tuple(t.shape) == expected[k] for k, t in state.items())
        )
        if not fits:
            raise GanforgeError(f"{path}: not a {what} (its {name} weights do not fit its architecture)")


_META: dict[Any, tuple[dict[str, dict[str, tuple[int, ...]]], int]] = {}


def _meta_shapes(build: Callable[[], Mapping[str, nn.Module]], key: Any) -> tuple[dict, int]:
    """({name: {parameter: shape}}, bytes of all the networks' state) of what `build` makes, cached by `key`."""
    if key not in _META:
        with torch.device("meta"):
            nets = build()
        shapes = {name: {k: tuple(t.shape) for k, t in net.state_dict().items()} for name, net in nets.items()}
        unique = {id(net): net for net in nets.values()}.values()
        nbytes = sum(t.numel() * t.element_size() for net in unique for t in net.state_dict().values())
        if len(_META) >= 64:
            _META.clear()
        _META[key] = (shapes, nbytes)
    return _META[key]
