"""scikit-learn's 1,797 handwritten digits, read straight from the CSV inside its package.

That is the file `sklearn.datasets.load_digits` reads; importing `sklearn.datasets` to get it costs every process
that needs the digits (prepare, the video and stacked sources, the translation demo) ~2.4 s.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Float pixels 0..16 [1797, 8, 8] and int labels, equal to `load_digits().images` / `.target` (tested)."""
    spec = importlib.util.find_spec("sklearn")
    csv = Path(next(iter(spec.submodule_search_locations or []), "")) / "datasets" / "data" / "digits.csv.gz"
    if not csv.is_file():  # another scikit-learn layout: its own loader
        from sklearn.datasets import load_digits

        data = load_digits()
        return data.images, data.target
    with gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
