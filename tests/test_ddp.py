"""Training under torch.distributed for real: `ganforge train --nproc 2` starts two gloo processes through torch's
elastic agent (what torchrun does); two torchrun "hosts" on the loopback address meet through c10d rendezvous.
A rank killed mid-run fails the job in one line, and the same command then resumes to the result of an
uninterrupted run, bit for bit."""

import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from ganforge.paths import Paths
from ganforge.training import checkpoint

from .conftest import ROOT

pytestmark = pytest.mark.slow

TINY = [
    "train.model.g_width=8",
    "train.model.d_width=8",
    "train.model.z_dim=8",
    "train.batch_size=16",
    "train.device=cpu",
    "train.precision=fp32",
    "tracking.enabled=false",
    "train.log_every=2",
    "train.sample_every=4",
    "train.checkpoint_every=2",
    "train.lecam.weight=0.1",  # objective state (LeCam's averages) and ...
    "train.augment.kind=ada",  # ... augmentation state (ADA's p) kept the same on every rank
    "train.augment.interval=2",
    "train.augment.target=0.01",  # ADA's p moves in the first steps
    "train.r1.weight=0.5",  # a lazy gradient penalty through DDP (double backward)
    "train.r1.interval=2",
]


def sets(*overrides):
    return ["--params", str(ROOT / "params.yaml"), *(a for o in overrides for a in ("--set", o))]


def ganforge(project, *args, fault=None, fault_rank=None, timeout=240):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GANFORGE_"))}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if fault:
        env.update(GANFORGE_FAULT=fault, GANFORGE_FAULT_RANK=str(fault_rank))
    cmd = [sys.executable, "-m", "ganforge", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def project(digits16, tmp_path):
    def make(name):
        paths = Paths(tmp_path / name)
        shutil.copytree(digits16, paths.prepared)
        return paths

    return make


def weights(paths):
    return checkpoint.load_latest(paths.checkpoint)[0]


def test_two_processes_give_the_weights_of_one_process_with_the_same_global_batch(project):
    """A family without BatchNorm (r3gan: RpGAN + R1 + R2), no augmentation: each rank's shard of the batch and of
    the latents, with averaged gradients, is the step one process takes on the whole batch."""
    r3gan = ["train.model=r3gan", "train.model.width=8", "train.model.max_channels=16", "train.model.blocks=1",
             "train.model.group_size=4", "train.model.z_dim=8", "train.model.embed_dim=8", "train.batch_size=8",
             "train.device=cpu", "train.precision=fp32", "tracking.enabled=false", "train.steps=3",
             "train.r1.interval=2"]  # fmt: skip
    one, two = project("one"), project("two")
    for paths, n in ((one, 1), (two, 2)):
        out = ganforge(paths.root, "train", "--nproc", str(n), "--quiet", *sets(*r3gan))
        assert out.returncode == 0, out.stderr
    a, b = weights(one), weights(two)
    for net in ("G", "D"):
        for key, value in a[net].items():
            torch.testing.assert_close(b[net][key], value, rtol=1e-4, atol=1e-5, msg=f"{net}.{key}")


def test_batch_that_does_not_split_fails_in_one_line(project):
    paths = project("odd")
    out = ganforge(paths.root, "train", "--nproc", "3", *sets(*TINY, "train.steps=2"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "train.batch_size (16) is the global batch" in out.stderr and not paths.checkpoint.exists()
    # no prepared data: one line from the launcher, before any rank starts (not one per rank)
    empty = paths.root.parent / "empty"
    empty.mkdir()
    out = ganforge(empty, "train", "--nproc", "2", *sets(*TINY, "train.steps=2"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "not found; run `ganforge prepare` first" in out.stderr


def test_a_killed_rank_fails_the_job_and_the_same_command_resumes_bit_exact(project):
    args = ["train", "--nproc", "2", "--quiet", *sets(*TINY, "train.steps=8")]
    whole = project("whole")
    out = ganforge(whole.root, *args)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("train: trained")]
    assert len(lines) == 1 and "2 x cpu" in lines[0], out.stdout  # one summary, from rank 0
    state = weights(whole)
    assert state["step"] == 8 and len(state["rng"]["ranks"]) == 2
    assert not torch.equal(state["rng"]["ranks"][0]["torch"], state["rng"]["ranks"][1]["torch"])  # own augmentation RNG
    assert "p" in state["augment"]  # ADA's p and every weight are the same on both ranks: checked at every save
    assert sorted(p.name for p in whole.samples_dir.iterdir()) == ["step_000004.png", "step_000008.png"]
    assert whole.train_losses.read_text().count("\n") == 5  # one CSV (rank 0's): header + steps 2, 4, 6, 8

    cut = project("cut")
    killed = ganforge(cut.root, *args, fault="train.step@5", fault_rank=1)  # rank 1 dies in step 5
    assert killed.returncode == 1
    err = [ln for ln in killed.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "rank 1 of 2 was killed by SIGKILL" in err[0], killed.stderr
    assert "the last checkpoint" in err[0] and "intact" in err[0]
    assert weights(cut)["step"] == 4

    again = ganforge(cut.root, *args)
    assert again.returncode == 0, again.stderr
    assert "continuing the interrupted run" in again.stdout and "trained to step 8" in again.stdout
    a, b = weights(whole), weights(cut)
    for net in ("G", "D", "G_ema", "objective", "augment"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{net}.{key}"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_hosts_on_loopback_meet_through_c10d_rendezvous(project):
    """What two GPU hosts do (README "Scale out"): the same torchrun command on each, one process per host here."""
    paths = project("hosts")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GANFORGE_"))}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MLFLOW_TRACKING_URI=f"sqlite:///{paths.root / 'mlflow.db'}")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "job1"]  # fmt: skip
    cmd = [*torchrun, "-m", "ganforge", "train", *sets(*TINY, "train.steps=4", "tracking.enabled=true")]
    hosts = [subprocess.Popen(cmd, cwd=paths.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    outs = [h.communicate(timeout=240) for h in hosts]
    assert [h.returncode for h in hosts] == [0, 0], outs
    summaries = [ln for out, _ in outs for ln in out.splitlines() if ln.startswith("train: trained")]
    assert len(summaries) == 1 and "2 x cpu" in summaries[0]
    assert weights(paths)["step"] == 4
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])  # rank 0's, alone
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_d")] == [2, 4]
