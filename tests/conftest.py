"""Shared fixtures: repo paths, reference data, deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The reference data lives beside the checkout (../shared/reference) or inside it (shared/reference).
_REF_CANDIDATES = [REPO / "tests" / "reference", REPO.parent / "shared" / "reference"]
REFERENCE = next((p for p in _REF_CANDIDATES if p.is_dir()), _REF_CANDIDATES[-1])


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip("shared/reference is not available on this machine")
    return REFERENCE


@pytest.fixture(autouse=True)
def _seed_everything():
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover
        pass
    yield


# One intra-op thread: the tests run many small ops, where a second thread only adds contention.
os.environ.setdefault("OMP_NUM_THREADS", "1")
