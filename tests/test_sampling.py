"""The one sampler (ganforge.sampling): seed-addressed latents, one truncation, one conversion to pixels."""

import pytest
import torch

from ganforge.evaluate import generate
from ganforge.models import build
from ganforge.sampling import TRUNCATION_BOUND, Sampler, latent, latents, tile, to_uint8

from .conftest import make_spec

IMAGE = make_spec("dcgan", 16, 1, num_classes=4, z_dim=8, g_width=8, d_width=8)
CLIP = make_spec("mocogan", 16, 1, num_classes=3, z_dim=8, g_width=8, d_width=8, frames=4, motion_dim=2)


def generator(spec):
    torch.manual_seed(0)
    return build(spec)["G"].eval().requires_grad_(False)


def test_latent_is_fixed_by_seed_and_truncation_bounds_it():
    assert torch.equal(latent(7, 64), latent(7, 64))
    assert torch.equal(latent(7, 64), torch.randn(64, generator=torch.Generator().manual_seed(7)))  # psi 1: plain
    assert not torch.equal(latent(7, 64), latent(8, 64))
    z = latents(range(200), 64, 0.5)
    assert z.abs().max() <= TRUNCATION_BOUND * 0.5 + 1e-6
    assert torch.equal(z[3], latent(3, 64, 0.5))  # a row depends on its seed alone
    plain = latents(range(200), 64, 1.0)
    assert plain.abs().max() > TRUNCATION_BOUND  # untruncated tails exist in 12,800 draws
    mixed = latents([3, 3], 64, [1.0, 0.5])  # one psi per row
    assert torch.equal(mixed[0], plain[3]) and torch.equal(mixed[1], z[3])
    with pytest.raises(ValueError):
        latent(0, 8, 0.0)
    with pytest.raises(ValueError, match="2 seeds but 1 truncation"):
        latents([0, 1], 8, [0.5])


def test_to_uint8_rounds_to_nearest_and_clamps():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    # (x + 1) * 127.5 = -127.5, 0, 63.75, 127.5, 191.25, 255, 510
    assert to_uint8(x).tolist() == [0, 0, 64, 128, 191, 255, 255]
    assert to_uint8(x.to(torch.bfloat16)).dtype == torch.uint8


@pytest.mark.parametrize("spec", [IMAGE, CLIP], ids=["images", "clips"])
def test_a_seed_gives_the_same_sample_alone_and_in_any_batch(spec):
    G = generator(spec)
    seeds, classes = [5, 11, 2, 40, 7, 5], [1, 2, 0, 1, 2, 1]
    s = Sampler(G, batch_size=4)
    x = s.uint8(seeds, classes, psi=0.7)
    shape = (spec.channels, *([spec.frames] if spec.kind == "video" else []), 16, 16)
    assert x.dtype == torch.uint8 and x.shape == (6, *shape)
    assert torch.equal(x[0], x[5]) and not torch.equal(x[0], x[3])  # seed 5 twice; 5 and 40 share a class
    for i in (0, 3):
        alone = Sampler(G, batch_size=1).uint8([seeds[i]], classes[i], psi=0.7)
        assert torch.equal(alone[0], x[i])
    f = s.images(seeds, classes, psi=0.7)  # float [-1, 1], the same samples before quantisation
    assert f.dtype == torch.float32 and f.abs().max() <= 1 and torch.equal(to_uint8(f), x)
    with torch.no_grad():  # the latents are the module-level ones of spec.latent_dim values (clips: content + motion)
        direct = G(latents(seeds, spec.latent_dim, 0.7), torch.tensor(classes))
    assert torch.equal(to_uint8(direct), x)
    assert s.uint8([], classes=[]).shape == (0, *shape)


def test_classes_and_psi_are_what_the_sampler_is_told():
    G = generator(IMAGE)
    s = Sampler(G)
    assert torch.equal(s.uint8([3, 4], 2), s.uint8([3, 4], [2, 2]))
    assert not torch.equal(s.uint8([3], 2), s.uint8([3], 1))
    assert not torch.equal(s.uint8([3], 2, psi=0.5), s.uint8([3], 2))
    weights = torch.eye(4)[[2, 1]]  # class weights (morphs) mean the same as their indices
    assert torch.allclose(s.images([3, 4], weights), s.images([3, 4], [2, 1]), atol=1e-6)
    with pytest.raises(ValueError, match="class-conditional"):
        s.uint8([3])
    with pytest.raises(ValueError, match="2 rows but 1 classes"):
        s.uint8([3, 4], [1])
    u = Sampler(generator(make_spec("dcgan", 16, 1, 0, z_dim=8, g_width=8, d_width=8)))
    assert torch.equal(u.uint8([1, 2]), u.uint8([1, 2], [-1, 5]))  # unconditional: classes are ignored


def test_tile_lays_out_images_and_clips():
    x = torch.arange(1, 6, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 1, 2, 3).clone()
    g = tile(x, 3)
    assert g.shape == (1, 2 * 3 + 1, 3 * 4 + 1)
    assert g[0, 1, 1].item() == 1 and g[0, 1, 5].item() == 2 and g[0, 4, 5].item() == 5 and g[0, 4, 9].item() == 0
    assert g[0, 0].eq(0).all() and g[0, :, 4].eq(0).all()  # 1 px black gaps
    clips = torch.arange(6, dtype=torch.uint8).view(2, 1, 3, 1, 1).expand(2, 1, 3, 2, 2).clone()
    c = tile(clips, 8)  # one clip per row, its 3 frames left to right
    assert c.shape == (1, 2 * 3 + 1, 3 * 3 + 1) and [c[0, 4, 1 + 3 * t].item() for t in range(3)] == [3, 4, 5]
    G = generator(IMAGE)
    s = Sampler(G)
    assert torch.equal(s.grid([0, 1, 2, 3], [0, 1, 2, 3], cols=2), tile(s.uint8([0, 1, 2, 3], [0, 1, 2, 3]), 2))


@pytest.mark.parametrize("spec", [IMAGE, CLIP], ids=["images", "clips"])
def test_evaluate_draws_its_fakes_through_the_sampler(spec):
    """evaluate's n_fake samples are seeds evaluate.seed .. seed + n_fake - 1, classes balanced."""
    G = generator(spec)
    fake, y = generate(G, 9, spec.num_classes, seed=100, truncation=0.9, batch=4)
    assert torch.equal(y, torch.arange(9) % spec.num_classes)
    assert torch.equal(fake, Sampler(G).uint8(range(100, 109), y, psi=0.9))
