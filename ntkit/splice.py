"""Splice-site prediction at nucleotide resolution, SpliceAI's metrics and classical baselines.

Labels (per nucleotide, transcript orientation): 0 none, 1 acceptor (first base of an exon after
an intron), 2 donor (last base of an exon before an intron), as in SpliceAI. Minus-strand genes
are reverse-complemented, so the model always reads 5' -> 3' of the transcript; predictions are
mapped back to genome coordinates on output.

Transcript tables: SpliceAI's ``canonical_dataset.txt`` (name, paralog, chrom, strand, tx_start,
tx_end, exon ends, exon starts; 1-based) or a GTF/GFF (exons grouped by transcript).

Head: every token's final embedding -> 6 x 3 logits (a linear layer, as NT/SegmentNT): slot ``k``
of a 6-mer token is its ``k``-th nucleotide; a single-base token (N or a leftover base) uses
slot 0. Trained with per-nucleotide cross-entropy, fully or with IA3.

Metrics (SpliceAI, per class on held-out data): top-k accuracy, with k the number of true sites of
the class: the fraction of true sites among the k highest-scoring positions; and PR-AUC
(average precision, scikit-learn). Baselines scored on the same positions: MaxEntScan (donor
9-mer, acceptor 23-mer; Yeo & Burge 2004, from its published tables) and a position weight
matrix fitted on the training sites.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .sequence import base_codes, reverse_complement
from .annotation import GTF_SUFFIXES, transcripts
from .genome import Genome

CLASSES = ("none", "acceptor", "donor")
SPLICEAI_TEST_CHROMS = ("chr1", "chr3", "chr5", "chr7", "chr9")


@dataclass
class Transcript:
    name: str
    chrom: str
    strand: str
    start: int  # 0-based, half-open transcript span
    end: int
    acceptors: list[int] = field(default_factory=list)  # 0-based genome positions of the labelled base
    donors: list[int] = field(default_factory=list)


def read_transcripts(path: str | Path, chroms: Sequence[str] | None = None, skip_paralogs: bool = False) -> list[Transcript]:
    path = Path(path)
    keep = None if not chroms else {c.removeprefix("chr") for c in chroms}
    opener = gzip.open if path.suffix == ".gz" else open
    name = path.name.lower().removesuffix(".gz")
    out: list[Transcript] = []
    if name.endswith(GTF_SUFFIXES):
        for tx, (chrom, strand, ex) in transcripts(path).items():
            if keep is not None and chrom.removeprefix("chr") not in keep:
                continue
            ends = [e - 1 for _, e in ex[:-1]]  # last base of each exon but the last
            starts = [s for s, _ in ex[1:]]  # first base of each exon but the first
            t = Transcript(tx, chrom, strand, ex[0][0], ex[-1][1])
            t.donors, t.acceptors = (ends, starts) if strand == "+" else (starts, ends)
            out.append(t)
        return out
    with opener(path, "rt") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) < 8 or line.startswith("#"):
                continue
            chrom, strand = f[2], f[3]
            if keep is not None and chrom.removeprefix("chr") not in keep:
                continue
            if skip_paralogs and f[1] == "1":
                continue
            ends = [int(x) - 1 for x in f[6].strip(",").split(",") if x]  # 1-based last exon base -> 0-based
            starts = [int(x) - 1 for x in f[7].strip(",").split(",") if x]  # 1-based first exon base -> 0-based
            t = Transcript(f[0], chrom, strand, int(f[4]) - 1, int(f[5]))
            t.donors, t.acceptors = (ends, starts) if strand == "+" else (starts, ends)
            out.append(t)
    return out


# -- dataset ---------------------------------------------------------------------------------------------------


@dataclass
class SpliceWindows:
    """Windows in transcript orientation: ``sequences[i]`` with ``labels[i]`` (uint8 per base) taken
    from ``chrom[i]`` at genome ``start[i]`` (0-based, + strand coordinates) on ``strand[i]``."""

    sequences: list[str]
    labels: list[np.ndarray]
    chrom: list[str]
    start: list[int]
    strand: list[str]
    transcript: list[str]
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.sequences)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(l) for l in self.labels], dtype=np.int64)
        flat = np.concatenate(self.labels).astype(np.uint8) if self.labels else np.zeros(0, np.uint8)
        from .jobs import atomic_output

        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, sequences=np.array(self.sequences), labels=flat, label_lengths=lengths, chrom=np.array(self.chrom),
                            start=np.array(self.start), strand=np.array(self.strand), transcript=np.array(self.transcript),
                            skipped=json.dumps(dict(self.skipped)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SpliceWindows":
        z = np.load(path, allow_pickle=False)
        labels = np.split(z["labels"], np.cumsum(z["label_lengths"])[:-1]) if len(z["label_lengths"]) else []
        return cls([str(x) for x in z["sequences"]], labels, [str(x) for x in z["chrom"]], [int(s) for s in z["start"]], [str(x) for x in z["strand"]],
                   [str(x) for x in z["transcript"]], Counter(json.loads(str(z["skipped"]))))

    def counts(self) -> dict[str, int]:
        c = np.bincount(np.concatenate(self.labels) if self.labels else np.zeros(0, int), minlength=3)
        return {k: int(v) for k, v in zip(CLASSES, c)}


def build_windows(genome: Genome, transcripts: Sequence[Transcript], window_bp: int, flank: int = 0,
                  max_windows: int | None = None, max_n_fraction: float = 0.1, min_sites: int = 0) -> SpliceWindows:
    """Tile each transcript (plus ``flank`` bp each side) with non-overlapping ``window_bp`` windows.
    Overlapping transcripts label each other's sites too (all sites of the table are labelled).
    ``min_sites`` > 0 keeps only windows with at least that many sites (for training budgets;
    evaluate on all windows)."""
    label_at: dict[tuple, dict[int, int]] = defaultdict(dict)
    for t in transcripts:
        d = label_at[(t.chrom, t.strand)]
        for p in t.acceptors:
            d[p] = 1
        for p in t.donors:
            d[p] = 2
    # (chrom, strand) -> sorted site positions and their classes
    sites = {k: (np.array(sorted(d), dtype=np.int64), np.array([d[p] for p in sorted(d)], dtype=np.uint8)) for k, d in label_at.items()}
    out = SpliceWindows([], [], [], [], [], [])
    for t in transcripts:
        try:
            contig = genome.resolve(t.chrom)
        except KeyError:
            out.skipped["chromosome not in FASTA"] += 1
            continue
        L = genome.lengths[contig]
        lo, hi = max(0, t.start - flank), min(L, t.end + flank)
        if t.end > L:
            out.skipped["transcript beyond the FASTA's end"] += 1
            continue
        pos, cls = sites[(t.chrom, t.strand)]
        for s in range(lo, hi, window_bp):
            e = min(s + window_bp, L)
            if e - s < window_bp // 4:
                continue
            seq = genome.fetch(contig, s, e)
            if seq.count("N") > max_n_fraction * len(seq):
                out.skipped["N-rich window"] += 1
                continue
            lab = np.zeros(e - s, dtype=np.uint8)
            i, j = np.searchsorted(pos, [s, e])
            lab[pos[i:j] - s] = cls[i:j]
            if (lab > 0).sum() < min_sites:
                out.skipped[f"fewer than {min_sites} sites"] += 1
                continue
            if t.strand == "-":
                seq, lab = reverse_complement(seq), lab[::-1].copy()
            out.sequences.append(seq)
            out.labels.append(lab)
            out.chrom.append(t.chrom)
            out.start.append(s)
            out.strand.append(t.strand)
            out.transcript.append(t.name)
            if max_windows and len(out) >= max_windows:
                return out
    return out


def split_by_chromosome(transcripts: Sequence[Transcript], test_chroms: Sequence[str] = SPLICEAI_TEST_CHROMS):
    test = {c.removeprefix("chr") for c in test_chroms}
    tr = [t for t in transcripts if t.chrom.removeprefix("chr") not in test]
    te = [t for t in transcripts if t.chrom.removeprefix("chr") in test]
    return tr, te


# -- model --------------------------------------------------------------------------------------------------------


class SpliceModel(nn.Module):
    """Base model (+ optional IA3) + a token -> 6 x 3 head; ``forward`` gives per-nucleotide logits."""

    def __init__(self, base, method: str = "ia3", attach: bool = True):
        super().__init__()
        from . import adapters

        self.base = base
        self.method = method
        self.head = nn.Linear(base.config.hidden_size, 6 * len(CLASSES))
        for p in base.parameters():
            p.requires_grad_(method == "full")
        if attach and method == "ia3":
            adapters.attach(base, "ia3")

    def forward(self, ids, mask, gather_tok, gather_slot):
        """``gather_tok`` / ``gather_slot`` [B, N]: token and slot of each nucleotide (-1 = none)."""
        L = self.base.config.num_layers
        h = self.base(ids, mask, repr_layers=[L], return_logits=False).hidden_states[L]
        z = self.head(h).view(h.shape[0], h.shape[1], 6, len(CLASSES))
        b = torch.arange(ids.shape[0], device=ids.device)[:, None]
        return z[b, gather_tok.clamp(min=0), gather_slot.clamp(min=0)]  # [B, N, 3]

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _encode(tok, seqs: list[str], device):
    enc = tok.batch_encode(seqs, truncation=True)
    n2t = enc.nucleotide_to_token()  # [B, N]
    b = np.arange(len(seqs))[:, None]
    slot = np.where(n2t >= 0, np.arange(n2t.shape[1])[None, :] - enc.offsets[b, np.maximum(n2t, 0)], -1)
    ids, mask = enc.to_torch(device)
    return ids, mask, torch.as_tensor(n2t, device=device), torch.as_tensor(slot, device=device), enc


@dataclass
class SpliceTrainConfig:
    method: Literal["ia3", "full"] = "ia3"
    lr: float = 3e-3
    epochs: int = 3
    batch_size: int = 4
    max_minutes: float | None = None
    site_weight: float = 1.0  # cross-entropy weight of acceptor/donor vs none (SpliceAI: 1; >1 helps short CPU runs)
    seed: int = 0

    def __post_init__(self) -> None:
        from .config import check_fields

        check_fields(self)


def train_splice(base, data: SpliceWindows, cfg: SpliceTrainConfig | None = None, device=None, progress: bool = True) -> SpliceModel:
    import copy
    import time

    cfg = cfg or SpliceTrainConfig()
    device = device or next(base.parameters()).device
    if cfg.method == "full":
        base = copy.deepcopy(base)
    torch.manual_seed(cfg.seed)
    model = SpliceModel(base, cfg.method).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    tok = base.tokenizer
    rng = np.random.default_rng(cfg.seed)
    t0 = time.time()
    steps = cfg.epochs * math.ceil(len(data) / cfg.batch_size)
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, unit="batch", desc=f"splice ({cfg.method})", dynamic_ncols=True, disable=not progress)
    done = False
    for _ in range(cfg.epochs):
        perm = rng.permutation(len(data))
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            ids, mask, n2t, slot, _ = _encode(tok, [data.sequences[k] for k in idx], device)
            y = torch.full(n2t.shape, -100, dtype=torch.long, device=device)
            for b, k in enumerate(idx):
                n = min(len(data.labels[k]), n2t.shape[1])
                y[b, :n] = torch.as_tensor(data.labels[k][:n].astype(np.int64), device=device)
            y[n2t < 0] = -100
            logits = model(ids, mask, n2t, slot)
            weight = torch.tensor([1.0, cfg.site_weight, cfg.site_weight], device=device) if cfg.site_weight != 1.0 else None
            loss = F.cross_entropy(logits.reshape(-1, len(CLASSES)).float(), y.reshape(-1), weight=weight, ignore_index=-100)
            if not torch.isfinite(loss):
                raise FloatingPointError("splice training loss is not finite")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if cfg.max_minutes and (time.time() - t0) / 60 > cfg.max_minutes:
                done = True
                break
        if done:
            break
    bar.close()
    return model.eval()


def iter_predict_windows(model: SpliceModel, sequences: Iterable[str], *, batch_tokens: int | None = None,
                         batch_size: int | None = None, device=None, dtype=None, progress: bool = False) -> Iterator[np.ndarray]:
    """Per window, in input order as they stream in: float32 [len, 3] class probabilities
    (none / acceptor / donor, transcript orientation), through ``ntkit.engine``."""
    from . import engine

    tok, cap = model.base.tokenizer, model.base.config.max_tokens

    def forward(m, batch: list[str]):
        ids, mask, n2t, slot, _ = _encode(tok, batch, engine.model_device(m))
        p = torch.softmax(m(ids, mask, n2t, slot).float(), -1).cpu().numpy()
        return [p[b, : len(s)] for b, s in enumerate(batch)]

    yield from engine.run(model, sequences, forward, length=lambda s: min(tok.token_length(len(s)), cap),
                          batch_tokens=batch_tokens, batch_size=batch_size, device=device, dtype=dtype,
                          progress=progress, desc="splice", unit="window")


def predict_windows(model: SpliceModel, data: SpliceWindows, batch_size: int | None = None, device=None, progress: bool = False,
                    *, batch_tokens: int | None = None, dtype=None) -> list[np.ndarray]:
    """Per window: float32 [len, 3] class probabilities (transcript orientation)."""
    return list(iter_predict_windows(model, data.sequences, batch_tokens=batch_tokens, batch_size=batch_size,
                                     device=device, dtype=dtype, progress=progress))


# -- classical baselines ---------------------------------------------------------------------------------------------

_BGD = {"A": 0.27, "C": 0.23, "G": 0.23, "T": 0.27}


class MaxEntScan:
    """MaxEntScan scores (log2 odds) from the published tables: ``score5`` of a 9-mer donor site
    (3 exonic + 6 intronic bases, GT at 4-5) and ``score3`` of a 23-mer acceptor site (20 intronic
    + 3 exonic, AG at 19-20). Sequences with non-ACGT bases score -inf."""

    CONS5 = ({"A": 0.004, "C": 0.0032, "G": 0.9896, "T": 0.0032}, {"A": 0.0034, "C": 0.0039, "G": 0.0042, "T": 0.9884})
    CONS3 = ({"A": 0.9903, "C": 0.0032, "G": 0.0034, "T": 0.0030}, {"A": 0.0027, "C": 0.0037, "G": 0.9905, "T": 0.0030})

    def __init__(self, score5_matrix: str | Path, score3_matrix: str | Path):
        me5 = pd.read_csv(score5_matrix, sep=r"\s+", header=None, names=["kmer", "p"])
        self.me5 = np.zeros(4**7)
        self.me5[self._hash_many(me5["kmer"].tolist(), 7)] = me5["p"].to_numpy()
        me3 = np.loadtxt(score3_matrix)
        self.me3 = [np.zeros(int(me3[me3[:, 0] == m, 1].max()) + 1) for m in range(9)]
        for m, h, v in me3:
            self.me3[int(m)][int(h)] = v

    @staticmethod
    def _hash_many(kmers: list[str], k: int) -> np.ndarray:
        a = base_codes("".join(kmers)).astype(np.int64).reshape(-1, k)
        return a @ (4 ** np.arange(k - 1, -1, -1))

    @staticmethod
    def _windows(seq: str, k: int) -> np.ndarray:
        codes = base_codes(seq).astype(np.int64)
        return np.lib.stride_tricks.sliding_window_view(codes, k)

    def _cons(self, codes2: np.ndarray, cons) -> np.ndarray:
        c1 = np.array([cons[0][b] / _BGD[b] for b in "ACGT"])
        c2 = np.array([cons[1][b] / _BGD[b] for b in "ACGT"])
        return c1[codes2[:, 0]] * c2[codes2[:, 1]]

    def score5_all(self, seq: str) -> np.ndarray:
        """Score of every 9-mer start: [len - 8]."""
        w = self._windows(seq, 9)
        bad = (w < 0).any(1)
        w = np.where(w < 0, 0, w)
        rest = np.concatenate([w[:, :3], w[:, 5:]], axis=1) @ (4 ** np.arange(6, -1, -1))
        s = np.log2(self._cons(w[:, 3:5], self.CONS5) * self.me5[rest])
        return np.where(bad, -np.inf, s)

    def score3_all(self, seq: str) -> np.ndarray:
        """Score of every 23-mer start: [len - 22]."""
        w = self._windows(seq, 23)
        bad = (w < 0).any(1)
        w = np.where(w < 0, 0, w)
        r = np.concatenate([w[:, :18], w[:, 20:]], axis=1)  # 21-mer without the AG

        def h(a, b):
            return r[:, a:b] @ (4 ** np.arange(b - a - 1, -1, -1))

        m = self.me3
        num = m[0][h(0, 7)] * m[1][h(7, 14)] * m[2][h(14, 21)] * m[3][h(4, 11)] * m[4][h(11, 18)]
        den = m[5][h(4, 7)] * m[6][h(7, 11)] * m[7][h(11, 14)] * m[8][h(14, 18)]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.log2(self._cons(w[:, 18:20], self.CONS3) * num / den)
        return np.where(bad, -np.inf, s)

    def score5(self, nine: str) -> float:
        return float(self.score5_all(nine)[0])

    def score3(self, twenty_three: str) -> float:
        return float(self.score3_all(twenty_three)[0])

    def site_scores(self, seq: str) -> np.ndarray:
        """[len, 3] per-position scores in label coordinates: acceptor at the first exonic base
        (23-mer = 20 intronic before it + 3 exonic), donor at the last exonic base (9-mer = 3
        exonic ending there + 6 intronic); -inf where the k-mer does not fit."""
        n = len(seq)
        out = np.full((n, 3), -np.inf)
        if n >= 23:
            out[20 : n - 2, 1] = self.score3_all(seq)
        if n >= 9:
            out[2 : n - 6, 2] = self.score5_all(seq)
        return out


class SitePWM:
    """Log-odds position weight matrices of donor (9-mer) and acceptor (23-mer) sites fitted on
    training windows (pseudocount 1, background = base frequencies of the training windows)."""

    SPANS = {1: (20, 3), 2: (2, 7)}  # class -> (bases before the labelled base, bases from it on)

    def fit(self, data: SpliceWindows) -> "SitePWM":
        self.w = {}
        bg = np.ones(4)
        for s in data.sequences:
            c = base_codes(s).astype(np.int64)
            bg += np.bincount(c[c >= 0], minlength=4)
        bg /= bg.sum()
        for cls, (before, after) in self.SPANS.items():
            counts = np.ones((before + after, 4))
            for s, lab in zip(data.sequences, data.labels):
                c = base_codes(s).astype(np.int64)
                for p in np.nonzero(lab == cls)[0]:
                    if p - before >= 0 and p + after <= len(s):
                        k = c[p - before : p + after]
                        ok = k >= 0
                        counts[np.arange(len(k))[ok], k[ok]] += 1
            self.w[cls] = np.log2(counts / counts.sum(1, keepdims=True) / bg)
        return self

    def site_scores(self, seq: str) -> np.ndarray:
        n = len(seq)
        c = base_codes(seq).astype(np.int64)
        out = np.full((n, 3), -np.inf)
        for cls, (before, after) in self.SPANS.items():
            k = before + after
            if n < k:
                continue
            win = np.lib.stride_tricks.sliding_window_view(c, k)
            sc = np.where(win >= 0, self.w[cls][np.arange(k), np.maximum(win, 0)], -np.inf).sum(1)
            out[before : before + len(sc), cls] = sc
        return out


# -- metrics ------------------------------------------------------------------------------------------------------------


def topk_accuracy(y_true: np.ndarray, score: np.ndarray) -> float:
    """SpliceAI's top-k accuracy: k = number of true sites; fraction of them among the k best scores."""
    k = int(y_true.sum())
    if k == 0:
        return float("nan")
    top = np.argpartition(-score, k - 1)[:k]
    return float(y_true[top].sum() / k)


def splice_metrics(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> dict[str, float]:
    """Per class (acceptor, donor): top-k accuracy and PR-AUC over every position of every window."""
    from sklearn.metrics import average_precision_score

    y = np.concatenate(labels)
    s = np.concatenate(scores)
    out = {}
    for c, name in ((1, "acceptor"), (2, "donor")):
        t = (y == c).astype(np.int8)
        sc = np.nan_to_num(s[:, c].astype(np.float64), neginf=-1e300)
        out[f"{name}_topk"] = topk_accuracy(t, sc)
        out[f"{name}_prauc"] = float(average_precision_score(t, sc)) if t.any() else float("nan")
        out[f"{name}_sites"] = int(t.sum())
    return out


def evaluate_splice(model: SpliceModel | None, test: SpliceWindows, baselines: dict[str, object], batch_size: int = 8, device=None) -> pd.DataFrame:
    rows = []
    if model is not None:
        pred = predict_windows(model, test, batch_size, device)
        rows.append({"method": f"ntkit ({model.method})", **splice_metrics(test.labels, pred)})
    for name, b in baselines.items():
        rows.append({"method": name, **splice_metrics(test.labels, [b.site_scores(s) for s in test.sequences])})
    return pd.DataFrame(rows)


def results_table(df: pd.DataFrame) -> str:
    lines = ["| method | acceptor top-k | acceptor PR-AUC | donor top-k | donor PR-AUC |", "|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['method']} | {r['acceptor_topk']:.3f} | {r['acceptor_prauc']:.3f} | {r['donor_topk']:.3f} | {r['donor_prauc']:.3f} |")
    return "\n".join(lines)


# -- prediction in genome coordinates ---------------------------------------------------------------------------------


def to_genome_table(data: SpliceWindows, probs: Sequence[np.ndarray], min_prob: float = 0.0) -> pd.DataFrame:
    """One row per (window base) with p(acceptor) or p(donor) >= ``min_prob``: chrom, 0-based
    position, strand, probabilities (minus-strand windows flipped back to + coordinates)."""
    parts = []
    for seq_i, p in enumerate(probs):
        n = len(p)
        pos = data.start[seq_i] + (np.arange(n) if data.strand[seq_i] == "+" else np.arange(n)[::-1])
        keep = (p[:, 1] >= min_prob) | (p[:, 2] >= min_prob)
        parts.append(pd.DataFrame({"chrom": data.chrom[seq_i], "pos": pos[keep], "strand": data.strand[seq_i],
                                   "p_acceptor": p[keep, 1], "p_donor": p[keep, 2]}))
    t = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["chrom", "pos", "strand", "p_acceptor", "p_donor"])
    return t.sort_values(["chrom", "pos", "strand"]).drop_duplicates(["chrom", "pos", "strand"]).reset_index(drop=True)


def write_bedgraph(table: pd.DataFrame, path: str | Path, column: str = "p_donor", strand: str = "+") -> Path:
    t = table[table["strand"] == strand]
    from .jobs import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        fh.write(f'track type=bedGraph name="ntkit {column} {strand}"\n')
        for c, p, v in zip(t["chrom"], t["pos"], t[column]):
            fh.write(f"{c}\t{p}\t{p + 1}\t{v:.4g}\n")
    return path


# -- saving ---------------------------------------------------------------------------------------------------------------


def save_splice_model(model: SpliceModel, directory: str | Path) -> Path:
    from .finetune import save_adapted

    return save_adapted(directory, model.base, {"head": model.head}, {"method": model.method},
                        full=model.method == "full", weights="splice_head.safetensors", config="splice_config.json")


def load_splice_model(directory: str | Path, base=None) -> SpliceModel:
    from .finetune import load_adapted

    meta = json.loads((Path(directory) / "splice_config.json").read_text())
    base, parts = load_adapted(directory, base, full=meta["method"] == "full", weights="splice_head.safetensors",
                               config="splice_config.json")
    m = SpliceModel(base, meta["method"], attach=False)
    m.head.load_state_dict(parts["head"])
    return m.eval()
