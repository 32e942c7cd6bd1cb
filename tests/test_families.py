"""The image families beyond dcgan (resnet, r3gan, stylegan2): shapes at every resolution they serve, parameter
counts, one training step with each one's own recipe, and what is particular to each (w-space truncation, style
mixing and fixed noise, path-length regularisation, fix-up initialisation)."""

import pytest
import torch

from ganforge.config import ConfigError, TrainConfig, load_config
from ganforge.models import FAMILIES, DOutput, ModelSpec, build
from ganforge.sampling import Sampler
from ganforge.training.objective import PathLength
from ganforge.training.step import stat_names, train_step
from ganforge.training.system import System

SMALL = {
    "resnet": {"z_dim": 16, "g_width": 8, "d_width": 8, "max_channels": 32, "embed_dim": 8},
    "r3gan": {"z_dim": 16, "width": 8, "max_channels": 32, "group_size": 8, "embed_dim": 8},
    "stylegan2": {"z_dim": 16, "w_dim": 16, "g_width": 8, "d_width": 8, "max_channels": 32},
}
RESOLUTIONS = {"resnet": [16, 32, 64, 128], "r3gan": [16, 32, 64, 256], "stylegan2": [32, 64, 512]}


def spec_of(family, resolution=32, channels=3, num_classes=10, *, class_head=False, **keys):
    config = FAMILIES[family].config(**{**SMALL[family], **keys})
    return ModelSpec.for_data(
        config, resolution=resolution, channels=channels, num_classes=num_classes, class_head=class_head
    )


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(("family", "resolution"), [(f, r) for f, rs in RESOLUTIONS.items() for r in rs])
@pytest.mark.parametrize("num_classes", [0, 5])
def test_shapes_at_every_resolution(family, resolution, num_classes):
    keys = {"max_channels": 16} if resolution >= 256 else {}
    G, D = build(spec_of(family, resolution, 3, num_classes, **keys)).values()
    y = torch.tensor([0, 1, 4, 2]) if num_classes else None
    x = G(torch.randn(4, 16), y)
    assert x.shape == (4, 3, resolution, resolution) and x.isfinite().all()
    out = D(x, y)
    assert isinstance(out, DOutput) and out.logits[0].shape == (4,) and out.class_logits is None


# the sizes of each family's default config (its README recommendation) at 32x32 RGB, 10 classes: a change to an
# architecture shows here first
DEFAULT_PARAMS = {
    "resnet": (1_384_259, 2_369_985),
    "r3gan": (1_702_208, 1_685_888),
    "stylegan2": (2_644_819, 3_515_968),
}


@pytest.mark.parametrize("family", list(DEFAULT_PARAMS))
def test_parameter_counts_of_the_default_configs(family):
    spec = ModelSpec.for_data(FAMILIES[family].config(), resolution=32, channels=3, num_classes=10)
    G, D = build(spec).values()
    assert (n_params(G), n_params(D)) == DEFAULT_PARAMS[family]


@pytest.mark.parametrize("family", list(SMALL))
def test_one_training_step_with_the_family_recipe(family):
    torch.manual_seed(0)
    tc = TrainConfig.model_validate({"model": {"family": family, **SMALL[family]}, "batch_size": 8})
    res = 16 if family != "stylegan2" else 32
    s = System(tc, spec_of(family, res, 3, 5), torch.device("cpu"), None)
    before = [p.detach().clone() for p in (*s.G.parameters(), *s.D.parameters())]
    real = torch.rand(8, 3, res, res) * 2 - 1
    y = torch.arange(8) % 5
    for _ in range(4):  # stylegan2: the path-length phase runs on step 4
        stats = dict(zip(stat_names(s), train_step(s, lambda: (real, y)).tolist(), strict=True))
    assert all(v == v and abs(v) < 1e4 for v in stats.values()), stats
    after = [p.detach() for p in (*s.G.parameters(), *s.D.parameters())]
    moved = sum(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert moved > 0.9 * len(before)
    if family == "stylegan2":
        assert stats["pl"] > 0 and float(s.objective.g_penalties[0].pl_mean) > 0
    if family == "r3gan":
        assert stats["r1"] > 0 and stats["r2"] > 0


def test_a_family_name_alone_brings_its_recipe_and_explicit_keys_win(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  loss: auto\n  r1: {weight: auto, interval: auto}\n  lr_g: auto\n")
    r3 = load_config(params, ["train.model=r3gan"]).train
    assert (r3.loss, r3.r1.weight, r3.r2.weight, r3.beta1, r3.beta2) == ("rpgan", 0.1, 0.1, 0.0, 0.99)
    sg = load_config(params, ["train.model.family=stylegan2"]).train
    assert (sg.loss, sg.r1.interval, sg.pl.weight, sg.lr_g, sg.augment.kind) == ("nonsat", 16, 2.0, 0.0025, "ada")
    dc = load_config(params, []).train
    assert (dc.loss, dc.r1.weight, dc.beta1, dc.pl.weight) == ("hinge", 0.0, 0.5, 0.0)  # dcgan: the defaults
    mine = load_config(params, ["train.model=r3gan", "train.loss=hinge", "train.r1.weight=2"]).train
    assert (mine.loss, mine.r1.weight, mine.r2.weight) == ("hinge", 2.0, 0.1)
    with pytest.raises(ConfigError, match=r"train\.pl.*mapping network.*not r3gan"):
        load_config(params, ["train.model=r3gan", "train.pl.weight=1"])


def test_stylegan2_truncates_in_w_and_samples_are_fixed_per_seed():
    torch.manual_seed(0)
    tc = TrainConfig.model_validate({"model": {"family": "stylegan2", **SMALL["stylegan2"]}, "batch_size": 8})
    s = System(tc, spec_of("stylegan2", 32, 3, 0), torch.device("cpu"), None)
    s.G.train()
    for _ in range(3):  # w_avg follows the mapping's output in training mode
        s.G(torch.randn(16, 16))
    G = s.G.eval()
    assert s.G.mapping.w_avg.abs().sum() > 0
    sampler = Sampler(G)
    a, b = sampler.images([3, 4, 5]), sampler.images([3, 4, 5])
    assert torch.equal(a, b)  # eval mode: fixed noise buffers, no style mixing
    at_mean = sampler.images([3, 4, 5], psi=1e-6)
    assert (at_mean - at_mean[:1]).abs().max() < 1e-4  # psi -> 0: every seed gives the mean w's image
    half = sampler.images([3, 4, 5], psi=0.5)
    assert (half - at_mean).abs().mean() < (a - at_mean).abs().mean()
    mixed = sampler.images([3, 4, 5], psi=[1.0, 0.5, 1e-6])  # one psi per row
    assert torch.allclose(mixed[0], a[0], atol=1e-5) and torch.allclose(mixed[1], half[1], atol=1e-5)
    with pytest.raises(ValueError, match="psi"):
        sampler.images([1], psi=0.0)


def test_stylegan2_style_mixing_and_noise_only_in_training():
    torch.manual_seed(0)
    G = build(spec_of("stylegan2", 32, 3, 0, style_mixing=1.0))["G"]
    z = torch.randn(4, 16)
    G.train()
    torch.manual_seed(1)
    x1 = G(z)
    torch.manual_seed(2)
    x2 = G(z)
    assert not torch.equal(x1, x2)  # random noise and mixing partners
    G.eval()
    assert torch.equal(G(z), G(z))


def test_path_length_penalty_on_a_linear_synthesis():
    """synthesis(ws) = mean over ws of (ws A): J^T u = A u / num_ws per layer, so the length is known."""
    torch.manual_seed(0)
    num_ws, w_dim, px = 3, 4, 2
    A = torch.randn(w_dim, 1 * px * px)

    class Linear(torch.nn.Module):
        def mapping(self, z, y):
            return z[:, None, :].expand(-1, num_ws, -1).clone().requires_grad_(True)

        def synthesis(self, ws):
            return (ws @ A).mean(1).reshape(-1, 1, px, px)

    pl = PathLength(weight=2.0, interval=4, decay=0.5, batch_shrink=1)
    z = torch.randn(5, w_dim)
    torch.manual_seed(7)
    value = pl(Linear(), z, None)
    torch.manual_seed(7)
    u = torch.randn(5, 1, px, px) / px
    g = (u.reshape(5, -1) @ A.T) / num_ws  # the gradient for each of the num_ws copies of w
    lengths = (g.square().sum(1)).sqrt()  # sum over w_dim, mean over the (equal) layers, sqrt
    mean = 0.5 * lengths.mean()  # lerp from 0 with decay 0.5
    assert float(pl.pl_mean) == pytest.approx(float(mean), rel=1e-5)
    assert float(value) == pytest.approx(float((lengths - mean).square().mean()), rel=1e-5)
    assert pl.scale() == 8.0 and pl.due(4) and not pl.due(5)


def test_r3gan_starts_at_its_skip_paths():
    """Fix-up: every residual branch's last conv starts at zero, so a block is the identity at init."""
    G, D = build(spec_of("r3gan", 32, 3, 0)).values()
    blocks = [m for m in (*G.modules(), *D.modules()) if type(m).__name__ == "Block"]
    assert blocks and all(float(b.branch[-1].weight.detach().abs().sum()) == 0 for b in blocks)
    x = torch.randn(2, blocks[0].branch[0].in_channels, 4, 4)
    assert torch.equal(blocks[0](x), x)


def test_resnet_projection_d_and_class_head():
    spec = spec_of("resnet", 32, 3, 5, class_head=True, pack=2)
    G, D = build(spec).values()
    y = torch.tensor([1, 1, 3, 3])
    out = D(G(torch.randn(4, 16), y), y)
    assert out.logits[0].shape == (2,) and out.class_logits.shape == (2, 5) and out.class_target.tolist() == [1, 3]
    soft = torch.zeros(2, 5)
    soft[:, 2] = 1.0
    G.eval()
    z = torch.randn(2, 16)
    assert torch.allclose(G(z, soft), G(z, torch.tensor([2, 2])), atol=1e-6)  # class weights = indices


def test_stylegan2_modulated_conv_equals_modulating_each_samples_weights():
    """The non-fused form (scale inputs, one conv, scale outputs) against the definition: per-sample weights
    w' = w * style, demodulated to unit norm per output channel, one grouped conv per sample."""
    import torch.nn.functional as F

    from ganforge.models.stylegan2 import ModulatedConv

    torch.manual_seed(0)
    m = ModulatedConv(8, 6, 3, 16)
    x, w = torch.randn(4, 8, 10, 10), torch.randn(4, 16)
    styles = m.affine(w)
    wt = m.weight[None] * m.gain * styles[:, None, :, None, None]
    wt = wt * (wt.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    ref = F.conv2d(x.reshape(1, 32, 10, 10), wt.reshape(24, 8, 3, 3), padding=1, groups=4).reshape(4, 6, 10, 10)
    assert torch.allclose(m(x, w), ref, atol=1e-5)
