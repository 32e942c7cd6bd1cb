"""Random training batches drawn from an in-memory uint8 set, reproducibly (a torch.Generator).

With packing (PacGAN) and labels, each group of `pack` consecutive images shares one class, so the
discriminator judges same-class sets; classes are drawn with the data's own frequencies.
"""

from __future__ import annotations

import torch


class BatchSampler:
    def __init__(self, labels: torch.Tensor, batch_size: int, pack: int, by_class: bool, seed: int) -> None:
        self.n = len(labels)
        self.batch_size = batch_size
        self.pack = pack
        self.by_class = by_class and pack > 1
        self.generator = torch.Generator().manual_seed(seed)
        if self.by_class:
            order = torch.argsort(labels, stable=True)
            counts = torch.bincount(labels[order])
            self.order = order
            self.counts = counts
            self.starts = torch.cumsum(counts, 0) - counts
            self.labels = labels

    def next(self) -> torch.Tensor:
        """Indices of the next batch."""
        g = self.generator
        if not self.by_class:
            return torch.randint(self.n, (self.batch_size,), generator=g)
        groups = self.batch_size // self.pack
        anchors = torch.randint(self.n, (groups,), generator=g)
        y = self.labels[anchors]
        u = torch.rand(groups, self.pack - 1, generator=g)
        offsets = (u * self.counts[y, None]).long()
        mates = self.order[self.starts[y, None] + offsets]
        return torch.cat([anchors[:, None], mates], dim=1).flatten()

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class DomainSampler:
    """Batches balanced over domains (image translation): row i of a batch comes from domain (i + offset) % K,
    offset random per batch, the image uniformly among that domain's; images with domain -1 are never drawn."""

    def __init__(self, domains: torch.Tensor, batch_size: int, seed: int) -> None:
        k = int(domains.max()) + 1
        members = [torch.nonzero(domains == d).flatten() for d in range(k)]
        self.flat = torch.cat(members)
        self.sizes = torch.tensor([len(m) for m in members])
        self.starts = torch.cumsum(self.sizes, 0) - self.sizes
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> torch.Tensor:
        g, k = self.generator, len(self.sizes)
        offset = torch.randint(k, (1,), generator=g)
        which = (torch.arange(self.batch_size) + offset) % k
        picks = (torch.rand(self.batch_size, generator=g) * self.sizes[which]).long()
        return self.flat[self.starts[which] + picks]

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
