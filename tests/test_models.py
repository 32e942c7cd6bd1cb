import pytest
import torch

from ganforge.models import MODELS, ModelSpec, build
from ganforge.training.objective import LOSSES


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("resolution", [16, 32, 64, 128, 256])
@pytest.mark.parametrize("num_classes", [0, 10])
@pytest.mark.parametrize(("upsample", "d_norm"), [("bilinear", "spectral"), ("convtranspose", "batch")])
def test_shapes_at_every_resolution(resolution, num_classes, upsample, d_norm):
    width = 8 if resolution >= 128 else 16
    spec = ModelSpec(
        "dcgan", resolution, 3, num_classes, z_dim=16, g_width=width, d_width=width, g_upsample=upsample, d_norm=d_norm
    )
    G, D = build(spec)
    z = torch.randn(4, 16)
    y = torch.tensor([0, 1, 2, 9]) if num_classes else None
    x = G(z, y)
    assert x.shape == (4, 3, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    assert D(x, y).shape == (4,)


def test_packing_judges_groups():
    spec = ModelSpec("dcgan", 32, 1, 10, z_dim=8, g_width=8, d_width=8, pack=2)
    G, D = build(spec)
    y = torch.tensor([3, 3, 5, 5, 7, 7])
    out = D(G(torch.randn(6, 8), y), y)
    assert out.shape == (3,)


def test_conditioning_changes_output():
    spec = ModelSpec("dcgan", 16, 1, 10, z_dim=8, g_width=8, d_width=8)
    G, _ = build(spec)
    G.eval()
    z = torch.randn(2, 8)
    assert not torch.allclose(G(z, torch.tensor([0, 0])), G(z, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)


def test_dcgan_64_matches_pytorch_examples_sizes():
    """nz=100, ngf=ndf=64, nc=3, ConvTranspose: the same parameter counts as pytorch/examples dcgan."""
    spec = ModelSpec("dcgan", 64, 3, 0, z_dim=100, g_upsample="convtranspose", pack=1)
    G, D = build(spec)
    assert n_params(G) == 3_576_704
    assert n_params(D) == 2_765_568


@pytest.mark.parametrize("d_norm", ["batch", "spectral", "none"])
def test_discriminator_norms(d_norm):
    spec = ModelSpec("dcgan", 32, 1, 10, z_dim=8, g_width=8, d_width=8, d_norm=d_norm, pack=2)
    _, D = build(spec)
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    has_sn = any("parametrizations" in name for name, _ in D.named_parameters())
    assert (has_bn, has_sn) == (d_norm == "batch", d_norm == "spectral")
    y = torch.tensor([1, 1, 4, 4])
    assert D(torch.randn(4, 1, 32, 32), y).shape == (2,)


def test_registry_and_losses():
    assert "dcgan" in MODELS
    real, fake = torch.tensor([3.0, -2.0]), torch.tensor([-3.0, 0.5])
    for name, loss in LOSSES.items():
        d, g = loss.d(real, fake), loss.g(fake, real)
        assert d.ndim == 0 and g.ndim == 0 and torch.isfinite(d) and torch.isfinite(g), name
    # non-saturating on logits == BCE with a sigmoid
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(real, torch.ones(2)) + bce(fake, torch.zeros(2))
    assert torch.allclose(LOSSES["nonsat"].d(real, fake), expected)
    assert torch.allclose(LOSSES["hinge"].d(real, fake), torch.tensor((0 + 3) / 2 + (0 + 1.5) / 2))


def test_class_head_gives_the_auxiliary_loss():
    """AC-GAN: a `class_head` D also returns the cross-entropy of its class guess against y (one per pack);
    its loss falls when it is trained, and a D without the head says so."""
    spec = ModelSpec("dcgan", 16, 1, 4, z_dim=8, g_width=8, d_width=8, pack=2, d_norm="spectral", class_head=True)
    _, D = build(spec)
    torch.manual_seed(0)
    x = torch.randn(8, 1, 16, 16)
    x[:4] += 2.0  # classes 0 and 1 are brighter: learnable
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    D.eval()  # no power iteration of the spectral norms: two calls see the same weights
    logits, ce = D(x, y, classes=True)
    assert logits.shape == (4,) and ce.shape == () and 0 < float(ce) < 10
    assert torch.equal(logits, D(x, y))  # the adversarial logits do not change with the head
    opt = torch.optim.Adam(D.classify.parameters(), lr=0.05)
    first = float(ce)
    for _ in range(30):
        opt.zero_grad()
        D(x, y, classes=True)[1].backward()
        opt.step()
    assert float(D(x, y, classes=True)[1]) < first
    for no_head in (ModelSpec("dcgan", 16, 1, 4, z_dim=8, g_width=8, d_width=8), ModelSpec("dcgan", 16, 1, 0)):
        with pytest.raises(ValueError, match="no class head"):
            build(no_head)[1](x, y, classes=True)
