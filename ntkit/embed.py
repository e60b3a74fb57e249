"""Sequence embeddings from any layers: mean / <cls> / per-token / per-nucleotide.

Batches are formed by a token budget over length-sorted sequences (``batch_tokens``), so short
sequences are not padded to the longest of the file; outputs come back in input order.

Long sequences: a sequence longer than the model context is cut into chunks of at most
``(max_tokens - 1) * 6`` bp that overlap by ``overlap_bp`` (default 600 bp, at most a quarter of the context; each chunk is tokenised on its own,
so its 6-mer frame starts at the chunk start). ``mean`` pooling then averages over every token of
every chunk (tokens in overlaps count once per chunk); ``cls`` averages the chunks' <cls>
vectors; ``nucleotide`` takes each base's vector from the chunk in which that base lies furthest
from a chunk edge; ``token`` is not defined across chunks and raises.

``reverse_complement=True`` also embeds the reverse complement and averages: pooled vectors
directly, per-nucleotide vectors after flipping back to forward coordinates.

Layer convention: as in ``NTModel.forward`` (0 = embedding output, ``i`` = block ``i``,
-1 = last block after the final LayerNorm).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from .data import reverse_complement as revcomp

Pooling = Literal["mean", "cls", "token", "nucleotide"]


def default_batch_tokens(device) -> int:
    """Tokens per batch (rows x padded length) when none is given. On CPUs small batches win:
    on 2 cores, 1-2k-token batches embedded 1.2-1.3x faster than 8k-token ones (the activations
    stay in cache; BENCHMARKS.md). GPUs need large batches to fill their cores."""
    return 2048 if torch.device(device).type == "cpu" else 16384


def _chunks(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    if length <= size:
        return [(0, length)]
    step = size - overlap
    starts = list(range(0, length - size, step)) + [length - size]
    return [(s, s + size) for s in starts]


@torch.inference_mode()
def _embed_windows(model, seqs: list[str], layers: list[int], pooling: str, batch_tokens: int, device, dtype, bar):
    """Embeddings of sequences that fit the context: per layer, per sequence (pooled [H] or
    per-token [T, H] / per-nucleotide [n, H])."""
    tok = model.tokenizer
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = {l: [None] * len(seqs) for l in layers}
    i = 0
    while i < len(order):
        j = i + 1
        # Token budget: rows x padded length (the longest, last in sorted order).
        while j < len(order) and (j - i + 1) * tok.token_length(len(seqs[order[j]])) <= batch_tokens:
            j += 1
        idx = order[i:j]
        enc = tok.batch_encode([seqs[k] for k in idx])
        ids, mask = enc.to_torch(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype not in (None, torch.float32)):
            res = model(ids, mask, repr_layers=layers, return_logits=False)
        keep = (mask & (ids != tok.cls_id)).unsqueeze(-1).float()
        n2t = enc.nucleotide_to_token() if pooling == "nucleotide" else None
        for l in layers:
            h = res.hidden_states[model.resolve_layer(l)].float()
            if pooling == "mean":
                v = ((h * keep).sum(1) / keep.sum(1).clamp(min=1)).cpu().numpy()
            elif pooling == "cls":
                v = h[:, 0].cpu().numpy()
            else:
                v = h.cpu().numpy()
            for b, k in enumerate(idx):
                if pooling in ("mean", "cls"):
                    out[l][k] = v[b]
                elif pooling == "token":
                    out[l][k] = v[b, : int(mask[b].sum())]
                else:
                    out[l][k] = v[b, n2t[b, : len(seqs[k])]]
        if bar is not None:
            bar.update(len(idx))
        i = j
    return out


def embed(
    model,
    sequences: Sequence[str],
    *,
    layers: Sequence[int] = (-1,),
    pooling: Pooling = "mean",
    reverse_complement: bool = False,
    overlap_bp: int | None = None,
    batch_tokens: int | None = None,
    batch_size: int | None = None,
    device=None,
    dtype=None,
    progress: bool = False,
) -> dict[int, np.ndarray | list[np.ndarray]]:
    """``{layer: array}``: [N, H] for mean/cls; a list of [T_i, H] (token) or [len_i, H]
    (nucleotide) arrays otherwise. ``batch_tokens``: token budget per batch (default
    ``default_batch_tokens(device)``; a sequence longer than the budget forms a batch of its own);
    ``batch_size`` (sequences) caps it when given."""
    if pooling not in ("mean", "cls", "token", "nucleotide"):
        raise ValueError(f"pooling must be mean, cls, token or nucleotide, not {pooling!r}")
    model.eval()
    device = device or next(model.parameters()).device
    layers = list(layers)
    ctx_bp = (model.config.max_tokens - 1) * 6
    if overlap_bp is None:  # default: 600 bp (100 6-mers), at most a quarter of the context
        overlap_bp = min(600, ctx_bp // 4)
    if overlap_bp >= ctx_bp:
        raise ValueError(f"overlap_bp must be smaller than the context ({ctx_bp} bp)")
    batch_tokens = batch_tokens or default_batch_tokens(device)
    if batch_size is not None:
        batch_tokens = min(batch_tokens, batch_size * model.config.max_tokens)
    tok = model.tokenizer
    for i, s in enumerate(sequences):
        if len(s) == 0:
            raise ValueError(f"sequence {i} is empty")

    if pooling == "token" and reverse_complement:
        raise ValueError("per-token embeddings cannot be averaged over strands (the 6-mer frames differ)")
    # Flatten to windows that fit the context (in tokens: every N is a token of its own).
    windows, owner = [], []
    for i, s in enumerate(sequences):
        spans = _split(tok, s, 0, len(s), model.config.max_tokens, ctx_bp, overlap_bp)
        if len(spans) > 1 and pooling == "token":
            raise ValueError(f"sequence {i} ({len(s)} bp) exceeds the context; per-token output is not defined across chunks")
        for a, b in spans:
            windows.append(s[a:b])
            owner.append((i, a, b))
    strands = [windows] + ([[revcomp(w.upper()) for w in windows]] if reverse_complement else [])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(windows) * len(strands), unit="window", desc="embedding", dynamic_ncols=True)
    per_strand = [_embed_windows(model, ws, layers, pooling, batch_tokens, device, dtype, bar) for ws in strands]
    if bar is not None:
        bar.close()

    result = {}
    for l in layers:
        wvecs = per_strand[0][l]
        if reverse_complement:
            rc = per_strand[1][l]
            wvecs = [(f + (r[::-1] if pooling == "nucleotide" else r)) / 2 for f, r in zip(wvecs, rc)]
        merged: list = [None] * len(sequences)
        weights: list = [None] * len(sequences)
        for (i, a, b), v, w in zip(owner, wvecs, windows):
            if pooling in ("mean", "cls"):
                n = len(tok.encode(w)) - 1 if pooling == "mean" else 1
                merged[i] = v * n if merged[i] is None else merged[i] + v * n
                weights[i] = n if weights[i] is None else weights[i] + n
            elif pooling == "token":
                merged[i] = v
            else:
                L = len(sequences[i])
                if merged[i] is None:
                    merged[i] = np.zeros((L, v.shape[1]), dtype=np.float32)
                    weights[i] = np.full(L, -1.0)
                pos = np.arange(a, b)
                centrality = np.minimum(pos - a, b - 1 - pos)  # distance to the chunk edge
                better = centrality > weights[i][a:b]
                merged[i][a:b][better] = v[better]
                weights[i][a:b][better] = centrality[better]
        if pooling in ("mean", "cls"):
            result[l] = np.stack([m / w for m, w in zip(merged, weights)]).astype(np.float32)
        else:
            result[l] = merged
    return result


def _split(tok, s: str, a: int, b: int, max_tokens: int, ctx_bp: int, overlap: int) -> list[tuple[int, int]]:
    """Overlapping chunks of s[a:b] that each fit ``max_tokens`` tokens."""
    if b - a <= max_tokens - 1 or len(tok.encode(s[a:b])) <= max_tokens:
        return [(a, b)]
    if b - a > ctx_bp:
        parts = [(a + x, a + y) for x, y in _chunks(b - a, ctx_bp, overlap)]
    else:  # N-rich: more tokens than 6-mers would give; halve
        ov = min(overlap, (b - a) // 4)
        mid = (a + b) // 2
        parts = [(a, mid + ov // 2), (mid - ov // 2, b)]
    return [c for x, y in parts for c in _split(tok, s, x, y, max_tokens, ctx_bp, overlap)]


# -- I/O ----------------------------------------------------------------------------------------------------


def read_sequences(path: str | Path, sequence_column: str | None = None, id_column: str | None = None):
    """(ids, sequences, table) from FASTA (.fa/.fasta/.fna[.gz]) or a TSV/CSV/parquet table with a
    ``sequence`` (or ``seq``) column; ``table`` is the other columns (None for FASTA)."""
    import pandas as pd

    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".fa", ".fasta", ".fna")):
        from .genome import read_fasta_records

        recs = list(read_fasta_records(path))
        return [r[0] for r in recs], [r[1] for r in recs], None
    if name.endswith(".parquet"):
        t = pd.read_parquet(path)
    else:
        t = pd.read_csv(path, sep="\t" if name.endswith((".tsv", ".txt")) else ",")
    col = sequence_column or next((c for c in ("sequence", "seq", "Sequence") if c in t), None)
    if col is None or col not in t:
        raise ValueError(f"{path}: no sequence column (have {list(t.columns)}); pass sequence_column")
    idc = id_column or next((c for c in ("id", "name") if c in t), None)
    ids = t[idc].astype(str).tolist() if idc else [str(i) for i in range(len(t))]
    return ids, t[col].astype(str).tolist(), t.drop(columns=[col])


def write_embeddings(path: str | Path, ids: Sequence[str], emb: dict[int, np.ndarray | list], extra=None) -> Path:
    """Pooled embeddings -> parquet (one row per sequence, columns id + ``L{layer}_{k}``) or npz
    (``ids`` + ``layer_{layer}``); per-token/nucleotide -> npz with one array per sequence."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pooled = all(isinstance(v, np.ndarray) for v in emb.values())
    if path.suffix == ".parquet":
        if not pooled:
            raise ValueError("per-token / per-nucleotide embeddings are written as .npz")
        import pandas as pd

        cols = {"id": list(ids)}
        for l, a in emb.items():
            for k in range(a.shape[1]):
                cols[f"L{l}_{k}"] = a[:, k]
        t = pd.DataFrame(cols)
        if extra is not None:
            t = pd.concat([t, extra.reset_index(drop=True)], axis=1)
        t.to_parquet(path, index=False)
    else:
        arrays = {"ids": np.array(ids)}
        for l, a in emb.items():
            if pooled:
                arrays[f"layer_{l}"] = a
            else:
                for sid, x in zip(ids, a):
                    arrays[f"layer_{l}/{sid}"] = x
        np.savez(path, **arrays)
    return path


def add_cli(sub) -> None:
    from .cli import add_runtime_args

    s = sub.add_parser("embed", help="embeddings of sequences (FASTA or table) from any layers")
    s.add_argument("input", help="FASTA or TSV/CSV/parquet with a sequence column")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True, help=".parquet or .npz")
    s.add_argument("--layers", type=int, nargs="+", default=[-1])
    s.add_argument("--pooling", choices=["mean", "cls", "token", "nucleotide"], default="mean")
    s.add_argument("--reverse-complement", action="store_true", help="average with the reverse-complement strand")
    s.add_argument("--overlap-bp", type=int, help="overlap of the chunks of long sequences (default 600 bp)")
    s.add_argument("--batch-tokens", type=int, help="tokens per batch (rows x padded length); default 2048 on CPU, 16384 on GPU")
    add_runtime_args(s)
    s.set_defaults(func=_cli)


def _cli(args) -> int:
    from .cli import runtime

    model, device, dtype = runtime(args, args.model)
    ids, seqs, table = read_sequences(args.input)
    emb = embed(model, seqs, layers=args.layers, pooling=args.pooling, reverse_complement=args.reverse_complement,
                overlap_bp=args.overlap_bp, batch_tokens=args.batch_tokens, device=device,
                dtype=dtype, progress=args.progress)
    out = write_embeddings(args.out, ids, emb, table if args.out.endswith(".parquet") else None)
    print(f"wrote {out}: {len(ids)} sequences, layers {args.layers}, {args.pooling} pooling")
    return 0
