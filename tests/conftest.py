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


class GatedIntermediate(nn.Module):
    """NT v2's FFN input projection as in its HF remote code: H -> 2F, no bias, silu(first half) * second half."""

    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=c.add_bias_fnn)

    def forward(self, x):
        gate, up = self.dense(x).chunk(2, dim=-1)
        return nn.functional.silu(gate) * up


class GatedOutput(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.intermediate_size, c.hidden_size, bias=c.add_bias_fnn)

    def forward(self, x, residual):
        return self.dense(x) + residual


def hf_reference(hf_config: dict, attn: str = "eager"):
    """A transformers EsmForMaskedLM for an ntkit HF config dict; v2 gets the gated FFN swapped in."""
    transformers = pytest.importorskip("transformers")
    d = dict(hf_config)
    swiglu = d.pop("ntkit", {}).get("ffn_activation") == "swiglu"
    cfg = transformers.EsmConfig(**d)
    cfg.add_bias_fnn = d.get("add_bias_fnn", True)
    cfg._attn_implementation = attn
    model = transformers.EsmForMaskedLM(cfg)
    if swiglu:
        for layer in model.esm.encoder.layer:
            layer.intermediate, layer.output = GatedIntermediate(cfg), GatedOutput(cfg)
    return model.eval()


def perturbed(model: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Add noise to every parameter (LayerNorms, biases, the padding row) so comparisons are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model
