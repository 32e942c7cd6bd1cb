"""FD-DINOv2's feature extractor (Stein et al. 2023): a DINOv2 ViT (Oquab et al. 2023), the CLS token after the last
LayerNorm.

The network is written out here in plain PyTorch with the state-dict layout of the published
`dinov2_vit*14_pretrain.pth` files (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.norm1`, `.attn.qkv`,
`.attn.proj`, `.ls1.gamma`, `.norm2`, `.mlp.fc1`, `.mlp.fc2`, `.ls2.gamma`, `norm`), so no hub code is imported or
run: the size (S/B/L: width 384/768/1024, 12/12/24 blocks, 64 channels per head) is read from the file. Images are
resized to 224x224 (bicubic, antialiased, in float), scaled to [0, 1], normalised with ImageNet's mean and standard
deviation (grey images repeated to RGB); the position embeddings are interpolated from the file's grid to 16x16
patches as DINOv2 does (bicubic, its 0.1 offset). Stein et al. use ViT-L/14 (`dinov2_vitl14_pretrain.pth`,
1024 features).

The file is never unpickled as code (`weights_only=True`) and `evaluate.dinov2_sha256` must match it: there is no
built-in hash because the published files are not pinned by one. It is looked up at `evaluate.dinov2_weights` or in
the torch hub cache; `evaluate.download=true` fetches it (network) from DINOv2's public URL.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import GanforgeError
from ganforge.paths import sha256_file

WEIGHTS_FILE = "dinov2_vitl14_pretrain.pth"  # FD-DINOv2's network
WEIGHTS_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/" + WEIGHTS_FILE
INPUT_SIZE = 224
PATCH = 14
HEAD_DIM = 64
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.ls1 = nn.Module()
        self.ls1.gamma = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, mlp)
        self.mlp.fc2 = nn.Linear(mlp, dim)
        self.ls2 = nn.Module()
        self.ls2.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(n, t, d)
        x = x + self.ls1.gamma * self.attn.proj(a)
        return x + self.ls2.gamma * self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class DINOv2(nn.Module):
    """uint8 images [N, C, H, W] (C = 1 or 3) -> float32 CLS features [N, dim]. Eval mode, no gradients."""

    def __init__(self, dim: int, depth: int, grid: int, mlp: int) -> None:
        super().__init__()
        self.num_features = dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused here (masked training); in the file
        self.blocks = nn.ModuleList(Block(dim, max(1, dim // HEAD_DIM), mlp) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> DINOv2:
        return super().train(False)

    def positions(self, h: int, w: int) -> Tensor:
        """The position embeddings for an h x w patch grid: the file's grid interpolated (DINOv2's rule)."""
        pos = self.pos_embed
        m = math.isqrt(pos.shape[1] - 1)
        if h == w == m:
            return pos
        patches = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2).float()
        patches = F.interpolate(patches, scale_factor=((h + 0.1) / m, (w + 0.1) / m), mode="bicubic")
        patches = patches.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat([pos[:, :1], patches.to(pos.dtype)], dim=1)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = images.float() / 255
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", antialias=True, align_corners=False)
        x = (x - self.mean) / self.std
        x = self.patch_embed.proj(x)  # [N, D, 16, 16]
        h, w = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.positions(h, w)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0].float()


def from_state_dict(state: dict[str, Tensor], source: str) -> DINOv2:
    """The network the state dict describes (its width, depth and grid), with those weights."""
    try:
        dim = state["cls_token"].shape[-1]
        grid = math.isqrt(state["pos_embed"].shape[1] - 1)
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
        mlp = state["blocks.0.mlp.fc1.weight"].shape[0]
    except (KeyError, ValueError, AttributeError, IndexError):
        raise GanforgeError(f"{source}: not a DINOv2 ViT state dict (dinov2_vit*14_pretrain.pth)") from None
    state = {k: v for k, v in state.items() if not k.startswith("register_tokens")}
    model = DINOv2(dim, depth, grid, mlp)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GanforgeError(
            f"{source}: not the DINOv2 ViT layout (missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "the SwiGLU ViT-g/14 is not supported)"
        )
    return model.eval()


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_dinov2(weights: str | None, sha256: str | None, download: bool) -> tuple[DINOv2, dict[str, Any]]:
    """The DINOv2 extractor and the protocol to record beside its scores. `weights`: a file, or a directory holding
    `dinov2_vitl14_pretrain.pth` (None: the torch hub cache); its sha256 must be `sha256`."""
    if not sha256:
        raise GanforgeError(
            "evaluate.extractor dinov2 needs evaluate.dinov2_sha256 (the sha256 of your DINOv2 weights file: "
            "`sha256sum dinov2_vitl14_pretrain.pth`)"
        )
    path = Path(weights).expanduser() if weights else hub_checkpoint_dir() / WEIGHTS_FILE
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        if not download:
            raise GanforgeError(
                f"DINOv2 weights not found at {path}: put {WEIGHTS_FILE} (or another dinov2_vit*14_pretrain.pth) "
                "there and name it in evaluate.dinov2_weights, or set evaluate.download=true to fetch it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # a temporary file, checked, then moved into place
            torch.hub.download_url_to_file(WEIGHTS_URL, str(path), hash_prefix=sha256.lower(), progress=True)
        except (OSError, RuntimeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise GanforgeError(f"could not download {WEIGHTS_URL} to {path}: {reason}") from None
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise GanforgeError(f"{path}: sha256 is {actual}, expected {sha256.lower()} (evaluate.dinov2_sha256)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise GanforgeError(f"{path}: not a DINOv2 ViT state dict")
    model = from_state_dict(state, str(path))
    size = {384: "s", 768: "b", 1024: "l"}.get(model.num_features, f"-{model.num_features}")
    protocol = {
        "extractor": f"dinov2-vit{size}14-cls",
        "weights": str(path),
        "weights_sha256": actual,
        "resize": f"bicubic antialiased to {INPUT_SIZE}x{INPUT_SIZE}, ImageNet normalisation",
        "feature_dim": model.num_features,
    }
    return model, protocol
