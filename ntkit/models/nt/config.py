"""Model configuration and named presets.

One dataclass covers both generations; the fields that differ between NT v1 and v2 are
``position_embedding``, ``ffn_activation``, ``ffn_bias``, ``token_dropout``, ``vocab_size``,
``max_tokens`` and ``tokenizer``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ntkit.core.fields import check_fields


@dataclass
class NTConfig:
    name: str = "custom"
    vocab_size: int = 4107  # embedding rows: v1 4105, v2 4107
    hidden_size: int = 512
    num_layers: int = 12
    num_heads: int = 16
    ffn_size: int = 2048  # HF `intermediate_size`; SwiGLU's first projection outputs 2 * ffn_size
    max_tokens: int = 2048  # tokens per sequence including <cls>; HF max_position_embeddings - 2
    position_embedding: Literal["learned", "rotary"] = "rotary"  # v1 learned, v2 rotary
    ffn_activation: Literal["gelu", "swiglu"] = "swiglu"  # v1 GELU, v2 SwiGLU
    ffn_bias: bool = False  # v1 True, v2 False
    token_dropout: bool = False  # v1 True: ESM-style rescaling of embeddings around <mask>
    tokenizer: Literal["v1", "v2"] = "v2"
    layer_norm_eps: float = 1e-12
    rope_theta: float = 10000.0
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    pad_token_id: int = 1
    mask_token_id: int = 2
    cls_token_id: int = 3
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        check_fields(self)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.position_embedding not in ("learned", "rotary"):
            raise ValueError(f"position_embedding must be 'learned' or 'rotary', not {self.position_embedding!r}")
        if self.ffn_activation not in ("gelu", "swiglu"):
            raise ValueError(f"ffn_activation must be 'gelu' or 'swiglu', not {self.ffn_activation!r}")
        if self.position_embedding == "rotary" and self.head_dim % 2:
            raise ValueError("rotary embeddings need an even head dimension")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_nucleotides(self) -> int:
        """Longest N-free sequence that fits the context."""
        return (self.max_tokens - 1) * 6

    def replace(self, **changes: Any) -> "NTConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown NTConfig fields: {sorted(unknown)}")
        return cls(**d)


def _v1(name: str, hidden: int, layers: int, heads: int, **kw: Any) -> NTConfig:
    return NTConfig(
        name=name, vocab_size=4105, hidden_size=hidden, num_layers=layers, num_heads=heads,
        ffn_size=4 * hidden, max_tokens=1000, position_embedding="learned", ffn_activation="gelu",
        ffn_bias=True, token_dropout=True, tokenizer="v1", **kw,
    )


def _v2(name: str, hidden: int, layers: int, heads: int, **kw: Any) -> NTConfig:
    return NTConfig(
        name=name, vocab_size=4107, hidden_size=hidden, num_layers=layers, num_heads=heads,
        ffn_size=4 * hidden, max_tokens=2048, position_embedding="rotary", ffn_activation="swiglu",
        ffn_bias=False, token_dropout=False, tokenizer="v2", **kw,
    )


PRESETS: dict[str, NTConfig] = {
    c.name: c
    for c in [
        _v1("nt-v1-500m", 1280, 24, 20),
        _v1("nt-v1-2.5b", 2560, 32, 20),
        _v2("nt-v2-50m", 512, 12, 16),
        _v2("nt-v2-100m", 512, 22, 16),
        _v2("nt-v2-250m", 768, 24, 16),
        _v2("nt-v2-500m", 1024, 29, 16),
        # CPU-sized models with the same architecture, for tests, demos and small pretraining runs.
        _v1("nt-v1-tiny", 64, 2, 4),
        _v2("nt-v2-tiny", 64, 2, 4),
        _v2("nt-v2-small", 256, 4, 8),
    ]
}


# Trained NT weights with each preset's architecture, by Hugging Face hub name (InstaDeep's releases).
TRAINED_WEIGHTS: dict[str, tuple[str, ...]] = {
    "nt-v1-500m": ("InstaDeepAI/nucleotide-transformer-500m-human-ref", "InstaDeepAI/nucleotide-transformer-500m-1000g"),
    "nt-v1-2.5b": ("InstaDeepAI/nucleotide-transformer-2.5b-multi-species", "InstaDeepAI/nucleotide-transformer-2.5b-1000g"),
    "nt-v2-50m": ("InstaDeepAI/nucleotide-transformer-v2-50m-multi-species",),
    "nt-v2-100m": ("InstaDeepAI/nucleotide-transformer-v2-100m-multi-species",),
    "nt-v2-250m": ("InstaDeepAI/nucleotide-transformer-v2-250m-multi-species",),
    "nt-v2-500m": ("InstaDeepAI/nucleotide-transformer-v2-500m-multi-species",),
}


def get_preset(name: str) -> NTConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}") from None
