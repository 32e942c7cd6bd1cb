"""Fault injection for the reliability tests (docs/RELIABILITY.md): `GANFORGE_FAULT=<point>[@<n>]` kills this
process with SIGKILL the n-th time (default: the first) it reaches `reach(<point>)`. Unset, `reach` does nothing.
Under torchrun, `GANFORGE_FAULT_RANK=<r>` limits it to the process of rank r (a rank that dies mid-job).

Points: `prepare.shard` (a shard file written), `train.step` (an optimiser step done), `checkpoint.swap` (the
current checkpoint moved to .prev, the new one not yet in place), `evaluate.registered` (the model version
created, eval.json not yet written), `library.asset` (an asset's files written, its catalog row not yet on disk).
"""

from __future__ import annotations

import os
import signal

_seen: dict[str, int] = {}


def reach(point: str) -> None:
    spec = os.environ.get("GANFORGE_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition("@")
    if name != point:
        return
    if (only := os.environ.get("GANFORGE_FAULT_RANK")) is not None and os.environ.get("RANK", "0") != only:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
