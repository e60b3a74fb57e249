"""The Nucleotide Transformer encoder (v1 and v2) with its masked-language-model head.

Pre-LayerNorm BERT/ESM blocks: ``x + attn(LN(x))`` then ``x + ffn(LN(x))``, a final LayerNorm,
and an untied LM head ``dense -> GELU -> LayerNorm -> decoder + bias``.

Layer-index convention for ``repr_layers`` (the same as ESM's ``esm2.py`` and HF's
``hidden_states``): 0 is the embedding output, ``i`` (1..num_layers) the output of block ``i``,
and ``num_layers`` is taken *after* the final LayerNorm. Negative indices count from the end
(-1 == num_layers). Attention maps are keyed by block index 1..num_layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ntkit.models.nt.config import NTConfig, get_preset
from ntkit.models.nt.tokenizer import Tokenizer

MASK_RATIO_TRAIN = 0.15 * 0.8  # ESM/NT token-dropout constant: selected fraction x <mask> fraction


class Layers(dict):
    """Outputs keyed by layer, where a negative key counts from the end as in ``repr_layers``:
    ``hidden_states[-1]`` is ``hidden_states[num_layers]`` (0 = embeddings, 1..num_layers = blocks)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.num_layers = num_layers

    def __missing__(self, key):
        if isinstance(key, int) and -self.num_layers - 1 <= key < 0 and self.num_layers + 1 + key in self:
            return self[self.num_layers + 1 + key]
        raise KeyError(f"layer {key} was not requested (have {sorted(self)})")

    def __contains__(self, key) -> bool:
        if isinstance(key, int) and key < 0:
            key = self.num_layers + 1 + key
        return dict.__contains__(self, key)


@dataclass
class NTOutput:
    logits: torch.Tensor | None  # [B, L, vocab]; [n, vocab] with logits_at; None if return_logits=False
    hidden_states: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [B, L, H]; [-1] is the last
    attentions: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [B, heads, L, L]; [-1] is the last


class Rotary(nn.Module):
    """ESM-style rotary embedding (rotate-half layout) over positions 0..L-1."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.register_buffer("inv_freq", self.frequencies(head_dim, theta), persistent=False)

    @staticmethod
    def frequencies(head_dim: int, theta: float) -> torch.Tensor:
        return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device="cpu") / head_dim))

    def _apply(self, fn, recurse=True):
        # ``model.to(bfloat16)`` must not round the frequencies: bf16 inv_freq puts position 2,047
        # of nt-v2-500m up to 0.9 radians off. Moves follow the device; the dtype stays fp32.
        freq = self.inv_freq
        super()._apply(fn, recurse)
        self.inv_freq = freq.to(device=self.inv_freq.device)
        return self

    def forward(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` as [L, 1, head_dim] (broadcast over heads of a [B, L, heads, d] tensor);
        ``sin`` carries rotate-half's sign: [-sin | +sin], so that ``apply_rotary`` needs no negation."""
        t = torch.arange(length, device=device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(device=device, dtype=torch.float32))
        cos, sin = freqs.cos(), freqs.sin()
        return torch.cat((cos, cos), dim=-1)[:, None], torch.cat((-sin, sin), dim=-1)[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """ESM rotate-half rotary on [..., L, heads, d] in fp32: ``x cos + [x2 | x1] sin`` (sign in ``sin``)."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return torch.addcmul(xf * cos, torch.cat((x2, x1), dim=-1), sin).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, cfg: NTConfig):
        super().__init__()
        h = cfg.hidden_size
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)
        self.dropout = cfg.attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, L, _ = x.shape
        q, k, v = (p(x).view(B, L, self.num_heads, self.head_dim) for p in (self.q_proj, self.k_proj, self.v_proj))
        if rope is not None:  # applied before the head transpose, on contiguous memory
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        # ESM scales the query before rotary; rotation is linear, so scaling the scores instead
        # (SDPA's ``scale``) is the same function with one pass over q fewer.
        scale = self.head_dim**-0.5
        p_drop = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q * scale, k.transpose(-1, -2)).float()
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
            weights = scores.softmax(dim=-1).to(q.dtype)
            out = torch.matmul(F.dropout(weights, p_drop, self.training), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=p_drop, scale=scale)
        out = out.transpose(1, 2).reshape(B, L, -1)
        return self.out_proj(out), weights


class FeedForward(nn.Module):
    """v1: ``fc2(gelu(fc1 x))`` with biases; v2 SwiGLU: ``fc1`` -> [gate | up], ``fc2(silu(gate) * up)``."""

    def __init__(self, cfg: NTConfig):
        super().__init__()
        self.swiglu = cfg.ffn_activation == "swiglu"
        out = 2 * cfg.ffn_size if self.swiglu else cfg.ffn_size
        self.fc1 = nn.Linear(cfg.hidden_size, out, bias=cfg.ffn_bias)
        self.fc2 = nn.Linear(cfg.ffn_size, cfg.hidden_size, bias=cfg.ffn_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            # Without autograd, reuse fc1's output buffer: no new [tokens, ffn] allocation.
            h = F.silu(gate) * up if h.requires_grad else F.silu(gate, inplace=True).mul_(up)
        else:
            h = F.gelu(h)  # exact (erf) GELU, as ESM's x * 0.5 * (1 + erf(x / sqrt(2)))
        return self.fc2(h)


class Block(nn.Module):
    def __init__(self, cfg: NTConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = SelfAttention(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, x, key_mask, rope, need_weights: bool = False):
        a, w = self.attn(self.attn_norm(x), key_mask, rope, need_weights)
        x = x + self.dropout(a)
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, w


class LMHead(nn.Module):
    def __init__(self, cfg: NTConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # decoder + bias as one addmm: no second logits-sized [tokens, vocab] tensor.
        return F.linear(self.norm(F.gelu(self.dense(x))), self.decoder.weight, self.bias)


class NTModel(nn.Module):
    """NT encoder + MLM head. ``forward(tokens, repr_layers=[...], need_attentions=...) -> NTOutput``."""

    def __init__(self, config: NTConfig):
        super().__init__()
        self.config = cfg = config
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        if cfg.position_embedding == "learned":
            # ESM position ids start at pad_token_id + 1, hence max_tokens + 2 rows.
            self.embed_positions = nn.Embedding(cfg.max_tokens + 2, cfg.hidden_size, padding_idx=cfg.pad_token_id)
            self.rotary = None
        else:
            self.embed_positions = None
            self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)
        self.embed_dropout = nn.Dropout(cfg.hidden_dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.lm_head = LMHead(cfg)
        self.gradient_checkpointing = False
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @classmethod
    def from_state_dict(cls, config: NTConfig, state_dict: dict[str, torch.Tensor], inv_freq: torch.Tensor | None = None) -> "NTModel":
        """A model holding ``state_dict``'s tensors (no random initialisation, no copy). Rotary
        frequencies: ``inv_freq`` when given (e.g. stored in a checkpoint), else computed."""
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(state_dict, assign=True)
        if model.rotary is not None:
            freq = inv_freq.float().clone() if inv_freq is not None else Rotary.frequencies(config.head_dim, config.rope_theta)
            model.rotary.inv_freq = freq
        return model

    @property
    def tokenizer(self):
        """The model's tokenizer, built once (its 4k-entry vocabulary) and rebuilt only if the
        config's tokenizer or context changes."""
        key = (self.config.tokenizer, self.config.max_tokens)
        cached = self.__dict__.get("_tokenizer")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_tokenizer"] = (key, Tokenizer(self.config.tokenizer, max_tokens=self.config.max_tokens))
        return cached[1]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _resolve_layers(self, layers: Iterable[int], lo: int) -> set[int]:
        n = self.config.num_layers
        out = set()
        for i in layers:
            j = i + n + 1 if i < 0 else i
            if not lo <= j <= n:
                raise ValueError(f"layer {i} out of range for a {n}-layer model (valid: {lo}..{n} or negative)")
            out.add(j)
        return out

    def resolve_layer(self, layer: int) -> int:
        """The ``hidden_states`` key of ``layer`` (negative counts from the end: -1 = last)."""
        return next(iter(self._resolve_layers([layer], 0)))

    def layer_width(self, layer: int) -> int:
        """Values per token of layer ``layer``: ``hidden_size`` for every layer of NT (every family
        has this method: NTv3's levels differ in width)."""
        self.resolve_layer(layer)
        return self.config.hidden_size

    def backbone(self, species: str | None = None) -> "NTModel":
        """The encoder whose hidden states embedding jobs read (every family has this method):
        NT is its own. NT has no species conditioning: ``species`` must be None."""
        if species is not None:
            raise ValueError(f"--species {species}: {self.config.name} is not conditioned on a species (only post-trained NTv3 is)")
        return self

    def embed(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = self.embed_tokens(tokens)
        if cfg.token_dropout:
            is_mask = tokens == cfg.mask_token_id
            x = x.masked_fill(is_mask.unsqueeze(-1), 0.0)
            observed = is_mask.sum(-1).float() / attention_mask.sum(-1).clamp(min=1)
            x = (x * (1 - MASK_RATIO_TRAIN) / (1 - observed)[:, None, None]).to(x.dtype)
        if self.embed_positions is not None:
            not_pad = tokens.ne(cfg.pad_token_id).long()
            positions = torch.cumsum(not_pad, dim=1) * not_pad + cfg.pad_token_id
            x = x + self.embed_positions(positions)
        return self.embed_dropout(x * attention_mask.unsqueeze(-1).to(x.dtype))

    def forward(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        repr_layers: Iterable[int] = (),
        need_attentions: bool | Iterable[int] = False,
        return_logits: bool = True,
        logits_at: torch.Tensor | None = None,
        attention_callback=None,
    ) -> NTOutput:
        """``logits_at`` (bool [B, L]): compute logits only there, returned as [n_selected, vocab]
        (the MLM training path: the LM head never sees unselected positions).
        ``attention_callback(block, weights)``: receives each requested attention map
        ([B, heads, L, L]) as it is computed instead of storing it in ``attentions`` (streaming:
        memory holds one layer's maps at a time)."""
        cfg = self.config
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, length], got shape {tuple(tokens.shape)}")
        B, L = tokens.shape
        if L > cfg.max_tokens:
            raise ValueError(f"{L} tokens exceed this model's context of {cfg.max_tokens} (including <cls>)")
        if attention_mask is None:
            attention_mask = tokens.ne(cfg.pad_token_id)
        attention_mask = attention_mask.bool()
        repr_set = self._resolve_layers(repr_layers, 0)
        if need_attentions is True:
            attn_set = set(range(1, cfg.num_layers + 1))
        elif need_attentions is False:
            attn_set = set()
        else:
            attn_set = self._resolve_layers(need_attentions, 1)

        # No mask at all when nothing is padded, so SDPA can use its fastest kernels.
        no_pad = tokens.device.type != "meta" and bool(attention_mask.all())
        key_mask = None if no_pad else attention_mask[:, None, None, :]
        rope = self.rotary(L, tokens.device) if self.rotary is not None else None

        out = NTOutput(logits=None, hidden_states=Layers(cfg.num_layers), attentions=Layers(cfg.num_layers))
        x = self.embed(tokens, attention_mask)
        if 0 in repr_set:
            out.hidden_states[0] = x
        for i, block in enumerate(self.layers, start=1):
            need_w = i in attn_set
            if self.gradient_checkpointing and self.training and not need_w:
                x, w = checkpoint(block, x, key_mask, rope, False, use_reentrant=False)
            else:
                x, w = block(x, key_mask, rope, need_w)
            if w is not None:
                if attention_callback is not None:
                    attention_callback(i, w)
                else:
                    out.attentions[i] = w
                del w
            if i == cfg.num_layers:
                x = self.final_norm(x)
            if i in repr_set:
                out.hidden_states[i] = x
        if cfg.num_layers == 0:
            x = self.final_norm(x)
        if logits_at is not None:
            out.logits = self.lm_head(x[logits_at])
        elif return_logits:
            out.logits = self.lm_head(x)
        return out


def seeded(make, seed: int | None):
    """``make()`` under ``torch.manual_seed(seed)`` without touching the caller's random state (None: unseeded)."""
    if seed is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def build(config: NTConfig | str, seed: int | None = 0, device=None, dtype=None) -> NTModel:
    """A randomly initialised model from a config or preset name (``seed`` makes it reproducible)."""
    cfg = get_preset(config) if isinstance(config, str) else config
    return seeded(lambda: NTModel(cfg), seed).to(device=device, dtype=dtype)
