"""SegmentNT: genome annotation at nucleotide resolution on an NT v2 backbone.

Architecture (de Almeida et al., Nature Methods 2025), checked against InstaDeep's HF-layout
PyTorch code and its haiku original on the same weights (tests/test_segment_nt.py):

    6-mer tokens (<cls> first) -> NT v2 encoder (rotary base rescaled, below) -> drop <cls>
    -> 1-D U-Net over the T-1 token positions, channels D * 2**i for i < num_layers_head:
         down level: 2 x [conv k=3 "same", SiLU], kept as the skip, then average-pool 2
         up level:   2 x [transposed conv k=3 stride 1, SiLU], nearest x2, + skip
         final:      conv k=3, SiLU, conv k=3 (to D channels)
    -> SiLU -> linear to 6 * 2 * F -> reshape [B, 6 * (T - 1), F, 2]

Each token position predicts its 6 bases; ``softmax(logits)[..., 1]`` is the probability that a
base belongs to an element of each of the F types (14 in the released human model).

Rotary rescaling (YaRN-style, SegmentNT's way to reach 30-50 kb): the rotary base becomes
``10000 * s ** (d / (d - 2))`` for head size d and ``rescaling_factor`` s; InstaDeep's rule for
inference beyond the training length is ``s = tokens at inference / 2048``.

Differences from upstream, all at the edges of what it accepts: upstream refuses N and lengths
not divisible by 24. Here the tokenizer's rule holds (an N is a one-base token and the 6-mer frame
restarts after it, as NT's tokenizer does), the token count after ``<cls>`` is padded with N tokens
to a multiple of ``2 ** num_layers_head``, and ``per_base`` maps each token's outputs back to its
own bases (a one-base token keeps the first of its 6 outputs), so results are in base coordinates
whatever the input. Rows of a batch are computed exactly as alone (activations beyond a row's end
are zeroed before each convolution, as a "same" convolution's zero padding sees them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ntkit.models.checkpoint import CheckpointError, check_tensors
from ntkit.models.nt.checkpoint import config_from_hf, from_hf_state_dict, hf_config, to_hf_name, to_hf_state_dict
from ntkit.models.nt.config import NTConfig
from ntkit.models.nt.model import NTModel, Rotary, seeded
from ntkit.runtime import engine
from ntkit.runtime.jobs import atomic_output, write_text_atomic

_RUNS = re.compile(r"[ACGTacgt]+|[^ACGTacgt]+")  # base runs and N (or IUPAC) runs: where the 6-mer frame restarts
_BASE = re.compile(r"[ACGTacgt]")

# The 14 element types of InstaDeepAI/segment_nt, in the released model's output order.
ELEMENTS_14 = ["protein_coding_gene", "lncRNA", "exon", "intron", "splice_donor", "splice_acceptor", "5UTR", "3UTR",
               "CTCF-bound", "polyA_signal", "enhancer_Tissue_specific", "enhancer_Tissue_invariant",
               "promoter_Tissue_specific", "promoter_Tissue_invariant"]
NT_TRAINING_TOKENS = 2048  # the NT v2 backbone's training context (tokens), the base of the rescaling rule


@dataclass
class SegmentNTConfig:
    """A SegmentNT model: its NT v2 backbone (``nt``), the element names (``features``), U-Net
    depth and the rotary rescaling factor."""

    nt: NTConfig = field(default_factory=NTConfig)
    features: list[str] = field(default_factory=lambda: list(ELEMENTS_14))
    num_layers_head: int = 2
    rescaling_factor: float | None = None
    name: str = "segment-nt"

    family = "segment_nt"

    @property
    def tokenizer(self) -> str:
        return self.nt.tokenizer

    @property
    def max_tokens(self) -> int:
        return self.nt.max_tokens

    @property
    def multiple(self) -> int:
        """Tokens after ``<cls>`` must be a multiple of this (the U-Net's poolings)."""
        return 2 ** self.num_layers_head

    @property
    def context_tokens(self) -> int:
        """Tokens (``<cls>`` included) of one input: the backbone's context, or ``rescaling_factor x
        2048 + 1`` when larger (the rescaled rotary reaches that far: 5,001 tokens = 30 kb for the
        released models)."""
        if self.rescaling_factor is None:
            return self.nt.max_tokens
        return max(self.nt.max_tokens, int(round(self.rescaling_factor * NT_TRAINING_TOKENS)) + 1)

    def to_dict(self) -> dict:
        return {"family": self.family, "nt": self.nt.to_dict(), "features": list(self.features),
                "num_layers_head": self.num_layers_head, "rescaling_factor": self.rescaling_factor, "name": self.name}

    def rope_theta(self) -> float:
        d = self.nt.hidden_size // self.nt.num_heads
        s = self.rescaling_factor
        return 10000.0 if s is None else 10000.0 * s ** (d / (d - 2))


def _backbone_config(cfg: SegmentNTConfig) -> NTConfig:
    return dataclasses.replace(cfg.nt, rope_theta=cfg.rope_theta(), max_tokens=cfg.context_tokens)


PRESETS: dict[str, SegmentNTConfig] = {
    "segment-nt-tiny": SegmentNTConfig(
        nt=NTConfig(name="segment-nt-tiny", hidden_size=64, num_layers=2, num_heads=4, ffn_size=128, max_tokens=1024,
                    position_embedding="rotary", ffn_activation="swiglu", ffn_bias=False),
        features=list(ELEMENTS_14), name="segment-nt-tiny"),
}


def _mask_beyond(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    return x if keep is None else x * keep[:, None, :].to(x.dtype)


class _Convs(nn.Module):
    """Convolutions (k=3) each followed by SiLU except, with ``last_linear``, the last."""

    def __init__(self, channels: list[int], transposed: bool = False, last_linear: bool = False):
        super().__init__()
        make = (lambda a, b: nn.ConvTranspose1d(a, b, 3, padding=1)) if transposed else (lambda a, b: nn.Conv1d(a, b, 3, padding=1))
        self.conv_layers = nn.ModuleList([make(a, b) for a, b in zip(channels[:-1], channels[1:])])
        self.last_linear = last_linear

    def forward(self, x, keep):
        for i, conv in enumerate(self.conv_layers):
            x = conv(_mask_beyond(x, keep))
            if not (self.last_linear and i == len(self.conv_layers) - 1):
                x = F.silu(x)
        return x


class UNet1D(nn.Module):
    """SegmentNT's head U-Net over [B, D, T] (HF names ``_downsample_blocks``, ``_upsample_blocks``, ``final_block``)."""

    def __init__(self, dim: int, levels: int):
        super().__init__()
        ch = [dim * 2**i for i in range(levels)]
        ins = [dim] + ch[:-1]
        self._downsample_blocks = nn.ModuleList([_Convs([a, b, b]) for a, b in zip(ins, ch)])
        up_in = [ch[-1]] + ch[::-1]
        self._upsample_blocks = nn.ModuleList([_Convs([a, b, b], transposed=True) for a, b in zip(up_in, ch[::-1])])
        self.final_block = _Convs([ch[0], dim, dim], last_linear=True)

    def forward(self, x: torch.Tensor, keeps: list[torch.Tensor] | None) -> torch.Tensor:
        n = len(self._downsample_blocks)
        keep = (lambda i: None) if keeps is None else (lambda i: keeps[i])
        skips = []
        for i, block in enumerate(self._downsample_blocks):
            x = block(x, keep(i))
            skips.append(x)
            x = F.avg_pool1d(x, 2)
        for i, block in enumerate(self._upsample_blocks):
            x = block(x, keep(n - i))
            x = x.repeat_interleave(2, dim=-1) + skips[-(i + 1)]
        return self.final_block(x, keep(0))


@dataclass
class SegmentNTOutput:
    logits: torch.Tensor  # [B, 6 * (T - 1), F, 2]
    hidden_states: dict[int, torch.Tensor] = field(default_factory=dict)  # backbone layers (repr_layers)

    @property
    def probabilities(self) -> torch.Tensor:
        """[B, 6 * (T - 1), F]: P(base in element)."""
        return self.logits.float().softmax(-1)[..., 1]


class SegmentNTModel(nn.Module):
    def __init__(self, config: SegmentNTConfig):
        super().__init__()
        self.config = config
        self.nt = NTModel(_backbone_config(config))
        self.nt.lm_head = None  # SegmentNT checkpoints have no LM head
        d = config.nt.hidden_size
        self.unet = UNet1D(d, config.num_layers_head)
        self.fc = nn.Linear(d, 6 * 2 * len(config.features))
        self.name_or_path = config.name

    @property
    def tokenizer(self):
        return self.nt.tokenizer

    def backbone(self, species: str | None = None) -> NTModel:
        """The encoder embedding jobs read (see ``NTModel.backbone``): SegmentNT's NT v2 backbone
        (named so in outputs' provenance); its segmentation head is not used."""
        if species is not None:
            raise ValueError(f"--species {species}: SegmentNT is not conditioned on a species")
        self.nt.name_or_path = f"{getattr(self, 'name_or_path', None) or self.config.name} (its NT v2 backbone)"
        return self.nt

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def set_rescaling(self, factor: float | None) -> None:
        """Change the rotary rescaling factor (``tokens / 2048`` for inference beyond the training length)."""
        self.config.rescaling_factor = factor
        self.nt.config.rope_theta = self.config.rope_theta()
        self.nt.config.max_tokens = self.config.context_tokens
        dev = self.nt.rotary.inv_freq.device
        self.nt.rotary.inv_freq = Rotary.frequencies(self.nt.config.head_dim, self.nt.config.rope_theta).to(dev)

    def encode(self, sequences, device=None):
        """(TokenBatch, ids, mask) with the U-Net's length rule: N tokens appended until the tokens
        after ``<cls>`` are a multiple of ``2 ** num_layers_head``."""
        m = self.config.multiple
        tok = self.tokenizer
        b = tok.batch_encode(list(sequences), max_length=None)
        ntok = b.attention_mask.sum(1) - 1
        extra = (-ntok) % m
        if extra.any() or int(ntok.max(initial=0) % m):
            width = int((ntok + extra).max()) + 1
            ids = np.full((len(b), width), tok.pad_id, dtype=np.int64)
            mask = np.zeros((len(b), width), dtype=bool)
            for r in range(len(b)):
                n = int(ntok[r]) + 1
                ids[r, :n] = b.input_ids[r, :n]
                ids[r, n:n + int(extra[r])] = tok.n_id
                mask[r, :n + int(extra[r])] = True
            b = dataclasses.replace(b, input_ids=ids, attention_mask=mask,
                                    offsets=np.pad(b.offsets, ((0, 0), (0, width - b.offsets.shape[1])), constant_values=-1)[:, :width],
                                    spans=np.pad(b.spans, ((0, 0), (0, width - b.spans.shape[1])))[:, :width])
        ids, mask = b.to_torch(device)
        return b, ids, mask

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, repr_layers=()) -> SegmentNTOutput:
        """``tokens`` [B, T] with ``<cls>`` first; T - 1 a multiple of ``2 ** num_layers_head`` per row (``encode``)."""
        if attention_mask is None:
            attention_mask = tokens.ne(self.config.nt.pad_token_id)
        attention_mask = attention_mask.bool()
        m = self.config.multiple
        n = attention_mask.sum(1) - 1
        if (tokens.shape[1] - 1) % m or bool((n % m).any()) or bool((n <= 0).any()):
            raise ValueError(f"SegmentNT needs a multiple of {m} tokens after <cls> in every row: tokenise with model.encode")
        out = self.nt(tokens, attention_mask, repr_layers=set(repr_layers) | {-1}, return_logits=False)
        h = out.hidden_states[-1][:, 1:].transpose(1, 2)  # [B, D, T - 1]
        T = h.shape[-1]
        keeps = None
        if not bool(attention_mask.all()):
            keeps = [torch.arange(T >> i, device=h.device)[None, :] < (n >> i)[:, None] for i in range(self.config.num_layers_head + 1)]
        x = F.silu(self.unet(h, keeps)).transpose(1, 2)
        logits = self.fc(x).reshape(x.shape[0], 6 * T, len(self.config.features), 2)
        hs = {k: v for k, v in out.hidden_states.items() if k in set(repr_layers)}
        return SegmentNTOutput(logits=logits, hidden_states=hs)

    @staticmethod
    def output_index(batch, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(src, dst) of row ``row``: base ``dst[i]`` of the sequence is output ``src[i]``. Token t's
        base j is output 6 * (t - 1) + j; a one-base token (N, a leftover base) keeps its first output."""
        offs, spans = batch.offsets[row], batch.spans[row]
        t = np.flatnonzero(spans > 0)
        span = spans[t].astype(np.int64)
        within = np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span)
        return np.repeat(6 * (t - 1), span) + within, np.repeat(offs[t], span) + within

    @staticmethod
    def per_base(values: np.ndarray, batch, row: int) -> np.ndarray:
        """Outputs of row ``row`` ([6 * (T - 1), ...]) in base coordinates ([bases, ...]), ``output_index``'s map."""
        src, dst = SegmentNTModel.output_index(batch, row)
        out = np.empty((int(batch.seq_lengths[row]),) + values.shape[1:], dtype=values.dtype)
        out[dst] = values[src]
        return out

    def pieces(self, sequence: str) -> list[tuple[int, int, int]]:
        """(start, end, tokens) of consecutive pieces of ``sequence`` that each fit the context.
        A window of ``Elements.max_length`` bases fits as 6-mers, but every N (and IUPAC code) is
        a token of its own: windows at contig ends (N-filled) or over assembly gaps would exceed
        the context. Such a sequence is cut at the edges of its N runs (where the 6-mer frame
        restarts anyway, so each piece tokenises as it does within the whole), runs packed greedily
        into pieces; an N run longer than a piece is cut into pieces of N. A sequence that fits is
        one piece: its outputs are unchanged."""
        m = self.config.multiple
        budget = (self.config.context_tokens - 1) // m * m  # tokens after <cls>, after encode's padding to m
        runs = [(r.start(), r.end(), r.group()[0] in "ACGTacgt") for r in _RUNS.finditer(sequence)]
        cost = [(e - s) // 6 + (e - s) % 6 if base else e - s for s, e, base in runs]
        if sum(cost) <= budget:
            return [(0, len(sequence), sum(cost) + 1)]
        out: list[tuple[int, int, int]] = []
        start, used = 0, 0  # the open piece: from start, holding `used` tokens
        for (s, e, base), c in zip(runs, cost):
            if used + c <= budget:
                used += c
                continue
            if used:
                out.append((start, s, used + 1))
                start, used = s, 0
            if c <= budget:
                used = c
                continue
            step = 6 * budget if base else budget  # a run too long for any piece: full pieces of it (6-mer frame kept)
            while e - start > step:
                out.append((start, start + step, budget + 1))
                start += step
            n = e - start
            used = n // 6 + n % 6 if base else n
        if used:
            out.append((start, len(sequence), used + 1))
        return out

    def predict(self, sequences, runtime=None) -> list[np.ndarray]:
        """Per-base probabilities [len(seq), F] of each sequence (float32), in input order. A
        sequence whose tokens exceed the context runs as the pieces of ``pieces``, concatenated."""
        def forward(model, batch):
            b, ids, mask = model.encode([q for _, q, _ in batch], engine.model_device(model))
            p = model(ids, mask).probabilities.float().cpu().numpy()
            return [model.per_base(p[r], b, r) for r in range(len(batch))]

        seqs = list(sequences)
        work = [(i, q[a:b], n) for i, q in enumerate(seqs) for a, b, n in self.pieces(q)]
        # A piece without any base is N tokens only, and NT v2 has no absolute positions: its
        # outputs depend on its length alone. Each length runs once (contig ends, assembly gaps and
        # a mostly-N genome cost one forward per distinct length, not one per window).
        gap = [not _BASE.search(q) for _, q, _ in work]
        lengths = sorted({len(w[1]) for w, g in zip(work, gap) if g})
        run = [w for w, g in zip(work, gap) if not g] + [(-1, "N" * n, n + 1) for n in lengths]
        outs = list(engine.run(self, run, forward, length=lambda w: w[2], runtime=runtime, desc="segment", unit="piece"))
        gap_out = {len(q): y for (j, q, _), y in zip(run, outs) if j == -1}
        based = iter(outs)  # the pieces with bases come first in `run`, in `work` order
        res: list[list[np.ndarray]] = [[] for _ in seqs]
        for (i, q, _), g in zip(work, gap):
            res[i].append(gap_out[len(q)] if g else next(based))
        return [r[0] if len(r) == 1 else np.concatenate(r) for r in res]


def build(config: SegmentNTConfig | str, seed: int | None = 0, device=None, dtype=None) -> SegmentNTModel:
    """A randomly initialised SegmentNT from a config or preset name (``seed`` makes it reproducible)."""
    cfg = dataclasses.replace(PRESETS[config]) if isinstance(config, str) else config
    return seeded(lambda: SegmentNTModel(cfg), seed).to(device=device, dtype=dtype)


# -- the HF layout ----------------------------------------------------------------------------------


def is_segment_nt_config(d: dict) -> bool:
    return "features" in d and "num_layers_head" in d


def load_folder(directory: Path, config: dict, tensors: dict[str, torch.Tensor], device=None, dtype=None,
                check_finite: bool = True) -> SegmentNTModel:
    try:
        nt = config_from_hf(config, tensors)
        cfg = SegmentNTConfig(nt=nt, features=[str(f) for f in config["features"]], num_layers_head=int(config["num_layers_head"]),
                              rescaling_factor=config.get("rescaling_factor"), name=directory.name)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / 'config.json'}: not a SegmentNT config ({e})") from None
    head = {k: v for k, v in tensors.items() if k.startswith(("unet.", "fc."))}
    backbone = {k: v for k, v in tensors.items() if k not in head}
    native, _ = from_hf_state_dict(backbone, nt)
    native = {"nt." + k: v for k, v in native.items()} | head
    with torch.device("meta"):
        expected = SegmentNTModel(cfg).state_dict()
    hf = lambda k: to_hf_name(k[3:]) if k.startswith("nt.") else k  # noqa: E731
    check_tensors(directory, native, expected, hf, check_finite, unexpected="this SegmentNT config")
    model = SegmentNTModel(cfg)
    model.load_state_dict(native)
    load_dtype = dtype or next(iter(native.values())).dtype
    return model.to(device=device or "cpu", dtype=load_dtype)


def save_folder(model: SegmentNTModel, path: str | os.PathLike, tokenizer: bool = True) -> Path:
    """Write the HF layout (``config.json`` with ``features``, ``num_layers_head``, ``rescaling_factor``;
    ``esm.*``, ``unet.*``, ``fc.*`` tensors in ``model.safetensors``; ``vocab.txt``)."""
    from safetensors.torch import save_file

    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    dtype = next(model.parameters()).dtype
    hf = hf_config(cfg.nt, dtype)
    hf.pop("auto_map", None)
    hf.pop("rope_theta", None)  # the rotary base follows from rescaling_factor
    hf.update({"architectures": ["SegmentNT"], "features": list(cfg.features), "num_layers_head": cfg.num_layers_head,
               "rescaling_factor": cfg.rescaling_factor})
    backbone = to_hf_state_dict(model.nt)  # the backbone has no LM head: none is written
    tensors = {**backbone, **{k: v for k, v in model.state_dict().items() if not k.startswith("nt.")}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_output(d / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_text_atomic(d / "config.json", json.dumps(hf, indent=2, sort_keys=True) + "\n")
    if tokenizer:
        model.tokenizer.save_pretrained(d)
    return d
