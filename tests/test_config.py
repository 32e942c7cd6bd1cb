import subprocess
import sys
from pathlib import Path

import pytest

from ganforge.cli import main
from ganforge.config import DISTRIBUTION_SCORES, Config, load_config
from ganforge.errors import ConfigError
from ganforge.metrics.scores import SCORE_KEYS
from ganforge.models import FAMILIES
from ganforge.models.dcgan import DCGANConfig
from ganforge.models.mocogan import MoCoGANConfig

ROOT = Path(__file__).resolve().parents[1]
KNOWN = ", ".join(FAMILIES)  # "dcgan, mocogan, ..."


def test_repo_params_are_valid_and_complete():
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.data.source == "digits"
    assert cfg.train.conditional
    # params.yaml spells out every knob: nothing falls back to a hidden default
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, model in Config.model_fields.items():
        assert set(raw[section]) == set(model.annotation.model_fields), section
    family = FAMILIES[raw["train"]["model"]["family"]].config
    assert set(raw["train"]["model"]) == set(family.model_fields)  # and every key of its model family


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("data.resolution=33", "data.resolution: expected a power of two from 16 to 512 (got 33)"),
        ("data.resolution=1024", "data.resolution"),
        ("train.lr_g=-0.001", "train.lr_g: Input should be greater than 0"),
        ("train.steps=many", "train.steps: Input should be a valid integer"),
        ("train.bogus=1", "train.bogus: unknown key"),
        ("bogus.x=1", "bogus: unknown key"),
        ("train.loss=wasserstein", "train.loss: Input should be 'nonsat', 'hinge', 'wgan', 'rpgan' or 'lsgan'"),
        ("train.r1.weight=-1", "train.r1.weight: Input should be greater than or equal to 0"),
        ("train.augment.target=1.5", "train.augment.target: Input should be less than 1"),
        ("train.augment.kind=flip", "train.augment.kind: Input should be 'none', 'diffaugment' or 'ada'"),
        ("train.augment.policy=color,zoom", "train.augment.policy.1: Input should be 'color'"),
        ("train.n_critic=0", "train.n_critic: Input should be greater than or equal to 1"),
        ("features.epochs=0", "features.epochs: expected a whole number of epochs from 1 to 10000, or auto (got 0)"),
        ("features.augment=true", "features.augment: Input should be 'auto', 'strong', 'shift' or 'none'"),
        ("train.model=stylegan9", f"train.model: expected a model family: one of {KNOWN} (got 'stylegan9')"),
        ("train.model.family=stylegan9", f"train.model.family: unknown family: expected one of {KNOWN} (got"),
        ("train.model=3", f"train.model: expected a model family ({KNOWN}) or a section"),
        ("train.model.motion_dim=8", "train.model.motion_dim: unknown key for family dcgan (a key of mocogan)"),
        ("train.model.z_dm=8", "train.model.z_dm: unknown key (did you mean train.model.z_dim?)"),
        ("train.model.z_dim=0", "train.model.z_dim: Input should be greater than or equal to 1 (got 0)"),
        ("train.model.d_norm=layer", "train.model.d_norm: Input should be 'batch', 'spectral' or 'none'"),
        ("train.z_dim=8", "train.z_dim: unknown key"),  # the model's keys live in train.model now
        ("train.batch_size=63", "train.batch_size (63) must be a multiple of train.model.pack (2)"),
        ("train.device=tpu", "train.device: expected auto, cpu, cuda, cuda:N or mps"),
        ("data.source=folder", "needs data.path"),
        ("data.channels=2", "data.channels"),
        # found by tests/test_config_properties.py
        ("train.steps=true", "train.steps: expected a number, not true/false (got True)"),
        ("train.lr_g=true", "train.lr_g: expected a number, not true/false"),
        ("train.seed=99999999999999999999", "train.seed: out of range (more than 64 bits)"),
        ("library.memorised_feature=1e999", "library.memorised_feature: Input should be a finite number"),
        ("registry.gate.min={recall: .nan}", "registry.gate.min.recall: Input should be a finite number"),
        ("registry.gate.min={recall: yes}", "registry.gate.min.recall: expected a number, not true/false"),
        ("train.device='cuda:'", "train.device: expected auto, cpu, cuda, cuda:N or mps"),
        ("train.device=cuda:²", "train.device"),
        ('data.path="a\\0b"', "data.path: a NUL character is not allowed"),
        ("train.stpes=3", "train.stpes: unknown key (did you mean train.steps?)"),
        ("train=5", "train: expected a section"),
        ("train.steps=2001-02-30", "--set train.steps: cannot read '2001-02-30' as timestamp"),
        ("train.steps=!!float x", "--set train.steps: cannot read 'x' as float"),
        ("train.steps={a: 1, a: 2}", "--set train.steps: a: duplicate key"),
    ],
)
def test_bad_values_name_the_key(tmp_path, override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "params.yaml", [override])
    msg = str(err.value)
    assert needle in msg
    assert "\n" not in msg


def test_an_unknown_family_is_the_one_problem():
    """The recipe keys left `auto` have no family to take a recipe from: they take their defaults, not an error each."""
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "params.yaml", ["train.model.family=nope"])
    assert (
        str(err.value)
        == f"{ROOT / 'params.yaml'}: train.model.family: unknown family: expected one of {KNOWN} (got 'nope')"
    )


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["registry.gate.max={kid: 0.05}"], "registry.gate.max.kid: evaluate reports no score 'kid' for conditional "
         "image models (did you mean kid_mean?)"),
        (["train.conditional=false"], "registry.gate.min.class_accuracy: evaluate reports no score 'class_accuracy' "
         "for unconditional image models; an unconditional model has no classes to check"),
        (["train.conditional=false"], "--set 'registry.gate.min={precision: 0.6, recall: 0.4}'"),
        (["evaluate.cas=false", "registry.gate.min={cas_ratio: 0.8}"], "CAS needs a conditional image model"),
        (["registry.gate.min={fvd: 1}"], "evaluate reports no score 'fvd' for conditional image models"),
        (["registry.gate.min={motion: 0.5}"], "registry.gate.min.motion: evaluate reports no score 'motion'"),
    ],
)  # fmt: skip
def test_gate_bounds_name_scores_evaluate_reports(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "params.yaml", overrides)
    assert needle in str(err.value) and "\n" not in str(err.value), err.value


def test_gate_bounds_on_reported_scores_load():
    cfg = load_config(
        ROOT / "params.yaml", ["registry.gate.max={kid_mean: 0.05}", "registry.gate.min={cas_ratio: 0.8}"]
    )
    assert cfg.registry.gate.max == {"kid_mean": 0.05}
    video = load_config(ROOT / "video" / "params.yaml", ["registry.gate.max={motion: 2, clip_fd: 50}"])
    assert video.registry.gate.min["frame_class_accuracy"] == 0.9
    with pytest.raises(ConfigError, match=r"FVD is computed only with evaluate\.fvd_weights"):
        load_config(ROOT / "video" / "params.yaml", ["registry.gate.max={fvd: 100}"])
    assert DISTRIBUTION_SCORES == SCORE_KEYS  # config names what metrics.scores computes


def test_overrides_are_typed():
    cfg = load_config(ROOT / "params.yaml", ["train.steps=7", "train.lr_d=1e-3", "data.path=/x", "train.model.pack=1"])
    assert cfg.train.steps == 7 and cfg.train.lr_d == 1e-3 and cfg.data.path == "/x" and cfg.train.model.pack == 1


def test_a_model_family_by_name_or_by_section():
    """`train.model: mocogan` is that family with its defaults; its keys can then be set on their own."""
    cfg = load_config(ROOT / "params.yaml", ["train.model=mocogan", "train.model.motion_dim=8"])
    assert cfg.train.model == MoCoGANConfig(motion_dim=8)
    video = load_config(ROOT / "video" / "params.yaml")
    assert video.train.model.family == "mocogan" and video.train.model.motion_warp == "rigid"
    assert load_config(ROOT / "params.yaml", ["train.model=dcgan"]).train.model == DCGANConfig()
    switched = load_config(ROOT / "params.yaml", ["train.model.family=mocogan"]).train.model  # keeps the dcgan keys
    assert isinstance(switched, MoCoGANConfig) and switched.z_dim == 64 and switched.motion_dim == 16
    assert Config().train.model == DCGANConfig() and Config().flat()["train.model.family"] == "dcgan"
    assert load_config(ROOT / "params.yaml", ["train.model={z_dim: 8}"]).train.model == DCGANConfig(z_dim=8)


@pytest.mark.parametrize("bad", ["novalue", "=3", "train..steps=3", "train.steps.x=3", "train. .steps=3", "x" * 10**5])
def test_malformed_overrides(bad):
    with pytest.raises(ConfigError):
        load_config(ROOT / "params.yaml", [bad])


def test_params_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="no such params file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\xff\x00")  # was: UnicodeDecodeError
    with pytest.raises(ConfigError, match="not valid YAML text"):
        load_config(bad)
    bad.write_text("train:\n  steps: 1\n  steps: 2\n")  # was: the last one silently won
    with pytest.raises(ConfigError, match=r"train\.steps: duplicate key \(line 3; first at line 2\)"):
        load_config(bad)
    bad.write_text("train:\n  seed: 2001-02-30\n")  # was: ValueError from PyYAML
    with pytest.raises(ConfigError, match=r"train\.seed: cannot read '2001-02-30' as timestamp \(line 2\)"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


def test_cli_config_error_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert main(["train", "--set", "data.resolution=33"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: params.yaml: data.resolution")
    assert not (tmp_path / "models").exists()  # stopped before any work


def test_cli_no_traceback_in_a_real_process(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    out = subprocess.run(
        [sys.executable, "-m", "ganforge", "prepare", "--set", "train.lr_g=-1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: params.yaml: train.lr_g: Input should be greater than 0 (got -1)"
    ]


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "ganforge", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for cmd in ("prepare", "train", "config", "report"):
        assert cmd in out.stdout


def test_class_loss_needs_a_conditional_model():
    with pytest.raises(ConfigError, match=r"train\.class_loss needs class labels"):
        load_config(ROOT / "params.yaml", ["train.class_loss=1", "train.conditional=false"])
    assert load_config(ROOT / "params.yaml", ["train.class_loss=1"]).train.class_loss == 1.0
