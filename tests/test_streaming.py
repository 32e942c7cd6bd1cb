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


def test_prefetched_batches_and_positions_are_the_sampler_own():
    from ganforge.training.prefetch import Prefetcher
    from ganforge.training.sampler import BatchSampler

    labels = torch.arange(100) % 5
    data = torch.arange(100).view(100, 1) * 3

    def fresh():
        return BatchSampler(labels, 8, 2, by_class=True, seed=7)

    plain, ahead = fresh(), Prefetcher(fresh(), read=lambda idx: data[idx], depth=3)
    for _ in range(5):
        want = plain.next()
        idx, rows = ahead.next()
        assert torch.equal(idx, want) and torch.equal(rows, data[want])
        # the position a checkpoint saves: the plain sampler's, though three more batches were drawn
        assert torch.equal(ahead.state(), plain.state())
    # setting a position drops what was read ahead: the next batch is the one after that position
    moved = fresh()
    moved.set_state(plain.state())
    ahead.set_state(plain.state())
    assert torch.equal(ahead.next()[0], moved.next())
    ahead.close()


def test_a_failing_read_surfaces_in_the_training_thread():
    from ganforge.training.prefetch import Prefetcher
    from ganforge.training.sampler import BatchSampler

    def read(idx):
        raise GanforgeError("a shard ended early at sample 3 (truncated?); run `ganforge prepare` again")

    p = Prefetcher(BatchSampler(torch.zeros(10, dtype=torch.long), 4, 1, by_class=False, seed=0), read, depth=2)
    with pytest.raises(GanforgeError, match="ended early"):
        p.next()
    p.close()


def test_resume_from_the_shards_with_prefetching_is_exact(digits16, tmp_path):
    """3 steps, stop, resume to 6 == 6 steps straight, reading from the shards 2 batches ahead."""
    keys = [*TINY_MODEL, "train.load_limit_gb=0", "train.prefetch=2", "train.checkpoint_every=3"]
    states = []
    for name in ("straight", "resumed"):
        paths = Paths(tmp_path / name)
        shutil.copytree(digits16, paths.prepared)
        if name == "resumed":
            train(load_config(ROOT / "params.yaml", [*keys, "train.steps=3"]), paths, progress=False)
            train(load_config(ROOT / "params.yaml", [*keys, "train.steps=6"]), paths, resume=True, progress=False)
        else:
            train(load_config(ROOT / "params.yaml", [*keys, "train.steps=6"]), paths, progress=False)
        states.append(checkpoint.load_latest(paths.checkpoint)[0])
    for net in ("G", "D", "G_ema"):
        for key, value in states[0][net].items():
            assert torch.equal(value, states[1][net][key]), f"{net}.{key}"
