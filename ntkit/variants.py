"""Zero-shot variant effect scores from a VCF and a reference FASTA.

Per ALT allele (multi-allelic records are split), on a window of the model's context centred on
the variant:

- ``llr``: log P(alt) - log P(ref) summed over the tokens that cover the variant, with those
  tokens masked (the masked marginal; one forward serves all ALTs at the same position). Defined
  when REF and ALT have the same length (SNVs, MNVs) and ALT has no N; NaN otherwise.
- ``llr_unmasked`` (``unmasked_llr=True``): the same ratio read from the unmasked reference
  window (the wild-type marginal).
- ``l1_<layer>``, ``l2_<layer>``, ``cosine_<layer>``, ``dot_<layer>``: distances between the
  mean token embeddings (``<cls>`` and padding excluded) of the reference and alternative
  windows at each requested layer (NT's zero-shot embedding scores; layer convention as in
  ``NTModel.forward``: 0 = embeddings, -1 = last layer after the final LayerNorm).

With ``both_strands=True`` every score is the mean over the forward window and its reverse
complement. Orientation for AUROC: larger ``l1``/``l2`` and smaller ``llr``/``cosine``/``dot``
mean "more different from the reference" (see ``EFFECT_SIGN``).

Windows: ``window_tokens`` tokens (default: the model's context) = ``(window_tokens - 1) * 6`` bp.
The window starts a multiple of 6 bp before the variant so that the variant begins a 6-mer, and is
centred as far as that allows; near a contig end it is shifted to stay inside the contig (and is
shorter on a contig shorter than the window). Alternative windows of indels are filled or
trimmed on the right to the same length when the contig allows.

Bad input never yields a number silently: alleles are skipped with a reason in ``status``
(``ref_mismatch``, ``contig_not_in_fasta``, ``symbolic_alt``, ``spanning_deletion``,
``invalid_allele``, ``too_long``, ``outside_contig``, ``no_alt``) and counted in the summary.
REF is compared to the FASTA case-insensitively; ``chr20`` and ``20`` are the same contig.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .data import reverse_complement
from .embed import default_batch_tokens
from .genome import Genome, vcf_path

EFFECT_SIGN = {"llr": -1, "llr_unmasked": -1, "l1": 1, "l2": 1, "cosine": -1, "dot": -1}
_ALLELE = re.compile(r"[ACGTN]+")
SKIP_REASONS = ("ref_mismatch", "contig_not_in_fasta", "symbolic_alt", "spanning_deletion", "invalid_allele", "too_long",
                "outside_contig", "no_alt")


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
    start: int = 0  # window start (0-based)
    ref_window: str = ""
    alt_window: str = ""

    @property
    def pos0(self) -> int:
        return self.pos - 1

    @property
    def same_length(self) -> bool:
        return len(self.ref) == len(self.alt) and "N" not in self.alt


@dataclass
class VariantScores:
    table: pd.DataFrame  # one row per ALT allele, input order
    skipped: Counter = field(default_factory=Counter)  # reason -> alleles
    score_columns: list[str] = field(default_factory=list)

    def summary(self) -> str:
        n = len(self.table)
        scored = int((self.table["status"] == "scored").sum())
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"{scored}/{n} alleles scored; skipped {skipped}"


def read_alleles(vcf: str | Path, label_key: str | None = None) -> tuple[list[Allele], list[tuple[int, int]]]:
    """ALT alleles of every record (multi-allelic split) and, per record, its rows' [first, last)."""
    import pysam

    alleles, spans = [], []
    with pysam.VariantFile(vcf_path(vcf)) as vf:
        if label_key and label_key not in vf.header.info:
            raise ValueError(f"INFO key {label_key!r} is not declared in {vcf}")
        for rec in vf:
            first = len(alleles)
            label = None
            if label_key:
                v = rec.info.get(label_key)
                label = float(v[0] if isinstance(v, tuple) else v) if v is not None else (0.0 if vf.header.info[label_key].type == "Flag" else None)
            alts = rec.alts or ()
            if not alts:
                alleles.append(Allele(len(alleles), rec.chrom, rec.pos, rec.id or ".", rec.ref, ".", 0, label, "no_alt"))
            for k, alt in enumerate(alts, start=1):
                alleles.append(Allele(len(alleles), rec.chrom, rec.pos, rec.id or ".", rec.ref.upper(), alt.upper(), k, label))
            spans.append((first, len(alleles)))
    return alleles, spans


def place_windows(alleles: Iterable[Allele], genome: Genome, window_bp: int) -> None:
    """Check each allele against the FASTA and set its reference / alternative windows (in place)."""
    for a in alleles:
        if a.status != "scored":
            continue
        if a.alt == "*":
            a.status = "spanning_deletion"
            continue
        if a.alt.startswith("<") or "[" in a.alt or "]" in a.alt or a.alt == ".":
            a.status = "symbolic_alt"
            continue
        if not (_ALLELE.fullmatch(a.ref) and _ALLELE.fullmatch(a.alt)):
            a.status = "invalid_allele"
            continue
        try:
            a.contig = genome.resolve(a.chrom)
        except KeyError:
            a.status = "contig_not_in_fasta"
            continue
        length = genome.lengths[a.contig]
        if a.pos0 < 0 or a.pos0 + len(a.ref) > length:
            a.status = "outside_contig"
            continue
        if genome.fetch(a.contig, a.pos0, a.pos0 + len(a.ref)) != a.ref:
            a.status = "ref_mismatch"
            continue
        if max(len(a.ref), len(a.alt)) > window_bp // 2:
            a.status = "too_long"
            continue
        w = min(window_bp, length)
        lead = (w - len(a.ref)) // 2 // 6 * 6  # bases before the variant: a multiple of 6, centred
        a.start = min(max(a.pos0 - lead, 0), length - w)
        # Extra reference on the right so a deletion's alternative window keeps the length.
        extra = max(0, len(a.ref) - len(a.alt))
        seq = genome.fetch(a.contig, a.start, min(a.start + w + extra, length))
        a.ref_window = seq[:w]
        rel = a.pos0 - a.start
        a.alt_window = (seq[:rel] + a.alt + seq[rel + len(a.ref) :])[:w]


# -- model passes -----------------------------------------------------------------------------------------


@dataclass
class _Pass:
    sequence: str
    embed: bool  # pooled embeddings wanted
    span: tuple[int, int] | None = None  # nucleotides [start, end) of the variant: its tokens' ids are recorded
    mask: bool = False  # mask the span's tokens and return their log-probs
    logits: bool = False  # return the span's log-probs without masking
    result: dict = field(default_factory=dict)


def _span_tokens(offsets: np.ndarray, spans: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Token indices whose nucleotides intersect [lo, hi)."""
    return np.nonzero((spans > 0) & (offsets < hi) & (offsets + spans > lo))[0]


@torch.inference_mode()
def _run_passes(model, passes: list[_Pass], layers: list[int], batch_size: int, device, dtype, progress: bool) -> None:
    tok = model.tokenizer
    order = sorted(range(len(passes)), key=lambda i: len(passes[i].sequence))  # length bucketing
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(passes), unit="window", desc="scoring", dynamic_ncols=True)
    for first in range(0, len(order), batch_size):
        idx = order[first : first + batch_size]
        enc = tok.batch_encode([passes[i].sequence for i in idx], truncation=True)
        ids = enc.input_ids.copy()
        want = np.zeros(ids.shape, dtype=bool)
        for b, i in enumerate(idx):
            p = passes[i]
            if p.span is None:
                continue
            t = _span_tokens(enc.offsets[b], enc.spans[b], *p.span)
            p.result.update(tokens=t, ids=enc.input_ids[b, t], offsets=enc.offsets[b, t])
            if p.mask:
                ids[b, t] = tok.mask_id
            want[b, t] = p.mask or p.logits
        x = torch.as_tensor(ids, device=device)
        mask = torch.as_tensor(enc.attention_mask, device=device)
        need_embed = any(passes[i].embed for i in idx)
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype not in (None, torch.float32)):
            out = model(x, mask, repr_layers=layers if need_embed else (), return_logits=False,
                        logits_at=torch.as_tensor(want, device=device) if want.any() else None)
        if want.any():
            logp = torch.log_softmax(out.logits.float(), dim=-1).cpu().numpy()
            ends = np.cumsum(want.sum(1))
            for b, i in enumerate(idx):
                if want[b].any():
                    passes[i].result["logp"] = logp[ends[b] - want[b].sum() : ends[b]]
        if need_embed:
            keep = (mask & (x != tok.cls_id)).unsqueeze(-1).float()
            for layer in layers:
                h = out.hidden_states[model.resolve_layer(layer)].float()
                pooled = ((h * keep).sum(1) / keep.sum(1).clamp(min=1)).cpu().numpy()
                for b, i in enumerate(idx):
                    if passes[i].embed:
                        passes[i].result[layer] = pooled[b]
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()


def _llr(logp: np.ndarray, ref_ids: np.ndarray, alt_ids: np.ndarray) -> float:
    r = np.arange(len(ref_ids))
    return float((logp[r, alt_ids] - logp[r, ref_ids]).sum())


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
    batch_size: int | None = None,
    device=None,
    dtype=None,
    progress: bool = True,
) -> VariantScores:
    """Score every ALT allele of ``vcf``; see the module docstring for the scores and skips.
    ``batch_size``: windows per forward (default: as many as fit ``embed.default_batch_tokens``)."""
    genome = fasta if isinstance(fasta, Genome) else Genome(fasta)
    window_tokens = window_tokens or model.config.max_tokens
    if window_tokens > model.config.max_tokens or window_tokens < 2:
        raise ValueError(f"window_tokens must be in [2, {model.config.max_tokens}] for this model")
    device = device or next(model.parameters()).device
    batch_size = batch_size or max(1, default_batch_tokens(device) // window_tokens)
    layers = list(layers)
    model.eval()
    alleles, _ = read_alleles(vcf, label_key)
    place_windows(alleles, genome, (window_tokens - 1) * 6)

    passes: list[_Pass] = []
    ref_pass: dict[tuple, int] = {}  # (contig, start, strand, mask span or None) -> pass index: shared windows
    plan = []  # per allele and strand: (allele, strand, ref embed pass, masked pass, unmasked pass, alt pass)

    def shared_pass(a: Allele, strand: str, span, mask: bool, embed: bool) -> int:
        # Reference windows are shared by every allele with the same window (and masked span).
        key = (a.contig, a.start, len(a.ref_window), strand, span if mask else None)
        if key not in ref_pass:
            seq = a.ref_window if strand == "+" else reverse_complement(a.ref_window)
            ref_pass[key] = len(passes)
            passes.append(_Pass(seq, embed=embed, span=span if mask else None, mask=mask))
        passes[ref_pass[key]].embed |= embed
        return ref_pass[key]

    for a in alleles:
        if a.status != "scored":
            continue
        rel, n = a.pos0 - a.start, len(a.ref)
        w = len(a.ref_window)
        for strand in ("+", "-") if both_strands else ("+",):
            span = (rel, rel + n) if strand == "+" else (w - rel - n, w - rel)
            emb = shared_pass(a, strand, None, mask=False, embed=True)
            masked = shared_pass(a, strand, span, mask=True, embed=False) if a.same_length else None
            alt_seq = a.alt_window if strand == "+" else reverse_complement(a.alt_window)
            alt = len(passes)
            passes.append(_Pass(alt_seq, embed=True, span=span if a.same_length else None))
            unmasked = None
            if unmasked_llr and a.same_length:
                unmasked = len(passes)
                passes.append(_Pass(passes[emb].sequence, embed=False, span=span, logits=True))
            plan.append((a, strand, emb, masked, unmasked, alt))

    _run_passes(model, passes, layers, batch_size, device, dtype, progress)

    cols = ["llr"] + (["llr_unmasked"] if unmasked_llr else []) + [f"{m}_{l}" for l in layers for m in ("l1", "l2", "cosine", "dot")]
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a, strand, emb, masked, unmasked, alt in plan:
        s = acc[a.row]
        pa = passes[alt].result
        if masked is not None:
            pm = passes[masked].result
            # Same length, no N in ALT: the ALT window has the same token frame at the variant.
            if len(pa["ids"]) == len(pm["ids"]) and np.array_equal(pa["offsets"], pm["offsets"]):
                s["llr"].append(_llr(pm["logp"], pm["ids"], pa["ids"]))
                if unmasked is not None:
                    pu = passes[unmasked].result
                    s["llr_unmasked"].append(_llr(pu["logp"], pu["ids"], pa["ids"]))
        for layer in layers:
            r, v = passes[emb].result[layer].astype(np.float64), pa[layer].astype(np.float64)
            s[f"l1_{layer}"].append(float(np.abs(r - v).sum()))
            s[f"l2_{layer}"].append(float(np.sqrt(((r - v) ** 2).sum())))
            s[f"cosine_{layer}"].append(float(r @ v / max(np.linalg.norm(r) * np.linalg.norm(v), 1e-30)))
            s[f"dot_{layer}"].append(float(r @ v))

    rows = []
    for a in alleles:
        row = {"chrom": a.chrom, "pos": a.pos, "id": a.id, "ref": a.ref, "alt": a.alt, "alt_index": a.alt_index, "status": a.status,
               "window_start": a.start + 1 if a.status == "scored" else np.nan}
        if label_key:
            row["label"] = a.label
        for c in cols:
            vals = acc[a.row].get(c, []) if a.status == "scored" else []
            row[c] = float(np.mean(vals)) if vals else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    skipped = Counter(a.status for a in alleles if a.status != "scored")
    return VariantScores(table, skipped, cols)


# -- outputs -------------------------------------------------------------------------------------------------


def write_table(scores: VariantScores, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        scores.table.to_parquet(path, index=False)
    else:
        scores.table.to_csv(path, sep="\t" if path.suffix in (".tsv", ".txt") else ",", index=False, na_rep="NA")
    return path


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


def write_vcf(scores: VariantScores, vcf_in: str | Path, path: str | Path) -> Path:
    """Copy ``vcf_in`` with one Number=A INFO field per score plus ``NT_STATUS``; ``.vcf.gz`` output
    is bgzipped and tabix-indexed."""
    import pysam

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = scores.table
    with pysam.VariantFile(vcf_path(vcf_in)) as vin:
        header = vin.header.copy()
        if "END" not in header.info:  # htslib sets END on symbolic alleles
            header.add_meta("INFO", items=[("ID", "END"), ("Number", "1"), ("Type", "Integer"), ("Description", "End position of the variant")])
        header.add_meta("INFO", items=[("ID", "NT_STATUS"), ("Number", "A"), ("Type", "String"),
                                       ("Description", "ntkit: 'scored' or why the allele was skipped (" + ", ".join(SKIP_REASONS) + ")")])
        for col in scores.score_columns:
            header.add_meta("INFO", items=[("ID", _info_id(col)), ("Number", "A"), ("Type", "Float"), ("Description", _describe(col))])
        tmp = path.with_name(path.name + ".tmp")
        mode = "wz" if path.name.endswith(".gz") else "w"
        with pysam.VariantFile(str(tmp), mode, header=header) as vout:
            row = 0
            for rec in vin:
                n = len(rec.alts or ())
                rows = table.iloc[row : row + max(n, 1)]
                row += max(n, 1)
                rec.translate(header)
                new = rec
                if n:
                    new.info["NT_STATUS"] = tuple(rows["status"])
                    for col in scores.score_columns:
                        vals = [None if not np.isfinite(v) else float(v) for v in rows[col]]
                        if any(v is not None for v in vals):
                            new.info[_info_id(col)] = tuple(vals)
                vout.write(new)
    import os

    os.replace(tmp, path)
    if mode == "wz":
        pysam.tabix_index(str(path), preset="vcf", force=True)
    return path


def evaluate_scores(scores: VariantScores) -> pd.DataFrame:
    """AUROC / AUPRC of each score against the ``label`` column (scored alleles with a label).
    Scores are oriented by ``EFFECT_SIGN`` so that larger = predicted label 1."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    t = scores.table
    if "label" not in t:
        raise ValueError("no labels: pass label_key")
    out = []
    for col in scores.score_columns:
        sub = t[(t["status"] == "scored") & t["label"].notna() & np.isfinite(t[col])]
        y = (sub["label"] > 0).astype(int).to_numpy()
        row = {"score": col, "n": len(sub), "positives": int(y.sum()), "auroc": math.nan, "auprc": math.nan}
        if 0 < y.sum() < len(y):
            x = EFFECT_SIGN[col.split("_")[0] if not col.startswith("llr") else col] * sub[col].to_numpy()
            row["auroc"] = roc_auc_score(y, x)
            row["auprc"] = average_precision_score(y, x)
        out.append(row)
    return pd.DataFrame(out)


# -- CLI -------------------------------------------------------------------------------------------------------


def add_cli(sub) -> None:
    from .cli import add_runtime_args

    s = sub.add_parser("score-variants", help="zero-shot variant effect scores: VCF + FASTA -> annotated VCF / table")
    s.add_argument("--vcf", required=True)
    s.add_argument("--fasta", required=True)
    s.add_argument("--model", required=True, help="checkpoint directory or preset")
    s.add_argument("--out", required=True, nargs="+", help="output files: .vcf/.vcf.gz (annotated), .tsv/.csv/.parquet (table)")
    s.add_argument("--layers", type=int, nargs="+", default=[-1])
    s.add_argument("--window-tokens", type=int)
    s.add_argument("--both-strands", action="store_true")
    s.add_argument("--unmasked-llr", action="store_true")
    s.add_argument("--label-key", help="INFO key holding a 0/1 label (or a Flag): report AUROC/AUPRC")
    s.add_argument("--batch-size", type=int, help="windows per forward (default: 2,048 tokens' worth on CPU, 16,384 on GPU)")
    add_runtime_args(s)
    s.set_defaults(func=_cli)


def _cli(args) -> int:
    from .cli import runtime

    model, device, dtype = runtime(args, args.model)
    scores = score_variants(model, args.vcf, args.fasta, layers=args.layers, window_tokens=args.window_tokens,
                            both_strands=args.both_strands, unmasked_llr=args.unmasked_llr, label_key=args.label_key,
                            batch_size=args.batch_size, device=device, dtype=dtype, progress=args.progress)
    print(scores.summary())
    for out in args.out:
        if out.endswith((".vcf", ".vcf.gz")):
            print(f"wrote {write_vcf(scores, args.vcf, out)}")
        else:
            print(f"wrote {write_table(scores, out)}")
    if args.label_key:
        print(evaluate_scores(scores).to_string(index=False))
    return 0
