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
"""

from __future__ import annotations

import gzip
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .genome import Genome, contig_aliases

# -- annotation -----------------------------------------------------------------------------------------------


class Annotation:
    """Intervals per element type and contig (0-based, half-open), merged."""

    def __init__(self, intervals: dict[str, dict[str, list[tuple[int, int]]]]):
        self.types = sorted(intervals)
        self.iv: dict[str, dict[str, np.ndarray]] = {}
        for t, by_contig in intervals.items():
            self.iv[t] = {}
            for c, ivs in by_contig.items():
                a = np.array(sorted(ivs), dtype=np.int64).reshape(-1, 2)
                merged = []
                for s, e in a:
                    if merged and s <= merged[-1][1]:
                        merged[-1][1] = max(merged[-1][1], e)
                    else:
                        merged.append([s, e])
                self.iv[t][c] = np.array(merged, dtype=np.int64).reshape(-1, 2)

    def _contig(self, t: str, contig: str) -> np.ndarray:
        for a in contig_aliases(contig):
            if a in self.iv[t]:
                return self.iv[t][a]
        return np.zeros((0, 2), dtype=np.int64)

    def mask(self, contig: str, start: int, end: int) -> np.ndarray:
        """bool [n_types, end - start]: bases covered by each type."""
        out = np.zeros((len(self.types), end - start), dtype=bool)
        for k, t in enumerate(self.types):
            iv = self._contig(t, contig)
            lo, hi = np.searchsorted(iv[:, 1], start, side="right"), np.searchsorted(iv[:, 0], end, side="left")
            for s, e in iv[lo:hi]:
                out[k, max(s, start) - start : min(e, end) - start] = True
        return out

    def covered(self, contig: str, start: int, end: int) -> bool:
        return bool(self.mask(contig, start, end).any())


def _open(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _introns(exons_by_tx: dict) -> dict[str, list]:
    out = defaultdict(list)
    for (contig, _tx), ex in exons_by_tx.items():
        ex = sorted(ex)
        for (s1, e1), (s2, e2) in zip(ex, ex[1:]):
            if s2 > e1:
                out[contig].append((e1, s2))
    return out


def read_annotation(path: str | Path, types: Sequence[str] | None = None, bed_type: str | None = None) -> Annotation:
    """BED (type = name column, or ``bed_type``), GTF/GFF (type = feature column; ``intron`` is
    derived from the exons of each transcript when absent), or SpliceAI's gene table
    (``#NAME CHROM STRAND TX_START TX_END EXON_START EXON_END``: exon and intron)."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    iv: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with _open(path) as fh:
        first = fh.readline()
        fh.seek(0)
        if first.startswith("#NAME") and "EXON_START" in first:
            for line in fh:
                if line.startswith("#") or not line.strip():
                    continue
                f = line.rstrip("\n").split("\t")
                chrom = f[1]
                starts = [int(x) for x in f[5].strip(",").split(",") if x]
                ends = [int(x) for x in f[6].strip(",").split(",") if x]
                ex = sorted(zip(starts, ends))
                for s, e in ex:
                    iv["exon"][chrom].append((s, e))
                for (s1, e1), (s2, e2) in zip(ex, ex[1:]):
                    if s2 > e1:
                        iv["intron"][chrom].append((e1, s2))
        elif name.endswith((".gtf", ".gff", ".gff3")):
            exons = defaultdict(list)
            for line in fh:
                if line.startswith("#") or not line.strip():
                    continue
                f = line.rstrip("\n").split("\t")
                if len(f) < 9:
                    raise ValueError(f"{path}: not a GTF/GFF line: {line[:80]!r}")
                s, e = int(f[3]) - 1, int(f[4])  # 1-based inclusive -> 0-based half-open
                iv[f[2]][f[0]].append((s, e))
                if f[2] == "exon":
                    m = re.search(r'transcript_id "([^"]+)"', f[8]) or re.search(r"Parent=([^;]+)", f[8])
                    if m:
                        exons[(f[0], m.group(1))].append((s, e))
            if "intron" not in iv and exons:
                for c, ivs in _introns(exons).items():
                    iv["intron"][c].extend(ivs)
        elif name.endswith(".bed"):
            for line in fh:
                if line.startswith(("#", "track", "browser")) or not line.strip():
                    continue
                f = line.rstrip("\n").split("\t")
                t = bed_type or (f[3] if len(f) > 3 else path.name.split(".")[0])
                iv[t][f[0]].append((int(f[1]), int(f[2])))
        else:
            raise ValueError(f"{path}: annotation must be BED, GTF/GFF or SpliceAI's gene table")
    if types:
        missing = set(types) - set(iv)
        if missing:
            raise ValueError(f"element types not in {path}: {sorted(missing)} (have {sorted(iv)[:20]})")
        iv = {t: iv[t] for t in types}
    if not iv:
        raise ValueError(f"{path}: no intervals")
    return Annotation(dict(iv))


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
    from .data import Interval, tile_windows

    ivs = [Interval.parse(r, genome) for r in regions]
    out = []
    for w in tile_windows(genome, ivs, window_bp, max_n_fraction):
        if require_element and annotation is not None and not annotation.covered(w.contig, w.start, w.start + window_bp):
            continue
        out.append(w)
        if max_windows and len(out) >= max_windows:
            break
    return out


def attention_enrichment(model, windows, annotation: Annotation, *, layers: Sequence[int] | None = None, batch_size: int | None = None,
                         batch_tokens: int | None = None, device=None, dtype=None, progress: bool = True, alpha: float = 0.05) -> pd.DataFrame:
    """Enrichment table (see the module docstring) over ``windows`` (``ntkit.data.Window``), through
    ``ntkit.engine``: per window only its [layers, heads, types] attention shares are kept."""
    from . import engine

    tok, cap = model.tokenizer, model.config.max_tokens
    blocks = sorted({model.resolve_layer(l) for l in layers}) if layers else list(range(1, model.config.num_layers + 1))
    if 0 in blocks:
        raise ValueError("layer 0 is the embedding output; attention maps exist for blocks 1..num_layers (or -1, -2, ...)")

    def forward(m, ws):
        dev = engine.model_device(m)
        enc = tok.batch_encode([w.sequence for w in ws], truncation=True)
        feats = np.stack([token_features(enc.offsets[b], enc.spans[b], annotation.mask(w.contig, w.start, w.start + len(w.sequence)))
                          for b, w in enumerate(ws)])
        ids, mask = enc.to_torch(dev)
        f = torch.as_tensor(feats, device=dev)
        qv = mask & (ids != tok.cls_id)
        share = np.zeros((len(ws), len(blocks), model.config.num_heads, len(annotation.types)))
        cov = np.zeros((len(ws), len(annotation.types)))

        def collect(block: int, attn: torch.Tensor) -> None:
            s, c = attention_shares(attn.float(), f, mask, qv)
            share[:, blocks.index(block)] = s.cpu().numpy()
            cov[:] = c.cpu().numpy()

        m(ids, mask, need_attentions=blocks, return_logits=False, attention_callback=collect)
        return list(zip(share, cov))

    res = list(engine.run(model, windows, forward, length=lambda w: min(tok.token_length(len(w.sequence)), cap),
                          batch_tokens=batch_tokens, batch_size=batch_size, device=device, dtype=dtype, progress=progress,
                          desc="attention", unit="window"))
    share = np.stack([r[0] for r in res]) if res else np.zeros((0, len(blocks), model.config.num_heads, len(annotation.types)))
    coverage = np.stack([r[1] for r in res]) if res else np.zeros((0, len(annotation.types)))
    df = enrichment_table(share, coverage, annotation.types, alpha)
    df["layer"] = [blocks[l - 1] for l in df["layer"]]
    return df


def plot_heatmaps(table: pd.DataFrame, path: str | Path) -> Path:
    """One panel per element: log2 enrichment, layer x head; significant cells marked with *."""
    from .plotting import pyplot, save_figure

    plt = pyplot()

    elements = list(dict.fromkeys(table["element"]))
    fig, axes = plt.subplots(1, len(elements), figsize=(3.2 * len(elements) + 1, 3.5), squeeze=False)
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
