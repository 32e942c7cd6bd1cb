import json

import pytest

from ganforge import tracking
from ganforge.config import load_config
from ganforge.errors import GanforgeError

from .conftest import ROOT


def test_default_store_is_absolute_sqlite_at_the_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    # under `dvc exp run --temp` stages run in a copy; DVC_ROOT points back at the real repo
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert tracking.tracking_uri() == f"sqlite:///{(tmp_path / 'repo').resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert tracking.tracking_uri() == "sqlite:////elsewhere/x.db"


def test_run_is_reopened_on_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    cfg = load_config(ROOT / "params.yaml")
    record = tmp_path / "models" / "mlflow_run.json"
    run = tracking.start_train_run(cfg, record)
    run.log_metrics(5, {"loss_d": 1.5})
    run.finish("KILLED")
    again = tracking.start_train_run(cfg, record, resume=True)
    assert again.run_id == run.run_id == json.loads(record.read_text())["run_id"]
    again.log_metrics(10, {"loss_d": 0.5})
    again.finish()
    got = again.client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.tags["dvc.exp_name"] == "exp-a"
    assert [m.step for m in again.client.get_metric_history(run.run_id, "loss_d")] == [5, 10]
    assert got.data.params["train.model.pack"] == "2"


def test_unusable_store_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/file/sub/mlflow.db")
    with pytest.raises(GanforgeError, match="MLflow store") as err:
        tracking.start_train_run(load_config(ROOT / "params.yaml"), tmp_path / "run.json")
    assert "\n" not in str(err.value)
