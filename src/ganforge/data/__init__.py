"""Data: sources -> `prepare` (uint8 NCHW shards + manifest) -> `PreparedData` for training.

Call the stage as `from ganforge.data.prepare import prepare` (the package does not re-export the
function, so that `ganforge.data.prepare` stays the module).
"""

from ganforge.data.dataset import PreparedData
from ganforge.data.prepare import PrepareSummary
from ganforge.data.sources import SOURCES

__all__ = ["SOURCES", "PrepareSummary", "PreparedData"]
