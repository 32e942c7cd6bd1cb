import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits16(tmp_path_factory):
    """The built-in digits prepared at 16x16, shared read-only by the training tests."""
    from ganforge.config import DataConfig
    from ganforge.data.prepare import prepare

    root = tmp_path_factory.mktemp("digits16")
    out = root / "data" / "prepared"
    prepare(DataConfig(source="digits", resolution=16), out, root / "metrics" / "prepare.json", progress=False)
    return out
