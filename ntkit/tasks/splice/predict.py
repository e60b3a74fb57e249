"""Prediction: per-base probabilities, genome coordinates, bedGraph tracks, saving and loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ntkit.models.adapters import load_adapted, load_part, save_adapted
from ntkit.runtime import engine
from ntkit.runtime.jobs import atomic_output
from ntkit.tasks.splice.data import CONTEXT, SpliceWindows
from ntkit.tasks.splice.model import SpliceModel, _encode


def iter_predict_windows(model: SpliceModel, sequences: Iterable[str], *, runtime=None) -> Iterator[np.ndarray]:
    """Per window, in input order as they stream in: float32 [len, 3] class probabilities
    (none / acceptor / donor, transcript orientation), through ``ntkit.runtime.engine``."""
    tok, cap = model.base.tokenizer, model.base.config.max_tokens

    def forward(m, batch: list[str]):
        ids, mask, n2t, slot, onehot, _ = _encode(tok, batch, engine.model_device(m))
        p = torch.softmax(m(ids, mask, n2t, slot, onehot).float(), -1).cpu().numpy()
        return [p[b, : len(s)] for b, s in enumerate(batch)]

    yield from engine.run(model, sequences, forward, length=lambda s: min(tok.token_length(len(s)), cap), runtime=runtime,
                          desc="splice", unit="window")


def predict_windows(model: SpliceModel, data: SpliceWindows, *, runtime=None) -> list[np.ndarray]:
    """Per window: float32 [len, 3] class probabilities (transcript orientation)."""
    return list(iter_predict_windows(model, data.sequences, runtime=runtime))


def to_genome_table(data: SpliceWindows, probs: Sequence[np.ndarray], min_prob: float = 0.0) -> pd.DataFrame:
    """One row per (window base) with p(acceptor) or p(donor) >= ``min_prob``: chrom, 0-based
    position, strand, probabilities (minus-strand windows flipped back to + coordinates)."""
    parts = []
    for seq_i, p in enumerate(probs):
        n = len(p)
        pos = data.start[seq_i] + (np.arange(n) if data.strand[seq_i] == "+" else np.arange(n)[::-1])
        keep = ((p[:, 1] >= min_prob) | (p[:, 2] >= min_prob)) & (data.labels[seq_i][:n] != CONTEXT)  # context bases: not predicted
        parts.append(pd.DataFrame({"chrom": data.chrom[seq_i], "pos": pos[keep], "strand": data.strand[seq_i],
                                   "p_acceptor": p[keep, 1], "p_donor": p[keep, 2]}))
    t = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["chrom", "pos", "strand", "p_acceptor", "p_donor"])
    return t.sort_values(["chrom", "pos", "strand"]).drop_duplicates(["chrom", "pos", "strand"]).reset_index(drop=True)


def write_bedgraph(table: pd.DataFrame, path: str | Path, column: str = "p_donor", strand: str = "+") -> Path:
    t = table[table["strand"] == strand]

    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        fh.write(f'track type=bedGraph name="ntkit {column} {strand}"\n')
        for c, p, v in zip(t["chrom"], t["pos"], t[column]):
            fh.write(f"{c}\t{p}\t{p + 1}\t{v:.4g}\n")
    return path


# -- saving ---------------------------------------------------------------------------------------------------------------


SPLICE_CONFIG, SPLICE_WEIGHTS = "splice_config.json", "splice_head.safetensors"


def save_splice_model(model: SpliceModel, directory: str | Path) -> Path:
    meta = {"method": model.method, "head": model.head_kind, "channels": model.channels}
    return save_adapted(directory, model.base, {"head": model.head}, meta, full=model.method == "full", weights=SPLICE_WEIGHTS,
                        config=SPLICE_CONFIG)


def load_splice_model(directory: str | Path, base=None, force: bool = False) -> SpliceModel:
    """A folder of ``save_splice_model`` on its base (checked as ``adapters.load_adapted`` does)."""
    d = Path(directory)
    if not (d / SPLICE_CONFIG).exists():
        raise FileNotFoundError(f"{d}: not a splice model folder ({SPLICE_CONFIG} not found)")
    try:
        method = json.loads((d / SPLICE_CONFIG).read_text())["method"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{d / SPLICE_CONFIG}: unreadable ({type(e).__name__}); not a folder written by ntkit") from None
    base, parts, meta = load_adapted(d, base, full=method == "full", weights=SPLICE_WEIGHTS, config=SPLICE_CONFIG, force=force)
    m = SpliceModel(base, method, attach=False, head=meta.get("head", "linear"), channels=meta.get("channels", 32))
    load_part(m.head, parts.get("head"), d / SPLICE_WEIGHTS)
    return m.eval()
