"""Zero-shot variant effect scores from a VCF and a reference FASTA, at genome scale.

Windows are *tiles*: reference windows of ``w = (window_tokens - 1) * 6`` bp (NT; NTv3's
single-base tokens: ``w = window_tokens``) whose starts lie on a grid of ``tile_stride_bp`` (a
multiple of the token's 6 bases, default a quarter of the window) along each contig,
plus one tile flush with the contig end (a contig shorter than ``w`` is one tile). N runs at a
tile's ends are dropped (a telomere or an assembly gap holds no sequence, and each N would take a
token); a tile with interior Ns is cut on the right to fit the context (``n_rich_window`` for an
allele beyond the cut). Each allele is
scored in the tile where it lies most central (largest distance from its bases to the tile's
edges; ties to the left tile), so its context is at least ``(w - stride) / 2`` bp on each side
away from contig ends. A score depends on the allele, the reference, the model and the options,
never on which other variants are in the file, how it is chunked or sharded.

Scores (``scores=``), per ALT allele (multi-allelic records are split):

- ``llr``, the masked marginal: log P(alt) - log P(ref) summed over the tokens that cover the
  variant, read from the tile with those tokens replaced by ``<mask>``. One forward serves every
  allele whose bases fall in the same tokens: up to 18 SNVs (6 bases x 3 ALTs) per 6-mer.
- ``llr_unmasked``, the wild-type marginal: the same ratio read from the unmasked tile. One
  forward of a tile scores every SNV in it.
- ``embedding``: ``l1_<layer>``, ``l2_<layer>``, ``cosine_<layer>``, ``dot_<layer>`` between the
  mean token embeddings (``<cls>`` and padding excluded) of the reference tile and the
  alternative window (the tile with the allele applied; indels filled or trimmed on the right to
  the tile's length). The reference embedding is one forward per tile, shared by all its alleles;
  the alternative window needs one forward per allele.

Both LLRs are defined when REF and ALT have the same length and neither holds an N (the ALT window
then has the same 6-mer frame); NaN otherwise. The ALT tokens are the tile's tokens with the ALT
bases substituted. With ``both_strands=True`` every score is the mean over the tile and its
reverse complement. Orientation for AUROC: larger ``l1``/``l2`` and smaller ``llr``/``cosine``/
``dot`` mean "more different from the reference" (``EFFECT_SIGN``). Layer convention as in
``NTModel.forward`` (0 = embeddings, -1 = last layer after the final LayerNorm).

Bad input never yields a number silently: alleles are skipped with a reason in ``status``
(``SKIP_REASONS``) and counted in the summary. REF is compared to the FASTA case-insensitively;
``chr20`` and ``20`` are the same contig.

Scale: records are read lazily and scored chunk by chunk (``chunk_size`` records); memory depends
on the chunk and the model, not on the VCF. ``score_variants_to_files`` writes a table and/or an
annotated, bgzipped and tabix-indexed VCF through ``ntkit.runtime.jobs`` parts (sharded, resumable,
atomic outputs); ``score_variants`` returns an in-memory table for small inputs.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from ntkit.core.sequence import reverse_complement
from ntkit.io.genome import Genome, open_vcf, vcf_path
from ntkit.runtime import engine
from ntkit.runtime.jobs import atomic_output, chunks, model_fingerprint, provenance, write_dataframe
from ntkit.runtime.progress import bar as progress_bar
from ntkit.tasks.options import DEFAULT_SCORES, SCORES  # noqa: F401  (re-exported)

EFFECT_SIGN = {"llr": -1, "llr_unmasked": -1, "l1": 1, "l2": 1, "cosine": -1, "dot": -1}
_ALLELE = re.compile(r"[ACGTN]+")
SKIP_REASONS = ("ref_mismatch", "contig_not_in_fasta", "symbolic_alt", "spanning_deletion", "invalid_allele", "too_long",
                "outside_contig", "no_alt", "n_in_ref", "n_rich_window")
# What each skip means and what to do, for messages and the documentation's Scores section (docs/variants.md).
SKIP_HINTS = {
    "ref_mismatch": "REF differs from the FASTA at POS: another assembly, or a shifted or unnormalised record (bcftools norm -f)",
    "contig_not_in_fasta": "the contig is not in the FASTA (chr20 and 20 are matched; other names are not)",
    "symbolic_alt": "<DEL>, <INS>, breakends: no sequence to score",
    "spanning_deletion": "ALT '*' (a deletion on another record covers the site)",
    "invalid_allele": "REF or ALT holds other characters than A, C, G, T, N",
    "too_long": "REF or ALT longer than half the window: a larger --window-tokens, or a model with a longer context",
    "outside_contig": "POS lies beyond the contig's end",
    "no_alt": "a record without ALT ('.')",
    "n_in_ref": "the reference bases at the variant are N (unknown): nothing to compare",
    "n_rich_window": "the allele lies beyond the part of its tile that fits the context: interior N runs take one token "
                     "per N; a smaller --window-tokens (tiles of fewer bases) usually scores it",
}


@dataclass
class Allele:
    row: int  # output row (input order)
    chrom: str
    pos: int  # 1-based VCF POS
    id: str
    ref: str
    alt: str
    alt_index: int  # 1-based ALT number in the record
    label: float | None = None
    status: str = "scored"
    contig: str | None = None  # FASTA name
    start: int = 0  # tile start (0-based)
    record: int = -1  # 0-based number of its VCF record

    @property
    def pos0(self) -> int:
        return self.pos - 1

    @property
    def same_length(self) -> bool:
        """Both LLRs are defined: same length, no N on either side (same 6-mer frame)."""
        return len(self.ref) == len(self.alt) and "N" not in self.alt and "N" not in self.ref


@dataclass
class VariantScores:
    table: pd.DataFrame  # one row per ALT allele, input order
    skipped: Counter = field(default_factory=Counter)  # reason -> alleles
    score_columns: list[str] = field(default_factory=list)
    about: dict = field(default_factory=dict)  # provenance (ntkit version, model, command)
    fingerprint: str | None = None  # of the model

    def summary(self) -> str:
        return summary_line(len(self.table), int((self.table["status"] == "scored").sum()), self.skipped)


def summary_line(n: int, scored: int, skipped: Counter) -> str:
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "none"
    return f"{scored}/{n} alleles scored; skipped {reasons}"


# -- reading ----------------------------------------------------------------------------------------------


def iter_records(vcf: str | Path, label_key: str | None = None) -> Iterator[list[Allele]]:
    """The ALT alleles of each record (one list per record, multi-allelic split), read lazily;
    ``row`` numbers the alleles over the whole file."""
    import pysam

    row, record = 0, 0
    try:
        vf = open_vcf(vcf)
    except OSError as e:
        raise ValueError(f"{vcf}: not a readable VCF/BCF ({e})") from None
    with vf:
        if label_key and label_key not in vf.header.info:
            raise ValueError(f"INFO key {label_key!r} is not declared in {vcf}")
        flag = label_key is not None and vf.header.info[label_key].type == "Flag"
        done_contigs, last = set(), None
        records = iter(vf)
        while True:
            prev = pysam.set_verbosity(0)  # htslib's own notes on stderr: errors are explained below
            try:
                rec = next(records)
            except StopIteration:
                break
            except OSError as e:
                raise ValueError(diagnose_vcf(vcf, e)) from None
            finally:
                pysam.set_verbosity(prev)
            if last is not None and (rec.chrom != last[0] and rec.chrom in done_contigs or rec.chrom == last[0] and rec.pos < last[1]):
                raise ValueError(f"{vcf}: not sorted: {rec.chrom}:{rec.pos} comes after {last[0]}:{last[1]} (bcftools sort)")
            if last is not None and rec.chrom != last[0]:
                done_contigs.add(last[0])
            last = (rec.chrom, rec.pos)
            label = None
            if label_key:
                v = rec.info.get(label_key)
                label = float(v[0] if isinstance(v, tuple) else v) if v is not None else (0.0 if flag else None)
            alts = rec.alts or ()
            if not alts:
                out = [Allele(row, rec.chrom, rec.pos, rec.id or ".", rec.ref, ".", 0, label, "no_alt", record=record)]
            else:
                out = [Allele(row + k, rec.chrom, rec.pos, rec.id or ".", rec.ref.upper(), alt.upper(), k + 1, label, record=record)
                       for k, alt in enumerate(alts)]
            row += len(out)
            record += 1
            yield out


def diagnose_vcf(vcf: str | Path, error: Exception) -> str:
    """The first malformed line of a VCF htslib could not parse, as ``file:line: what``; else the
    file is truncated or corrupt."""
    try:
        for n, line in enumerate(_vcf_lines(vcf), 1):
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\r\n").split("\t")
            if len(f) < 8:
                return f"{vcf}:{n}: {len(f)} tab-separated columns, a VCF record has at least 8 (CHROM POS ID REF ALT QUAL FILTER INFO)"
            if not f[1].isdigit():
                return f"{vcf}:{n}: POS {f[1]!r} is not a positive integer"
            if not f[3] or not f[4]:
                return f"{vcf}:{n}: empty REF or ALT"
    except ValueError as e:  # the text itself is unreadable: truncated compression
        return str(e)
    return f"{vcf}: {error} (a truncated or corrupt file: re-download it, or re-compress with bgzip)"


def read_alleles(vcf: str | Path, label_key: str | None = None) -> tuple[list[Allele], list[tuple[int, int]]]:
    """All alleles in memory and, per record, its rows' [first, last)."""
    alleles, spans = [], []
    for rec in iter_records(vcf, label_key):
        spans.append((len(alleles), len(alleles) + len(rec)))
        alleles.extend(rec)
    return alleles, spans


# -- tiles ------------------------------------------------------------------------------------------------


def default_stride(window_bp: int, kmer: int = 6) -> int:
    return max(kmer, window_bp // 4 // kmer * kmer)


def tile_start(pos0: int, n: int, length: int, window_bp: int, stride: int) -> int:
    """Start of the tile in which bases [pos0, pos0 + n) lie most central (see the module docstring)."""
    if length <= window_bp:
        return 0
    last = length - window_bp
    k0 = max(0, (pos0 + n // 2 - window_bp // 2) // stride)
    cands = {min(k * stride, last) for k in (k0, k0 + 1)} | {last}
    best, best_c = 0, -1
    for s in sorted(cands):
        c = min(pos0 - s, s + window_bp - pos0 - n)
        if c > best_c:
            best, best_c = s, c
    return best


def check_allele(a: Allele, genome: Genome, window_bp: int) -> None:
    """Set ``a.status`` (a skip reason) and ``a.contig`` against the FASTA."""
    if a.status != "scored":
        return
    if a.alt == "*":
        a.status = "spanning_deletion"
    elif a.alt.startswith("<") or "[" in a.alt or "]" in a.alt or a.alt == ".":
        a.status = "symbolic_alt"
    elif not (_ALLELE.fullmatch(a.ref) and _ALLELE.fullmatch(a.alt)):
        a.status = "invalid_allele"
    elif not genome.has(a.chrom):
        a.status = "contig_not_in_fasta"
    else:
        a.contig = genome.resolve(a.chrom)
        length = genome.lengths[a.contig]
        if a.pos0 < 0 or a.pos0 + len(a.ref) > length:
            a.status = "outside_contig"
        elif genome.fetch(a.contig, a.pos0, a.pos0 + len(a.ref)) != a.ref:
            a.status = "ref_mismatch"
        elif "N" in a.ref:
            a.status = "n_in_ref"
        elif max(len(a.ref), len(a.alt)) > window_bp // 2:
            a.status = "too_long"


def fit_tokens(tok, seq: str, max_tokens: int) -> int:
    """Bases of ``seq`` that fit ``max_tokens`` tokens (``<cls>`` included). Every N is a token of
    its own and breaks the 6-mer frame, so a window with Ns holds fewer bases than (T - 1) x 6."""
    enc = tok.batch_encode([seq], max_length=None)
    if enc.attention_mask[0].sum() <= max_tokens:
        return len(seq)
    return int(enc.offsets[0, max_tokens - 1] + enc.spans[0, max_tokens - 1])


def trim_ns(seq: str, w: int) -> tuple[int, int]:
    """(leading Ns, bases left) of ``seq[:w]`` once N runs at either end are dropped: they carry
    no sequence and would take a token per N (a tile at a telomere or gap starts at its first base)."""
    body = seq[:w]
    lead = len(body) - len(body.lstrip("N"))
    return lead, len(body.rstrip("N")) - lead if lead < len(body) else 0


def with_allele(seq: str, start: int, a: Allele, length: int | None = None) -> str:
    """``seq`` (the reference from genome position ``start``) with ``a`` applied, cut to ``length`` bases."""
    rel = a.pos0 - start
    out = seq[:rel] + a.alt + seq[rel + len(a.ref):]
    return out if length is None else out[:length]


def tile_sequence(genome: Genome, a: Allele, window_bp: int, stride: int, fit=len) -> tuple[int, str, str]:
    """(start, reference window, the reference from ``start`` extended for a deletion) of a checked
    allele's tile on the grid of ``stride``: the tile's end N runs dropped (``trim_ns``), then cut
    on the right to what the model reads (``fit(seq)``: the bases of ``seq`` that fit). ``fit=None``:
    neither (inputs of a fixed length, in which N is a base like any other)."""
    length = genome.lengths[a.contig]
    w = min(window_bp, length)
    start = tile_start(a.pos0, len(a.ref), length, window_bp, stride)
    extra = max(0, len(a.ref) - len(a.alt))  # reference beyond the tile keeps a deletion's window full
    full = genome.fetch(a.contig, start, min(start + w + extra, length))
    if fit is not None:
        lead, w = trim_ns(full, w)
        start, full = start + lead, full[lead:]
        w = fit(full[:w])
    return start, full[:w], full


def allele_windows(a: Allele, genome: Genome, window_bp: int, stride: int | None = None, tok=None) -> tuple[int, str, str]:
    """(tile start, reference window, alternative window) of a checked allele: the definition
    that the shared forwards reproduce, one allele at a time (``tile_sequence``); with ``tok``, a
    tile with interior Ns is cut on the right to fit ``window_bp / 6 + 1`` tokens (``fit_tokens``)."""
    fit = (lambda seq: fit_tokens(tok, seq, window_bp // tok.kmer + tok.n_special)) if tok is not None else len
    start, ref, full = tile_sequence(genome, a, window_bp, stride or default_stride(window_bp), fit)
    return start, ref, with_allele(full, start, a, len(ref))


class _Tile:
    def __init__(self, genome: Genome, contig: str, start: int, w: int, extra: int, tok, strands: int):
        length = genome.lengths[contig]
        full = genome.fetch(contig, start, min(start + min(w, length) + extra, length))
        lead, self.w = trim_ns(full, min(w, length))  # end N runs dropped (allele_windows' rule)
        self.contig, self.start, full = contig, start + lead, full[lead:]
        self.max_tokens = w // tok.kmer + tok.n_special
        self.w = fit_tokens(tok, full[: self.w], self.max_tokens)  # Ns: fewer bases fit (cut on the right)
        self.seq, self.full = full[: self.w], full
        self.strand_seq = [self.seq, reverse_complement(self.seq)][:strands]
        enc = tok.batch_encode(self.strand_seq, max_length=None)
        n = enc.attention_mask.sum(1)
        self.ids = [enc.input_ids[s, : n[s]] for s in range(strands)]
        self.offsets = [enc.offsets[s, : n[s]] for s in range(strands)]
        self.spans = [enc.spans[s, : n[s]].astype(np.int64) for s in range(strands)]

    def alt_window(self, a: Allele) -> str:
        return with_allele(self.full, self.start, a, self.w)

    def tokens(self, strand: int, lo: int, hi: int) -> np.ndarray:
        """Token indices (in the strand's encoding) whose bases intersect [lo, hi)."""
        o, s = self.offsets[strand], self.spans[strand]
        return np.nonzero((s > 0) & (o < hi) & (o + s > lo))[0]


@dataclass
class _Pass:
    tile: _Tile
    strand: int
    embed: bool = False
    mask: tuple[int, ...] = ()  # token indices replaced by <mask>
    alt: Allele | None = None  # alternative window of this allele
    pairs: list = field(default_factory=list)  # (token, id): log-probabilities wanted
    logp: np.ndarray | None = None
    pooled: dict = field(default_factory=dict)

    def sequence(self) -> str:
        w = self.tile.alt_window(self.alt)
        return w if self.strand == 0 else reverse_complement(w)


def _forward(layers: list[int]):
    def forward(model, batch: list[_Pass]) -> list[None]:
        tok = model.tokenizer
        dev = engine.model_device(model)
        rows = [None] * len(batch)
        alt = [i for i, p in enumerate(batch) if p.alt is not None]
        if alt:
            # An indel can bring Ns from beyond the tile into its alternative window: keep the tile's budget.
            enc = tok.batch_encode([batch[i].sequence() for i in alt], max_length=batch[alt[0]].tile.max_tokens, truncation=True)
            for b, i in enumerate(alt):
                rows[i] = enc.input_ids[b, enc.attention_mask[b]]
        for i, p in enumerate(batch):
            if p.alt is None:
                rows[i] = p.tile.ids[p.strand]
                if p.mask:
                    rows[i] = rows[i].copy()
                    rows[i][list(p.mask)] = tok.mask_id
        L = max(len(r) for r in rows)
        ids = np.full((len(batch), L), tok.pad_id, dtype=np.int64)
        want = np.zeros((len(batch), L), dtype=bool)
        for i, (r, p) in enumerate(zip(rows, batch)):
            ids[i, : len(r)] = r
            for t, _ in p.pairs:
                want[i, t] = True
        x = torch.as_tensor(ids, device=dev)
        m = x != tok.pad_id
        need_emb = any(p.embed for p in batch)
        out = model(x, m, repr_layers=layers if need_emb else (), return_logits=False,
                    logits_at=torch.as_tensor(want, device=dev) if want.any() else None)
        if want.any():
            logp = torch.log_softmax(out.logits.float(), dim=-1)
            row_of = np.cumsum(want.ravel()).reshape(want.shape) - 1  # x[want] is row-major
            for i, p in enumerate(batch):
                if p.pairs:
                    t, v = np.array(p.pairs, dtype=np.int64).T
                    p.logp = logp[torch.as_tensor(row_of[i, t], device=dev), torch.as_tensor(v, device=dev)].cpu().numpy().astype(np.float64)
        if need_emb:
            for layer in layers:
                pooled = engine.mean_pool(out.hidden_states[model.resolve_layer(layer)], x, m, tok.cls_id).cpu().numpy()
                for i, p in enumerate(batch):
                    if p.embed:
                        p.pooled[layer] = pooled[i].astype(np.float64)
        return [None] * len(batch)

    return forward


@dataclass
class ScoreOptions:
    """What is scored and how (the fields that change a score; recorded in a job's manifest)."""

    scores: tuple[str, ...] = ("llr", "embedding")
    layers: tuple[int, ...] = (-1,)
    window_tokens: int | None = None  # default: the model's context (NTv3: its default window)
    tile_stride_bp: int | None = None  # default: a quarter of the window, a multiple of a token's bases
    both_strands: bool = False
    label_key: str | None = None
    kmer: int = 6  # bases per token and tokens before the sequence, from the model's tokenizer
    n_special: int = 1

    def __post_init__(self):
        bad = [s for s in self.scores if s not in SCORES]
        if bad or not self.scores:
            raise ValueError(f"scores must be among {', '.join(SCORES)}, not {bad or 'none'}")
        self.scores = tuple(dict.fromkeys(self.scores))
        self.layers = tuple(self.layers)

    def resolve(self, model) -> "ScoreOptions":
        tok = model.tokenizer
        k, n0 = tok.kmer, tok.n_special
        # the family's default window, cut to this model's context (a CPU-pretrained NTv3 has a short one)
        T = self.window_tokens or min(getattr(model.config, "default_window", None) or model.config.max_tokens, model.config.max_tokens)
        if not n0 + 1 <= T <= model.config.max_tokens:
            raise ValueError(f"window_tokens must be in [{n0 + 1}, {model.config.max_tokens}] for this model")
        w = (T - n0) * k
        stride = self.tile_stride_bp or default_stride(w, k)
        if stride % k or not k <= stride <= w:
            raise ValueError(f"tile_stride_bp must be a multiple of {k} in [{k}, {w}], not {stride}")
        for layer in self.layers:
            model.resolve_layer(layer)
        return ScoreOptions(self.scores, self.layers, T, stride, self.both_strands, self.label_key, k, n0)

    @property
    def window_bp(self) -> int:
        return (self.window_tokens - self.n_special) * self.kmer

    def columns(self) -> list[str]:
        cols = [s for s in ("llr", "llr_unmasked") if s in self.scores]
        if "embedding" in self.scores:
            cols += [f"{m}_{l}" for l in self.layers for m in ("l1", "l2", "cosine", "dot")]
        return cols

    def schema(self) -> pa.Schema:
        f = [("chrom", pa.string()), ("pos", pa.int64()), ("id", pa.string()), ("ref", pa.string()), ("alt", pa.string()),
             ("alt_index", pa.int64()), ("status", pa.string()), ("window_start", pa.int64())]
        f += [("label", pa.float64())] if self.label_key else []
        return pa.schema(f + [(c, pa.float64()) for c in self.columns()])


def score_alleles(model, alleles: list[Allele], genome: Genome, opts: ScoreOptions, *, runtime: engine.Runtime | None = None) -> list[dict]:
    """One output row per allele (input order); ``opts`` resolved. Forwards are shared as the
    module docstring says; memory is proportional to ``len(alleles)``."""
    tok = model.tokenizer
    w, strands = opts.window_bp, 2 if opts.both_strands else 1
    want_emb = "embedding" in opts.scores
    by_tile: dict[tuple[str, int], list[Allele]] = {}
    for a in alleles:
        check_allele(a, genome, w)
        if a.status == "scored":
            a.start = tile_start(a.pos0, len(a.ref), genome.lengths[a.contig], w, opts.tile_stride_bp)
            by_tile.setdefault((a.contig, a.start), []).append(a)

    passes: list[_Pass] = []
    plan = []  # (allele, strand, ref pass, [(pass, first pair, n pairs) for llr, llr_unmasked], alt pass)
    for (contig, start), group in by_tile.items():
        extra = max(max(0, len(a.ref) - len(a.alt)) for a in group)
        tile = _Tile(genome, contig, start, w, extra, tok, strands)
        for s in range(strands):
            ref = _Pass(tile, s, embed=want_emb)
            passes.append(ref)
            masked: dict[tuple[int, ...], _Pass] = {}
            for a in group:
                a.start = tile.start  # after its end N runs were dropped
                rel, n = a.pos0 - tile.start, len(a.ref)
                if rel + n > tile.w:  # cut off by the Ns of its tile
                    a.status = "n_rich_window"
                    continue
                lo, hi = (rel, rel + n) if s == 0 else (tile.w - rel - n, tile.w - rel)
                llr = {}
                if a.same_length:
                    toks = tile.tokens(s, lo, hi)
                    alt_seq = tile.alt_window(a) if s == 0 else reverse_complement(tile.alt_window(a))
                    o, sp = tile.offsets[s][toks], tile.spans[s][toks]
                    alt_ids = [tok.token_to_id[alt_seq[x : x + y]] for x, y in zip(o.tolist(), sp.tolist())]
                    pairs = [p for t, r, v in zip(toks.tolist(), tile.ids[s][toks].tolist(), alt_ids) for p in ((t, r), (t, v))]
                    targets = []
                    if "llr" in opts.scores:
                        key = tuple(toks.tolist())
                        if key not in masked:
                            masked[key] = _Pass(tile, s, mask=key)
                            passes.append(masked[key])
                        targets.append(("llr", masked[key]))
                    if "llr_unmasked" in opts.scores:
                        targets.append(("llr_unmasked", ref))
                    for name, p in targets:
                        llr[name] = (p, len(p.pairs), len(pairs))
                        p.pairs.extend(pairs)
                alt = None
                if want_emb:
                    alt = _Pass(tile, s, embed=True, alt=a)
                    passes.append(alt)
                plan.append((a, s, ref, llr, alt))

    passes = [p for p in passes if p.embed or p.pairs]  # a tile pass with nothing to read is not run

    def length(p: _Pass) -> int:
        return len(p.tile.ids[p.strand]) + (len(p.alt.alt) - len(p.alt.ref) if p.alt is not None else 0)

    for _ in engine.run(model, passes, _forward(list(opts.layers)), length=length, runtime=engine.as_runtime(runtime).replace(progress=False)):
        pass

    values: dict[int, dict[str, list[float]]] = {}
    for a, s, ref, llr, alt in plan:
        v = values.setdefault(a.row, {})
        for name, (p, first, n) in llr.items():
            lp = p.logp[first : first + n]
            v.setdefault(name, []).append(float((lp[1::2] - lp[0::2]).sum()))
        if alt is not None:
            for layer in opts.layers:
                r, x = ref.pooled[layer], alt.pooled[layer]
                v.setdefault(f"l1_{layer}", []).append(float(np.abs(r - x).sum()))
                v.setdefault(f"l2_{layer}", []).append(float(np.sqrt(((r - x) ** 2).sum())))
                v.setdefault(f"cosine_{layer}", []).append(float(r @ x / max(np.linalg.norm(r) * np.linalg.norm(x), 1e-30)))
                v.setdefault(f"dot_{layer}", []).append(float(r @ x))

    rows = []
    cols = opts.columns()
    for a in alleles:
        row = {"chrom": a.chrom, "pos": a.pos, "id": a.id, "ref": a.ref, "alt": a.alt, "alt_index": a.alt_index,
               "status": a.status, "window_start": a.start + 1 if a.status == "scored" else None}  # 1-based first base of the tile
        if opts.label_key:
            row["label"] = a.label
        got = values.get(a.row, {})
        for c in cols:
            row[c] = float(np.mean(got[c])) if c in got else math.nan
        rows.append(row)
    return rows


def score_options(model, layers, window_tokens, both_strands, unmasked_llr, label_key, scores, tile_stride_bp) -> ScoreOptions:
    """``ScoreOptions`` from the keyword arguments of the scoring functions, resolved for ``model``."""
    scores = tuple(scores) if scores is not None else DEFAULT_SCORES
    if unmasked_llr and "llr_unmasked" not in scores:
        scores = scores[:1] + ("llr_unmasked",) + scores[1:]
    return ScoreOptions(scores, tuple(layers), window_tokens, tile_stride_bp, both_strands, label_key).resolve(model)


def iter_scores(model, vcf: str | Path, fasta: str | Path | Genome, opts: ScoreOptions, *, chunk_size: int = 4096,
                runtime: engine.Runtime | None = None) -> Iterator[list[dict]]:
    """Rows chunk by chunk (``chunk_size`` records each), in VCF order; ``opts`` resolved."""
    genome = fasta if isinstance(fasta, Genome) else Genome(fasta)
    for chunk in chunks(iter_records(vcf, opts.label_key), chunk_size):
        yield score_alleles(model, [a for rec in chunk for a in rec], genome, opts, runtime=runtime)


def score_variants(
    model,
    vcf: str | Path,
    fasta: str | Path | Genome,
    *,
    layers: Sequence[int] = (-1,),
    window_tokens: int | None = None,
    both_strands: bool = False,
    unmasked_llr: bool = False,
    label_key: str | None = None,
    scores: Sequence[str] = DEFAULT_SCORES,
    tile_stride_bp: int | None = None,
    chunk_size: int = 4096,
    runtime: engine.Runtime | None = None,
) -> VariantScores:
    """Every ALT allele of ``vcf`` as an in-memory table (see the module docstring). ``scores``:
    among ``llr``, ``llr_unmasked``, ``embedding`` (default ``llr`` + ``embedding``; ``unmasked_llr``
    adds ``llr_unmasked``). For files of any size use ``score_variants_to_files``."""
    rt = engine.as_runtime(runtime)
    opts = score_options(model, layers, window_tokens, both_strands, unmasked_llr, label_key, scores, tile_stride_bp)
    rows = []
    with progress_bar(unit="allele", desc="scoring", enabled=rt.progress) as bar:
        for part in iter_scores(model, vcf, fasta, opts, chunk_size=chunk_size, runtime=rt):
            rows.extend(part)
            bar.update(len(part))
    table = pd.DataFrame(rows, columns=opts.schema().names).astype({"window_start": "Int64"})

    skipped = Counter(table.loc[table["status"] != "scored", "status"])
    return VariantScores(table, skipped, opts.columns(), provenance(model), model_fingerprint(model))


# -- files: sharded, resumable, atomic ---------------------------------------------------------------------------


def is_vcf(path) -> bool:
    return str(path).endswith((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf"))


def _rows(batches: Iterable[pa.RecordBatch]) -> Iterator[dict]:
    for b in batches:
        yield from b.to_pylist()


# -- outputs -------------------------------------------------------------------------------------------------


def write_table(scores: VariantScores, path: str | Path) -> Path:
    return write_dataframe(scores.table, path)


def _describe(col: str) -> str:
    if col == "llr":
        return "log P(alt) - log P(ref) over the variant's tokens, masked (ntkit; NaN for indels)"
    if col == "llr_unmasked":
        return "log P(alt) - log P(ref) over the variant's tokens, unmasked reference window (ntkit)"
    metric, layer = col.rsplit("_", 1)
    what = {"l1": "L1 distance", "l2": "L2 distance", "cosine": "cosine similarity", "dot": "dot product"}[metric]
    return f"{what} between mean ref and alt window embeddings at layer {layer} (ntkit)"


def _info_id(col: str) -> str:
    """INFO key of a score column: ``l2_-1`` -> ``NT_L2_M1`` (VCF keys cannot contain '-')."""
    return "NT_" + col.upper().replace("-", "M")


def _vcf_lines(vcf: str | Path) -> Iterator[str]:
    import gzip

    path = vcf_path(vcf)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"BC":
        raise ValueError(f"{vcf}: BCF input: write a table output, or convert it to VCF (bcftools view -Oz)")
    opener = gzip.open if magic == b"\x1f\x8b" else open  # bgzip is gzip
    try:
        with opener(path, "rt") as fh:
            yield from fh
    except (OSError, EOFError) as e:
        raise ValueError(f"{vcf}: {e} (a truncated or corrupt file)") from None


def _fmt(v) -> str:
    return "." if v is None or not np.isfinite(v) else format(float(v), ".7g")


def provenance_line(about: dict, fingerprint: str | None = None) -> str:
    """``##ntkit=<...>``: the version, model, fingerprint, command and date of an annotated VCF."""
    import datetime

    fields = {"Version": about.get("ntkit", ""), "Model": about.get("model", ""), "Fingerprint": fingerprint or "",
              "Command": about.get("command", ""), "Date": datetime.datetime.now().isoformat(timespec="seconds"),
              **({"Licence": about["licence"]} if about.get("licence") else {})}
    return "##ntkit=<" + ",".join(f'{k}="{str(v).replace(chr(34), chr(39))}"' for k, v in fields.items()) + ">\n"


def _header_line(line: str) -> str:
    """A meta line as written: ``##fileformat`` raised to VCFv4.2 (Number=A fields need 4.1+)."""
    m = re.match(r"##fileformat=VCFv(\d+)\.(\d+)", line)
    if m and (int(m.group(1)), int(m.group(2))) < (4, 2):
        return "##fileformat=VCFv4.2\n"
    return line


def number_a_fields(columns: Sequence[str], describe=None):
    """(header lines, fields(rows of one record, number of ALTs) -> INFO strings): ``NT_STATUS``
    and one Number=A float field per score column, values in ALT order."""
    describe = describe or (lambda c: f"ntkit: {c}")
    ids = {c: _info_id(c) for c in columns}
    header = ['##INFO=<ID=NT_STATUS,Number=A,Type=String,Description="ntkit: \'scored\' or why the allele was skipped '
              f'({", ".join(SKIP_REASONS)})">\n']
    header += [f'##INFO=<ID={ids[c]},Number=A,Type=Float,Description="{describe(c)}">\n' for c in columns]

    def fields(rows: list[dict], n_alts: int) -> list[str]:
        out = ["NT_STATUS=" + ",".join(r["status"] for r in rows)]
        for c in columns:
            vals = [r[c] for r in rows]
            if any(v is not None and np.isfinite(v) for v in vals):
                out.append(f"{ids[c]}=" + ",".join(_fmt(v) for v in vals))
        return out

    return header, fields


def write_vcf_rows(rows: Iterable[dict], vcf_in: str | Path, path: str | Path, *, header: Sequence[str], fields,
                   contigs: Iterable[str] = (), provenance: str = "") -> Path:
    """Copy ``vcf_in`` with the INFO of ``fields(rows of the record, number of ALTs)`` added to
    every record with an ALT, taking the rows in VCF order as it streams: one per ALT (one for a
    record without ALT), or, when rows carry a ``record`` number, every row of that record.
    ``header``: the INFO declarations. ``.vcf.gz`` output is bgzipped and tabix-indexed; written
    under a temporary name and renamed when complete.

    The copy is textual (the INFO column extended, every other byte kept): a record that htslib
    would refuse to translate into a new header (an undeclared contig, INFO, FILTER or FORMAT
    key) is copied as it is, and genotype columns are never parsed. ``contigs``: the records'
    contigs, declared in the output header when the input's lacks them. The header says
    ``##fileformat=VCFv4.2`` at least and carries ``provenance`` (``provenance_line``)."""
    import itertools

    import pysam

    path = Path(path)
    rows = iter(rows)
    first = next(rows, None)
    rows = itertools.chain([first] if first is not None else [], rows)
    by_record = first is not None and "record" in first
    pending: list = []
    gz = str(path).endswith((".gz", ".bgz"))
    with atomic_output(path, (".tbi",) if gz else ()) as tmp:
        out = pysam.BGZFile(str(tmp), "wb") if gz else open(tmp, "wb")
        with out:
            declared, k = set(), -1
            for line in _vcf_lines(vcf_in):
                if line.startswith("##"):
                    m = re.match(r"##contig=<ID=([^,>]+)", line)
                    if m:
                        declared.add(m.group(1))
                    out.write(_header_line(line).encode())
                    continue
                if line.startswith("#"):
                    head = [f"##contig=<ID={c}>\n" for c in dict.fromkeys(contigs) if c not in declared]
                    head += ([provenance] if provenance else []) + list(header)
                    out.write("".join(head).encode() + line.encode())
                    continue
                f = line.rstrip("\r\n").split("\t", 8)
                if len(f) < 8:
                    raise ValueError(f"{vcf_in}: malformed record (fewer than 8 columns): {line[:80]!r}")
                k += 1
                n = 0 if f[4] == "." else f[4].count(",") + 1
                if by_record:  # every row of record k (rows come in record order)
                    recs, pending = [r for r in pending if r["record"] == k], [r for r in pending if r["record"] != k]
                    if not pending:
                        for r in rows:
                            if r["record"] != k:
                                pending.append(r)
                                break
                            recs.append(r)
                else:
                    recs = [next(rows) for _ in range(max(n, 1))]
                if not recs or any(r["pos"] != int(f[1]) for r in recs):
                    raise ValueError(f"{vcf_in}: record {f[0]}:{f[1]} does not match the scores (the VCF changed?)")
                if n:
                    extra = fields(recs, n)
                    f[7] = ";".join(extra) if f[7] in (".", "") else f[7] + ";" + ";".join(extra)
                out.write(("\t".join(f) + "\n").encode())
        if gz:
            pysam.tabix_index(str(tmp), preset="vcf", force=True)
    return path


def write_vcf(scores: VariantScores, vcf_in: str | Path, path: str | Path) -> Path:
    """``write_vcf_rows`` for an in-memory ``VariantScores``."""
    t = scores.table.astype(object).where(scores.table.notna(), None)
    header, fields = number_a_fields(scores.score_columns, _describe)
    return write_vcf_rows(iter(t.to_dict("records")), vcf_in, path, header=header, fields=fields, contigs=scores.table["chrom"].tolist(),
                          provenance=provenance_line(scores.about, scores.fingerprint))


def evaluate_scores(scores: VariantScores) -> pd.DataFrame:
    """AUROC / AUPRC of each score against the ``label`` column (scored alleles with a label).
    Scores are oriented by ``EFFECT_SIGN`` so that larger = predicted label 1, and named as used:
    ``-llr`` (a lower log-likelihood ratio predicts label 1), ``+l2_-1``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    t = scores.table
    if "label" not in t:
        raise ValueError("no labels: pass label_key")
    out = []
    for col in scores.score_columns:
        sub = t[(t["status"] == "scored") & t["label"].notna() & np.isfinite(t[col])]
        y = (sub["label"] > 0).astype(int).to_numpy()
        sign = EFFECT_SIGN[col.split("_")[0] if not col.startswith("llr") else col]
        row = {"score": ("-" if sign < 0 else "+") + col, "n": len(sub), "positives": int(y.sum()), "auroc": math.nan, "auprc": math.nan}
        if 0 < y.sum() < len(y):
            x = sign * sub[col].to_numpy()
            row["auroc"] = roc_auc_score(y, x)
            row["auprc"] = average_precision_score(y, x)
        out.append(row)
    return pd.DataFrame(out)


def evaluate_table(path: str | Path) -> pd.DataFrame:
    """``evaluate_scores`` of a written score table (TSV/CSV/parquet with a ``label`` column)."""
    path = str(path)
    t = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path, sep="\t" if path.endswith((".tsv", ".txt")) else ",")
    return evaluate_scores(VariantScores(t, Counter(), [c for c in t.columns if c.split("_")[0] in EFFECT_SIGN]))
