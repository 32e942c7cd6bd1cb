"""The engine end to end on tiny digits: every loss and regulariser trains; resume is bit-exact with ADA and
LeCam on, in fp32, bf16 and fp16 (with its grad scaler); augmentation never reaches the sample grids."""

import csv
import math

import pytest
import torch
from PIL import Image

from ganforge.training import checkpoint
from ganforge.training.loop import train
from ganforge.training.snapshots import fixed_inputs, sample_grid
from ganforge.training.system import System

from .test_train import cfg, straight_and_halves, workdir

RECIPES = {
    "wgan-gp": ["train.loss=wgan", "train.gp.weight=10", "train.n_critic=2", "train.model.d_norm=none"],
    "rpgan+r1+r2": ["train.loss=rpgan", "train.r1.weight=1", "train.r2.weight=1", "train.r1.interval=2"],
    "nonsat+lecam+diffaugment": ["train.loss=nonsat", "train.lecam.weight=0.3", "train.augment.kind=diffaugment"],
    "lsgan+ada": ["train.loss=lsgan", "train.augment.kind=ada", "train.augment.speed_kimg=0.1"],
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_trains_and_logs_its_terms(tmp_path, digits16, recipe):
    paths = workdir(tmp_path, digits16, recipe)
    s = train(cfg("train.steps=4", *RECIPES[recipe]), paths, progress=False)
    assert math.isfinite(s.loss_d) and math.isfinite(s.loss_g)
    rows = list(csv.DictReader(paths.train_losses.open()))
    columns = set(rows[0])
    expected = {"wgan-gp": {"gp"}, "rpgan+r1+r2": {"r1", "r2"}, "nonsat+lecam+diffaugment": {"lecam"},
                "lsgan+ada": {"ada_p", "ada_rt"}}[recipe]  # fmt: skip
    assert expected <= columns, columns
    if recipe == "rpgan+r1+r2":  # r1 runs every 2nd step: logged at steps 2 and 4 (log_every=2), never zero
        assert all(float(r["r1"]) > 0 for r in rows)


@pytest.mark.parametrize(("lr_d", "p0", "rises"), [(2e-3, 0.0, True), (1e-7, 0.5, False)])
def test_ada_p_follows_d_in_a_real_run(tmp_path, digits16, lr_d, p0, rises):
    """A D that learns fast overfits the tiny set and p rises; a D that cannot learn stays unsure and p falls."""
    paths = workdir(tmp_path, digits16, f"ada{lr_d}")
    ada = [
        "train.augment.kind=ada",
        "train.augment.interval=1",
        "train.augment.speed_kimg=0.2",
        f"train.augment.p={p0}",
    ]
    train(cfg("train.steps=12", f"train.lr_d={lr_d}", *ada), paths, progress=False)
    p = float(checkpoint.load(paths.checkpoint)["augment"]["p"])
    assert (p > p0) if rises else (p < p0), p


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_resume_is_bit_exact_with_ada_and_lecam(tmp_path, digits16, precision):
    extra = ["train.augment.kind=ada", "train.augment.speed_kimg=0.05", "train.augment.p=0.2", "train.lecam.weight=0.3",
             "train.r1.weight=0.5", "train.r1.interval=3", f"train.precision={precision}"]  # fmt: skip
    straight, halves = straight_and_halves(tmp_path, digits16, cfg, 8, *extra)
    a = checkpoint.load(straight.checkpoint)
    assert float(a["augment"]["p"]) != pytest.approx(0.2) and float(a["objective"]["lecam.ema_real"].abs().sum()) > 0
    if precision == "fp16":  # the scaler ran and its state came back
        assert a["scaler"]["scale"] == checkpoint.load(halves.checkpoint)["scaler"]["scale"]


def test_augmentation_never_reaches_the_grids(tmp_path, digits16):
    """With every ADA transform always on, the grid is still G_ema's own output."""
    paths = workdir(tmp_path, digits16, "grid")
    c = cfg("train.steps=4", "train.augment.kind=ada", "train.augment.p=1.0", "train.augment.adaptive=false")
    train(c, paths, progress=False)
    state = checkpoint.load(paths.checkpoint)
    from ganforge.models import ModelSpec

    s = System(c.train, ModelSpec.from_dict(state["spec"]), torch.device("cpu"), None)
    s.load_state_dict(state)
    assert float(s.augment.p) == 1.0
    again = tmp_path / "again.png"
    sample_grid(s, *fixed_inputs(s.spec), again)
    assert Image.open(again).tobytes() == Image.open(paths.samples_latest).tobytes()


def test_the_grid_shows_every_class_of_a_team_sized_set():
    """20 classes (the colour-emoji set's) give 20 rows of 10; more than 32 are capped at 32 rows."""
    from ganforge.models import FAMILIES, ModelSpec

    def spec(classes):
        return ModelSpec(FAMILIES["dcgan"].config(), resolution=16, channels=3, num_classes=classes)

    seeds, y, cols = fixed_inputs(spec(20))
    assert cols == 10 and len(seeds) == 200 and y.tolist() == [c for c in range(20) for _ in range(10)]
    assert int(fixed_inputs(spec(50))[1].max()) == 31
