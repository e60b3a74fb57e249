"""Sequence embeddings from any layers: mean / <cls> / per-token / per-nucleotide.

Batches are formed by a token budget over length-sorted sequences (``batch_tokens``), so short
sequences are not padded to the longest of the file; outputs come back in input order.

Long sequences: a sequence longer than the model context is cut into chunks of at most
``(max_tokens - 1) * 6`` bp (NTv3: ``max_tokens`` bases) that overlap by ``overlap_bp`` (default 600 bp, at most a quarter of the context; each chunk is tokenised on its own,
so its 6-mer frame starts at the chunk start). ``mean`` pooling then averages over every token of
every chunk (tokens in overlaps count once per chunk); ``cls`` averages the chunks' <cls>
vectors; ``nucleotide`` takes each base's vector from the chunk in which that base lies furthest
from a chunk edge; ``token`` is not defined across chunks and raises.

``reverse_complement=True`` also embeds the reverse complement and averages: pooled vectors
directly, per-nucleotide vectors after flipping back to forward coordinates.

``bins`` (mean pooling): with ``bins`` > 1 a sequence's vector is the means over ``bins`` equal
segments of it, concatenated (``bins * hidden`` values, segment by segment, 5' to 3' of the forward
strand), so that a probe can tell where along the sequence a feature lies, which one mean over
the whole sequence loses (promoters, splice sites: the tasks' sequences are aligned on their
site). The segments are averaged from per-nucleotide vectors (each base: its token's vector, from
its most central chunk; with ``reverse_complement`` both strands' at the same forward position),
segment ``j`` covering bases ``[round(j L / bins), round((j + 1) L / bins))``. The segments' sums
are taken window by window, each window adding the bases it owns (the same most-central rule), so
a sequence costs ``bins x hidden`` floats however long it is: a 1 Mb record is binned in the memory
of one window's per-nucleotide output, not of its L x hidden floats.

``phases`` (mean pooling, k-mer tokenisers): a 6-mer model reads a sequence in one frame, its
tokens the non-overlapping 6-mers from the first base, so one mean embedding sees a sixth of the
sequence's 6-mers and moves when the sequence starts a base later. With ``phases=k`` each strand is
also read with 1 .. k-1 bases dropped at its 5' end (the forward strand's first bases, the reverse
complement's first, i.e. the forward strand's last), each frame on its own, and a segment's mean
(one segment: the whole sequence) is over every base's vector from every frame that holds it (a
strand's first k-1 bases are held by fewer frames), per strand, strands averaged. ``phases=6``
reads every 6-mer of both strands, as 6-mer counts do. The mean is then over bases, not tokens (a
6-mer's vector counts six times, a leftover base's once). One base per token (NTv3): 1 only.

Layer convention: as in ``NTModel.forward`` (0 = embedding output, ``i`` = block ``i``,
-1 = last block after the final LayerNorm); NTv3: ``NTv3Model.resolve_layer`` (0 = the stem, then
the U-Net's levels in forward order, -1 = the output), every level per base.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np
import pyarrow as pa

from ntkit.core.sequence import reverse_complement as revcomp
from ntkit.io.sequences import id_col, iter_sequences, table_schema
from ntkit.runtime import engine, jobs
from ntkit.runtime.jobs import check_output, write_parquet

Pooling = Literal["mean", "cls", "token", "nucleotide"]


def _chunks(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    if length <= size:
        return [(0, length)]
    step = size - overlap
    starts = list(range(0, length - size, step)) + [length - size]
    return [(s, s + size) for s in starts]


@dataclass
class _Window:
    seq: int  # index of the sequence in the input stream
    strand: int  # 0: forward, 1: reverse complement
    a: int  # forward coordinates of the chunk: [a, b)
    b: int
    seq_len: int
    sequence: str  # the chunk on its strand
    own: np.ndarray | None = None  # bool [b - a]: the bases this chunk gives their vectors (``_owners``)


def _owners(spans: list[tuple[int, int]], length: int) -> list[np.ndarray]:
    """For each chunk ``[a, b)`` of a sequence, a bool mask over its bases: True where no other
    chunk holds the base further from its edge (ties: the earlier chunk). Every base is owned by
    exactly one chunk; per-nucleotide vectors and segment means are read through these masks."""
    best = np.full(length, -1, dtype=np.int32)
    owner = np.full(length, -1, dtype=np.int32)
    for k, (a, b) in enumerate(spans):
        pos = np.arange(a, b)
        centrality = np.minimum(pos - a, b - 1 - pos)  # distance to the chunk edge
        better = centrality > best[a:b]
        best[a:b][better] = centrality[better]
        owner[a:b][better] = k
    return [owner[a:b] == k for k, (a, b) in enumerate(spans)]


def _forward(layers: list[int], pooling: str, bins: int = 1):
    """Per window: its pooled vector (mean/cls), its tokens' vectors, the vectors of the bases it
    owns (``nucleotide``: ``w.own``, in forward order) or (``segments``: segment means, ``bins`` >= 1)
    per segment the sum of the vectors of the bases it owns and their count (``_segment_sums``)."""
    def forward(model, batch: list[_Window]):
        tok = model.tokenizer
        enc, ids, mask = engine.encode(tok, [w.sequence for w in batch], engine.model_device(model))
        res = model(ids, mask, repr_layers=layers, return_logits=False)
        n_tok = mask.sum(1).cpu().numpy()
        n2t = enc.nucleotide_to_token() if pooling in ("nucleotide", "segments") else None
        out = [(w, {}, int(n_tok[b]) - tok.n_special) for b, w in enumerate(batch)]
        for l in layers:
            h = res.hidden_states[model.resolve_layer(l)]
            if pooling == "mean":
                v = engine.mean_pool(h, ids, mask, tok.cls_id).cpu().numpy()
            elif pooling == "cls":
                v = h[:, 0].float().cpu().numpy()
            else:
                v = h.float().cpu().numpy()
            for b, w in enumerate(batch):
                if pooling in ("mean", "cls"):
                    out[b][1][l] = v[b]
                elif pooling == "token":
                    out[b][1][l] = v[b, : n_tok[b]]
                else:
                    per_base = v[b, n2t[b, : len(w.sequence)]]
                    per_base = per_base[::-1] if w.strand == 1 else per_base  # back to forward coordinates
                    # only the bases this window owns leave it (the merge reads no others)
                    out[b][1][l] = per_base[w.own] if pooling == "nucleotide" else _segment_sums(per_base, w, bins)
        return out

    return forward


def _segment_sums(per_base: np.ndarray, w: _Window, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``bin_ranges(seq_len, bins)``: the sum of the vectors of the bases of it that this
    window owns ([bins, H], float64) and how many bases that is ([bins], float64)."""
    sums = np.zeros((bins, per_base.shape[1]), dtype=np.float64)
    held = np.zeros(bins, dtype=np.float64)
    for j, (s, e) in enumerate(bin_ranges(w.seq_len, bins)):
        lo, hi = max(s, w.a) - w.a, min(e, w.b) - w.a
        if lo < hi:
            own = w.own[lo:hi]
            sums[j] = per_base[lo:hi][own].sum(0, dtype=np.float64)
            held[j] = own.sum()
    return sums, held


def _combine(results: Iterable, layers: list[int], pooling: str, strands: int, bins: int = 1) -> dict[int, np.ndarray]:
    """One sequence's vectors from its chunks' (see the module docstring), strands averaged."""
    if pooling == "nucleotide":
        return _merge_bases(results, layers, strands)
    results = list(results)
    out = {}
    for l in layers:
        per_strand = []
        for s in range(strands):
            rs = [(w, v[l], n) for w, v, n in results if w.strand == s]
            if pooling == "token":
                per_strand.append(rs[0][1])
            elif pooling in ("mean", "cls"):
                wts = np.array([n if pooling == "mean" else 1 for _, _, n in rs], dtype=np.float64)
                per_strand.append((np.stack([v for _, v, _ in rs]) * wts[:, None]).sum(0) / wts.sum())
            else:  # segment sums of the owned bases -> segment means, over the bases each segment's windows own
                # (one frame: every base once, the segment's length; frames: each base once per frame that holds it)
                sums = sum(v[0] for _, v, _ in rs)
                held = sum(v[1] for _, v, _ in rs)
                per_strand.append(sums / held[:, None])
        v = per_strand[0] if strands == 1 else (per_strand[0] + per_strand[1]) / 2
        out[l] = (v.reshape(-1) if pooling == "segments" else v).astype(np.float32)  # segments: [bins, H] -> bins * H
    return out


def _merge_bases(results: Iterable, layers: list[int], strands: int) -> dict[int, np.ndarray]:
    """Per-nucleotide vectors [L, H] of one sequence from its windows' owned bases, read once as
    they come: every base is owned by one window per strand, so each strand's windows add into one
    float32 array in place and the sum is halved with two strands (the same float32 values as
    merging each strand apart, then (fwd + rev) / 2: halving is exact). Memory: L x H once, not a
    merged copy per strand."""
    out: dict[int, np.ndarray] = {}
    for w, v, _ in results:
        for l in layers:
            if l not in out:
                out[l] = np.zeros((w.seq_len, v[l].shape[1]), dtype=np.float32)
            out[l][w.a : w.b][w.own] += v[l]
    if strands == 2:
        for x in out.values():
            x *= np.float32(0.5)
    return out


def iter_embeddings(
    model,
    sequences: Iterable[str],
    *,
    layers: Sequence[int] = (-1,),
    pooling: Pooling = "mean",
    reverse_complement: bool = False,
    overlap_bp: int | None = None,
    runtime: engine.Runtime | None = None,
    lookahead: int = 4096,
    species: str | None = None,
    bins: int = 1,
    phases: int = 1,
) -> Iterator[dict[int, np.ndarray]]:
    """``{layer: vector}`` per sequence, in input order, as the sequences stream in (memory: the
    look-ahead buffer of ``lookahead`` chunks). Options as in ``embed``."""
    model = model.backbone(species)
    if pooling not in ("mean", "cls", "token", "nucleotide"):
        raise ValueError(f"pooling must be mean, cls, token or nucleotide, not {pooling!r}")
    check_bins(bins, pooling)
    check_phases(phases, model.tokenizer.kmer, pooling)
    if pooling == "token" and reverse_complement:
        raise ValueError("per-token embeddings cannot be averaged over strands (the 6-mer frames differ)")
    layers = list(layers)
    for l in layers:
        model.resolve_layer(l)
    tok = model.tokenizer
    if pooling == "cls" and not tok.n_special:
        raise ValueError(f"{model.name_or_path} has no <cls> token: use mean, token or nucleotide pooling")
    ctx_bp = (model.config.max_tokens - tok.n_special) * tok.kmer
    if overlap_bp is None:  # default: 600 bp (100 6-mers), at most a quarter of the context
        overlap_bp = min(600, ctx_bp // 4)
    if overlap_bp >= ctx_bp:
        raise ValueError(f"overlap_bp must be smaller than the context ({ctx_bp} bp)")
    rt = engine.as_runtime(runtime)
    if rt.batch_size is not None:  # rows cap the token budget (a row can be as long as the context)
        rt = rt.replace(batch_tokens=min(rt.batch_tokens or engine.default_batch_tokens(rt.device or engine.model_device(model)),
                                         rt.batch_size * model.config.max_tokens), batch_size=None)
    strands = 2 if reverse_complement else 1

    # segment / frame means ("segments"): from per-nucleotide vectors, summed per segment window by window
    per_base = "segments" if bins > 1 or phases > 1 else pooling

    def chunks(s: str, a: int, b: int) -> tuple[list[tuple[int, int]], list]:
        # Chunks of s[a:b] that fit the context (in tokens: every N is a token of its own).
        spans = _split(tok, s, a, b, model.config.max_tokens, ctx_bp, overlap_bp)
        return spans, (_owners(spans, len(s)) if per_base in ("nucleotide", "segments") else [None] * len(spans))

    def windows():
        for i, s in enumerate(sequences):
            if len(s) == 0:
                raise ValueError(f"sequence {i} is empty")
            whole = chunks(s, 0, len(s))
            if len(whole[0]) > 1 and pooling == "token":
                raise ValueError(f"sequence {i} ({len(s)} bp) exceeds the context; per-token output is not defined across chunks")
            for strand in range(strands):
                for p in range(min(phases, len(s))):
                    # frame p: p bases dropped at the strand's 5' end (forward: [p, L); reverse complement: [0, L - p))
                    spans, own = whole if p == 0 else chunks(s, p, len(s)) if strand == 0 else chunks(s, 0, len(s) - p)
                    for (a, b), o in zip(spans, own):
                        yield _Window(i, strand, a, b, len(s), s[a:b] if strand == 0 else revcomp(s[a:b].upper()), o)

    def length(w: _Window) -> int:
        return tok.token_length(len(w.sequence))

    results = engine.run(model, windows(), _forward(layers, per_base, bins), length=length, runtime=rt, lookahead=lookahead,
                         desc="embedding", unit="window")
    for _, group in itertools.groupby(results, key=lambda r: r[0].seq):
        yield _combine(group, layers, per_base, strands, bins)


def check_bins(bins, pooling: str = "mean") -> None:
    """ValueError unless ``bins`` is a whole number >= 1 (above 1 with mean pooling only): jobs
    that embed late (the demo, the benchmark) check it before any compute."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1 or bins > 1 and pooling != "mean":
        raise ValueError(f"bins={bins!r}: a whole number >= 1, and above 1 with mean pooling only")


def check_phases(phases, kmer: int, pooling: str = "mean") -> None:
    """ValueError unless ``phases`` is a whole number from 1 to the tokeniser's k-mer size (above 1
    with mean pooling only)."""
    if isinstance(phases, bool) or not isinstance(phases, (int, np.integer)) or not 1 <= phases <= kmer or phases > 1 and pooling != "mean":
        raise ValueError(f"phases={phases!r}: a whole number from 1 to the tokens' k-mer size ({kmer}), and above 1 with mean "
                         "pooling only")


def bin_edges(length: int, bins: int) -> list[tuple[int, int]]:
    """The ``bins`` equal segments of ``length`` bases: ``[round(j L / bins), round((j + 1) L / bins))``
    (half to even, as Python's ``round``); empty where ``length < bins``."""
    edges = np.rint(np.linspace(0, length, bins + 1)).astype(int).tolist()
    return list(zip(edges[:-1], edges[1:]))


def bin_ranges(length: int, bins: int) -> list[tuple[int, int]]:
    """``bin_edges`` with no segment empty: where ``length < bins`` a segment that would be empty
    holds one base (the one at its start, or the last), which it shares with its neighbour."""
    return [(a, b) if b > a else (min(a, length - 1), min(a, length - 1) + 1) for a, b in bin_edges(length, bins)]


def bin_means(h: np.ndarray, bins: int) -> np.ndarray:
    """[L, H] per-nucleotide vectors -> [bins * H]: the mean over each of ``bin_ranges(L, bins)``
    (what ``embed(..., bins=)`` computes window by window)."""
    return np.concatenate([h[a:b].mean(0, dtype=np.float64) for a, b in bin_ranges(len(h), bins)]).astype(np.float32)


def embed(
    model,
    sequences: Sequence[str],
    *,
    layers: Sequence[int] = (-1,),
    pooling: Pooling = "mean",
    reverse_complement: bool = False,
    overlap_bp: int | None = None,
    runtime: engine.Runtime | None = None,
    species: str | None = None,
    bins: int = 1,
    phases: int = 1,
) -> dict[int, np.ndarray | list[np.ndarray]]:
    """``{layer: array}``: [N, H] for mean/cls ([N, bins * H] with ``bins``, see the module
    docstring); a list of [T_i, H] (token) or [len_i, H] (nucleotide) arrays otherwise.
    ``runtime.batch_tokens``: token budget per batch (default ``engine.default_batch_tokens(device)``;
    a sequence longer than the budget forms a batch of its own); ``runtime.batch_size``
    (sequences) caps it when given. In memory: for files of any size
    use ``embed_to_file``. The model's ``backbone(species)`` is embedded: a post-trained NTv3
    needs ``species``; SegmentNT gives its NT v2 backbone's embeddings."""
    model = model.backbone(species)
    vecs = list(iter_embeddings(model, sequences, layers=layers, pooling=pooling, reverse_complement=reverse_complement,
                                overlap_bp=overlap_bp, runtime=runtime, bins=bins, phases=phases))
    out = {}
    for l in layers:
        col = [v[l] for v in vecs]
        out[l] = (np.stack(col) if col else np.zeros((0, bins * model.layer_width(l)), np.float32)) if pooling in ("mean", "cls") else col
    return out


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


def embedding_schema(widths: dict[int, int], pooling: str, extra: pa.Schema | None = None) -> pa.Schema:
    """Pooled: ``id``, the input's other columns, ``L{layer}_{k}`` float32 columns (one row per
    sequence). Per-token / per-nucleotide: ``id``, the other columns, ``length`` (tokens or bases)
    and ``L{layer}`` as a list of vectors. ``widths``: each layer's values per vector, in column
    order (they differ between NTv3's levels: ``model.layer_width``)."""
    fields = [pa.field("id", pa.string())] + [f for f in (extra or pa.schema([])) if f.name not in ("id",)]
    if pooling in ("mean", "cls"):
        fields += [pa.field(f"L{l}_{k}", pa.float32()) for l, w in widths.items() for k in range(w)]
    else:
        fields += [pa.field("length", pa.int64())]
        fields += [pa.field(f"L{l}", pa.list_(pa.list_(pa.float32(), w))) for l, w in widths.items()]
    return pa.schema(fields)


def _row(sid: str, extra: dict, vecs: dict[int, np.ndarray], pooling: str) -> dict:
    row = {"id": sid, **{k: v for k, v in extra.items() if k != "id"}}
    for l, v in vecs.items():
        if pooling in ("mean", "cls"):
            row.update({f"L{l}_{k}": float(x) for k, x in enumerate(v.tolist())})
        else:
            row["length"] = len(v)
            row[f"L{l}"] = v.tolist()
    return row


def write_embeddings(path: str | Path, ids: Sequence[str], emb: dict[int, np.ndarray | list], extra=None) -> Path:
    """In-memory embeddings (``embed``'s output) -> parquet in ``embedding_schema``, atomically."""
    path = check_output(path)
    if not str(path).endswith(".parquet"):
        raise ValueError(f"{path}: embeddings are written as .parquet (row groups; read back with ntkit.tasks.embed.read_embeddings)")
    layers = list(emb)
    pooled = all(isinstance(v, np.ndarray) for v in emb.values())
    widths = {l: (emb[l].shape[1] if pooled else emb[l][0].shape[1]) if len(ids) else 0 for l in layers}
    extra_schema = pa.Schema.from_pandas(extra, preserve_index=False) if extra is not None else None
    schema = embedding_schema(widths, "mean" if pooled else "token", extra_schema)
    rows = extra.to_dict("records") if extra is not None else [{}] * len(ids)

    def batches(n: int = 1024):
        for i0 in range(0, len(ids), n):
            yield pa.RecordBatch.from_pylist([_row(sid, rows[i], {l: emb[l][i] for l in layers}, "mean" if pooled else "token")
                                              for i, sid in enumerate(ids[i0 : i0 + n], start=i0)], schema=schema)

    return write_parquet(batches(), schema, path)


def read_embeddings(path: str | Path, layers: Sequence[int] | None = None) -> tuple[list[str], dict[int, np.ndarray | list[np.ndarray]]]:
    """(ids, {layer: [N, H] array, or a list of [n_i, H] arrays for per-token / per-nucleotide})."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    names = f.schema_arrow.names
    ids: list[str] = []
    per_pos = "length" in names
    found = sorted({int(n[1:]) if per_pos else int(n[1:].rsplit("_", 1)[0]) for n in names
                    if n.startswith("L") and (per_pos and n[1:].lstrip("-").isdigit() or not per_pos and "_" in n)})
    layers = list(layers) if layers is not None else found
    out: dict[int, list] = {l: [] for l in layers}
    for b in f.iter_batches(batch_size=4096):
        ids += b.column("id").to_pylist()
        for l in layers:
            if per_pos:
                col = b.column(f"L{l}")
                for i in range(len(col)):
                    out[l].append(np.asarray(col[i].values.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
                                  .reshape(-1, col.type.value_type.list_size))
            else:
                cols = [c for c in b.schema.names if c.startswith(f"L{l}_")]
                out[l].append(np.stack([b.column(c).to_numpy() for c in cols], axis=1))
    if not per_pos:
        return ids, {l: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for l, v in out.items()}
    return ids, out


def embed_to_file(
    model,
    input: str | Path,
    out: str | Path,
    *,
    layers: Sequence[int] = (-1,),
    pooling: Pooling = "mean",
    reverse_complement: bool = False,
    overlap_bp: int | None = None,
    sequence_column: str | None = None,
    id_column: str | None = None,
    chunk_size: int = 4096,
    shard=None,
    restart: bool = False,
    runtime: engine.Runtime | None = None,
    species: str | None = None,
    bins: int = 1,
    phases: int = 1,
) -> dict:
    """Embeddings of every record of ``input`` (FASTA or table) into ``out`` (parquet, see
    ``embedding_schema``), as a sharded, resumable job (``ntkit.runtime.jobs``): chunks of ``chunk_size``
    records. Returns a summary (``merged``: whether ``out`` was written by this call). ``species``
    ``bins`` and ``phases`` as in ``embed``."""
    model = model.backbone(species)
    check_bins(bins, pooling)  # before the job starts
    check_phases(phases, model.tokenizer.kmer, pooling)
    rt = engine.as_runtime(runtime)
    if not str(out).endswith(".parquet"):
        raise ValueError(f"{out}: embeddings are written as .parquet")
    extra = table_schema(input)
    seq_col = sequence_column or next((c for c in ("sequence", "seq", "Sequence") if c in extra.names), None)
    extra = pa.schema([f for f in extra if f.name not in (seq_col, id_col(extra, id_column))])
    layers = list(layers)
    schema = embedding_schema({l: bins * model.layer_width(l) for l in layers}, pooling, extra)
    options = {"layers": layers, "pooling": pooling, "reverse_complement": reverse_complement, "overlap_bp": overlap_bp,
               "sequence_column": sequence_column, "id_column": id_column, "schema": schema.to_string(),
               **({"species": species} if species is not None else {}), **({"bins": bins} if bins != 1 else {}),
               **({"phases": phases} if phases != 1 else {})}

    def process(chunk: list[tuple[str, str, dict]]) -> Iterator[dict]:
        vecs = iter_embeddings(model, [r[1] for r in chunk], layers=layers, pooling=pooling, reverse_complement=reverse_complement,
                               overlap_bp=overlap_bp, runtime=rt.replace(progress=False), bins=bins,
                               phases=phases)
        for (sid, _, ex), v in zip(chunk, vecs):
            yield _row(sid, ex, v, pooling)

    # Chunks close at chunk_size records or 64 Mb of sequence, whichever comes first.
    job = jobs.Job("embed", [out], iter_sequences(input, sequence_column, id_column), process, schema, merge_outputs,
                   input_files={"sequences": input}, options=options, model=model, chunk_size=chunk_size,
                   weight=lambda r: len(r[1]), max_weight=64_000_000, row_group=256 if pooling in ("token", "nucleotide") else 4096,
                   unit="seq", desc="embedding", rows_per_item=1)
    return jobs.run_job(job, shard=shard, restart=restart, progress=rt.progress)


def merge_outputs(store) -> dict:
    """``out`` from a complete part store: the parts' row groups in input order."""
    import pyarrow.parquet as pq

    out = store.outputs[0]
    schema = store.rows_schema() if store.schema is not None or store.parts() else pa.schema([("id", pa.string())])
    write_parquet(store.batches(), schema, out)
    n = sum(pq.ParquetFile(p).metadata.num_rows for p in store.parts())
    return {"outputs": [str(out)], "sequences": n, "summary": f"{n} sequences embedded"}
