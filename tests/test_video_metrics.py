"""Video evaluation: clip classifier, per-frame and clip scores against numpy/scipy references, FVD with a stand-in
TorchScript detector (never the real I3D: no network), the features and evaluate stages on tiny clips, errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from ganforge import cli, features
from ganforge.config import gate_scores, load_config
from ganforge.data.dataset import KINDS, PreparedData
from ganforge.errors import GanforgeError
from ganforge.evaluate import VideoSpace, _numbers, evaluate, generate, motion_energy, score_video
from ganforge.metrics import classifier, clips, fvd
from ganforge.metrics.extract import clip_extractor
from ganforge.metrics.scores import SCORE_KEYS
from ganforge.models import ModelSpec, build
from ganforge.models.dcgan import DCGANConfig
from ganforge.paths import Paths, sha256_file
from ganforge.training import checkpoint

from .conftest import ROOT, TINY_VIDEO, copy_project, make_spec
from .test_metrics import _fid_scipy, _kid_numpy, _manifold_numpy

EVAL = [*TINY_VIDEO, "evaluate.n_fake_clips=20", "evaluate.kid_subsets=5", "evaluate.kid_subset_size=20"]


# --- references ----------------------------------------------------------------------------------------------------


def _motion_numpy(clips_u8: np.ndarray) -> float:
    return float(np.abs(np.diff(clips_u8.astype(np.float64), axis=2)).mean() / 255)


# --- stand-ins -----------------------------------------------------------------------------------------------------

SPEC = make_spec("mocogan", 8, 1, 3, frames=3, z_dim=4, motion_dim=2)


class TinyClipG(nn.Module):
    """A fixed random map z -> clips [N, 1, 3, 8, 8] in [-1, 1] with the generator interface (`spec`, `(z, y)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = SPEC
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(SPEC.latent_dim, 3 * 64, generator=g)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return torch.tanh(z @ self.w).reshape(len(z), 1, 3, 8, 8)


def _projection(dim: int, seed: int) -> Tensor:
    return torch.randn(64, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def frame_features(x: Tensor) -> np.ndarray:
    """uint8 images [N, 1, 8, 8] -> 5-d features (a fixed projection): the per-frame feature space."""
    return (x.reshape(len(x), 64).double().numpy() / 255) @ _projection(5, 1).numpy()


def frame_classes(x: Tensor) -> np.ndarray:
    """uint8 images [N, 1, 8, 8] -> a stand-in frame classifier's class (of 3): the mean pixel, mod 3."""
    return x.reshape(len(x), 64).double().mean(dim=1).long().numpy() % 3


def clip_features(x: Tensor) -> np.ndarray:
    """uint8 clips [N, 1, 3, 8, 8] -> 6-d features: the clip feature space (uses every frame)."""
    f = x.double().numpy() / 255
    return np.concatenate([f[:, :, t].reshape(len(x), 64) @ _projection(2, 10 + t).numpy() for t in range(3)], axis=1)


class FakeI3D(nn.Module):
    """The call signature of i3d_torchscript.pt; 400-d features of which only 6 vary (per-channel mean and std,
    mean temporal change, ...); works for any T, H, W."""

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = True) -> Tensor:
        mean = x.mean(dim=(2, 3, 4))  # [N, 3]
        std = x.std(dim=(2, 3, 4))[:, :1]
        change = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))[:, None]
        corner = x[:, 0, :, : x.shape[3] // 2, : x.shape[4] // 2].mean(dim=(1, 2, 3))[:, None]
        f = torch.cat([mean[:, :1], std, change, corner, mean[:, :1] * change, std * corner], dim=1)
        return torch.cat([f, torch.zeros(len(x), 394, dtype=x.dtype)], dim=1)


def fake_i3d_numpy(x_u8: Tensor) -> np.ndarray:
    """FakeI3D's 6 varying dimensions, as the FVD path must feed it: [-1, 1], gray repeated to 3 channels."""
    x = (x_u8.double() * (2 / 255) - 1).expand(-1, 3, -1, -1, -1)
    return FakeI3D()(x)[:, :6].numpy()


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(FakeI3D()).save(str(path))
    return path, sha256_file(path)


# --- units ---------------------------------------------------------------------------------------------------------


def test_clip_classifier_takes_any_length_and_resolution():
    for frames, side in [(2, 16), (4, 32), (16, 32), (64, 16), (8, 256)]:
        net = clips.ClipClassifier(3, 7, frames, width=4, feature_dim=16).eval()
        with torch.no_grad():
            f, logits = net(torch.zeros(2, 3, frames, side, side))
        assert f.shape == (2, 16) and logits.shape == (2, 7), (frames, side)


def test_frames_of_clips_keep_their_order_and_labels():
    x = torch.arange(3 * 1 * 5 * 2 * 2, dtype=torch.uint8).reshape(3, 1, 5, 2, 2)
    assert torch.equal(clips.all_frames(x)[7], x[1, :, 2])
    frames, labels = features.sample_frames(x, torch.tensor([4, 5, 6]), 2, torch.Generator().manual_seed(0))
    assert frames.shape == (6, 1, 2, 2) and labels.tolist() == [4, 4, 5, 5, 6, 6]
    for i, f in enumerate(frames):  # each a frame of its own clip, two different ones per clip
        assert any(torch.equal(f, x[i // 2, :, t]) for t in range(5))
    assert not torch.equal(frames[0], frames[1])
    shifted = features.shift_clips(torch.ones(4, 1, 3, 6, 6).cumsum(-1), torch.Generator().manual_seed(1))
    for s in shifted:  # the same shift for every frame of a clip
        assert torch.equal(s[:, 0], s[:, 1]) and torch.equal(s[:, 0], s[:, 2])


def test_motion_energy_matches_numpy():
    x = torch.randint(0, 256, (7, 2, 5, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    assert motion_energy(x, batch=3) == pytest.approx(_motion_numpy(x.numpy()), rel=1e-12)
    assert motion_energy(x[:, :, :1].expand(-1, -1, 5, -1, -1)) == 0.0  # frozen clips


def test_video_scores_match_numpy_and_scipy_references(i3d_file, monkeypatch):
    """score_video on a stand-in generator and stand-in extractors: per-frame FID/KID, clip FD, FVD and motion
    against independent computations on the same generated clips."""
    monkeypatch.setattr(fvd, "MIN_FRAMES", 3)  # the stand-in detector takes any length
    g = torch.Generator().manual_seed(3)
    ec = load_config(
        ROOT / "params.yaml", ["evaluate.n_fake_clips=40", "evaluate.kid_subsets=2", "evaluate.kid_subset_size=1000"]
    ).evaluate
    real = torch.randint(0, 256, (40, 1, 3, 8, 8), dtype=torch.uint8, generator=g)  # 120 frames, as many as fake
    detector = torch.jit.load(str(i3d_file[0]))
    space = VideoSpace(
        frames=lambda x: (torch.from_numpy(frame_features(x)), torch.eye(3)[frame_classes(x)]),
        real_frames=torch.from_numpy(frame_features(clips.all_frames(real))),
        clips=lambda x: (torch.from_numpy(clip_features(x)), torch.zeros(len(x), 3)),
        real_clips=torch.from_numpy(clip_features(real)),
        fvd=fvd.i3d_features(detector),
        real_fvd=fvd.i3d_features(detector)(real)[0],
        real_motion=motion_energy(real),
    )
    G = TinyClipG()
    scores, video = score_video(G, ec, space, num_classes=3)
    fake, y = generate(G, 40, 3, ec.seed, ec.truncation, batch=7)
    assert fake.shape == (40, 1, 3, 8, 8) and torch.bincount(y).tolist() == [14, 13, 13]

    fr, ff = frame_features(clips.all_frames(real)), frame_features(clips.all_frames(fake))
    assert scores["fid"] == pytest.approx(_fid_scipy(fr, ff), rel=1e-6)  # every frame
    assert scores["kid_mean"] == pytest.approx(_kid_numpy(fr, ff), rel=1e-9)
    g = torch.Generator().manual_seed(ec.seed)  # k-NN scores: one random frame per clip, real picks first
    picks = [torch.randint(0, 3, (40,), generator=g).numpy() for _ in range(2)]
    one_real, one_fake = (f.reshape(40, 3, -1)[np.arange(40), p] for f, p in zip((fr, ff), picks, strict=True))
    reference = _manifold_numpy(one_real, one_fake, ec.k)
    assert {k: scores[k] for k in reference} == pytest.approx(reference, abs=1e-12)
    assert video["clip_fd"] == pytest.approx(_fid_scipy(clip_features(real), clip_features(fake)), rel=1e-6)
    assert video["fvd"] == pytest.approx(_fid_scipy(fake_i3d_numpy(real), fake_i3d_numpy(fake)), rel=1e-5)
    assert video["motion"] == pytest.approx(_motion_numpy(fake.numpy()) / _motion_numpy(real.numpy()), rel=1e-12)
    assert scores["class_accuracy"] == pytest.approx(float((y == 0).double().mean()))  # zero logits: class 0
    hits = frame_classes(clips.all_frames(fake)).reshape(40, 3) == y.numpy()[:, None]  # every frame of each clip
    assert scores["frame_class_accuracy"] == pytest.approx(hits.mean(), rel=1e-12)
    assert video["frame_class_accuracy_by_class"] == pytest.approx({str(c): hits[y == c].mean() for c in range(3)})
    assert list(scores) == [*SCORE_KEYS, "frame_class_accuracy", "class_accuracy"]


# --- features stage ------------------------------------------------------------------------------------------------


def test_features_stage_writes_frame_and_clip_classifiers(tiny_video_project):
    paths = tiny_video_project
    record = json.loads((paths.metrics / "features.json").read_text())
    splits = json.loads((paths.prepared / "info.json").read_text())["splits"]
    n_train, n_test = splits["train"]["count"], splits["test"]["count"]
    assert record["n_test"] == n_test * 4 and record["frames_per_clip"] == 1  # every frame of the test clips
    assert record["n_train"] == n_train  # one random frame of each train clip per epoch
    assert set(record["clip"]) >= {"test_accuracy", "train_accuracy", "n_train", "n_test", "epochs"}
    assert (record["clip"]["n_train"], record["clip"]["n_test"], record["clip"]["frames"]) == (n_train, n_test, 4)
    net, meta = classifier.load(paths.classifier)  # per-frame: the image classifier's format, unchanged
    f, logits = net(torch.zeros(2, 1, 16, 16))
    assert f.shape == (2, 128) and logits.shape == (2, 10) and meta["resolution"] == 16
    clip_net, clip_meta = clips.load(paths.clip_classifier)
    f, logits = clip_net(torch.zeros(2, 1, 4, 16, 16))
    assert f.shape == (2, 128) and logits.shape == (2, 10)
    assert clip_meta["frames"] == 4 and len(clip_meta["sha256"]) == 64 and 0 <= clip_meta["test_accuracy"] <= 1
    ec = load_config(ROOT / "params.yaml", EVAL).evaluate
    extract, protocol = clip_extractor(ec, paths)  # the library's entry point
    features, logits = extract(torch.zeros(3, 1, 4, 16, 16, dtype=torch.uint8))
    assert features.dtype == torch.float64 and features.shape == (3, 128) and logits.shape == (3, 10)
    assert protocol["weights_sha256"] == clip_meta["sha256"]


# --- evaluate stage ------------------------------------------------------------------------------------------------


@pytest.fixture
def project(tiny_video_project, tmp_path):
    return copy_project(tiny_video_project, tmp_path / "p")


def test_evaluate_video_records_clip_scores_with_protocol(project, monkeypatch, capsys):
    cfg = load_config(ROOT / "params.yaml", EVAL)
    first = evaluate(cfg, project)
    ev = json.loads((project.metrics / "eval.json").read_text())
    assert f"frame class accuracy {ev['frame_class_accuracy']:.3f}" in first.line(project.metrics / "eval.json")
    monkeypatch.chdir(project.root)
    assert cli.main(["report"]) == 0
    quality = capsys.readouterr().out.split("Quality")[1]
    assert f"{ev['class_accuracy']:.3f} (clips), {ev['frame_class_accuracy']:.3f} (every frame)" in quality
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "class_accuracy", "frame_class_accuracy"):
        assert np.isfinite(ev[key]), key
    v = ev["video"]
    assert set(v["frame_class_accuracy_by_class"]) <= {str(c) for c in range(10)}
    assert "every generated frame" in v["frame_class_accuracy"]
    assert v["clip_fd"] > 0 and v["motion"] > 0 and v["motion_real"] > 0
    assert v["fvd"] is None and v["fvd_note"] == fvd.NOT_COMPUTED
    assert "not FVD" in v["clip_fd_about"]
    p = ev["protocol"]
    n_real = json.loads((project.prepared / "info.json").read_text())["splits"]["test"]["count"]
    assert (p["kind"], p["n_real"], p["n_fake"], p["frames_per_clip"]) == ("video", n_real, 20, 4)
    assert (p["n_real_frames"], p["n_fake_frames"], p["checkpoint_step"]) == (n_real * 4, 80, 6)
    assert p["weights_sha256"] == sha256_file(project.classifier)
    assert p["clip_weights_sha256"] == sha256_file(project.clip_classifier)
    assert p["reference_from_cache"] is False and p["torch"] == torch.__version__ and p["resolution"] == 16
    assert ev["registry"] == {"skipped": "tracking.enabled is false"}
    assert set(_numbers(first.scores, first.video)) == set(gate_scores(cfg))  # what a gate bound may name
    line = first.line(project.metrics / "eval.json")
    assert "clip FD" in line and "motion" in line and "FVD not computed" in line and "20 clips of 4 frames" in line
    second = evaluate(cfg, project)
    assert second.protocol["reference_from_cache"] is True and second.scores == first.scores
    assert second.video == first.video


def test_evaluate_video_with_fvd_from_a_local_torchscript_file(project, i3d_file, monkeypatch):
    path, sha = i3d_file
    monkeypatch.setattr(fvd, "MIN_FRAMES", 4)  # the tiny clips have 4 frames; the stand-in takes any length
    cfg = load_config(ROOT / "params.yaml", [*EVAL, f"evaluate.fvd_weights={path}", f"evaluate.fvd_sha256={sha}"])
    summary = evaluate(cfg, project)
    ev = json.loads((project.metrics / "eval.json").read_text())
    fake, _ = generate(checkpoint.load_generator(project.checkpoint), 20, 10, cfg.evaluate.seed, 1.0, 20)
    real, _ = PreparedData.open(project.prepared, kinds=KINDS).load("test")
    assert ev["video"]["fvd"] == pytest.approx(_fid_scipy(fake_i3d_numpy(real), fake_i3d_numpy(fake)), rel=1e-5)
    assert ev["protocol"]["fvd_weights_sha256"] == sha and "FVD " in summary.line(project.metrics / "eval.json")


def test_fvd_file_problems_are_one_line_errors(project, i3d_file, tmp_path):
    path, sha = i3d_file

    def run(*overrides: str) -> str:
        with pytest.raises(GanforgeError) as err:
            evaluate(load_config(ROOT / "params.yaml", [*EVAL, *overrides]), project)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "not found" in run(f"evaluate.fvd_weights={tmp_path / 'nope.pt'}", f"evaluate.fvd_sha256={sha}")
    msg = run(f"evaluate.fvd_weights={path}")
    assert f"has sha256 {sha}" in msg and "evaluate.fvd_sha256" in msg
    msg = run(f"evaluate.fvd_weights={path}", f"evaluate.fvd_sha256={'f' * 64}")
    assert f"sha256 is {sha}" in msg and "evaluate.fvd_sha256" in msg
    msg = run(f"evaluate.fvd_weights={path}", f"evaluate.fvd_sha256={sha}")  # 4 frames: too short for I3D
    assert "at least 10 frames" in msg and "data.frames" in msg
    assert not (project.metrics / "eval.json").exists()


def test_generator_and_data_of_different_kinds_are_refused(project, digits16, tmp_path):
    state = checkpoint.load(project.checkpoint)
    video = ModelSpec.from_dict(state["spec"])
    keys = {k: v for k, v in video.config.model_dump().items() if k in DCGANConfig.model_fields and k != "family"}
    spec = dataclasses.replace(video, config=DCGANConfig(**keys), frames=0)
    G, D = build(spec).values()  # a real image generator (the loader checks that weights fit their spec)
    image_state = {**state, "spec": spec.to_dict(), "G": G.state_dict(), "G_ema": G.state_dict(), "D": D.state_dict()}
    checkpoint.save(project.checkpoint, {k: v for k, v in image_state.items() if k not in ("format", "sha256")})
    cfg = load_config(ROOT / "params.yaml", EVAL)
    with pytest.raises(GanforgeError, match=r"holds an image generator \(dcgan\) but .* holds video data"):
        evaluate(cfg, project)
    images = Paths(tmp_path / "images")
    shutil.copytree(digits16, images.prepared)
    images.models.mkdir()
    checkpoint.save(images.checkpoint, {k: v for k, v in state.items() if k not in ("format", "sha256")})
    with pytest.raises(GanforgeError, match=r"holds a video generator \(mocogan\) but .* holds image data"):
        evaluate(cfg, images)
