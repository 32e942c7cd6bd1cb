"""The in-domain image classifier, trained by the `features` stage (`ganforge.features`) on the prepared train split.

Its penultimate layer is the feature space of FID/KID/precision/recall where no Inception weights
are at hand (and a more telling one for small grayscale domains); its logits give the class
accuracy of conditional samples. This module holds the network, its file (models/classifier.pt) and how it is
trained (`fit`, `recipe`), which the features stage and the Classification Accuracy Score (`ganforge.cas`) share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ganforge import safeload
from ganforge.errors import GanforgeError
from ganforge.paths import atomic_path, sha256_file

FORMAT = 1


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


class Classifier(nn.Module):
    """Three conv stages (each halving the size), global average pool, a `feature_dim` layer, logits."""

    def __init__(self, channels: int, num_classes: int, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            *_block(channels, w),
            *_block(w, w),
            nn.MaxPool2d(2),
            *_block(w, 2 * w),
            *_block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * w, feature_dim),
            nn.ReLU(True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float images in [-1, 1] -> (features [N, feature_dim], logits [N, K])."""
        f = self.body(x)
        return f, self.head(f)


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.float().mul(2 / 255).sub(1)


def save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: Path) -> tuple[Classifier, dict[str, Any]]:
    """The classifier in eval mode and its record (arch, class names, test accuracy, sha256).

    The file is read as data only, within bounds (`ganforge.safeload`): pickled code, zip and pickle bombs, and an
    `arch` that would build a network larger than the file are refused in one line."""
    if not path.exists():
        raise GanforgeError(f"{path}: no classifier (run `ganforge features`, or set evaluate.extractor=inception)")
    state = safeload.read_torch_file(path, "classifier")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GanforgeError(f"{path}: not a ganforge classifier (format {FORMAT})")
    if "unavailable" in state:
        why = " ".join(str(state["unavailable"]).split())[:200]  # one line, whatever the file says
        raise GanforgeError(
            f"evaluate: no in-domain classifier ({why}); either set evaluate.extractor=inception "
            "(weights via evaluate.inception_weights or the torch hub cache), or prepare one sub-folder per class"
        )
    return built(path, state, "ganforge classifier", Classifier, checked_record(state, path, "ganforge classifier"))


def built(path: Path, state: dict[str, Any], what: str, cls: Callable[..., nn.Module], arch: dict) -> tuple[Any, dict]:
    """The network `cls(**arch)` with the file's weights (checked against its shapes first, so a hostile file is
    refused before it is loaded), frozen in eval mode, and the file's record (all but the weights, plus its sha256)."""
    safeload.check_weights(
        path,
        what,
        lambda: {"state_dict": cls(**arch)},
        (cls.__name__, *sorted(arch.items())),
        {"state_dict": state.get("state_dict")},
    )
    net = cls(**arch)
    net.load_state_dict(state["state_dict"])
    record = {k: v for k, v in state.items() if k != "state_dict"}
    record["sha256"] = sha256_file(path)
    return net.eval().requires_grad_(False), record


def checked_record(state: dict[str, Any], path: Path, what: str, ints: tuple[str, ...] = ("resolution",)) -> dict:
    """The `arch` of a loaded classifier file, after its record fields have been checked for type; GanforgeError."""
    arch = safeload.arch_kwargs(state.get("arch"), path, what, "arch")
    names = state.get("class_names")
    accuracy = state.get("test_accuracy")
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) for n in names)
        or isinstance(accuracy, bool)
        or not isinstance(accuracy, int | float)
        or not all(isinstance(state.get(k), int) and not isinstance(state.get(k), bool) for k in ints)
    ):
        raise GanforgeError(
            f"{path}: not a {what} (class_names, test_accuracy or {', '.join(ints)} missing or mistyped)"
        )
    return arch


# --- training it (the features stage; CAS trains the same recipe on generated samples) ---------------------
def shift_images(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations by up to `max_shift` pixels (edge-replicated), one per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    rows = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=g) + torch.arange(h)
    cols = torch.randint(0, 2 * max_shift + 1, (n, 1), generator=g) + torch.arange(w)
    return padded[
        torch.arange(n)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def strong_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The RGB recipe (SimCLR/AutoAugment-style, mild enough to keep a class): shifts by up to 1/8 of the side,
    horizontal flips, brightness, contrast and saturation jitter, and a cutout square of 1/4 of the side."""
    n, c, h, w = x.shape
    x = shift_images(x, g, max(2, h // 8))
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if c == 3:
        brightness = (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.4
        contrast = torch.rand(n, 1, 1, 1, generator=g) * 0.6 + 0.7
        saturation = torch.rand(n, 1, 1, 1, generator=g) * 0.8 + 0.6
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean + brightness
        gray = x.mean(dim=1, keepdim=True)
        x = (x - gray) * saturation + gray
    half = max(1, h // 8)
    cy, cx = torch.randint(0, h, (n, 1, 1), generator=g), torch.randint(0, w, (n, 1, 1), generator=g)
    square = ((torch.arange(h)[:, None] - cy).abs() <= half) & ((torch.arange(w)[None, :] - cx).abs() <= half)
    return x.masked_fill(square[:, None], 0.0).clamp(-1, 1)


AUGMENTS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None] = {
    "none": None,
    "shift": shift_images,  # small translations: for digits and other shapes a flip would change
    "strong": strong_augment,
}
# `features.epochs: auto`: enough optimiser steps for the data, as epochs (RGB sets are harder: colour artwork
# reached 0.87 test accuracy at 1,300 steps and 0.63 at 330; 8x8 digits 0.97 at 200)
AUTO_STEPS = {1: 200, 3: 1300}
AUTO_EPOCHS = (15, 200)


def plan(fc: Any, n_train: int, channels: int) -> tuple[int, str]:
    """(epochs, augmentation) of the classifier recipe on `n_train` images of `channels`: `auto` resolved.
    augment auto: strong for RGB, shift for grayscale; epochs auto: AUTO_STEPS optimiser steps, within AUTO_EPOCHS."""
    augment = fc.augment if fc.augment != "auto" else ("strong" if channels == 3 else "shift")
    if fc.epochs != "auto":
        return int(fc.epochs), augment
    steps_per_epoch = max(1, -(-n_train // fc.batch_size))
    wanted = -(-AUTO_STEPS.get(channels, AUTO_STEPS[3]) // steps_per_epoch)
    return max(AUTO_EPOCHS[0], min(AUTO_EPOCHS[1], wanted)), augment


def train_new(
    fc: Any,
    epoch_data: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    channels: int,
    num_classes: int,
    desc: str,
    progress: bool = True,
    g: torch.Generator | None = None,
) -> tuple[Classifier, tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
    """A Classifier trained with the features recipe `fc` (`plan`) from seed fc.seed: (net, the last epoch's data,
    the recipe as recorded). `g` orders and augments the batches (default: a generator seeded with fc.seed)."""
    n_train = len(epoch_data(0)[1])
    epochs, augment = plan(fc, n_train, channels)
    torch.manual_seed(fc.seed)
    g = g if g is not None else torch.Generator().manual_seed(fc.seed)
    net = Classifier(channels, num_classes, fc.width, fc.feature_dim)
    last = fit(net, epoch_data, epochs, fc.batch_size, fc.lr, AUGMENTS[augment], g, desc, progress)
    return net, last, recipe(fc, epochs, augment)


def fit(
    net: nn.Module,
    epoch_data: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    epochs: int,
    batch: int,
    lr: float,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
    g: torch.Generator,
    desc: str,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train a classifier (forward -> (features, logits)) with AdamW, a one-cycle schedule and label smoothing:
    each epoch on `epoch_data(epoch)` (uint8 inputs, labels; the same size every epoch) in an order drawn from g.
    Returns the last epoch's data."""
    x_train, y_train = epoch_data(0)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, -(-len(x_train) // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress):
        net.train()
        if epoch:
            x_train, y_train = epoch_data(epoch)
        order = torch.randperm(len(x_train), generator=g)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            x = to_float(x_train[idx])
            if augment is not None:
                x = augment(x, g)
            loss = F.cross_entropy(net(x)[1], y_train[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return x_train, y_train


@torch.no_grad()
def accuracy(net: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, batch: int = 512) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(images_u8), batch):
        logits = net(to_float(images_u8[i : i + batch]))[1]
        correct += (logits.argmax(1) == labels[i : i + batch]).sum().item()
    return correct / max(len(images_u8), 1)


def recipe(fc: Any, epochs: int, augment: str) -> dict[str, Any]:
    """How the image classifier is trained (recorded in its file; CAS trains its classifiers the same way), with
    `auto` resolved (`plan`)."""
    keys = ("batch_size", "lr", "width", "feature_dim", "seed")
    return {"classifier": "ganforge.metrics.classifier.Classifier", "epochs": epochs, "augment": augment,
            **{k: getattr(fc, k) for k in keys}}  # fmt: skip
