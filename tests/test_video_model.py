"""The MoCoGAN video family: shapes, content/motion split, conditioning, and training by the same loop
(checkpoints, exact resume, sample grids, kind checks)."""

import csv

import pytest
import torch
from PIL import Image

from ganforge.config import load_config
from ganforge.errors import GanforgeError
from ganforge.models import KINDS, build
from ganforge.models.mocogan import VideoGenerator
from ganforge.training import checkpoint
from ganforge.training.loop import train

from .conftest import ROOT, TINY_VIDEO, make_spec
from .test_train import straight_and_halves, workdir


def spec(**kw):
    base = dict(num_classes=10, frames=8, z_dim=8, g_width=8, d_width=8, pack=2, motion_dim=4, image_d_frames=2)
    return make_spec("mocogan", kw.pop("resolution", 32), kw.pop("channels", 1), **{**base, **kw})


@pytest.mark.parametrize(("frames", "resolution", "channels"), [(2, 16, 1), (4, 16, 3), (16, 32, 1), (8, 32, 3)])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_shapes(frames, resolution, channels, num_classes):
    s = spec(frames=frames, resolution=resolution, channels=channels, num_classes=num_classes)
    assert s.kind == "video" and KINDS["mocogan"] == "video"
    assert s.latent_dim == 8 + frames * 4
    G, D = build(s).values()
    y = torch.tensor([0, 0, 9, 9]) if num_classes else None
    x = G(torch.randn(4, s.latent_dim), y)
    assert x.shape == (4, channels, frames, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    frame_logits, clip_logits = D(x, y).logits
    assert frame_logits.shape == (4 * 2 // 2,)  # 2 frames per clip, packed in pairs
    assert clip_logits.shape == (4,)


def test_content_fixes_what_motion_moves():
    """The same content code with other motion noise gives other frames; each frame depends on its past only."""
    s = spec(num_classes=0)
    G, _ = build(s).values()
    G.eval()
    z = torch.randn(1, s.latent_dim)
    other = z.clone()
    m = s.config.motion_dim
    other[:, s.config.z_dim + 4 * m :] = torch.randn(1, 4 * m)  # new noise from frame 4 on
    a, b = G(z), G(other)
    assert torch.equal(a[:, :, :4], b[:, :, :4])  # frames 0..3 come from the same noise
    assert not torch.allclose(a[:, :, 4:], b[:, :, 4:])
    assert (a[:, :, 1:] - a[:, :, :-1]).abs().amax() > 0  # frames differ: the clip moves


def test_translate_moves_frames_and_fills_with_background():
    """motion_warp=translate: a frame shifted by tanh(offset) half-frames; what comes in is background (-1)."""
    frame = torch.full((2, 1, 8, 8), -1.0)
    frame[:, 0, 3, 3] = 1.0
    offset = torch.atanh(torch.tensor([[0.25, 0.0], [0.0, -0.5]]))  # 1 px right; 2 px up (half a frame = 4 px)
    moved = VideoGenerator.translate(frame, offset)
    assert (moved[0, 0] > 0).nonzero().tolist() == [[3, 4]] and (moved[1, 0] > 0).nonzero().tolist() == [[1, 3]]
    assert torch.allclose(moved[moved < 0], torch.tensor(-1.0))  # no grey border comes in
    assert torch.equal(VideoGenerator.translate(frame, torch.zeros(2, 2)), frame)


def test_translate_is_learnable_and_starts_near_identity():
    s = spec(num_classes=0, motion_warp="translate")
    G, _ = build(s).values()
    G.eval()
    plain = build(spec(num_classes=0))["G"].eval()
    plain.load_state_dict({k: v for k, v in G.state_dict().items() if not k.startswith("shift.")})
    z = torch.randn(3, s.latent_dim)
    x = G(z)
    assert x.shape == (3, 1, 8, 32, 32) and x.min() >= -1 and x.max() <= 1
    inner = (slice(None),) * 3 + (slice(2, -2),) * 2  # the border takes in background (-1)
    assert (x - plain(z))[inner].abs().amax() < 0.05  # small shifts at the start
    x.sum().backward()
    assert G.shift.weight.grad.abs().sum() > 0  # the offsets learn from the frames
    with pytest.raises(ValueError, match="motion_warp"):
        build(spec(motion_warp="rotate"))
    assert build(spec(motion_warp="rigid"))["G"].shift is not None and plain.shift is None


def test_rigid_motion_moves_one_image_per_clip():
    """motion_warp=rigid: every frame is the clip's one content image, shifted by its motion code's offset."""
    s = spec(motion_warp="rigid")
    G, _ = build(s).values()
    G.eval()
    assert G.frame.spec.config.z_dim == s.config.z_dim  # the image generator sees the content code only
    z, y = torch.randn(2, s.latent_dim), torch.tensor([3, 8])
    with torch.no_grad():
        torch.nn.init.normal_(G.shift.weight, 0.0, 1.0)  # visible shifts
        x = G(z, y)
        image = G.frame(z[:, : s.config.z_dim], y)
        m = G.motion_codes(z[:, s.config.z_dim :].reshape(2, s.frames, s.config.motion_dim))
        for t in range(s.frames):
            # 1e-5: the clip runs its frames in one batch, and oneDNN's AVX-512 kernels round a batch of 2 and one of
            # 2 x frames differently (up to 4e-6 seen); a wrong shift differs by > 0.1
            assert torch.allclose(x[:, :, t], VideoGenerator.translate(image, G.shift(m[:, t])), atol=1e-5)
        G.shift.weight.zero_()
        still = G(z, y)
    assert (x[:, :, 1:] - x[:, :, :-1]).abs().amax() > 0.1  # it moves
    assert torch.equal(still, still[:, :, :1].expand_as(still))  # no shift: the same image in every frame


def test_conditioning_and_soft_labels():
    s = spec()
    G, _ = build(s).values()
    G.eval()
    z = torch.randn(1, s.latent_dim).repeat(2, 1)
    hard = G(z, torch.tensor([2, 7]))
    assert not torch.allclose(hard[0], hard[1])
    soft = G(z, torch.eye(10)[[2, 7]])  # class weights (morphs) give the same clips as indices
    assert torch.allclose(hard, soft, atol=1e-5)


def test_frames_shown_to_the_image_discriminator_are_clip_frames():
    s = spec(num_classes=0, pack=1, image_d_frames=3)
    _, D = build(s).values()
    x = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 1, 8, 1, 1).expand(2, 1, 8, 32, 32)
    frames = D.frames(x)
    assert frames.shape == (3 * 2, 1, 32, 32)
    values = frames[:, 0, 0, 0].reshape(3, 2)  # frame-major: row k holds the k-th draw of clip 0, clip 1
    assert ((values[:, 0] >= 0) & (values[:, 0] < 8)).all() and ((values[:, 1] >= 8) & (values[:, 1] < 16)).all()


@pytest.fixture(scope="module")
def clips(tiny_video_project):
    return tiny_video_project.prepared


def cfg(*extra):
    return load_config(ROOT / "params.yaml", [*TINY_VIDEO, *extra])


def test_train_writes_clip_grids_and_checkpoint(tmp_path, clips):
    paths = workdir(tmp_path, clips, "run")
    s = train(cfg("train.steps=4"), paths, progress=False)
    assert s.steps == 4 and not s.interrupted
    grid = Image.open(paths.samples_latest)
    assert grid.size == (4 * 17 + 1, 10 * 17 + 1)  # one clip per class and row, its 4 frames left to right
    rows = list(csv.DictReader(paths.train_losses.open()))
    assert [int(r["step"]) for r in rows] == [2, 3, 4]
    state = checkpoint.load(paths.checkpoint)
    assert state["spec"]["model"]["family"] == "mocogan" and state["spec"]["frames"] == 4
    G = checkpoint.load_generator(paths.checkpoint)
    assert G(torch.randn(2, G.spec.latent_dim), torch.tensor([1, 2])).shape == (2, 1, 4, 16, 16)


@pytest.mark.parametrize("warp", ["none", "rigid"])
def test_resume_is_exact(tmp_path, clips, warp):
    _, halves = straight_and_halves(tmp_path, clips, cfg, 6, f"train.model.motion_warp={warp}")
    assert checkpoint.load(halves.checkpoint)["spec"]["model"]["motion_warp"] == warp
    with pytest.raises(GanforgeError, match=r"train\.model\.motion_warp"):  # another warp is another model: no resume
        train(cfg("train.steps=8", "train.model.motion_warp=translate"), halves, resume=True, progress=False)


def test_checkpoints_from_before_a_new_key_resume_at_its_default(tmp_path, clips):
    paths = workdir(tmp_path, clips, "old")
    train(cfg("train.steps=3"), paths, progress=False)
    state = checkpoint.load(paths.checkpoint)
    del state["config"]["train"]["model"]["motion_warp"], state["spec"]["model"]["motion_warp"]  # as before the key
    checkpoint.save(paths.checkpoint, state)
    s = train(cfg("train.steps=4"), paths, resume=True, progress=False)
    assert (s.start_step, s.steps) == (3, 4)
    paths.checkpoint.unlink()
    checkpoint.save(paths.checkpoint, state)
    with pytest.raises(GanforgeError, match=r"train\.model\.motion_warp"):
        train(cfg("train.steps=4", "train.model.motion_warp=rigid"), paths, resume=True, progress=False)


def test_model_and_data_kinds_must_match(tmp_path, clips, digits16):
    video = workdir(tmp_path, clips, "video")
    with pytest.raises(GanforgeError, match=r"train.model=dcgan trains on images, but .* holds video clips"):
        train(cfg("train.model=dcgan"), video, progress=False)
    images = workdir(tmp_path, digits16, "images")
    with pytest.raises(GanforgeError, match=r"train.model=mocogan trains on video clips, but .* holds images"):
        train(cfg(), images, progress=False)


def test_class_head_classifies_the_frames_the_image_head_sees():
    s = spec(class_head=True)
    G, D = build(s).values()
    y = torch.tensor([0, 0, 9, 9])
    x = G(torch.randn(4, s.latent_dim), y)
    out = D(x, y)
    frame_logits, clip_logits = out.logits
    assert torch.equal(out.class_target, y.repeat(2)[::2])  # the labels of the image head's packs of frames
    ce = torch.nn.functional.cross_entropy(out.class_logits, out.class_target)
    assert frame_logits.shape == (4,) and clip_logits.shape == (4,) and ce.shape == () and ce.item() > 0
    ce.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.image.classify.parameters())


def test_class_loss_trains_and_resumes_exactly(tmp_path, clips):
    straight, halves = straight_and_halves(tmp_path, clips, cfg, 4, "train.class_loss=1.0")
    state = checkpoint.load(straight.checkpoint)
    assert state["spec"]["class_head"] is True and any("classify" in k for k in state["D"])
    with pytest.raises(GanforgeError, match=r"train\.class_loss"):
        train(cfg("train.steps=6", "train.class_loss=2.0"), halves, resume=True, progress=False)
