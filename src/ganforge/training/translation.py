"""Image translation in the engine: domains from class folders, the history pool, the cycle terms, the step.

A translation family (`task = "translate"`: cyclegan, stargan) trains through the same loop, System,
objective and checkpoints as the generative ones; what differs is here:

- **Domains** are the prepared data's classes, grouped by `translate.domains` (class names or shell patterns,
  one entry per domain: `[handwritten_*, typeset_*]`); each class belongs to at most one domain, and images of
  classes in none are not trained on. Batches are balanced: row i of every batch comes from domain
  `(i + offset) % K`, so each domain fills its share whatever its size.
- **The step**: each real image x of domain d is translated into a target domain t (CycleGAN: the other one;
  StarGAN: a random other one): fake = G(x, t). D learns to tell x (as d) from fake (as t, drawn through the
  history pool), with the objective's adversarial loss and penalties (and, for StarGAN, the domain classifier
  on real images: `train.class_loss`); G learns to fool D (and its classifier) while G(fake, d) reconstructs
  x (`cycle`, L1) and G(x, d) leaves x as it is (`identity`, x cycle, L1).
- **The history pool** (Shrivastava et al. 2017): D sees fakes from earlier steps half of the time; its images
  are buffers, so it is checkpointed and resumed like ADA's p.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.paths import atomic_path
from ganforge.sampling import translate
from ganforge.training.system import System

TRANSLATE_STATS = ("loss_d", "loss_g", "d_real", "d_fake", "cycle", "identity")
Batch = tuple[torch.Tensor, torch.Tensor | None]


def domain_table(class_names: list[str], patterns: list[str]) -> tuple[torch.Tensor, list[str]]:
    """For each class its domain index (-1: in none), and the domains' names. No patterns: each class is one."""
    if not patterns:
        return torch.arange(len(class_names)), list(class_names)
    table = torch.full((len(class_names),), -1, dtype=torch.long)
    for k, pattern in enumerate(patterns):
        hits = [i for i, name in enumerate(class_names) if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            shown = ", ".join(class_names[:8]) + (", ..." if len(class_names) > 8 else "")
            raise GanforgeError(f"translate.domains: {pattern!r} matches no class of the prepared data ({shown})")
        if clash := [class_names[i] for i in hits if table[i] >= 0]:
            raise GanforgeError(
                f"translate.domains: class {clash[0]!r} is in {patterns[int(table[hits[0]])]!r} and {pattern!r}"
            )
        table[hits] = k
    return table, list(patterns)


def content_keys(class_names: list[str], patterns: list[str]) -> list[str | None]:
    """What a class keeps across domains: the part of its name its domain's `*` matched ("3" of
    "handwritten_3" under "handwritten_*"); None where the pattern has no single `*` (or no patterns)."""
    out: list[str | None] = []
    table, _ = domain_table(class_names, patterns) if patterns else (None, [])
    for i, name in enumerate(class_names):
        if table is None or table[i] < 0 or patterns[int(table[i])].count("*") != 1:
            out.append(None)
            continue
        head, tail = patterns[int(table[i])].split("*")
        out.append(name[len(head) : len(name) - len(tail)] if tail else name[len(head) :])
    return out


def counterparts(class_names: list[str], patterns: list[str]) -> torch.Tensor:
    """[classes, domains]: the class a translation of class c into domain t should be: the class of t with c's
    content key ("typeset_3" for "handwritten_3"), else t's only class when it has one, else -1."""
    table, domains = domain_table(class_names, patterns)
    keys = content_keys(class_names, patterns)
    out = torch.full((len(class_names), len(domains)), -1, dtype=torch.long)
    for t in range(len(domains)):
        members = torch.nonzero(table == t).flatten().tolist()
        by_key = {keys[m]: m for m in members if keys[m] is not None}
        for c in range(len(class_names)):
            if keys[c] is not None and keys[c] in by_key:
                out[c, t] = by_key[keys[c]]
            elif len(members) == 1:
                out[c, t] = members[0]
    return out


def _class_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the rows whose target is known (>= 0); 0 when none is (no host sync)."""
    ce = F.cross_entropy(logits.float(), target.clamp(min=0), reduction="none")
    known = (target >= 0).float()
    return (ce * known).sum() / known.sum().clamp(min=1.0)


def targets(domains: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """A target domain for each row, never its own: the other one of two, else a uniformly random other one."""
    if k == 2:
        return 1 - domains
    shift = torch.randint(1, k, domains.shape, generator=gen, device=gen.device)
    return (domains + shift.to(domains.device)) % k


def translate_step(s: System, next_batch: Callable[[], Batch]) -> torch.Tensor:
    obj, aug, terms = s.objective, s.augment, s.translation
    assert terms is not None
    step = s.step_count + 1
    k = s.spec.num_classes
    extra: dict[str, torch.Tensor] = {}

    # (1) Update D: real images as their domain, translations (some from the pool) as their target; D's class head
    # (train.class_loss) learns the real images' classes (or domains)
    for i in range(obj.n_critic):
        real, y = next_batch()
        assert y is not None
        dom, cls = y[:, 0], y[:, 1]  # domain, class of the prepared data
        tgt = targets(dom, k, s.noise_gen)
        with torch.set_grad_enabled(i == obj.n_critic - 1), s.autocast():  # G's graph: only the last fakes
            fake = s.G(real, tgt)
        old, old_tgt = terms.pool.query(fake, tgt)
        with s.autocast():
            d_real = s.judge(real, dom)
            d_fake = s.judge(old, old_tgt)
            loss_d, parts = obj.d_main(d_real._replace(class_logits=None), d_fake)
            heads = bool(obj.class_loss) and d_real.class_logits is not None
            if heads:
                loss_d = loss_d + obj.class_loss * _class_loss(d_real.class_logits, cls if terms.by_class else dom)
        s.update(s.opt_D, loss_d)
        extra |= parts
        aug.feedback(d_real.logits)
        aug.step(s.step_count * obj.n_critic + i + 1, real.shape[0])

    # (2) Regularise D when due (WGAN-GP for StarGAN; fp32, outside autocast)
    if due := obj.due(step):
        loss_reg, values = obj.d_reg(due, s.judge_logits, real, fake.detach(), dom)
        s.update(s.opt_D, loss_reg)
        extra |= values

    # (3) Update G: fool D (and its domain classifier), come back under the reverse translation, keep what is
    # already in the target domain
    with s.autocast():
        d_gen = s.judge(fake, tgt)
        loss_g = obj.g_main(d_gen._replace(class_logits=None), None)  # the class term: below
        if heads and d_gen.class_logits is not None:  # the class the source's content has in the target domain
            wanted = terms.counterpart[cls, tgt] if terms.by_class else tgt
            loss_g = loss_g + obj.class_loss * _class_loss(d_gen.class_logits, wanted)
        seen = fake + terms.noise * torch.randn_like(fake) if terms.noise else fake  # what the way back sees
        cycle = F.l1_loss(s.G(seen, dom).float(), real.float())
        loss_g = loss_g + terms.cycle * cycle
        identity = torch.zeros((), device=s.device)
        if terms.identity:
            identity = F.l1_loss(s.G(real, dom).float(), real.float())
            loss_g = loss_g + terms.identity * terms.cycle * identity
    s.update(s.opt_G, loss_g)

    s.update_ema()
    s.step_count += 1
    p_real = torch.sigmoid(d_real.logits[0].float()).mean()
    p_fake = torch.sigmoid(d_fake.logits[0].float()).mean()
    zero = torch.zeros((), device=s.device)
    stats = [loss_d.float(), loss_g.float(), p_real, p_fake, cycle.detach(), identity]
    stats += [extra.get(name, zero).float() for name in obj.names]
    stats += [v.float() for v in aug.stats().values()]
    return torch.stack(stats).detach()


def translate_stat_names(s: System) -> tuple[str, ...]:
    return TRANSLATE_STATS + s.objective.names + tuple(s.augment.stats())


def fixed_sources(images: torch.Tensor, domains: torch.Tensor, k: int, per: int = 8) -> tuple[torch.Tensor, ...]:
    """The same sources at every snapshot: the first `per` train images of each domain (uint8), their domains
    (`domains`: one per image, -1 for none)."""
    picks = [torch.nonzero(domains == d).flatten()[:per] for d in range(k)]
    idx = torch.cat(picks)
    return images[idx.to(images.device) if isinstance(images, torch.Tensor) else idx], domains[idx]


def translation_grid(G: nn.Module, sources: torch.Tensor, domains: torch.Tensor, k: int, out: Path) -> None:
    """For each domain: a row of its sources, then one row of their translations into each other domain."""
    rows = []
    for d in range(k):
        src = sources[domains.cpu() == d]
        if not len(src):
            continue
        rows.append(src)
        for t in range(k):
            if t != d:
                rows.append(translate(G, src, t))
    cols = max(len(r) for r in rows)
    c, h, w = sources.shape[1:]
    canvas = torch.zeros(3 if c == 3 else 1, len(rows) * (h + 2), cols * (w + 2), dtype=torch.uint8)
    for r, row in enumerate(rows):
        for j, img in enumerate(row.cpu()):
            canvas[:, r * (h + 2) + 1 : r * (h + 2) + 1 + h, j * (w + 2) + 1 : j * (w + 2) + 1 + w] = img
    pixels = canvas.permute(1, 2, 0).numpy()
    with atomic_path(out) as tmp:
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(tmp, format="PNG")
