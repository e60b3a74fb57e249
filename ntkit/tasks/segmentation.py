"""Genome segmentation at nucleotide resolution: SegmentNT's targets from a GTF/GFF and BED files,
training of a SegmentNT model (new head on an NT v2 backbone, or a SegmentNT checkpoint further
trained), and the paper's metrics.

Targets (one binary label per base and element type; a base may belong to several):

- ``protein_coding_gene`` / ``lncRNA``: ``gene`` records whose ``gene_type`` / ``gene_biotype``
  (``biotype=`` in GFF3) is ``protein_coding`` / ``lncRNA`` (or ``lincRNA``);
- ``exon``: ``exon`` records; ``intron``: the gaps between consecutive exons of a transcript;
- ``5UTR`` / ``3UTR``: ``five_prime_utr`` / ``three_prime_utr`` records (Ensembl, GFF3), or
  GENCODE's ``UTR`` records split by the transcript's CDS (5' of the first coding base on the
  transcript's strand is 5'UTR, 3' of the last one 3'UTR);
- ``splice_donor`` / ``splice_acceptor``: the two intron bases next to each exon-intron boundary,
  strand-aware (donor: the intron's first two bases on the transcript's strand, the GT; acceptor:
  its last two, the AG);
- any other element (promoters, enhancers, CTCF-bound sites, polyA signals): a BED file named for
  it (``{"CTCF-bound": "ctcf.bed"}``).

Loss (as SegmentNT): a focal loss (gamma 2) on each element's two-way softmax, averaged over bases
and elements (``loss="ce"``: plain cross-entropy). Metrics per element over every base of the
windows: MCC at threshold 0.5 and PR-AUC (scikit-learn's), and for the splice sites SpliceAI's
top-k accuracy. Training runs the shared head loop (``ntkit.runtime.training``); the backbone is frozen,
adapted (IA3 or LoRA, through peft, merged into the weights at the end) or fully trained, and the
result is a SegmentNT checkpoint in the HF layout (``ntkit annotate`` reads it).
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ntkit.core.sequence import one_hot
from ntkit.io.annotation import Annotation, element_bed, iter_gtf
from ntkit.io.genome import Genome
from ntkit.models import adapters
from ntkit.models.heads import SegmentHead
from ntkit.models.segment_nt.model import SegmentNTConfig, SegmentNTModel
from ntkit.runtime import engine
from ntkit.runtime.training import train_loop
from ntkit.tasks.options import SegmentTrainConfig  # noqa: F401  (re-exported)

GTF_ELEMENTS = ("protein_coding_gene", "lncRNA", "exon", "intron", "5UTR", "3UTR", "splice_donor", "splice_acceptor")
TRANSCRIPT_ELEMENTS = ("protein_coding_gene", "exon", "intron", "splice_donor", "splice_acceptor")  # from a transcript table
SPLICE_SITES = ("splice_donor", "splice_acceptor")
LNC = ("lncRNA", "lincRNA")


def element_intervals(gtf: str | Path | None, beds: dict[str, str | Path] | None = None,
                      transcripts: Sequence | None = None, genome: Genome | None = None) -> dict[str, dict[str, list]]:
    """element -> contig -> [(start, end)] (0-based half-open) from a GTF/GFF, named BED files and
    ``transcripts`` (``splice.Transcript``s, e.g. SpliceAI's canonical table: protein-coding genes'
    spans, their exons, introns and splice sites; the table has no UTRs or biotypes). BED files are
    checked by ``annotation.element_bed`` (not empty; with ``genome``, inside its contigs)."""
    iv: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    exons, where = defaultdict(list), {}  # transcript -> exons; (contig, strand)
    if gtf is not None:
        cds, utr = defaultdict(list), defaultdict(list)
        for r in iter_gtf(gtf):
            f = r.feature
            if f == "gene":
                if r.biotype == "protein_coding":
                    iv["protein_coding_gene"][r.contig].append((r.start, r.end))
                elif r.biotype in LNC:
                    iv["lncRNA"][r.contig].append((r.start, r.end))
            elif f == "exon" and r.transcript:
                exons[("gtf", r.transcript)].append((r.start, r.end))
                where[("gtf", r.transcript)] = (r.contig, r.strand)
            elif f == "CDS" and r.transcript:
                cds[r.transcript].append((r.start, r.end))
            elif f.lower() == "five_prime_utr":
                iv["5UTR"][r.contig].append((r.start, r.end))
            elif f.lower() == "three_prime_utr":
                iv["3UTR"][r.contig].append((r.start, r.end))
            elif f == "UTR" and r.transcript:
                utr[r.transcript].append((r.contig, r.strand, r.start, r.end))
        for tx, parts in utr.items():  # GENCODE: which side of the CDS a UTR lies on names it
            if not cds.get(tx):
                continue
            lo, hi = min(s for s, _ in cds[tx]), max(e for _, e in cds[tx])
            for contig, strand, s, e in parts:
                upstream = e <= lo if strand == "+" else s >= hi
                iv["5UTR" if upstream else "3UTR"][contig].append((s, e))
    for t in transcripts or ():
        # splice.Transcript keeps the splice sites' exon-side bases: on the + strand donors are exon
        # ends (last base) and acceptors exon starts (first base), on the - strand the reverse
        ends = sorted(t.donors if t.strand == "+" else t.acceptors)
        starts = sorted(t.acceptors if t.strand == "+" else t.donors)
        exons[("table", t.name)] = list(zip([t.start] + starts, [e + 1 for e in ends] + [t.end]))
        where[("table", t.name)] = (t.chrom, t.strand)
        iv["protein_coding_gene"][t.chrom].append((t.start, t.end))
    for tx, ex in exons.items():
        contig, strand = where[tx]
        ex = sorted(ex)
        iv["exon"][contig] += ex
        for (_, e1), (s2, _) in zip(ex, ex[1:]):
            if s2 - e1 < 4:  # no room for both dinucleotides: not an intron
                continue
            iv["intron"][contig].append((e1, s2))
            left, right = (e1, e1 + 2), (s2 - 2, s2)
            iv["splice_donor"][contig].append(left if strand != "-" else right)
            iv["splice_acceptor"][contig].append(right if strand != "-" else left)
    for name, path in (beds or {}).items():
        for contig, ivs in element_bed(path, name, genome).items():
            iv[name][contig] += ivs
    return iv


class Targets:
    """Per-base labels of ``features`` (in that order) from ``element_intervals``."""

    def __init__(self, features: Sequence[str], gtf=None, beds: dict | None = None, transcripts: Sequence | None = None,
                 genome: Genome | None = None):
        self.features = list(features)
        iv = element_intervals(gtf, beds, transcripts, genome)
        absent = [f for f in self.features if f not in iv and f not in GTF_ELEMENTS]
        if absent:
            raise ValueError(f"no source for element(s) {absent}: give a BED file for each (name=file.bed)")
        if gtf is None and any(f in GTF_ELEMENTS and f not in iv for f in self.features):
            missing = [f for f in self.features if f in GTF_ELEMENTS and f not in iv]
            raise ValueError(f"element(s) {missing} come from a GTF/GFF (a transcript table gives genes, exons, introns and "
                             "splice sites): give one, or a BED file per element")
        self.annotation = Annotation({f: dict(iv.get(f, {})) for f in self.features})
        self._order = [self.annotation.types.index(f) for f in self.features]

    def labels(self, contig: str, start: int, end: int) -> np.ndarray:
        """uint8 [end - start, F]."""
        return self.annotation.mask(contig, start, end)[self._order].T.astype(np.uint8)

    def counts(self) -> dict[str, int]:
        return {f: int(sum((iv[:, 1] - iv[:, 0]).sum() for iv in self.annotation.iv[f].values())) for f in self.features}


@dataclass
class SegmentationWindows:
    regions: list[tuple[str, int, int]]
    sequences: list[str]
    labels: list[np.ndarray]  # uint8 [len, F]
    features: list[str]

    def __len__(self) -> int:
        return len(self.sequences)


def build_windows(genome: Genome, targets: Targets, contigs: Sequence[str], window_bp: int, *, stride_bp: int | None = None,
                  max_windows: int | None = 2000, annotated_only: bool = True, max_n_fraction: float = 0.1,
                  seed: int = 0) -> SegmentationWindows:
    """Windows of ``window_bp`` on a grid of ``stride_bp`` (default: the window) over ``contigs``;
    those with more than ``max_n_fraction`` N dropped, with ``annotated_only`` those without any
    element dropped; at most ``max_windows`` of them (a seeded sample, kept in genome order)."""
    stride = stride_bp or window_bp
    cand = []
    for c in contigs:
        name = genome.resolve(c)
        n = genome.lengths[name]
        cand += [(name, s) for s in range(0, max(n - window_bp, 0) + 1, stride)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(cand))
    keep = []
    for i in order:
        name, s = cand[i]
        seq = genome.fetch(name, s, s + window_bp)
        if seq.count("N") > max_n_fraction * len(seq):
            continue
        y = targets.labels(name, s, s + len(seq))
        if annotated_only and not y.any():
            continue
        keep.append((i, name, s, seq, y))
        if max_windows is not None and len(keep) >= max_windows:
            break
    keep.sort()
    return SegmentationWindows([(c, s, s + len(q)) for _, c, s, q, _ in keep], [q for *_, q, _ in keep],
                               [y for *_, y in keep], list(targets.features))


# -- metrics ------------------------------------------------------------------------------------------------


def topk_accuracy(y_true: np.ndarray, score: np.ndarray) -> float:
    """SpliceAI's top-k accuracy: k = number of true sites; fraction of them among the k best scores."""
    k = int(y_true.sum())
    if k == 0:
        return float("nan")
    top = np.argpartition(-score, k - 1)[:k]
    return float(y_true[top].sum() / k)


def segmentation_metrics(labels: Sequence[np.ndarray], probs: Sequence[np.ndarray], features: Sequence[str],
                         threshold: float | None = 0.5) -> pd.DataFrame:
    """One row per element over every base: positives, MCC (p >= threshold), PR-AUC, and top-k
    accuracy for splice sites (NaN where a metric is undefined: no positive base; MCC too with
    ``threshold=None``, for scores that are not probabilities). The splice subpackage's metrics are
    this table's two splice-site rows (``splice.splice_metrics``)."""
    from sklearn.metrics import average_precision_score, matthews_corrcoef

    if not len(labels):
        raise ValueError("no windows to evaluate (none on the chosen contigs holds an annotated element)")
    y = np.concatenate([np.asarray(a) for a in labels]).astype(np.int8)
    p = np.concatenate([np.asarray(a) for a in probs]).astype(np.float64)
    rows = []
    for j, f in enumerate(features):
        t, s = y[:, j], p[:, j]
        pos = int(t.sum())
        rows.append({"element": f, "bases": len(t), "positives": pos,
                     "mcc": float(matthews_corrcoef(t, s >= threshold)) if threshold is not None and 0 < pos < len(t) else math.nan,
                     "prauc": float(average_precision_score(t, s)) if pos else math.nan,
                     "topk": topk_accuracy(t, s) if f in SPLICE_SITES else math.nan})
    return pd.DataFrame(rows)


# -- training -------------------------------------------------------------------------------------------------


def base_index(batch, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(src [B, bases], valid [B, bases]): the SegmentNT output position of each base of each row
    (``SegmentNTModel.output_index`` for the batch, for the loss)."""
    n = int(batch.seq_lengths.max(initial=0))
    src = np.zeros((len(batch), n), dtype=np.int64)
    valid = np.zeros((len(batch), n), dtype=bool)
    for r in range(len(batch)):
        s, dst = SegmentNTModel.output_index(batch, r)
        src[r, dst] = s
        valid[r, dst] = True
    return torch.as_tensor(src, device=device), torch.as_tensor(valid, device=device)


def focal_loss(logits: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, gamma: float = 0.0,
               class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted focal cross-entropy (Lin et al. 2017; ``gamma = 0``: cross-entropy): logits [..., K],
    classes ``y`` [...], ``keep`` [...] the entries that count. The weighted mean
    sum(w * (1 - p)^gamma * -log p) / sum(w), w = ``class_weight[y]`` (1 without) on kept entries.
    SegmentNT's loss (K = 2 per base and element) and the splice models' (K = 3, sites weighted)."""
    y = torch.where(keep, y, torch.zeros_like(y)).long()
    logp = torch.log_softmax(logits.float(), -1).gather(-1, y.unsqueeze(-1))[..., 0]
    w = keep.to(logp.dtype) if class_weight is None else class_weight.to(logp.device)[y] * keep.to(logp.dtype)
    focal = (1 - logp.exp()).pow(gamma) if gamma else 1.0
    return -(w * focal * logp).sum() / w.sum().clamp(min=1e-8)


def segmentation_loss(logits: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, cfg: SegmentTrainConfig) -> torch.Tensor:
    """logits [B, L, F, 2], y [B, L, F] (0/1), valid [B, L]: focal (or CE) loss, mean over valid bases and elements."""
    keep = valid.unsqueeze(-1).expand(y.shape)
    return focal_loss(logits, y, keep, cfg.focal_gamma if cfg.loss == "focal" else 0.0)


def from_backbone(nt, features: Sequence[str], num_layers_head: int = 2, rescaling_factor: float | None = None, seed: int = 0):
    """A SegmentNT model on an NT v2 model's weights, with a new (random, seeded) U-Net head."""
    if nt.config.position_embedding != "rotary":
        raise ValueError("SegmentNT needs an NT v2 (rotary) backbone")
    cfg = SegmentNTConfig(nt=copy.deepcopy(nt.config), features=list(features), num_layers_head=num_layers_head,
                          rescaling_factor=rescaling_factor, name=f"segment-{nt.config.name}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SegmentNTModel(cfg)
    sd = {k: v for k, v in nt.state_dict().items() if not k.startswith("lm_head.")}
    model.nt.load_state_dict(sd)
    return model.to(next(nt.parameters()).device)


class BasesSegmenter(torch.nn.Module):
    """The bases-only baseline (no NT): SpliceAI's residual dilated convolutions over the one-hot
    bases (``ntkit.models.heads.SegmentHead`` without its NT branch) -> two logits per base and element,
    trained and scored as a SegmentNT model is. A pure convolution: a base's output depends on the
    ``receptive_field`` bases around it."""

    def __init__(self, features: Sequence[str], channels: int = 32):
        super().__init__()

        self.features = list(features)
        self.head = SegmentHead(None, channels, n_out=2 * len(self.features))
        self.receptive_field = self.head.receptive_field

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        """[B, N, 4] one-hot bases (N: zeros) -> logits [B, N, F, 2]."""
        z = self.head(onehot, None, None, None)
        return z.view(*z.shape[:2], len(self.features), 2)

    def predict(self, sequences: Sequence[str], runtime=None, batch_size: int = 8) -> list[np.ndarray]:
        """Per-base probabilities [len, F] per sequence. Rows of one length run together: BatchNorm's
        shift makes a padded row differ from the same sequence alone near its end."""
        import itertools

        device = next(self.parameters()).device
        out: list = [None] * len(sequences)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        with torch.no_grad():
            for _, group in itertools.groupby(order, key=lambda i: len(sequences[i])):
                group = list(group)
                for k in range(0, len(group), batch_size):
                    idx = group[k:k + batch_size]
                    x = torch.as_tensor(np.stack([one_hot(sequences[i]) for i in idx]), device=device)
                    for i, p in zip(idx, self(x).float().softmax(-1)[..., 1].cpu().numpy()):
                        out[i] = p
        return out


def train_segmentation(model, data: SegmentationWindows, cfg: SegmentTrainConfig | None = None, *,
                       valid: SegmentationWindows | None = None, runtime=None):
    """Train ``model`` (a ``SegmentNTModel`` or a ``BasesSegmenter`` whose features are
    ``data.features``) in place with the shared loop; adapters are merged into the backbone at the
    end (a ``BasesSegmenter`` has no backbone: every weight trains). Returns the model."""
    cfg = cfg or SegmentTrainConfig()
    bases_only = isinstance(model, BasesSegmenter)
    features = model.features if bases_only else list(model.config.features)
    if features != list(data.features):
        raise ValueError(f"the model predicts {features}, the windows are labelled {data.features}")
    rt = engine.as_runtime(runtime)
    device = torch.device(rt.device) if rt.device is not None else next(model.parameters()).device
    model.to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        if not bases_only:
            for p in model.nt.parameters():
                p.requires_grad_(cfg.method == "full")
            if cfg.method in ("ia3", "lora"):
                adapters.attach(model.nt, cfg.method)
        params = [p for p in model.parameters() if p.requires_grad]
        rng = np.random.default_rng(cfg.seed)

        def labels(idx, shape) -> torch.Tensor:
            y = torch.zeros(shape + (len(data.features),), dtype=torch.long, device=device)
            for r, k in enumerate(idx):
                y[r, : len(data.labels[k])] = torch.as_tensor(data.labels[k].astype(np.int64), device=device)
            return y

        def batches(epoch: int):
            perm = rng.permutation(len(data))
            for i in range(0, len(data), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                seqs = [data.sequences[k] for k in idx]
                if bases_only:
                    x = np.zeros((len(seqs), max(map(len, seqs)), 4), dtype=np.float32)
                    ok = torch.zeros(x.shape[:2], dtype=torch.bool, device=device)
                    for r, q in enumerate(seqs):
                        x[r, : len(q)] = one_hot(q)
                        ok[r, : len(q)] = True
                    yield (torch.as_tensor(x, device=device),), None, ok, labels(idx, tuple(ok.shape))
                    continue
                b, ids, mask = model.encode(seqs, device)
                src, ok = base_index(b, device)
                yield (ids, mask), src, ok, labels(idx, tuple(ok.shape))

        def step_loss(m, batch) -> torch.Tensor:
            inputs, src, ok, y = batch
            if bases_only:
                return segmentation_loss(m(*inputs), y, ok, cfg)
            logits = m(*inputs).logits  # [B, 6(T-1), F, 2]
            per_base = logits.gather(1, src[:, :, None, None].expand(-1, -1, *logits.shape[2:]))
            return segmentation_loss(per_base, y, ok, cfg)

        def evaluate(m) -> float:
            probs = m.predict(valid.sequences, runtime=engine.Runtime(device=device))
            r = segmentation_metrics(valid.labels, probs, valid.features)
            return float(np.nanmean(r.prauc.to_numpy())) if r.prauc.notna().any() else 0.0

        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        res = train_loop(model, params, batches, step_loss, lr=cfg.lr, epochs=cfg.epochs, max_steps=cfg.max_steps,
                         max_minutes=cfg.max_minutes, eval_every=cfg.eval_every, patience=cfg.patience,
                         evaluate=evaluate if valid is not None and len(valid) else None,
                         autocast_dtype=torch.bfloat16 if bf16 else None, device=device, progress=rt.progress,
                         desc=f"segmentation ({'bases only' if bases_only else cfg.method})", total_steps=cfg.epochs * math.ceil(len(data) / cfg.batch_size))
    if cfg.method in ("ia3", "lora") and not bases_only:
        adapters.merge(model.nt)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train_result = {"steps": res.steps, "best_valid_prauc": res.best_score, "stopped": res.stopped, "config": asdict(cfg)}
    return model.eval()


def evaluate_segmentation(model, data: SegmentationWindows, runtime=None) -> pd.DataFrame:
    return segmentation_metrics(data.labels, model.predict(data.sequences, runtime=runtime), data.features)
