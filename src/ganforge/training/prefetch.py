"""The next training batches read in a background thread while the current step runs.

The sampler draws the indices in the training thread, in order, so the stream of batches is the one without
prefetching; a thread reads the rows of the next `depth` batches (from the shards: `os.preadv`, which releases
the GIL; or a gather from the in-memory set) into pinned buffers where there is a GPU, so that the step's
`non_blocking` copy overlaps the one before. A checkpoint saves the sampler's position of the first batch not yet
consumed (`state()`), so a resumed run draws exactly what the interrupted one would have: prefetching never
changes the result.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch


class Prefetcher:
    def __init__(
        self,
        sampler,  # BatchSampler | DomainSampler: next(), state(), set_state()
        read: Callable[[torch.Tensor], torch.Tensor],
        pick: Callable[[torch.Tensor], torch.Tensor] = lambda idx: idx,
        depth: int = 2,
    ) -> None:
        """`pick` maps a global batch's indices to the rows this process reads (its DDP shard); `depth` 0
        reads each batch when it is asked for, in the training thread."""
        self.sampler, self.read, self.pick, self.depth = sampler, read, pick, depth
        self.queue: deque[tuple[torch.Tensor, torch.Tensor, Future]] = deque()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="ganforge-prefetch") if depth > 0 else None

    def _fill(self) -> None:
        assert self.pool is not None
        while len(self.queue) < self.depth:
            before = self.sampler.state().clone()
            idx = self.pick(self.sampler.next())
            self.queue.append((before, idx, self.pool.submit(self.read, idx)))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(this process's indices, their uint8 rows) of the next batch."""
        if self.pool is None:
            idx = self.pick(self.sampler.next())
            return idx, self.read(idx)
        self._fill()
        _, idx, rows = self.queue.popleft()
        self._fill()  # the next read starts before this batch's step
        return idx, rows.result()

    def state(self) -> torch.Tensor:
        """The sampler's position before the first batch not yet consumed (what a checkpoint saves)."""
        return self.queue[0][0] if self.queue else self.sampler.state()

    def set_state(self, state: torch.Tensor) -> None:
        self._drain()
        self.sampler.set_state(state)

    def _drain(self) -> None:
        while self.queue:
            self.queue.popleft()[2].cancel()

    def close(self) -> None:
        self._drain()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
