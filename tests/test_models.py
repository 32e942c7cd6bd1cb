import pytest
import torch
import torch.nn.functional as F

from ganforge.errors import GanforgeError
from ganforge.models import FAMILIES, KINDS, DOutput, ModelSpec, build
from ganforge.models.dcgan import DCGANConfig
from ganforge.models.mocogan import MoCoGANConfig
from ganforge.training.objective import LOSSES

from .conftest import make_spec


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("resolution", [16, 32, 64, 128, 256])
@pytest.mark.parametrize("num_classes", [0, 10])
@pytest.mark.parametrize(("upsample", "d_norm"), [("bilinear", "spectral"), ("convtranspose", "batch")])
def test_shapes_at_every_resolution(resolution, num_classes, upsample, d_norm):
    width = 8 if resolution >= 128 else 16
    spec = make_spec(
        "dcgan", resolution, 3, num_classes, z_dim=16, g_width=width, d_width=width, g_upsample=upsample, d_norm=d_norm
    )
    G, D = build(spec).values()
    z = torch.randn(4, 16)
    y = torch.tensor([0, 1, 2, 9]) if num_classes else None
    x = G(z, y)
    assert x.shape == (4, 3, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    out = D(x, y)
    assert isinstance(out, DOutput) and out.logits[0].shape == (4,) and out.class_logits is None


def test_packing_judges_groups():
    spec = make_spec("dcgan", 32, 1, 10, z_dim=8, g_width=8, d_width=8, pack=2)
    G, D = build(spec).values()
    y = torch.tensor([3, 3, 5, 5, 7, 7])
    out = D(G(torch.randn(6, 8), y), y)
    assert out.logits[0].shape == (3,)


def test_conditioning_changes_output():
    spec = make_spec("dcgan", 16, 1, 10, z_dim=8, g_width=8, d_width=8)
    G, _ = build(spec).values()
    G.eval()
    z = torch.randn(2, 8)
    assert not torch.allclose(G(z, torch.tensor([0, 0])), G(z, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)


def test_dcgan_64_matches_pytorch_examples_sizes():
    """nz=100, ngf=ndf=64, nc=3, ConvTranspose: the same parameter counts as pytorch/examples dcgan."""
    spec = make_spec("dcgan", 64, 3, 0, z_dim=100, g_upsample="convtranspose", pack=1)
    G, D = build(spec).values()
    assert n_params(G) == 3_576_704
    assert n_params(D) == 2_765_568


@pytest.mark.parametrize("d_norm", ["batch", "spectral", "none"])
def test_discriminator_norms(d_norm):
    spec = make_spec("dcgan", 32, 1, 10, z_dim=8, g_width=8, d_width=8, d_norm=d_norm, pack=2)
    _, D = build(spec).values()
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    has_sn = any("parametrizations" in name for name, _ in D.named_parameters())
    assert (has_bn, has_sn) == (d_norm == "batch", d_norm == "spectral")
    y = torch.tensor([1, 1, 4, 4])
    assert D(torch.randn(4, 1, 32, 32), y).logits[0].shape == (2,)


def test_registry_and_losses():
    assert (KINDS["dcgan"], KINDS["mocogan"]) == ("image", "video") and set(KINDS) == set(FAMILIES)
    assert FAMILIES["dcgan"].config is DCGANConfig and FAMILIES["mocogan"].config is MoCoGANConfig
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
    """AC-GAN: a `class_head` D also returns its class logits and the labels they should predict (one per pack);
    their cross-entropy falls when it is trained, and a D without the head leaves them out."""
    spec = make_spec("dcgan", 16, 1, 4, z_dim=8, g_width=8, d_width=8, pack=2, d_norm="spectral", class_head=True)
    _, D = build(spec).values()
    torch.manual_seed(0)
    x = torch.randn(8, 1, 16, 16)
    x[:4] += 2.0  # classes 0 and 1 are brighter: learnable
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    D.eval()  # no power iteration of the spectral norms: two calls see the same weights
    out = D(x, y)
    (logits,) = out.logits
    assert logits.shape == (4,) and out.class_logits.shape == (4, 4)
    assert torch.equal(out.class_target, torch.tensor([0, 1, 2, 3]))  # y of each pack
    ce = F.cross_entropy(out.class_logits.float(), out.class_target).detach()
    assert 0 < float(ce) < 10
    opt = torch.optim.Adam(D.classify.parameters(), lr=0.05)
    first = float(ce)
    for _ in range(30):
        opt.zero_grad()
        o = D(x, y)
        F.cross_entropy(o.class_logits, o.class_target).backward()
        opt.step()
    o = D(x, y)
    assert float(F.cross_entropy(o.class_logits, o.class_target).detach()) < first
    assert torch.equal(o.logits[0], logits)  # the adversarial logits do not change with the head
    for no_head in (make_spec("dcgan", 16, 1, 4, z_dim=8, g_width=8, d_width=8), make_spec("dcgan", 16, 1, 0)):
        out = build(no_head)["D"](x, y if no_head.num_classes else None)
        assert out.class_logits is None and out.class_target is None


OLD_FLAT = {  # a spec as checkpoints and registered versions stored it before the family configs
    "model": "dcgan", "resolution": 16, "channels": 1, "num_classes": 10, "z_dim": 8, "g_width": 8, "d_width": 8,
    "max_channels": 512, "g_upsample": "bilinear", "d_norm": "spectral", "pack": 2, "class_head": False,
    "frames": 0, "motion_dim": 0, "image_d_frames": 0, "motion_warp": "none",
}  # fmt: skip


def test_spec_round_trips_and_reads_the_old_flat_form():
    spec = make_spec("mocogan", 16, 1, 3, frames=4, class_head=True, z_dim=8, motion_dim=2, motion_warp="rigid")
    d = spec.to_dict()
    assert d["model"]["family"] == "mocogan" and d["model"]["motion_dim"] == 2 and d["frames"] == 4
    assert ModelSpec.from_dict(d) == spec and spec.latent_dim == 8 + 4 * 2 and spec.kind == "video"
    old = ModelSpec.from_dict(OLD_FLAT)
    assert old.config == DCGANConfig(z_dim=8, g_width=8, d_width=8, d_norm="spectral", pack=2)
    assert (old.model, old.resolution, old.num_classes, old.pack, old.latent_dim) == ("dcgan", 16, 10, 2, 8)
    # keys missing from an old dict meant the flat dataclass's defaults (d_norm batch, pack 1), not today's
    sparse = ModelSpec.from_dict({"model": "dcgan", "resolution": 16, "channels": 1, "num_classes": 0})
    assert (sparse.config.d_norm, sparse.pack, sparse.config.z_dim) == ("batch", 1, 64)
    old_video = {**OLD_FLAT, "model": "mocogan", "frames": 4, "motion_dim": 2, "image_d_frames": 3}
    assert ModelSpec.from_dict(old_video).config == MoCoGANConfig(
        z_dim=8, g_width=8, d_width=8, d_norm="spectral", pack=2, motion_dim=2, image_d_frames=3
    )


DATA = {k: OLD_FLAT[k] for k in ("resolution", "channels", "num_classes", "frames", "class_head")}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("dcgan", "not a ganforge model spec (expected {'model': {'family'"),
        ({"model": 3}, "not a ganforge model spec"),
        ({**OLD_FLAT, "model": "stylegan9"}, "unknown family 'stylegan9'"),
        ({**OLD_FLAT, "motion_dim": 4}, "unexpected keys ['motion_dim']"),  # a dcgan with motion: neither form
        ({**OLD_FLAT, "colour": 1}, "unexpected keys ['colour']"),
        ({"model": {"family": "dcgan", "motion_dim": 4}, **DATA}, "model.motion_dim: Extra inputs"),
        ({"model": {"family": "dcgan"}, "resolution": 16}, "it has ['resolution'] beside 'model'"),
    ],
)
def test_a_spec_of_neither_form_fails_in_one_line(bad, says):
    with pytest.raises(GanforgeError) as exc:
        ModelSpec.from_dict(bad)
    assert says in str(exc.value) and "\n" not in str(exc.value)
