"""evaluate.extractor dinov2 (FD-DINOv2) with a small ViT file in the DINOv2 layout that the test writes: never a
download. The published files load the same way (their width, depth and grid are read from the file)."""

import hashlib
import math

import pytest
import torch

from ganforge.config import EvaluateConfig
from ganforge.errors import GanforgeError
from ganforge.metrics.dinov2 import Block, from_state_dict, load_dinov2
from ganforge.metrics.extract import extractor
from ganforge.paths import Paths

DIM, DEPTH, GRID, MLP = 64, 2, 4, 128


def tiny_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {
        "cls_token": torch.randn(1, 1, DIM, generator=g),
        "pos_embed": torch.randn(1, 1 + GRID * GRID, DIM, generator=g) * 0.1,
        "mask_token": torch.zeros(1, DIM),
        "patch_embed.proj.weight": torch.randn(DIM, 3, 14, 14, generator=g) * 0.02,
        "patch_embed.proj.bias": torch.zeros(DIM),
        "norm.weight": torch.ones(DIM),
        "norm.bias": torch.zeros(DIM),
    }
    for i in range(DEPTH):
        b = f"blocks.{i}."
        for name, shape in [
            ("attn.qkv.weight", (3 * DIM, DIM)), ("attn.proj.weight", (DIM, DIM)),
            ("mlp.fc1.weight", (MLP, DIM)), ("mlp.fc2.weight", (DIM, MLP)),
        ]:  # fmt: skip
            state[b + name] = torch.randn(*shape, generator=g) / math.sqrt(shape[1])
            state[b + name.replace("weight", "bias")] = torch.randn(shape[0], generator=g) * 0.01
        for norm in ("norm1", "norm2"):
            state[b + norm + ".weight"], state[b + norm + ".bias"] = torch.ones(DIM), torch.zeros(DIM)
        state[b + "ls1.gamma"], state[b + "ls2.gamma"] = torch.full((DIM,), 0.5), torch.full((DIM,), 0.5)
    return state


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "dinov2_vitl14_pretrain.pth"
    torch.save(tiny_state(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_loads_checks_the_hash_and_gives_cls_features(weights):
    path, sha = weights
    net, protocol = load_dinov2(str(path), sha, download=False)
    assert protocol["weights_sha256"] == sha and protocol["feature_dim"] == DIM
    assert "224x224" in protocol["resize"]
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    f = net(images)
    assert f.shape == (3, DIM) and f.dtype == torch.float32 and f.isfinite().all()
    assert torch.allclose(net(images[1:2]), f[1:2], atol=1e-5)  # a sample's features do not depend on the batch
    grey = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    assert torch.allclose(net(grey), net(grey.expand(-1, 3, -1, -1)), atol=1e-6)  # grey = the same in R, G, B
    # the loaded weights are the file's: another file gives other features
    other = tiny_state()
    other["cls_token"] = -other["cls_token"]  # not a constant shift: every LayerNorm would take that away
    assert not torch.allclose(from_state_dict(other, "x")(images), f)


def test_position_embeddings_follow_dinov2s_rule(weights):
    net = from_state_dict(tiny_state(), "tiny")
    assert net.positions(GRID, GRID) is net.pos_embed  # the file's own grid: as it is
    pos = net.positions(16, 16)
    assert pos.shape == (1, 1 + 256, DIM) and torch.equal(pos[:, 0], net.pos_embed[:, 0])


def test_a_block_is_pre_norm_attention_and_mlp_with_layerscale():
    torch.manual_seed(0)
    block = Block(DIM, heads=2, mlp=MLP)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 5, DIM)
    # by hand: softmax(q k^T / sqrt(d)) v per head, GELU (erf) MLP, each residual branch scaled by its gamma
    h = block.norm1(x)
    q, k, v = block.attn.qkv(h).reshape(2, 5, 3, 2, DIM // 2).permute(2, 0, 3, 1, 4)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DIM // 2), dim=-1) @ v
    x1 = x + block.ls1.gamma * block.attn.proj(a.transpose(1, 2).reshape(2, 5, DIM))
    h2 = block.mlp.fc1(block.norm2(x1))
    gelu = 0.5 * h2 * (1 + torch.erf(h2 / math.sqrt(2)))
    expected = x1 + block.ls2.gamma * block.mlp.fc2(gelu)
    assert torch.allclose(block(x), expected, atol=1e-5)


def test_bad_files_and_settings_are_one_line_errors(weights, tmp_path):
    path, sha = weights
    with pytest.raises(GanforgeError, match=r"sha256 is .* expected 0{64}"):
        load_dinov2(str(path), "0" * 64, download=False)
    with pytest.raises(GanforgeError, match=r"needs evaluate\.dinov2_sha256"):
        load_dinov2(str(path), None, download=False)
    with pytest.raises(GanforgeError, match=r"not found at .*download=true"):
        load_dinov2(str(tmp_path / "absent.pth"), sha, download=False)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(GanforgeError, match="not a DINOv2 ViT state dict"):
        load_dinov2(str(wrong), hashlib.sha256(wrong.read_bytes()).hexdigest(), download=False)
    folder_net, _ = load_dinov2(str(path.parent), sha, download=False)  # a folder holding the published name
    assert folder_net.num_features == DIM


def test_evaluates_extractor_setting_uses_it(weights, tmp_path):
    path, sha = weights
    ec = EvaluateConfig(extractor="dinov2", dinov2_weights=str(path), dinov2_sha256=sha)
    run, protocol = extractor(ec, Paths(root=tmp_path))
    feats, logits = run(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8))
    assert feats.shape == (4, DIM) and feats.dtype == torch.float64 and logits is None
    assert protocol["extractor"] == f"dinov2-vit-{DIM}14-cls" and protocol["weights_sha256"] == sha
