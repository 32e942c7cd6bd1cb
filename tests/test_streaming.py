"""Training data read from the shards batch by batch (`ShardReader`, over train.load_limit_gb): the same samples as
loading the split whole, so the same training, bit for bit; damaged shards fail in one line."""

import shutil

import numpy as np
import pytest
import torch

from ganforge.config import load_config
from ganforge.data.dataset import PreparedData
from ganforge.errors import GanforgeError
from ganforge.paths import Paths
from ganforge.training import checkpoint
from ganforge.training.loop import train

from .conftest import ROOT, TINY_MODEL


def test_reader_gives_the_rows_load_gives_in_the_order_asked(digits16, tmp_path):
    # small shards, so that a batch spans several files
    data = PreparedData.open(digits16)
    x, _ = data.load("train")
    out = tmp_path / "small-shards"
    shutil.copytree(digits16, out)
    info = (out / "info.json").read_text()
    for f in out.glob("train-0*.npy"):
        f.unlink()
    names = []
    for k, start in enumerate(range(0, len(x), 500)):
        names.append(f"train-{k:05d}.npy")
        np.save(out / names[-1], x[start : start + 500].numpy())
    import json

    meta = json.loads(info)
    meta["splits"]["train"]["shards"] = names
    (out / "info.json").write_text(json.dumps(meta))
    reader = PreparedData.open(out).reader("train")
    assert len(reader) == len(x) and reader.shape == tuple(x.shape) and len(names) == 4
    idx = torch.tensor([1575, 0, 499, 500, 1000, 3, 3, 1200])
    assert torch.equal(reader[idx], x[idx])
    with pytest.raises(IndexError):
        reader[torch.tensor([len(x)])]
    # a truncated shard: one line naming what to do
    last = out / names[-1]
    last.write_bytes(last.read_bytes()[:-100])
    with pytest.raises(GanforgeError, match="run `ganforge prepare` again"):
        PreparedData.open(out).reader("train")[torch.tensor([len(x) - 1])]


def test_training_from_the_shards_equals_training_in_memory(digits16, tmp_path):
    states = []
    for name, limit in (("memory", 4.0), ("shards", 0.0)):
        paths = Paths(tmp_path / name)
        shutil.copytree(digits16, paths.prepared)
        cfg = load_config(ROOT / "params.yaml", [*TINY_MODEL, "train.steps=6", f"train.load_limit_gb={limit}"])
        train(cfg, paths, progress=False)
        states.append(checkpoint.load_latest(paths.checkpoint)[0])
    for net in ("G", "D"):
        for key, value in states[0][net].items():
            assert torch.equal(value, states[1][net][key]), f"{net}.{key}"
