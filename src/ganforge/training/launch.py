"""`train.nproc` > 1: the same `ganforge train` command, started once per process through torch's elastic agent
(what `torchrun --standalone --nproc-per-node N` does), so that `dvc repro`, `dvc exp run` and the Prefect flows
run multi-GPU training with their stage command unchanged.

A process that fails (an error, a SIGKILL, an out-of-memory kill) fails the whole job: the agent stops the
others, and this prints one line saying which rank and that the last checkpoint is intact. Checkpoints are
written by rank 0 only and atomically, so running the command again continues from the last one.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

from ganforge.errors import GanforgeError

LAUNCHED = "GANFORGE_LAUNCHED"  # set in the processes this starts: their collective errors are this line's


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def launch(nproc: int, argv: list[str], checkpoint: Path) -> None:
    """Run `python -m ganforge train <argv>` in `nproc` processes on this host; raise GanforgeError (one line)
    when one of them fails."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in list(logging.root.manager.loggerDict):  # the agent's own report of a failure is this line's
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"ganforge-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port on loopback: one host
        max_restarts=0,  # a failed rank fails the job; running the command again resumes it
        monitor_interval=0.5,
    )
    os.environ[LAUNCHED] = "1"
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "ganforge", "train", *argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode < 0:  # killed: nothing of its own to say; running the command again resumes
            kept = f"the last checkpoint ({checkpoint}) is intact" if checkpoint.exists() else "no checkpoint yet"
            raise GanforgeError(
                f"train: rank {rank} of {nproc} was killed by {failure.signal_name()}; the other ranks were stopped; "
                f"{kept}: run the same command again to continue"
            ) from None
        raise GanforgeError(
            f"train: rank {rank} of {nproc} exited with code {failure.exitcode}"
            + (" (its error is above)" if failure.exitcode <= 3 else "")
            + "; the other ranks were stopped"
        ) from None
    finally:
        os.environ.pop(LAUNCHED, None)
