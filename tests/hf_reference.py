"""A ``transformers`` EsmForMaskedLM built for ntkit weights: the reference for tests and benchmarks.

NT v1 is stock HF ESM. NT v2's hub checkpoints need NT's remote code, whose only change to
HF ESM is the gated FFN; here the stock modules are swapped for that FFN (``transformers`` is a
test/benchmark dependency, imported lazily).
"""

from __future__ import annotations

import torch
from torch import nn

from ntkit.models.nt.checkpoint import hf_config, to_hf_state_dict


class GatedIntermediate(nn.Module):
    """NT v2's FFN input as in its HF remote code: H -> 2F, silu(first half) * second half."""

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


def hf_model(config: dict, attn: str = "eager"):
    """A transformers EsmForMaskedLM for an HF config dict (from ``hf_config``), in eval mode."""
    import transformers

    d = dict(config)
    swiglu = d.pop("ntkit", {}).get("ffn_activation") == "swiglu"
    cfg = transformers.EsmConfig(**d)
    cfg.add_bias_fnn = d.get("add_bias_fnn", True)
    cfg._attn_implementation = attn
    model = transformers.EsmForMaskedLM(cfg)
    if swiglu:
        for layer in model.esm.encoder.layer:
            layer.intermediate, layer.output = GatedIntermediate(cfg), GatedOutput(cfg)
    return model.eval()


def hf_copy(model, attn: str = "sdpa", dtype: torch.dtype | None = None):
    """The same weights as an ntkit model, in transformers."""
    ref = hf_model(hf_config(model.config), attn)
    missing, _ = ref.load_state_dict(to_hf_state_dict(model), strict=False)
    if missing:
        raise RuntimeError(f"reference model missing {missing}")
    return ref.to(dtype=dtype or model.embed_tokens.weight.dtype)
