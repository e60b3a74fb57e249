"""Attention maps per layer and head, and their enrichment over annotated genomic elements.

For a window ``w``, head ``h`` of layer ``l`` and element type ``e``:

- attention share ``a = (1/|Q|) sum_{i in Q} sum_j alpha_ij [token j overlaps e]``: the mean, over
  query tokens ``Q`` (every non-padding token but ``<cls>``), of the attention mass landing on
  tokens that overlap an element of type ``e`` (each row of ``alpha`` sums to 1 over the keys);
- coverage ``c = (1/|K|) sum_j [token j overlaps e]`` over the keys ``K`` (non-padding tokens,
  ``<cls>`` included, as in the softmax): the share expected if the head attended uniformly.

Reported per (layer, head, type): pooled attention share and coverage (means over windows),
enrichment = share / coverage, and a one-sided Wilcoxon signed-rank test of ``a > c`` paired over
the windows where ``0 < c < 1``; p-values are Benjamini-Hochberg corrected over the whole table.
Maps come from the model's exact (eager softmax) attention path, one layer at a time through
``attention_callback``: memory holds a single layer's [batch, heads, L, L] map.

NTv3: its transformer attends over bins of ``2**num_downsamples`` bases (128 in the released
models) between the U-Net's down and up towers; a bin is a "token" here (it overlaps an element
when any of its bases does; the N filler of the length rule is part of the keys, as in the model,
and overlaps nothing). Its maps are small (a 32 kb window: 256 x 256 per head), kept for every
layer of one batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ntkit.io.annotation import Annotation
from ntkit.io.genome import Genome, Interval
from ntkit.io.plotting import figure, save_figure
from ntkit.runtime import engine
from ntkit.tasks.pretrain_data import tile_windows

# -- arithmetic ---------------------------------------------------------------------------------------------------


def token_features(offsets: np.ndarray, spans: np.ndarray, base_mask: np.ndarray) -> np.ndarray:
    """float [T, n_types]: 1 where the token's bases overlap an element of the type."""
    cs = np.concatenate([np.zeros((base_mask.shape[0], 1), dtype=np.int64), np.cumsum(base_mask, axis=1)], axis=1)
    valid = spans > 0
    lo = np.where(valid, offsets, 0)
    hi = np.where(valid, offsets + spans, 0)
    return ((cs[:, hi] - cs[:, lo]) > 0).T.astype(np.float32) * valid[:, None]


def attention_shares(attn: torch.Tensor, feats: torch.Tensor, key_valid: torch.Tensor, query_valid: torch.Tensor):
    """Per window and head: attention share [B, H, K] and coverage [B, K].

    ``attn`` [B, H, T, T] (rows over keys sum to 1), ``feats`` [B, T, K] in {0, 1},
    ``key_valid`` / ``query_valid`` bool [B, T]."""
    q = query_valid.to(attn.dtype)
    mass = torch.einsum("bhij,bi->bhj", attn, q)  # attention each key receives, summed over queries
    share = torch.einsum("bhj,bjk->bhk", mass, feats.to(attn.dtype)) / q.sum(1).clamp(min=1)[:, None, None]
    kv = key_valid.to(feats.dtype)
    coverage = torch.einsum("bjk,bj->bk", feats, kv) / kv.sum(1).clamp(min=1)[:, None]
    return share, coverage


def enrichment_table(share: np.ndarray, coverage: np.ndarray, types: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """``share`` [W, layers, heads, K] (layers 1..), ``coverage`` [W, K] -> one row per
    (layer, head, type) with the Wilcoxon test and BH q-values."""
    from scipy.stats import false_discovery_control, wilcoxon

    W, L, H, K = share.shape
    rows = []
    for k, t in enumerate(types):
        c = coverage[:, k]
        informative = (c > 0) & (c < 1)
        for l in range(L):
            for h in range(H):
                a = share[:, l, h, k]
                d = a[informative] - c[informative]
                stat, p = np.nan, np.nan
                if informative.sum() >= 2 and np.any(d != 0):
                    r = wilcoxon(a[informative], c[informative], alternative="greater", zero_method="wilcox")
                    stat, p = float(r.statistic), float(r.pvalue)
                mc = c.mean()
                rows.append({"layer": l + 1, "head": h + 1, "element": t, "attention_share": float(a.mean()), "coverage": float(mc),
                             "enrichment": float(a.mean() / mc) if mc > 0 else np.nan, "windows": int(informative.sum()),
                             "wilcoxon_stat": stat, "p_value": p})
    df = pd.DataFrame(rows)
    ok = df["p_value"].notna()
    df["q_value"] = np.nan
    if ok.any():
        df.loc[ok, "q_value"] = false_discovery_control(df.loc[ok, "p_value"].to_numpy(), method="bh")
    df["significant"] = (df["q_value"] < alpha) & (df["enrichment"] > 1)
    return df


# -- running the model ------------------------------------------------------------------------------------------


def region_windows(genome: Genome, regions: Sequence[str], window_bp: int, annotation: Annotation | None = None,
                   max_windows: int | None = None, max_n_fraction: float = 0.05, require_element: bool = True):
    """Non-overlapping windows tiling ``regions`` (``chrom:start-end`` 1-based, or whole contigs)."""
    ivs = [Interval.parse(r, genome) for r in regions]
    out = []
    for w in tile_windows(genome, ivs, window_bp, max_n_fraction):
        if require_element and annotation is not None and not annotation.covered(w.contig, w.start, w.start + window_bp):
            continue
        out.append(w)
        if max_windows and len(out) >= max_windows:
            break
    return out


def attention_enrichment(model, windows, annotation: Annotation, *, layers: Sequence[int] | None = None, alpha: float = 0.05,
                         runtime=None) -> pd.DataFrame:
    """Enrichment table (see the module docstring) over ``windows`` (``ntkit.tasks.pretrain_data.Window``), through
    ``ntkit.runtime.engine``: per window only its [layers, heads, types] attention shares are kept."""
    tok, cap = model.tokenizer, model.config.max_tokens
    v3 = getattr(model.config, "family", "nt") == "ntv3"
    n_layers, n_heads = model.config.num_layers, model.config.attention_heads if v3 else model.config.num_heads
    if v3:  # transformer blocks 1..num_layers, or -1, -2, ... from the last
        bad = [l for l in layers or () if not (1 <= l <= n_layers or -n_layers <= l <= -1)]
        if bad:
            raise ValueError(f"layers {bad}: this NTv3 has transformer blocks 1..{n_layers} (or -1, -2, ...)")
        blocks = sorted({l if l > 0 else n_layers + 1 + l for l in layers}) if layers else list(range(1, n_layers + 1))
    else:
        blocks = sorted({model.resolve_layer(l) for l in layers}) if layers else list(range(1, n_layers + 1))
    if 0 in blocks:
        raise ValueError("layer 0 is the embedding output; attention maps exist for blocks 1..num_layers (or -1, -2, ...)")

    def forward_v3(m, ws):
        dev = engine.model_device(m)
        ids, mask = tok.batch_encode([w.sequence for w in ws]).to_torch(dev)
        out = m(ids, mask, need_attentions=True, return_logits=False, heads=False)
        unit = 2 ** m.config.num_downsamples
        T = out.attentions[1].shape[-1]
        starts = np.arange(T) * unit
        feats, valid = [], []
        for w in ws:
            n = len(w.sequence)
            spans = np.clip(n - starts, 0, unit)  # a bin's bases of the sequence (the N filler overlaps nothing)
            feats.append(token_features(starts, spans, annotation.mask(w.contig, w.start, w.start + n)))
            valid.append(np.arange(T) < -(-n // unit))  # bins of the row's padded length: the model's keys
        f = torch.as_tensor(np.stack(feats), device=dev)
        kv = torch.as_tensor(np.stack(valid), device=dev)
        share = np.zeros((len(ws), len(blocks), n_heads, len(annotation.types)))
        cov = None
        for k, b in enumerate(blocks):
            s_, c = attention_shares(out.attentions[b].float(), f, kv, kv)
            share[:, k], cov = s_.cpu().numpy(), c.cpu().numpy()
        return list(zip(share, cov))

    def forward(m, ws):
        dev = engine.model_device(m)
        enc = tok.batch_encode([w.sequence for w in ws], truncation=True)
        feats = np.stack([token_features(enc.offsets[b], enc.spans[b], annotation.mask(w.contig, w.start, w.start + len(w.sequence)))
                          for b, w in enumerate(ws)])
        ids, mask = enc.to_torch(dev)
        f = torch.as_tensor(feats, device=dev)
        qv = mask & (ids != tok.cls_id)
        share = np.zeros((len(ws), len(blocks), n_heads, len(annotation.types)))
        cov = np.zeros((len(ws), len(annotation.types)))

        def collect(block: int, attn: torch.Tensor) -> None:
            s, c = attention_shares(attn.float(), f, mask, qv)
            share[:, blocks.index(block)] = s.cpu().numpy()
            cov[:] = c.cpu().numpy()

        m(ids, mask, need_attentions=blocks, return_logits=False, attention_callback=collect)
        return list(zip(share, cov))

    res = list(engine.run(model, windows, forward_v3 if v3 else forward, length=lambda w: min(tok.token_length(len(w.sequence)), cap),
                          runtime=runtime, desc="attention", unit="window"))
    share = np.stack([r[0] for r in res]) if res else np.zeros((0, len(blocks), n_heads, len(annotation.types)))
    coverage = np.stack([r[1] for r in res]) if res else np.zeros((0, len(annotation.types)))
    df = enrichment_table(share, coverage, annotation.types, alpha)
    df["layer"] = [blocks[l - 1] for l in df["layer"]]
    return df


def plot_heatmaps(table: pd.DataFrame, path: str | Path) -> Path:
    """One panel per element: log2 enrichment, layer x head; significant cells marked with *."""
    elements = list(dict.fromkeys(table["element"]))
    fig = figure(figsize=(3.2 * len(elements) + 1, 3.5))
    axes = fig.subplots(1, len(elements), squeeze=False)
    for ax, e in zip(axes[0], elements):
        t = table[table["element"] == e]
        layers, heads = sorted(t["layer"].unique()), sorted(t["head"].unique())
        m = t.pivot(index="layer", columns="head", values="enrichment").reindex(index=layers, columns=heads)
        sig = t.pivot(index="layer", columns="head", values="significant").reindex(index=layers, columns=heads)
        v = np.log2(m.to_numpy(dtype=float))
        lim = max(np.nanmax(np.abs(v)) if np.isfinite(v).any() else 1.0, 0.1)
        im = ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        for (r, c), s in np.ndenumerate(sig.to_numpy()):
            if s:
                ax.text(c, r, "*", ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(heads)), heads)
        ax.set_yticks(range(len(layers)), layers)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(e)
        fig.colorbar(im, ax=ax, shrink=0.8, label="log2 enrichment")
    return save_figure(fig, path)
