"""Shared fixtures: the path to ../shared/data and a transformers ESM reference for NT weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

DATA = Path(os.environ.get("NTKIT_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data folder not found at {DATA} (set NTKIT_DATA)")
    return DATA


def hf_reference(hf_config: dict, attn: str = "eager"):
    pytest.importorskip("transformers")
    from .hf_reference import hf_model

    return hf_model(hf_config, attn)


def perturbed(model: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Add noise to every parameter (LayerNorms, biases, the padding row) so comparisons are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


REFERENCE = (DATA.parent / "reference").resolve()


def reference_code(folder: str) -> Path:
    """Put ``../shared/reference/<folder>`` (InstaDeep's code, a test oracle only) on sys.path."""
    import sys

    path = REFERENCE / folder
    if not path.is_dir():
        pytest.skip(f"reference code not found at {path}")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    return path
