"""NTv3: the single-base U-Net Nucleotide Transformer (pre-trained and post-trained).

Architecture (InstaDeep, 2025), written from the published description and checked against the
HF remote code on the same weights (tests/test_ntv3.py; max |diff| ~1e-6 in fp32):

    tokens [B, L] -> embedding (16) -> stem: conv k=15 "same", GELU(tanh)
    down tower, per level i = 1..d (L -> L / 2**d):
        block input kept as the skip s_i
        y = GELU(conv_k5(LN_c(x)));  y = y + GELU(conv_k1(LN_c(y)));  x = avgpool2(y)
    transformer (L / 2**d positions): pre-LN, rotary (rotate-half, base 10000) on q and k,
        q/k/v/out with bias, gated FFN silu(W1a x) * (W1b x) -> W2 without bias; no final LN
    up tower, per level: y = GELU(conv_k5(up2(LN_c(x))));  y = y + GELU(convT_k1(LN_c(y)));  x = y + s
        up2 is "repeat+conv" (repeat each position twice) or "conv_transpose" (zero insertion at
        odd or even positions, then the k=5 conv: a stride-2 transposed conv, "same" layout)
    LM head: GELU, [hidden linear + GELU]*, linear to 11 logits per base.

Channel widths ``linspace(conv_init_embed_dim, embed_dim, d + 1)`` (truncated to int). ``LN_c`` is a
LayerNorm over channels (eps 1e-5 in the towers, ``layer_norm_eps`` in the transformer), computed
in fp32 whatever the autocast dtype.

Post-trained models condition every LayerNorm on a species embedding ``c`` (16 wide):
``LN(x) * (1 + scale(c)) + shift(c)``, and gate the conv residuals and the FFN residual
``x + (1 + g(c)) * f(x)`` (the attention residual is not gated). Heads on the centre crop of the
final embedding (``keep_target_center_fraction``; crop ``int(L * f)`` from ``(L - crop) // 2``):
bigWig tracks per species (LN, linear, softplus; head = species id - 6, padded with zeros to the
widest species) and BED elements (LN, linear to [elements, 2]); species logits from the mean of
the transformer output. Where InstaDeep's JAX and PyTorch code differ we follow PyTorch (the
released weights are its files): no GELU before the species head, eps 1e-5 in the heads,
``int()`` for the crop.

Batches of different lengths: every row must be a multiple of ``2 ** d`` bases (the tokenizer pads
with N), and rows are delimited by ``<pad>``. Each row is computed exactly as alone: activations
beyond its end are zeroed before every convolution (as a "same" convolution's zero padding sees
them) and masked as attention keys. State-dict names are the HF layout's without ``core.``.

Inference (no autograd) runs each tower level longer than ``NTv3Model.tile_elements`` tile by
tile, every convolution reading its tile's window with a halo (``_tiles``): the same numbers, with
the U-Net's skips plus one tile live instead of ~4 activations of the longest level.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ntkit.core.fields import check_fields
from ntkit.models.checkpoint import CheckpointError, check_tensors
from ntkit.models.nt.model import Layers, Rotary, seeded
from ntkit.models.ntv3.tokenizer import BaseTokenizer
from ntkit.runtime.jobs import atomic_output, write_text_atomic

PRETRAINED, POSTTRAINED = "ntv3", "ntv3_posttrained"


@dataclass
class NTv3Config:
    """The fields of NTv3's ``config.json`` that define the model (other keys are kept in ``extra``)."""

    name: str = "ntv3"
    alphabet_size: int = 11
    pad_token_id: int = 1
    mask_token_id: int = 2
    num_downsamples: int = 7
    attention_heads: int = 8
    key_size: int = 32
    token_embed_dim: int = 16
    conv_init_embed_dim: int = 256
    embed_dim: int = 256
    ffn_embed_dim: int = 1024
    num_layers: int = 2
    layer_norm_eps: float = 1e-5
    num_hidden_layers_head: int = 0
    use_skip_connection: bool = True
    deconv_upsample_type: str = "repeat+conv"  # or "conv_transpose"
    deconv_phase: str = "odd"
    max_tokens: int = 1_048_576  # the longest input (bases, N padding included) the jobs give the model
    # post-trained models
    conditions_vocab_size: list[int] = field(default_factory=list)
    conditions_names: list[str] = field(default_factory=list)
    bigwigs_per_species: dict[str, list[str]] = field(default_factory=dict)
    bed_elements_names: list[str] = field(default_factory=list)
    species_to_token_id: dict[str, int] = field(default_factory=dict)
    keep_target_center_fraction: float = 1.0
    num_species_special_tokens: int = 6
    extra: dict[str, Any] = field(default_factory=dict)

    family = "ntv3"
    tokenizer = "base"
    default_window = 8192  # bases per zero-shot scoring window unless asked (the *_8kb checkpoints' length)
    cls_token_id = 3  # never in an NTv3 input (no <cls>): pooling that excludes it keeps every base

    @property
    def vocab_size(self) -> int:
        return self.alphabet_size

    @property
    def max_nucleotides(self) -> int:
        return self.max_tokens

    @property
    def model_type(self) -> str:
        return POSTTRAINED if self.conditions_vocab_size else PRETRAINED

    @property
    def filter_list(self) -> list[int]:
        return [int(v) for v in np.linspace(self.conv_init_embed_dim, self.embed_dim, self.num_downsamples + 1).astype(int)]

    @property
    def multiple(self) -> int:
        """The length rule: inputs are multiples of this many bases."""
        return 2 ** self.num_downsamples

    @property
    def hidden_size(self) -> int:
        """Width of the per-base embedding (the up tower's output)."""
        return self.filter_list[0]

    @property
    def num_levels(self) -> int:
        """The representations after the stem, in forward order (the reference's ``hidden_states``):
        ``num_downsamples`` down levels, ``num_layers`` transformer layers, ``num_downsamples`` up
        levels, the last of which is the output. Layer ``k`` of ``repr_layers`` is the ``k``-th of
        them (0: the stem's output; ``num_levels`` or -1: the output; ``NTv3Model.resolve_layer``)."""
        return 2 * self.num_downsamples + self.num_layers

    def level_shift(self, layer: int) -> int:
        """``s`` such that layer ``layer`` (0..``num_levels``) has one position per ``2**s`` bases:
        the stem and the first down level 0, down level i (1-based) i - 1 (it is taken before its
        pooling), the transformer ``num_downsamples``, up level j (1-based) ``num_downsamples - j``."""
        d, n = self.num_downsamples, self.num_layers
        if layer <= d:
            return max(layer - 1, 0)
        if layer <= d + n:
            return d
        return self.num_levels - layer

    def level_width(self, layer: int) -> int:
        """Channels of layer ``layer`` (0..``num_levels``): the stem ``filter_list[0]``, down level i
        ``filter_list[i]``, the transformer ``embed_dim``, up level j ``filter_list[d - j]``."""
        d, n, fl = self.num_downsamples, self.num_layers, self.filter_list
        if layer <= d:
            return fl[layer]
        if layer <= d + n:
            return self.embed_dim
        return fl[self.num_levels - layer]

    @property
    def species(self) -> list[str]:
        """Species with a track head, in head order (by species token id)."""
        return sorted(self.bigwigs_per_species, key=lambda s: self.species_to_token_id[s])

    def species_id(self, species: str | int) -> int:
        if isinstance(species, (int, np.integer)):
            return int(species)
        if species not in self.species_to_token_id or species.startswith("<"):
            known = sorted(s for s in self.species_to_token_id if not s.startswith("<"))
            raise ValueError(f"unknown species {species!r}; this model knows {known}")
        return int(self.species_to_token_id[species])

    # Fields that fix the weights' shapes: a config.json without one is refused (a default would
    # read as "N tensors missing", far from the cause). InstaDeep's files carry them all.
    REQUIRED = ("num_downsamples", "attention_heads", "key_size", "token_embed_dim", "conv_init_embed_dim", "embed_dim",
                "ffn_embed_dim", "num_layers")

    def validate(self) -> None:
        """Field by field: types (``check_fields``), then ranges, then the combinations the
        architecture allows. Errors name the field and what it must be."""
        check_fields(self)
        for k in ("alphabet_size", "num_downsamples", "attention_heads", "key_size", "token_embed_dim", "conv_init_embed_dim",
                  "embed_dim", "ffn_embed_dim", "max_tokens"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k}: {getattr(self, k)} must be at least 1")
        for k in ("num_layers", "num_hidden_layers_head", "num_species_special_tokens"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k}: {getattr(self, k)} must be at least 0")
        if self.num_downsamples > 20:
            raise ValueError(f"num_downsamples: {self.num_downsamples} is beyond any NTv3 (7 in the released models; inputs are "
                             "multiples of 2**num_downsamples)")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps: {self.layer_norm_eps} must be positive")
        if not 0 < self.keep_target_center_fraction <= 1:
            raise ValueError(f"keep_target_center_fraction: {self.keep_target_center_fraction} must be in (0, 1]")
        if self.deconv_upsample_type not in ("repeat+conv", "conv_transpose"):
            raise ValueError(f"deconv_upsample_type must be 'repeat+conv' or 'conv_transpose', not {self.deconv_upsample_type!r}")
        if self.deconv_phase not in ("odd", "even"):
            raise ValueError(f"deconv_phase must be 'odd' or 'even', not {self.deconv_phase!r}")
        if self.num_hidden_layers_head and self.conv_init_embed_dim != self.embed_dim:
            raise ValueError("LM-head hidden layers need conv_init_embed_dim == embed_dim")
        if self.model_type == POSTTRAINED and (self.bigwigs_per_species or self.bed_elements_names) \
                and self.conv_init_embed_dim != self.embed_dim:
            raise ValueError("post-trained heads need conv_init_embed_dim == embed_dim (as the released models)")

    def to_dict(self) -> dict:
        return {"family": self.family, **dataclasses.asdict(self)}

    # -- HF config.json -----------------------------------------------------------------------

    def to_hf(self) -> dict:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("name", "extra", "max_tokens")}
        if self.model_type == PRETRAINED:
            for k in ("conditions_vocab_size", "conditions_names", "bigwigs_per_species", "bed_elements_names",
                      "species_to_token_id", "keep_target_center_fraction", "num_species_special_tokens"):
                own.pop(k)
        arch = "NTv3PostTrained" if self.model_type == POSTTRAINED else "NTv3PreTrained"
        return {**self.extra, **own, "model_type": self.model_type, "architectures": [arch], "ntkit_max_tokens": self.max_tokens,
                "ntkit_name": self.name}

    @classmethod
    def from_hf(cls, d: dict, name: str = "ntv3") -> "NTv3Config":
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "extra"}
        missing = [k for k in cls.REQUIRED if k not in d]
        if missing:
            raise ValueError(f"{', '.join(missing)} missing (an NTv3 config.json names {', '.join(cls.REQUIRED)}): an edited or "
                             "foreign file")
        kw = {k: d[k] for k in known if k in d}
        if "ntkit_max_tokens" in d:
            kw["max_tokens"] = d["ntkit_max_tokens"]  # checked as max_tokens by validate
        name = d.get("ntkit_name", name)
        drop = known | {"model_type", "architectures", "auto_map", "ntkit_max_tokens", "ntkit_name", "transformers_version", "torch_dtype"}
        extra = {k: v for k, v in d.items() if k not in drop}
        cfg = cls(name=name, extra=extra, **kw)
        if d.get("model_type") == POSTTRAINED and not cfg.conditions_vocab_size:
            raise ValueError("a post-trained NTv3 config needs conditions_vocab_size")
        cfg.validate()
        return cfg


# Architectures of InstaDeep's checkpoints (hub names in ntkit.models.checkpoint) and small CPU presets.
PRESETS: dict[str, NTv3Config] = {
    "ntv3-tiny": NTv3Config(name="ntv3-tiny", num_downsamples=3, attention_heads=4, key_size=16, conv_init_embed_dim=32,
                            embed_dim=64, ffn_embed_dim=128, num_layers=2, max_tokens=8192),
    # CPU pretraining sizes (the ntv3-small-cpu recipe and its ablation in BENCHMARKS.md): 0.69M and 4.5M parameters
    "ntv3-mini": NTv3Config(name="ntv3-mini", num_downsamples=3, attention_heads=4, key_size=32, conv_init_embed_dim=64,
                            embed_dim=128, ffn_embed_dim=256, num_layers=2, max_tokens=8192),
    "ntv3-small": NTv3Config(name="ntv3-small", num_downsamples=4, attention_heads=8, key_size=32, conv_init_embed_dim=128,
                             embed_dim=256, ffn_embed_dim=512, num_layers=4, max_tokens=8192),
    "ntv3-tiny-post": NTv3Config(name="ntv3-tiny-post", num_downsamples=3, attention_heads=4, key_size=16,
                                 conv_init_embed_dim=64, embed_dim=64, ffn_embed_dim=128, num_layers=2, max_tokens=8192,
                                 conditions_vocab_size=[8], species_to_token_id={"human": 6, "mouse": 7},
                                 bigwigs_per_species={"human": ["h_dnase", "h_cage", "h_atac"], "mouse": ["m_dnase"]},
                                 bed_elements_names=["exon", "promoter"], keep_target_center_fraction=0.375),
    "ntv3-8m-pre": NTv3Config(name="ntv3-8m-pre"),  # InstaDeepAI/NTv3_8M_pre's config.json
}

# Trained weights of the presets' architectures, by Hugging Face hub name (InstaDeep's releases).
TRAINED_WEIGHTS: dict[str, tuple[str, ...]] = {"ntv3-8m-pre": ("InstaDeepAI/NTv3_8M_pre",)}


# -- layers -----------------------------------------------------------------------------------------


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _gelu_(x: torch.Tensor) -> torch.Tensor:
    """``_gelu`` of a fresh activation, in place without autograd (no second activation-sized buffer)."""
    return torch.ops.aten.gelu_(x, approximate="tanh") if _no_grad() else _gelu(x)


def _no_grad() -> bool:
    """Inference (no autograd): fresh activations may be updated in place."""
    return not torch.is_grad_enabled()


def _mask_beyond(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Zero channels-last ``x`` [B, L, C] where ``keep`` [B, L] is False (a row's end); in place
    without autograd (``x`` is always a fresh activation)."""
    if keep is None:
        return x
    k = keep[:, :, None].to(x.dtype)
    return x.mul_(k) if _no_grad() else x * k


class Norm(nn.LayerNorm):
    """LayerNorm over the last dim in fp32; with conditions, ``LN(x) * (1 + scale) + shift`` where
    ``[shift, scale]`` is a linear map of each condition embedding (``modulation_layers``)."""

    def __init__(self, dim: int, eps: float = 1e-5, conditions_dims: list[int] = ()):
        super().__init__(dim, eps=eps)
        self.modulation_layers = nn.ModuleList([nn.Linear(c, 2 * dim) for c in conditions_dims]) if conditions_dims else None

    def _modulations(self, conditions, dtype):
        for mod, c in zip(self.modulation_layers, conditions):
            yield mod(c.to(mod.weight.dtype)).to(dtype).chunk(2, dim=-1)  # (shift, scale), each [B, dim]

    def forward(self, x: torch.Tensor, conditions: list[torch.Tensor] | None = None) -> torch.Tensor:
        # bf16/fp16 input: PyTorch's mixed-type kernel (fp32 weights) normalises in fp32 and rounds
        # once, as LN(x.float()).to(dtype) does, without an fp32 copy of the input and output.
        y = F.layer_norm(x, self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        if self.modulation_layers is None:
            return y
        for shift, scale in self._modulations(conditions, y.dtype):
            scale, shift = 1 + scale.unsqueeze(1), shift.unsqueeze(1)  # [B, 1, dim]
            y = y.mul_(scale).add_(shift) if _no_grad() else y * scale + shift
        return y


# -- convolutions on channels-last activations ------------------------------------------------------
# The towers keep activations as [B, L, C] (contiguous channels). A conv1d then runs as oneDNN's
# NHWC conv2d with H = 1 (the [B, C, 1, L] view of [B, L, C] is channels-last without a copy),
# LayerNorm over channels is the fused last-dim kernel, pooling runs on the same NHWC view, and the
# polyphase up-sampling's interleave is free (``upsample_conv_last``). On CPU a convolution runs
# 1.6-2x faster than as a channels-first conv1d, which oneDNN reorders in and out of its
# blocked layout (BENCHMARKS.md, NTv3 forward).


def conv_last(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
              gelu: bool = False) -> torch.Tensor:
    """``conv1d`` of channels-last ``x`` [B, L, C_in] with ``weight`` [C_out, C_in, k] (zero
    ``padding`` each side) -> [B, L', C_out], contiguous; ``gelu``: then ``_gelu``, on CPU without
    autograd as oneDNN's post-op of the convolution (one pass over the output, not two)."""
    w = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # oneDNN picks NHWC only if the weight is
    xv = x.transpose(1, 2).unsqueeze(2)
    if gelu and x.device.type == "cpu" and _no_grad():
        if torch.is_autocast_enabled("cpu"):  # the op has no autocast rule: cast as conv2d's would
            dt = torch.get_autocast_dtype("cpu")
            xv, w, bias = xv.to(dt), w.to(dt), None if bias is None else bias.to(dt)
        if _fused_gelu_conv(xv.dtype):
            y = torch.ops.mkldnn._convolution_pointwise(xv.contiguous(memory_format=torch.channels_last), w, bias,
                                                        [0, padding], [1, 1], [1, 1], 1, "gelu", [], "tanh")
            return y.squeeze(2).transpose(1, 2)
    y = F.conv2d(xv, w, bias, padding=(0, padding)).squeeze(2).transpose(1, 2)
    return _gelu_(y) if gelu else y


@functools.lru_cache(maxsize=None)
def _fused_gelu_conv(dtype: torch.dtype) -> bool:
    """Whether this build has oneDNN's convolution with a GELU(tanh) post-op (the CPU op that
    torch.compile fuses conv + GELU into) for ``dtype``, and it equals the two ops on a probe."""
    g = torch.Generator().manual_seed(0)  # the probe leaves the global RNG alone
    x = torch.randn(1, 8, 1, 16, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 8, 1, 3, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn(8, generator=g).to(dtype)
    try:
        with torch.no_grad():
            got = torch.ops.mkldnn._convolution_pointwise(x, w, b, [0, 1], [1, 1], [1, 1], 1, "gelu", [], "tanh")
            want = F.gelu(F.conv2d(x, w, b, padding=(0, 1)), approximate="tanh")
        tol = 1e-5 if dtype == torch.float32 else 5e-2
        return got.shape == want.shape and bool((got.float() - want.float()).abs().max() <= tol)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


@functools.lru_cache(maxsize=None)
def _phase_taps(kernel: int, mode: str) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """For a "same" conv of odd ``kernel`` on a 2x up-sampled signal, the taps j of each output
    phase r (position 2t + r) that read input position t + q - D, q = 0..2D: ``taps[r][q]``.
    Up-sampling ``mode``: "repeat" (u[m] = x[m // 2]), "odd" or "even" (zero insertion: u[2s + 1]
    = x[s], resp. u[2s] = x[s], zeros elsewhere)."""
    p = kernel // 2
    src = {}
    for r in (0, 1):
        for j in range(kernel):
            m = r + j - p  # position read in u, relative to 2t
            if mode == "repeat":
                src[r, j] = m // 2
            elif (m - (mode == "odd")) % 2 == 0:
                src[r, j] = (m - (mode == "odd")) // 2
    D = max(abs(d) for d in src.values())
    return tuple(tuple(tuple(j for j in range(kernel) if src.get((r, j)) == q - D) for q in range(2 * D + 1))
                 for r in (0, 1))


def upsample_conv_last(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, mode: str,
                       gelu: bool = False) -> torch.Tensor:
    """``conv1d(up2(x))`` ("same", odd kernel) of channels-last ``x`` [B, L, C_in] -> [B, 2L, C_out]
    without forming ``up2(x)``: polyphase. Each output phase is a conv of ``x`` itself whose taps
    are sums of the kernel's (repeat: 3 of 5 for k = 5; zero insertion: the non-zero half); both
    phases run as one conv with 2 * C_out outputs, and [B, L, 2 * C_out] *is* [B, 2L, C_out] with
    the phases interleaved (a view). Exact up to the rounding of the summed taps."""
    B, L, _ = x.shape
    taps = _phase_taps(weight.shape[-1], mode)
    zero = weight.new_zeros(weight.shape[:2])
    kern = torch.stack([torch.stack([sum((weight[..., j] for j in js), zero) for js in phase], -1) for phase in taps])
    y = conv_last(x, kern.flatten(0, 1), None if bias is None else bias.repeat(2), len(taps[0]) // 2, gelu)
    return y.reshape(B, 2 * L, weight.shape[0])


def _conv_gelu(conv: nn.Module, x: torch.Tensor, repeat: bool = False) -> torch.Tensor:
    """``_gelu`` of a tower convolution (``repeat``: of ``x`` with every position repeated) on
    channels-last ``x``: the module's channels-last path, or, for a conv an adapter wraps (peft),
    its own channels-first forward."""
    if hasattr(type(conv), "forward_last"):
        return conv.forward_last(x, "repeat", gelu=True) if repeat else conv.forward_last(x, gelu=True)
    x = x.repeat_interleave(2, dim=1) if repeat else x
    return _gelu_(conv(x.transpose(1, 2)).transpose(1, 2))


class Conv(nn.Conv1d):
    """``nn.Conv1d`` ("same" padding) with the channels-last path ``forward_last``; ``forward`` is
    the plain channels-first conv (what peft wraps)."""

    def forward_last(self, x: torch.Tensor, up: str | None = None, gelu: bool = False) -> torch.Tensor:
        if up is None:
            return conv_last(x, self.weight, self.bias, self.kernel_size[0] // 2, gelu)
        return upsample_conv_last(x, self.weight, self.bias, "repeat", gelu)


def _gate(layers: nn.ModuleList, conditions: list[torch.Tensor], dtype) -> torch.Tensor:
    """The post-trained residual gate ``prod_c (1 + g_c(c))`` [B, dim]."""
    gate = 1.0
    for mod, c in zip(layers, conditions):
        gate = gate * (1 + mod(c.to(mod.weight.dtype)).to(dtype))
    return gate


class ConvUnit(nn.Module):
    """``GELU(conv(up(LN_c(x))))`` on channels-last input [B, L, C]. ``up``: None, "repeat+conv" or
    "conv_transpose"; ``transposed_k1``: the up tower's pointwise ``ConvTranspose1d`` (HF layout)."""

    def __init__(self, dim_in: int, dim_out: int, kernel: int, conditions_dims: list[int], up: str | None = None,
                 phase: str = "odd", transposed_k1: bool = False):
        super().__init__()
        self.layer_norm = Norm(dim_in, 1e-5, conditions_dims)
        self.up, self.phase, self.kernel = up, phase, kernel
        if up == "conv_transpose":
            self.conv = ZeroInsertConv(dim_in, dim_out, kernel, phase)
        elif transposed_k1:
            self.conv = PointwiseTransposed(dim_in, dim_out)
        else:
            self.conv = Conv(dim_in, dim_out, kernel_size=kernel, padding="same")

    def forward(self, x, conditions=None, keep=None):
        return self.convolve(self.normalize(x, conditions, keep))

    def normalize(self, x, conditions=None, keep=None):
        """``LN_c(x)``, zero beyond each row's end (what the conv's own zero padding would see)."""
        return _mask_beyond(self.layer_norm(x, conditions), keep)

    def convolve(self, h):
        return _conv_gelu(self.conv, h, repeat=self.up == "repeat+conv")


class PointwiseTransposed(nn.ConvTranspose1d):
    """The up tower's kernel-1 ``ConvTranspose1d`` (its HF weight layout [in, out, 1]), run as the
    equal convolution with the weight transposed (PyTorch's CPU transposed convolution takes a
    slower path)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__(dim_in, dim_out, kernel_size=1)

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return F.conv1d(x, self.weight.transpose(0, 1), self.bias)

    def forward_last(self, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        return conv_last(x, self.weight.transpose(0, 1), self.bias, 0, gelu)


class ZeroInsertConv(nn.Module):
    """Stride-2 transposed convolution in JAX's "SAME" layout: the input is spread over every other
    position (``odd``: positions 1, 3, ...; ``even``: 0, 2, ...), zeros between, then a "same"
    convolution. ``weight`` is [in, out, k] as a ConvTranspose1d's. ``forward`` (channels first)
    spells that out; ``forward_last`` computes it polyphase, without the zeros."""

    def __init__(self, dim_in: int, dim_out: int, kernel: int, phase: str):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError("the transposed up-sampling needs an odd kernel")
        self.phase = phase
        self.weight = nn.Parameter(torch.empty(dim_in, dim_out, kernel))
        self.bias = nn.Parameter(torch.zeros(dim_out))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        B, C, L = x.shape
        spread = x.new_zeros(B, C, 2 * L)
        spread[:, :, (1 if self.phase == "odd" else 0)::2] = x
        return F.conv1d(spread, self.weight.transpose(0, 1), self.bias, padding=self.weight.shape[-1] // 2)

    def forward_last(self, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        return upsample_conv_last(x, self.weight.transpose(0, 1), self.bias, self.phase, gelu)


class Residual(nn.Module):
    """``x + gate * unit(x)`` (HF names: ``conv_block``, ``modulation_layers``)."""

    def __init__(self, dim: int, conditions_dims: list[int], transposed_k1: bool):
        super().__init__()
        self.conv_block = ConvUnit(dim, dim, 1, conditions_dims, transposed_k1=transposed_k1)
        if conditions_dims:
            self.modulation_layers = nn.ModuleList([nn.Linear(c, dim) for c in conditions_dims])

    def forward(self, x, conditions=None, keep=None):
        y = self.branch(self.conv_block.normalize(x, conditions, keep), conditions)
        return y.add_(x) if _no_grad() else x + y

    def branch(self, h, conditions=None):
        """``gate * unit`` from the unit's normalised input ``h``."""
        y = self.conv_block.convolve(h)
        if conditions:
            y = _gate(self.modulation_layers, conditions, y.dtype).unsqueeze(1) * y  # [B, 1, C]
        return y


class DownBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, conditions_dims: list[int]):
        super().__init__()
        self.width = max(dim_in, dim_out)  # channels of its widest activation (tile sizes)
        self.conv = ConvUnit(dim_in, dim_out, 5, conditions_dims)
        self.res_conv = Residual(dim_out, conditions_dims, transposed_k1=False)

    def forward(self, x, conditions, keep):
        return self.res_conv(self.conv(x, conditions, keep), conditions, keep)  # pooled by the caller

    def forward_pooled_tiles(self, x, conditions, keep, rows: int):
        """Inference: ``avgpool2(forward(x))`` tile by tile (``rows`` positions, even), each tile's
        k = 5 conv reading its window with a halo of ``kernel // 2`` positions; the level's
        intermediates never exist whole (see ``_tiles``)."""
        L = x.shape[1]
        out = None
        for s, e, a, b in _tiles(L, rows, self.conv.kernel // 2):
            y = self.conv(x[:, a:b], conditions, _cols(keep, a, b))[:, s - a: e - a]
            out = _into(out, _pool2(self.res_conv(y, conditions, _cols(keep, s, e))), s // 2, L // 2)
        return out


class UpBlock(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, conditions_dims: list[int], up: str, phase: str):
        super().__init__()
        self.width = max(dim_in, dim_out)
        self.conv = ConvUnit(dim_in, dim_out, 5, conditions_dims, up=up, phase=phase)
        self.res_conv = Residual(dim_out, conditions_dims, transposed_k1=True)

    def forward(self, x, conditions, keep_in, keep_out, skip=None):
        """The block's output plus the U-Net's ``skip`` (when given)."""
        if _no_grad():
            return self.forward_tiles(x, conditions, keep_in, keep_out, skip, 2 * x.shape[1])  # one tile
        y = self.res_conv(self.conv(x, conditions, keep_in), conditions, keep_out)
        return y if skip is None else y + skip

    def forward_tiles(self, x, conditions, keep_in, keep_out, skip, rows: int):
        """Inference: ``forward`` tile by tile (``rows`` output positions, even; see ``_tiles``).
        The up-sampling conv of a tile reads its input window with a halo of ``kernel // 2``
        input positions (it needs ``ceil(kernel / 4)``). With a skip, ``y + skip`` is built in the
        skip's buffer and ``y`` released before the residual's convolution, whose output is added
        there too: besides ``x`` and ``skip`` only one tile's intermediates are live (a single
        tile: 3.5 activations of the level at the peak instead of 4.5)."""
        L = x.shape[1]
        out = skip
        for s, e, a, b in _tiles(L, rows // 2, self.conv.kernel // 2):
            y = self.conv(x[:, a:b], conditions, _cols(keep_in, a, b))[:, 2 * (s - a): 2 * (e - a)]
            if skip is None:
                out = _into(out, self.res_conv(y, conditions, _cols(keep_out, 2 * s, 2 * e)), 2 * s, 2 * L)
                continue
            h = self.res_conv.conv_block.normalize(y, conditions, _cols(keep_out, 2 * s, 2 * e))
            t = skip[:, 2 * s: 2 * e]
            t.add_(y)
            del y
            t.add_(self.res_conv.branch(h, conditions))
        return out


def _tiles(length: int, rows: int, halo: int):
    """Tiles ``[s, e)`` of ``rows`` positions covering ``[0, length)``, each with its window
    ``[a, b)``: ``halo`` more positions each side, clipped to the sequence. A "same" convolution
    of the window is exact on the tile (at the sequence's ends the clip is the zero padding; the
    window's other edge rows are wrong and dropped), so a level can run tile by tile: same
    numbers, one tile's intermediates live instead of the whole level's, and each tile's
    element-wise work (LayerNorm, GELU, residual sums) stays in cache."""
    for s in range(0, length, rows):
        e = min(s + rows, length)
        yield s, e, max(s - halo, 0), min(e + halo, length)


def _cols(keep: torch.Tensor | None, a: int, b: int) -> torch.Tensor | None:
    return None if keep is None else keep[:, a:b]


def _into(out: torch.Tensor | None, tile: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Write ``tile`` [B, n, C] at position ``start`` of ``out`` [B, length, C], made (like the
    tile) on the first call."""
    if out is None:
        out = tile.new_empty(tile.shape[0], length, tile.shape[-1])
    out[:, start: start + tile.shape[1]] = tile
    return out


def _pool2(x: torch.Tensor) -> torch.Tensor:
    """Average of position pairs of channels-last [B, L, C] -> [B, L / 2, C] (``avg_pool1d(2)``)."""
    return F.avg_pool2d(x.transpose(1, 2).unsqueeze(2), (1, 2)).squeeze(2).transpose(1, 2)


class _HeadProjection(nn.Module):
    """q, k or v projection (HF name ``linear``) reshaped to [B, L, heads, key_size]."""

    def __init__(self, heads: int, key_size: int):
        super().__init__()
        self.heads, self.key_size = heads, key_size
        self.linear = nn.Linear(heads * key_size, heads * key_size)

    def forward(self, x):
        return self.linear(x).unflatten(-1, (self.heads, self.key_size))


class Attention(nn.Module):
    def __init__(self, heads: int, key_size: int, model_dim: int):
        super().__init__()
        self.heads, self.key_size = heads, key_size
        self.query_head = _HeadProjection(heads, key_size)
        self.key_head = _HeadProjection(heads, key_size)
        self.value_head = _HeadProjection(heads, key_size)
        self.mha_output = nn.Linear(heads * key_size, model_dim)

    def forward(self, x, rope, key_mask, need_weights: bool = False):
        q, k, v = self.query_head(x), self.key_head(x), self.value_head(x)  # [B, L, H, d]
        cos, sin = rope
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, L, d]
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if need_weights:
            logits = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(self.key_size)
            if mask is not None:
                logits = logits.masked_fill(~mask, float("-inf"))
            w = logits.softmax(-1)
            o = (w @ v.float()).to(v.dtype)
        else:
            w = None
            # SDPA on fp32 inputs when the model runs in bf16 would change the numerics; keep q's dtype.
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.mha_output(o.transpose(1, 2).flatten(2)), w


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary on half-split pairs (dims i and i + d/2), positions along dim 1 of [B, L, H, d]."""
    a, b = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: NTv3Config, conditions_dims: list[int]):
        super().__init__()
        d = cfg.embed_dim
        self.self_attention_layer_norm = Norm(d, cfg.layer_norm_eps, conditions_dims)
        self.final_layer_norm = Norm(d, cfg.layer_norm_eps, conditions_dims)
        self.sa_layer = Attention(cfg.attention_heads, cfg.key_size, d)
        self.fc1 = nn.Linear(d, 2 * cfg.ffn_embed_dim, bias=False)
        self.fc2 = nn.Linear(cfg.ffn_embed_dim, d, bias=False)
        if conditions_dims:
            self.modulation_layers = nn.ModuleList([nn.Linear(c, d) for c in conditions_dims])

    def forward(self, x, conditions, rope, key_mask, need_weights=False):
        a, w = self.sa_layer(self.self_attention_layer_norm(x, conditions), rope, key_mask, need_weights)
        x = x + a
        h = self.fc1(self.final_layer_norm(x, conditions))
        g, u = h.chunk(2, dim=-1)
        y = self.fc2(F.silu(g) * u)
        if conditions:
            y = _gate(self.modulation_layers, conditions, x.dtype).unsqueeze(1) * y  # [B, 1, D]
        return x + y, w


class TrackHead(nn.Module):
    """LN then linear (HF names ``layer_norm``, ``head``)."""

    def __init__(self, dim: int, outputs: int):
        super().__init__()
        self.layer_norm = Norm(dim, 1e-5)
        self.head = nn.Linear(dim, outputs)

    def forward(self, x):
        return self.head(self.layer_norm(x.float()).to(self.head.weight.dtype))


class MultiSpeciesHead(nn.Module):
    """One bigWig head per species (head i = species id - 6); a species without tracks has none."""

    def __init__(self, tracks_per_head: list[int], dim: int):
        super().__init__()
        self.widths = list(tracks_per_head)
        self.species_heads = nn.ModuleList([TrackHead(dim, n) if n > 0 else nn.Identity() for n in tracks_per_head])

    def forward(self, x: torch.Tensor, head_idx: torch.Tensor) -> torch.Tensor:
        """softplus track values [B, L, max tracks], zero-padded beyond a species' own tracks; each
        head runs only on the rows of its species."""
        out = x.new_zeros((*x.shape[:-1], max(self.widths)), dtype=torch.float32)
        for i in torch.unique(head_idx).tolist():
            if self.widths[i] == 0:
                continue
            rows = head_idx == i
            out[rows, :, : self.widths[i]] = F.softplus(self.species_heads[i](x[rows]))
        return out.to(x.dtype)


@dataclass
class NTv3Output:
    logits: torch.Tensor | None  # [B, L, 11]
    embedding: torch.Tensor | None = None  # [B, L, C]: per-base embedding (the up tower's output)
    transformer_embedding: torch.Tensor | None = None  # [B, L / 2**d, embed_dim]
    hidden_states: dict[int, torch.Tensor] = field(default_factory=dict)  # repr_layers, per base [B, L, C_k]; [-1] the output
    all_hidden_states: list[torch.Tensor] = field(default_factory=list)  # down levels (pre-pool), layers, up levels; [B, L_i, C_i]
    stem_embedding: torch.Tensor | None = None  # [B, L, C_0]: the stem's output (with output_hidden_states)
    attentions: dict[int, torch.Tensor] = field(default_factory=dict)  # layer (1-based) -> [B, H, L', L']
    bigwig_tracks_logits: torch.Tensor | None = None  # [B, crop, max tracks] (post-trained)
    bed_tracks_logits: torch.Tensor | None = None  # [B, crop, elements, 2] (post-trained)
    species_logits: torch.Tensor | None = None  # [B, conditions_vocab_size[0]] (post-trained)


class NTv3Model(nn.Module):
    """NTv3 pre-trained (``config.conditions_vocab_size`` empty) or post-trained."""

    # Inference (no autograd) runs each tower level longer than a tile of this many activation
    # elements (rows x channels) tile by tile (``_tiles``): equal outputs, peak memory the U-Net's
    # skips plus a tile instead of ~4 activations of the longest level; 0 turns tiling off.
    tile_elements = 1 << 20

    def __init__(self, config: NTv3Config):
        super().__init__()
        config.validate()
        self.config = cfg = config
        cond = [cfg.token_embed_dim for _ in cfg.conditions_vocab_size]
        fl = cfg.filter_list
        self.embed_layer = nn.Embedding(cfg.alphabet_size, cfg.token_embed_dim)
        self.stem = nn.Module()
        self.stem.conv = Conv(cfg.token_embed_dim, fl[0], kernel_size=15, padding="same")
        self.conv_tower_blocks = nn.ModuleList([DownBlock(a, b, cond) for a, b in zip(fl[:-1], fl[1:])])
        self.transformer_blocks = nn.ModuleList([TransformerBlock(cfg, cond) for _ in range(cfg.num_layers)])
        rev = fl[::-1]
        self.deconv_tower_blocks = nn.ModuleList(
            [UpBlock(a, b, cond, cfg.deconv_upsample_type, cfg.deconv_phase) for a, b in zip(rev[:-1], rev[1:])])
        self.lm_head = nn.ModuleDict({
            "hidden_layers": nn.ModuleList([nn.Linear(cfg.embed_dim, cfg.embed_dim) for _ in range(cfg.num_hidden_layers_head)]),
            "head": nn.Linear(fl[0], cfg.alphabet_size),
        })
        self.rotary = Rotary(cfg.key_size, 10000.0)  # frequencies only (fp32 under model.to(bfloat16)); applied by _rotate
        if cond:
            self.cond_tables = nn.ModuleList([nn.Embedding(v, cfg.token_embed_dim) for v in cfg.conditions_vocab_size])
            self.conditions_heads = nn.ModuleList([nn.Linear(cfg.embed_dim, v) for v in cfg.conditions_vocab_size])
            self.bigwig_head = (MultiSpeciesHead([len(cfg.bigwigs_per_species[s]) for s in cfg.species], cfg.embed_dim)
                                if cfg.bigwigs_per_species else None)
            self.bed_head = TrackHead(cfg.embed_dim, 2 * len(cfg.bed_elements_names)) if cfg.bed_elements_names else None
        self.name_or_path = cfg.name
        self.gradient_checkpointing = False

    @classmethod
    def from_state_dict(cls, config: NTv3Config, state_dict: dict[str, torch.Tensor]) -> "NTv3Model":
        """A model holding ``state_dict``'s tensors (no random initialisation, no copy)."""
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(state_dict, assign=True)
        model.rotary.inv_freq = Rotary.frequencies(config.key_size, 10000.0)  # not in the state dict
        return model

    @property
    def tokenizer(self):
        key = (self.config.multiple, self.config.max_tokens)
        cached = self.__dict__.get("_tokenizer")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_tokenizer"] = (key, BaseTokenizer(self.config.multiple, self.config.max_tokens))
        return cached[1]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _rope(self, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.arange(length, device=device, dtype=torch.float32)
        f = torch.outer(t, self.rotary.inv_freq.to(device=device, dtype=torch.float32))
        return f.cos()[None, :, None, :], f.sin()[None, :, None, :]

    def species_ids(self, species, batch: int, device) -> torch.Tensor:
        cfg = self.config
        if species is None:
            raise ValueError(f"a post-trained NTv3 needs species= (one of {cfg.species})")
        if isinstance(species, torch.Tensor):
            ids = species.to(device=device, dtype=torch.long).reshape(-1)
        elif isinstance(species, (str, int, np.integer)):
            ids = torch.full((batch,), cfg.species_id(species), dtype=torch.long, device=device)
        else:
            ids = torch.tensor([cfg.species_id(s) for s in species], dtype=torch.long, device=device)
        if ids.numel() == 1:
            ids = ids.expand(batch)
        lo, hi = cfg.num_species_special_tokens, cfg.num_species_special_tokens + max(len(cfg.bigwigs_per_species), 1)
        if ids.numel() != batch or bool(((ids < lo) | (ids >= hi)).any()):
            raise ValueError(f"species ids must be {lo}..{hi - 1}, one per row (or one for all): got {ids.tolist()}")
        return ids

    def crop(self, length: int) -> tuple[int, int]:
        """(start, stop) of the heads' centre crop in a window of ``length`` bases."""
        f = self.config.keep_target_center_fraction
        if f >= 1.0:
            return 0, length
        n = int(length * f)
        s = (length - n) // 2
        return s, s + n

    def backbone(self, species: str | None = None) -> "NTv3Model | Conditioned":
        """The encoder embedding jobs read (see ``NTModel.backbone``): a pre-trained NTv3 itself; a
        post-trained one with its conditioning fixed to ``species`` (required: its embeddings are a
        species' embeddings)."""
        if not self.config.conditions_vocab_size:
            if species is not None:
                raise ValueError(f"--species {species}: {self.config.name} is a pre-trained NTv3, not conditioned on a species")
            return self
        if species is None:
            raise ValueError(f"{self.config.name} is a post-trained NTv3, conditioned on a species: give --species "
                             f"(Python: species=), one of {self.config.species}")
        return Conditioned(self, species)

    def resolve_layer(self, layer: int) -> int:
        """The ``hidden_states`` key of ``layer``: 0 the stem's output, 1..``num_levels`` the U-Net's
        levels in forward order (down levels, transformer layers, up levels; the last is the output),
        negative counting from the end (-1: the output). See ``NTv3Config.num_levels``."""
        cfg = self.config
        n, d, t = cfg.num_levels, cfg.num_downsamples, cfg.num_layers
        k = layer + n + 1 if layer < 0 else layer
        if not 0 <= k <= n:
            raise ValueError(f"layer {layer} out of range for {cfg.name}: 0 (the stem), 1..{d} (down levels), {d + 1}..{d + t} "
                             f"(transformer layers), {d + t + 1}..{n} (up levels; {n} = -1, the output), or negative")
        return k

    def layer_width(self, layer: int) -> int:
        """Values per base of ``hidden_states[resolve_layer(layer)]`` (``NTv3Config.level_width``)."""
        return self.config.level_width(self.resolve_layer(layer))

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, *, species=None,
                repr_layers=(), return_logits: bool = True, logits_at: torch.Tensor | None = None,
                output_hidden_states: bool = False, need_attentions: bool = False, heads: bool = True) -> NTv3Output:
        """``tokens`` [B, L], one base each, rows delimited by ``<pad>``. The length rule is handled
        here: a row whose length is not a multiple of ``2**num_downsamples`` is padded with N for
        the forward and its outputs are trimmed back to L (positions past a row's own end carry
        no meaning). ``attention_mask`` is accepted for the common signature and not needed.
        ``species`` (post-trained): a name, an id, or one per row. ``repr_layers`` (-1): the
        per-base embedding in ``hidden_states[-1]``; ``logits_at`` (bool [B, L]): logits only there,
        as [n, 11]. ``heads``: compute the bigWig/BED heads (post-trained; on each row's padded
        length, whose centre crop they cover). ``repr_layers`` other than the output (``resolve_layer``)
        come back per base, [B, L, C_k]: a level with one position per 2**s bases repeats it over
        those bases; such a forward keeps every level (``output_hidden_states``, no tiling)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, length], got shape {tuple(tokens.shape)}")
        B, L = tokens.shape
        padded, ext = self._length_rule(tokens)
        n = self.config.num_levels
        want = {self.resolve_layer(layer) for layer in repr_layers}
        inner = sorted(want - {n})
        out = self._forward(padded, ext, species=species, output_hidden_states=output_hidden_states or bool(inner),
                            need_attentions=need_attentions, return_logits=return_logits or logits_at is not None, heads=heads)
        if padded.shape[1] != L:
            out.embedding = out.embedding[:, :L]
            out.logits = out.logits[:, :L] if out.logits is not None else None
        out.hidden_states = Layers(n)
        levels = [out.stem_embedding, *out.all_hidden_states]
        for k in inner:
            # Position j of a level at one position per 2**s bases stands for bases [j 2**s, (j + 1) 2**s)
            # (average pooling of pairs down, repetition up): repeat it over them, then cut the
            # length-rule padding off as for the output.
            out.hidden_states[k] = levels[k].repeat_interleave(2 ** self.config.level_shift(k), dim=1)[:, :L]
        if n in want:
            out.hidden_states[n] = out.embedding
        if not output_hidden_states:
            out.all_hidden_states, out.stem_embedding = [], None
        if logits_at is not None:
            out.logits = out.logits[logits_at]
        return out

    def _length_rule(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(``tokens`` with every row's own length rounded up to the length rule with N, then
        <pad>; each row's padded length, or None when every row fills the width)."""
        cfg = self.config
        if tokens.device.type == "meta":
            return tokens, None
        pad = tokens.eq(cfg.pad_token_id)
        ext = (~pad).sum(1)
        if bool((pad[:, :-1] > pad[:, 1:]).any()) or bool((ext == 0).any()):
            raise ValueError("each row must be bases followed only by <pad> (and hold at least one base)")
        m = cfg.multiple
        target = (ext + m - 1) // m * m
        width = int(target.max())
        extents = None if bool((target == width).all()) else target
        if bool((target == ext).all()) and tokens.shape[1] == width:
            return tokens, extents
        out = torch.full((tokens.shape[0], width), cfg.pad_token_id, dtype=tokens.dtype, device=tokens.device)
        pos = torch.arange(width, device=tokens.device)[None, :]
        out = torch.where(pos < target[:, None], torch.full_like(out, self.tokenizer.n_id), out)
        n = min(width, tokens.shape[1])
        out[:, :n] = torch.where(pos[:, :n] < ext[:, None], tokens[:, :n], out[:, :n])
        return out, extents

    def _forward(self, tokens: torch.Tensor, ext: torch.Tensor | None, *, species=None, output_hidden_states: bool = False, need_attentions: bool = False,
                 return_logits: bool = True, heads: bool = True) -> NTv3Output:
        """The forward on rows that follow the length rule (``_length_rule``: ``ext``, each row's
        length, None when all fill the width; see the module docstring)."""
        cfg = self.config
        B, L = tokens.shape
        keeps = None
        if ext is not None:
            keeps = [torch.arange(L >> i, device=tokens.device)[None, :] < (ext >> i)[:, None] for i in range(cfg.num_downsamples + 1)]
        keep = (lambda i: None) if keeps is None else (lambda i: keeps[i])
        conds = None
        out = NTv3Output(logits=None)
        if cfg.conditions_vocab_size:
            sp = self.species_ids(species, B, tokens.device)
            conds = [table(sp) for table in self.cond_tables]

        # Activations are channels-last [B, L, C] throughout (see ``conv_last``).
        x = _mask_beyond(self.embed_layer(tokens), keep(0))
        x = _conv_gelu(self.stem.conv, x)
        if output_hidden_states:
            out.stem_embedding = x.clone()  # x is the first skip, which inference adds to in place
        # Inference runs the towers' long levels tile by tile (``_tiles``; ``tile_elements``).
        tiles = _no_grad() and not output_hidden_states and self.tile_elements > 0
        skips = []
        for i, block in enumerate(self.conv_tower_blocks):
            skips.append(x)
            rows = self._tile_rows(block.width)
            if tiles and x.shape[1] > rows:
                x = block.forward_pooled_tiles(x, conds, keep(i), rows)
                continue
            y = self._run(block, x, conds, keep(i))
            if output_hidden_states:
                out.all_hidden_states.append(y)
            x = _pool2(y)
        rope = self._rope(x.shape[1], x.device)
        key_mask = keep(cfg.num_downsamples)
        for i, block in enumerate(self.transformer_blocks, start=1):
            x, w = self._run(block, x, conds, rope, key_mask, need_attentions)
            if w is not None:
                out.attentions[i] = w
            if output_hidden_states:
                out.all_hidden_states.append(x)
        out.transformer_embedding = x
        d = cfg.num_downsamples
        for i, block in enumerate(self.deconv_tower_blocks):
            skip = skips.pop()  # released once used: the reference keeps every skip to the end
            skip = skip if cfg.use_skip_connection else None
            rows = self._tile_rows(block.width)
            if tiles and 2 * x.shape[1] > rows:
                x = block.forward_tiles(x, conds, keep(d - i), keep(d - i - 1), skip, rows)
            else:
                x = self._run(block, x, conds, keep(d - i), keep(d - i - 1), skip)
            del skip
            if output_hidden_states:
                out.all_hidden_states.append(x)
        emb = x
        out.embedding = emb
        if return_logits:
            rows = self._tile_rows(emb.shape[-1])
            if tiles and L > rows:
                for s, e, _, _ in _tiles(L, rows, 0):
                    out.logits = _into(out.logits, self._lm_logits(emb[:, s:e]), s, L)
            else:
                out.logits = self._lm_logits(emb)
        if conds is not None:
            t = out.transformer_embedding
            if keeps is None:
                mean = t.mean(1)
            else:
                k = keeps[d].unsqueeze(-1).to(t.dtype)
                mean = (t * k).sum(1) / k.sum(1)
            out.species_logits = self.conditions_heads[0](mean)
            if heads and (self.bigwig_head is not None or self.bed_head is not None):
                # The centre crop of each row's own length; rows of different lengths are
                # left-aligned in [B, longest crop, ...] and zero beyond their crop.
                lengths = [L] * B if ext is None else ext.tolist()
                spans = [self.crop(n) for n in lengths]
                width = max(e - s for s, e in spans)
                c = emb.new_zeros(B, width, emb.shape[-1])
                for r, (s, e) in enumerate(spans):
                    c[r, : e - s] = emb[r, s:e]
                if self.bigwig_head is not None:
                    out.bigwig_tracks_logits = self.bigwig_head(c, sp - cfg.num_species_special_tokens)
                if self.bed_head is not None:
                    out.bed_tracks_logits = self.bed_head(c).unflatten(-1, (len(cfg.bed_elements_names), 2)).to(c.dtype)
                if ext is not None:
                    valid = torch.arange(width, device=c.device)[None, :] < torch.tensor([e - s for s, e in spans], device=c.device)[:, None]
                    for name in ("bigwig_tracks_logits", "bed_tracks_logits"):
                        v = getattr(out, name)
                        if v is not None:
                            setattr(out, name, v * valid.view(B, width, *[1] * (v.dim() - 2)).to(v.dtype))
        return out

    def _lm_logits(self, emb: torch.Tensor) -> torch.Tensor:
        h = _gelu(emb)
        for hl in self.lm_head["hidden_layers"]:
            h = _gelu(hl(h))
        return self.lm_head["head"](h)

    def _tile_rows(self, width: int) -> int:
        """Positions per tile for activations ``width`` channels wide: a power of two >= 2."""
        return 1 << max(self.tile_elements // width, 2).bit_length() - 1

    def _run(self, block, *args):
        if self.gradient_checkpointing and self.training:
            from torch.utils.checkpoint import checkpoint

            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)


def build(config: NTv3Config | str, seed: int | None = 0, device=None, dtype=None) -> NTv3Model:
    """A randomly initialised NTv3 from a config or preset name (``seed`` makes it reproducible)."""
    cfg = dataclasses.replace(PRESETS[config]) if isinstance(config, str) else config
    return seeded(lambda: NTv3Model(cfg), seed).to(device=device, dtype=dtype)


# -- the HF layout --------------------------------------------------------------------------------

# Buffers of the HF code that carry no weights (rotary tables, recomputed here).
_IGNORED_SUFFIXES = (".rotary_embedding.inv_freq", ".rotary_embedding.cos_cached", ".rotary_embedding.sin_cached")


def is_ntv3_config(d: dict) -> bool:
    return d.get("model_type") in (PRETRAINED, POSTTRAINED, "ntv3_conditioned")


def state_dict_from_hf(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in tensors.items():
        if k.endswith(_IGNORED_SUFFIXES):
            continue
        out[k[len("core."):] if k.startswith("core.") else k] = v
    return out


def load_folder(directory: Path, config: dict, tensors: dict[str, torch.Tensor], device=None, dtype=None,
                check_finite: bool = True) -> NTv3Model:
    try:
        cfg = NTv3Config.from_hf(config, name=directory.name)
        BaseTokenizer.check_vocab(directory)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{directory / 'config.json'}: {e}") from None
    native = state_dict_from_hf(tensors)
    with torch.device("meta"):
        expected = NTv3Model(cfg).state_dict()
    check_tensors(directory, native, expected, lambda k: "core." + k, check_finite, unexpected="this NTv3 config")
    model = NTv3Model.from_state_dict(cfg, native)
    load_dtype = dtype or next(iter(native.values())).dtype
    return model.to(device=device or "cpu", dtype=load_dtype)


def save_folder(model: NTv3Model, path: str | os.PathLike, tokenizer: bool = True) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (keys ``core.*``) + the tokenizer files, atomically per file."""
    from safetensors.torch import save_file

    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_hf()
    cfg["torch_dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    tensors = {"core." + k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_output(d / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_text_atomic(d / "config.json", json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    if tokenizer:
        model.tokenizer.save_pretrained(d)
    return d


class Conditioned(nn.Module):
    """A post-trained NTv3 with its species fixed (``NTv3Model.backbone(species)``): calls are the
    model's with ``species=``, so jobs written for unconditioned encoders (embeddings, probes)
    run it unchanged. The weights are the model's own (no copy)."""

    def __init__(self, model: NTv3Model, species: str):
        super().__init__()
        model.config.species_id(species)  # an unknown species is an error now, not at the first batch
        self.model, self.species = model, species
        self.name_or_path = f"{getattr(model, 'name_or_path', None) or model.config.name} (species {species})"

    @property
    def config(self) -> NTv3Config:
        return self.model.config

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def resolve_layer(self, layer: int) -> int:
        return self.model.resolve_layer(layer)

    def layer_width(self, layer: int) -> int:
        return self.model.layer_width(layer)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return self.model.num_parameters(trainable_only)

    @property
    def unconditioned(self) -> NTv3Model:
        """The model itself (what a checkpoint folder saves)."""
        return self.model

    def backbone(self, species: str | None = None) -> "Conditioned":
        if species not in (None, self.species):
            raise ValueError(f"this model is conditioned on {self.species}, not {species}")
        return self

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> NTv3Output:
        return self.model(tokens, attention_mask, species=self.species, **kwargs)
