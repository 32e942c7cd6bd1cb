"""The model registry on a real sqlite MLflow store: gate, idempotency, promote/rollback, and the served sampler."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from ganforge import registry, serving, tracking
from ganforge.config import GateConfig, RegistryConfig
from ganforge.errors import GanforgeError
from ganforge.models import ModelSpec, build_generator
from ganforge.sampling import Sampler
from ganforge.training import checkpoint

from .conftest import ROOT, make_spec

SPEC = make_spec("dcgan", 16, 1, 10, z_dim=8, g_width=8, d_width=8)
GOOD = {"class_accuracy": 0.95, "precision": 0.8, "recall": 0.7}


def make_checkpoint(path: Path, spec: ModelSpec = SPEC, seed: int = 0) -> Path:
    """A real checkpoint of a tiny generator, its weights spread out so that different seeds draw different images."""
    torch.manual_seed(seed)
    G = build_generator(spec)
    for m in G.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Embedding):
            torch.nn.init.normal_(m.weight, 0.0, 0.3 if not isinstance(m, torch.nn.Embedding) else 1.0)
    names = [f"digit{i}" for i in range(spec.num_classes)]
    checkpoint.save(path, {"G_ema": G.state_dict(), "spec": spec.to_dict(), "class_names": names, "config": {}})
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store (artifacts beside it) and one logged model for the whole module: log_model is the slow part."""
    root = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as mp:
        uri = f"sqlite:///{root}/mlflow.db"
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        client = tracking.mlflow_client()
        exp = client.create_experiment("registry-tests", artifact_location=(root / "mlartifacts").as_uri())
        ckpt = make_checkpoint(root / "checkpoint.pt")
        run_id = client.create_run(exp).info.run_id
        path = list(sys.path)
        model_uri = registry.log_generator(run_id, ckpt)
        assert os.environ["MLFLOW_TRACKING_URI"] == uri and sys.path == path  # logging leaves no global state
        assert model_uri.startswith("models:/m-")
        logged = client.get_logged_model(model_uri.removeprefix("models:/"))
        assert logged.experiment_id == exp and logged.source_run_id == run_id and logged.status == "READY"
        yield SimpleNamespace(
            root=root,
            uri=uri,
            client=client,
            checkpoint=ckpt,
            run_id=run_id,
            model_uri=model_uri,
            new_run=lambda: client.create_run(exp).info.run_id,
        )


def cfg(name: str, **gate) -> RegistryConfig:
    return RegistryConfig(model_name=name, gate=GateConfig(**gate))


# ------------------------------------------------------------------------------------------------- gate


@pytest.mark.parametrize(
    ("new", "champion", "promoted", "says"),
    [
        ({"fid": 1.0, **GOOD}, None, True, "first version"),
        ({"fid": 9.0, **GOOD, "recall": 0.1}, None, False, "recall 0.1 < min 0.4"),  # first or not: bounds hold
        ({"fid": 1.0, **GOOD}, {"fid": 2.0}, True, "fid 1 < champion's 2"),
        ({"fid": 3.0, **GOOD}, {"fid": 2.0}, False, "fid 3 >= champion's 2"),
        ({"fid": 2.0, **GOOD}, {"fid": 2.0}, False, "fid 2 >= champion's 2"),  # equal does not promote
        ({"fid": 1.0, **GOOD, "recall": 0.3}, {"fid": 2.0}, False, "recall 0.3 < min 0.4"),
        ({"fid": 1.0, "class_accuracy": 0.95, "precision": 0.8}, {"fid": 2.0}, False, "recall missing"),
        ({"fid": float("nan"), **GOOD}, {"fid": 2.0}, False, "no finite fid"),
        ({**GOOD}, {"fid": 2.0}, False, "no finite fid"),
    ],
)
def test_gate_decision(new, champion, promoted, says):
    ok, reason = registry.gate_decision(new, champion, GateConfig())
    assert ok is promoted and says in reason, reason


def test_gate_margin_and_max_bounds():
    gate = GateConfig(fid_margin=0.5, min={}, max={"kid": 0.01})
    assert registry.gate_decision({"fid": 1.6, "kid": 0.0}, {"fid": 2.0}, gate)[0] is False  # not by the margin
    assert registry.gate_decision({"fid": 1.4, "kid": 0.0}, {"fid": 2.0}, gate)[0] is True
    ok, reason = registry.gate_decision({"fid": 1.4, "kid": 0.02}, {"fid": 2.0}, gate)
    assert not ok and "kid 0.02 > max 0.01" in reason


PROTOCOL = {"extractor": "classifier", "weights_sha256": "ab" * 32, "resolution": 16, "split": "test",
            "n_real": 180, "n_fake": 2000, "truncation": 1.0, "seed": 0}  # fmt: skip


def test_fids_are_compared_only_under_the_same_protocol():
    same = (registry.fid_protocol(PROTOCOL), registry.fid_protocol({**PROTOCOL, "seed": 5}))  # not a FID key
    assert registry.gate_decision({"fid": 1.0, **GOOD}, {"fid": 2.0}, GateConfig(), same)[0] is True
    for key, value in [("n_fake", 500), ("weights_sha256", "cd" * 32), ("resolution", 32), ("extractor", "dinov2")]:
        other = registry.fid_protocol({**PROTOCOL, key: value})
        ok, why = registry.gate_decision({"fid": 1.0, **GOOD}, {"fid": 2.0}, GateConfig(), (other, same[0]))
        assert not ok and f"{key} {PROTOCOL[key]} vs {value}" in why and "cannot compare fid" in why, why
    ok, why = registry.gate_decision({"fid": 1.0, **GOOD}, {"fid": 2.0}, GateConfig(), (same[0], {}))
    assert not ok and "the champion has no recorded protocol" in why


def test_a_first_version_that_fails_a_bound_is_no_champion(store, tmp_path):
    c = cfg("strict")
    bad = registry.evaluate_and_register(c, store.new_run(), store.checkpoint, {"fid": 2.0, **GOOD, "recall": 0.1})
    assert (bad["promoted"], bad["champion"]) == (False, None) and "recall 0.1 < min 0.4" in bad["reason"]
    assert "champion" not in store.client.get_registered_model("strict").aliases
    with pytest.raises(GanforgeError, match="has no champion: no version has passed the gate") as err:
        registry.fetch_version("strict", "champion", tmp_path / "a")
    message = str(err.value)
    assert "candidate v1 was rejected" in message and "registry promote" in message and "\n" not in message
    good = registry.evaluate_and_register(c, store.new_run(), store.checkpoint, {"fid": 3.0, **GOOD})
    assert good["promoted"] and good["champion"] == 2  # the first that passes, whatever its fid
    store.client.create_registered_model("nothing-yet")
    with pytest.raises(GanforgeError, match="no version is evaluated yet; run `ganforge evaluate`"):
        registry.fetch_version("nothing-yet", "champion", tmp_path / "b")


def test_the_gate_reads_protocols_from_the_registry(store):
    c = cfg("protocols")
    step = lambda fid, **p: registry.evaluate_and_register(  # noqa: E731
        c, store.new_run(), store.checkpoint, {"fid": fid, **GOOD}, {**PROTOCOL, **p}
    )
    assert step(2.0)["promoted"]
    fewer = step(1.0, n_fake=500)  # a better FID from fewer samples is not a better model
    assert not fewer["promoted"] and "n_fake 2000 vs 500" in fewer["reason"] and fewer["champion"] == 1
    tags = store.client.get_model_version("protocols", str(fewer["version"])).tags
    assert tags["protocol.n_fake"] == "500" and tags["protocol.weights_sha256"] == "ab" * 32
    assert "protocol.seed" not in tags  # only what makes FIDs comparable
    assert step(1.0)["promoted"]  # the same protocol: compared, and better
    hold = RegistryConfig(model_name="protocols", promote=False)
    later = registry.evaluate_and_register(
        hold, store.new_run(), store.checkpoint, {"fid": 0.5, **GOOD}, {**PROTOCOL, "resolution": 32}
    )
    promoted, why = registry.promote_through_gate(c, later["version"])
    assert not promoted and "resolution 16 vs 32" in why


def test_evaluate_moves_champion_only_through_the_gate(store):
    c = cfg("gate")
    step = lambda fid, **extra: registry.evaluate_and_register(  # noqa: E731
        c, store.new_run(), store.checkpoint, {"fid": fid, **GOOD, **extra}
    )
    first = step(2.0)
    assert first == {**first, "model_name": "gate", "version": 1, "promoted": True, "champion": 1}
    assert "first version" in first["reason"]
    worse, equal = step(3.0), step(2.0)
    assert (worse["promoted"], worse["champion"], equal["promoted"], equal["champion"]) == (False, 1, False, 1)
    bound = step(1.0, recall=0.1)
    assert not bound["promoted"] and "recall" in bound["reason"] and bound["champion"] == 1
    better = step(1.5)
    assert better["promoted"] and better["champion"] == better["version"] == 5
    assert better["model_uri"] == "models:/gate/5"

    mv = store.client.get_model_version("gate", "4")
    assert mv.tags["gate.decision"] == "rejected" and "recall 0.1 < min 0.4" in mv.tags["gate.reason"]
    assert mv.tags["metric.fid"] == "1.0" and mv.tags["metric.recall"] == "0.1"
    aliases = store.client.get_registered_model("gate").aliases
    assert {k: int(v) for k, v in aliases.items()} == {"champion": 5, "candidate": 5}


def test_registering_a_run_twice_reuses_its_version(store):
    c, run_id = cfg("idem"), store.new_run()
    a = registry.evaluate_and_register(c, run_id, store.checkpoint, {"fid": 2.0, **GOOD})
    outputs = store.client.get_run(run_id).outputs.model_outputs
    b = registry.evaluate_and_register(c, run_id, store.checkpoint, {"fid": 1.5, **GOOD})  # e.g. n_fake changed
    assert a["version"] == b["version"] == 1 and b["promoted"] and "already the champion" in b["reason"]
    assert store.client.get_run(run_id).outputs.model_outputs == outputs  # not logged again either
    assert [v["fid"] for v in registry.list_versions("idem")] == [1.5]  # its latest evaluation

    again = registry.register_candidate(c, run_id, store.model_uri, {"fid": 1.5})
    assert (again.version, again.created) == (1, False)
    other = registry.register_candidate(c, store.new_run(), store.model_uri, {"fid": 1.0})
    assert (other.version, other.created) == (2, True)
    assert registry.register_candidate(c, other.run_id, store.model_uri, {"fid": 1.0}).version == 2
    assert [v["version"] for v in registry.list_versions("idem")] == [1, 2]


def test_resumed_training_under_the_same_run_gets_a_new_version(store, tmp_path):
    c, run_id = cfg("resumed"), store.new_run()
    first = registry.evaluate_and_register(c, run_id, store.checkpoint, {"fid": 2.0, **GOOD})
    longer = make_checkpoint(tmp_path / "checkpoint.pt", seed=1)  # other weights, same train run
    second = registry.evaluate_and_register(c, run_id, longer, {"fid": 1.0, **GOOD})
    assert (first["version"], second["version"], second["champion"]) == (1, 2, 2)
    assert registry.evaluate_and_register(c, run_id, longer, {"fid": 1.0, **GOOD})["version"] == 2


def test_fetch_version_by_alias_and_number(store, tmp_path):
    c = cfg("fetch")
    registry.evaluate_and_register(c, store.new_run(), store.checkpoint, {"fid": 2.0, **GOOD})
    got = registry.fetch_version("fetch", "champion", tmp_path / "a")
    assert (got.version, got.uri) == (1, "models:/fetch/1") and got.checkpoint_sha256
    assert set(got.files) == {"generator", "spec"}  # this checkpoint holds no discriminator
    state = torch.load(got.files["generator"], weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in checkpoint.load(store.checkpoint)["G_ema"].items())
    assert registry.fetch_version("fetch", "1", tmp_path / "b").version == 1
    with pytest.raises(GanforgeError, match="no alias 'gold'"):
        registry.fetch_version("fetch", "gold", tmp_path / "c")
    with pytest.raises(GanforgeError, match="no version 7"):
        registry.fetch_version("fetch", "7", tmp_path / "d")


def test_promote_false_judges_but_leaves_champion_then_gate_promotes_later(store):
    hold = RegistryConfig(model_name="hold", promote=False)
    first = registry.evaluate_and_register(hold, store.new_run(), store.checkpoint, {"fid": 3.0, **GOOD})
    assert not first["promoted"] and "registry.promote is false" in first["reason"] and first["champion"] is None
    better = registry.evaluate_and_register(hold, store.new_run(), store.checkpoint, {"fid": 1.0, **GOOD})
    worse = registry.evaluate_and_register(hold, store.new_run(), store.checkpoint, {"fid": 5.0, **GOOD})
    assert not better["promoted"] and not worse["promoted"]
    assert registry.promote_through_gate(hold, better["version"])[0]  # no champion yet: the first passes
    promoted, why = registry.promote_through_gate(hold, worse["version"])
    assert not promoted and "fid 5 >= champion's 1" in why
    assert int(store.client.get_registered_model("hold").aliases["champion"]) == better["version"]
    assert store.client.get_model_version("hold", str(worse["version"])).tags["gate.decision"] == "rejected"


def test_promote_and_rollback_walk_the_champion_history(store):
    c = cfg("rollback")
    versions = [registry.register_candidate(c, store.new_run(), store.model_uri, {"fid": 1.0}).version for _ in "abc"]
    assert versions == [1, 2, 3]
    with pytest.raises(GanforgeError, match="no previous champion"):
        registry.rollback("rollback")
    for v in versions:
        registry.promote("rollback", v)
    registry.promote("rollback", 3)  # already champion: not a new history step
    assert int(store.client.get_registered_model("rollback").aliases["champion"]) == 3
    assert registry.rollback("rollback") == 2
    assert registry.rollback("rollback") == 1
    with pytest.raises(GanforgeError, match="no previous champion") as err:
        registry.rollback("rollback")
    assert "\n" not in str(err.value)
    rows = {r["version"]: r for r in registry.list_versions("rollback")}
    assert rows[1]["aliases"] == ["champion"] and "rollback from version 2" in rows[1]["champion_reason"]


def test_a_deleted_champion_is_no_champion(store):
    c = cfg("deleted")
    for _ in "ab":
        v = registry.register_candidate(c, store.new_run(), store.model_uri, {"fid": 1.0}).version
        registry.promote("deleted", v, reason="by hand")
    store.client.delete_model_version("deleted", "2")
    assert registry.rollback("deleted") == 1  # the deleted one is skipped
    store.client.delete_model_version("deleted", "1")
    assert all(r["aliases"] == [] for r in registry.list_versions("deleted"))
    new = registry.evaluate_and_register(c, store.new_run(), store.checkpoint, {"fid": 9.0, **GOOD})
    assert new["promoted"] and "no champion yet" in new["reason"] and new["champion"] == 3


def test_user_errors_are_one_line(store):
    registry.register_candidate(cfg("errors"), store.new_run(), store.model_uri, {"fid": 1.0})
    cases = [
        (lambda: registry.list_versions("nope"), "no registered model 'nope'"),
        (lambda: registry.promote("nope", 1), "no registered model 'nope'"),
        (lambda: registry.rollback("nope"), "no registered model 'nope'"),
        (lambda: registry.promote("errors", 7), r"has no version 7 \(versions: \[1\]\)"),
        (lambda: registry.log_generator("0" * 32, store.checkpoint), "is not in the store"),
        (lambda: registry.evaluate_and_register(cfg("errors"), store.run_id, store.root / "x.pt", {}), "no checkpoint"),
    ]
    for call, message in cases:
        with pytest.raises(GanforgeError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_list_versions(store):
    c = cfg("listed")
    metrics = {"fid": 1.25, "class_accuracy": 0.97, "precision": 0.81, "recall": 0.72, "kid": 0.001}
    out = registry.evaluate_and_register(c, store.run_id, store.checkpoint, metrics)
    (row,) = registry.list_versions("listed")
    assert row["version"] == out["version"] == 1 and row["run_id"] == store.run_id
    assert row["aliases"] == ["candidate", "champion"] and row["created"].endswith("+00:00")
    assert (row["fid"], row["class_accuracy"], row["precision"], row["recall"]) == (1.25, 0.97, 0.81, 0.72)
    assert row["gate"] == "promoted" and row["gate_reason"] == out["reason"] and row["metrics"] == metrics


# ---------------------------------------------------------------------------------------------- serving

FRESH = r"""
import json, sys
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("/src")]  # no installed ganforge
try:
    import ganforge
    raise SystemExit("ganforge is still importable")
except ImportError:
    pass
import mlflow, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(pd.DataFrame({"seed": range(64), "class": [i % 10 for i in range(64)], "truncation": 1.0}))
twice = model.predict(pd.DataFrame({"seed": [7, 7], "class": [3, 3], "truncation": [0.7, 0.7]}))
alone = model.predict(pd.DataFrame({"seed": [5], "class": [5]}))
try:
    model.predict(pd.DataFrame({"seed": [1], "class": [12]}))
    error = None
except ValueError as exc:
    error = str(exc)
print(json.dumps({
    "shape": list(out.shape), "dtype": str(out.dtype), "distinct": len(np.unique(out.reshape(64, -1), axis=0)),
    "same_seed_same_image": bool((twice[0] == twice[1]).all()), "alone_as_in_batch": bool((alone[0] == out[5]).all()),
    "error": error, "ganforge_from": sys.modules["ganforge"].__file__,
}))
"""


def test_champion_loads_and_samples_in_a_fresh_process(store, tmp_path):
    registry.evaluate_and_register(cfg("served"), store.new_run(), store.checkpoint, {"fid": 1.0, **GOOD})
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, "models:/served@champion"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["shape"] == [64, 1, 16, 16] and got["dtype"] == "uint8" and got["distinct"] == 64
    assert got["same_seed_same_image"] and got["alone_as_in_batch"]
    assert "unknown class(es) [12]" in got["error"] and "9=digit9" in got["error"]
    assert str(ROOT) not in got["ganforge_from"]  # the copy shipped with the model (code_paths)


def sampler(tmp_path: Path, spec: ModelSpec = SPEC) -> serving.GeneratorSampler:
    state = checkpoint.load(make_checkpoint(tmp_path / "ck.pt", spec))
    s = serving.GeneratorSampler()
    s.load_context(SimpleNamespace(artifacts=serving.write_artifacts(state, tmp_path / "artifacts")))
    return s


def test_sampler_checks_its_input(tmp_path):
    s = sampler(tmp_path)
    for frame, message in [
        (pd.DataFrame({"class": [1]}), "missing column 'seed'"),
        (pd.DataFrame({"seed": [1]}), "missing column 'class'.*class-conditional"),
        (pd.DataFrame({"seed": [1], "class": [-1]}), r"unknown class\(es\) \[-1\]"),
        (pd.DataFrame({"seed": [1], "class": [1], "truncation": [0.0]}), r"truncation.*\(0, 1\]"),
        (pd.DataFrame({"seed": [-1], "class": [1]}), "seed"),
        (pd.DataFrame({"seed": [1.5], "class": [1]}), "expected ints"),
        (pd.DataFrame({"seed": [1], "class": [1], "colour": ["red"]}), "unknown column"),
    ]:
        with pytest.raises(ValueError, match=message):
            s.predict(None, frame)
    assert s.predict(None, pd.DataFrame({"seed": [], "class": []})).shape == (0, 1, 16, 16)


def test_sampler_truncation_and_unconditional(tmp_path):
    s = sampler(tmp_path)
    full = s.predict(None, pd.DataFrame({"seed": [3], "class": [4], "truncation": [1.0]}))
    half = s.predict(None, pd.DataFrame({"seed": [3], "class": [4], "truncation": [0.5]}))
    assert not np.array_equal(full, half)
    u = sampler(tmp_path / "u", make_spec("dcgan", 16, 1, 0, z_dim=8, g_width=8, d_width=8))
    a = u.predict(None, pd.DataFrame({"seed": [1, 2]}))
    b = u.predict(None, pd.DataFrame({"seed": [1, 2], "class": [-1, 5]}))  # unconditional: class is ignored
    assert a.shape == (2, 1, 16, 16) and np.array_equal(a, b) and not np.array_equal(a[0], a[1])


def test_sampler_rows_are_the_one_samplers(tmp_path):
    """The pyfunc draws through ganforge.sampling: its rows equal Sampler.uint8 of the same seeds, classes, psi
    (per row), from the generator it was given, with more rows than one forward pass holds."""
    s = sampler(tmp_path)
    n = serving.BATCH + 3
    seeds, classes, psi = list(range(50, 50 + n)), [i % 10 for i in range(n)], [1.0, 0.6] * (n // 2) + [0.8]
    got = s.predict(None, pd.DataFrame({"seed": seeds, "class": classes, "truncation": psi}))
    G = checkpoint.generator_from_state(checkpoint.load(tmp_path / "ck.pt"))
    assert np.array_equal(got, Sampler(G, batch_size=5).uint8(seeds, classes, psi).numpy())


def test_a_version_registered_with_the_old_flat_spec_still_samples(tmp_path):
    """spec.json of versions registered before the family configs holds the flat spec: it loads, and samples what
    the same weights under the current spec do; write_artifacts writes the current form."""
    s = sampler(tmp_path / "new")
    old = {**{k: v for k, v in SPEC.config.model_dump().items() if k != "family"}, "model": "dcgan"}
    old |= {"resolution": 16, "channels": 1, "num_classes": 10, "frames": 0, "class_head": False, "motion_dim": 0,
            "image_d_frames": 0, "motion_warp": "none"}  # fmt: skip
    artifacts = Path(tmp_path / "new" / "artifacts")
    meta = json.loads((artifacts / "spec.json").read_text())
    assert meta["spec"] == SPEC.to_dict() and meta["spec"]["model"]["family"] == "dcgan"
    (artifacts / "spec.json").write_text(json.dumps({**meta, "spec": old}))
    flat = serving.GeneratorSampler()
    flat.load_context(SimpleNamespace(artifacts={k: str(artifacts / f) for k, f in
                                                 (("generator", "generator.pt"), ("spec", "spec.json"))}))  # fmt: skip
    assert flat.spec == SPEC
    rows = pd.DataFrame({"seed": [1, 2], "class": [3, 4]})
    assert np.array_equal(flat.predict(None, rows), s.predict(None, rows))
