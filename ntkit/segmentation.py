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
top-k accuracy. Training runs the shared head loop (``ntkit.training``); the backbone is frozen,
adapted (IA3 or LoRA, through peft, merged into the weights at the end) or fully trained, and the
result is a SegmentNT checkpoint in the HF layout (``ntkit annotate`` reads it).
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import torch

from .annotation import Annotation, iter_bed, iter_gtf
from .genome import Genome

GTF_ELEMENTS = ("protein_coding_gene", "lncRNA", "exon", "intron", "5UTR", "3UTR", "splice_donor", "splice_acceptor")
SPLICE_SITES = ("splice_donor", "splice_acceptor")
LNC = ("lncRNA", "lincRNA")


def element_intervals(gtf: str | Path | None, beds: dict[str, str | Path] | None = None) -> dict[str, dict[str, list]]:
    """element -> contig -> [(start, end)] (0-based half-open) from a GTF/GFF and named BED files."""
    iv: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    if gtf is not None:
        exons, cds, utr, where = defaultdict(list), defaultdict(list), defaultdict(list), {}
        for r in iter_gtf(gtf):
            f = r.feature
            if f == "gene":
                if r.biotype == "protein_coding":
                    iv["protein_coding_gene"][r.contig].append((r.start, r.end))
                elif r.biotype in LNC:
                    iv["lncRNA"][r.contig].append((r.start, r.end))
            elif f == "exon" and r.transcript:
                exons[r.transcript].append((r.start, r.end))
                where[r.transcript] = (r.contig, r.strand)
                iv["exon"][r.contig].append((r.start, r.end))
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
        for tx, ex in exons.items():
            contig, strand = where[tx]
            ex = sorted(ex)
            for (_, e1), (s2, _) in zip(ex, ex[1:]):
                if s2 - e1 < 4:  # no room for both dinucleotides: not an intron
                    continue
                iv["intron"][contig].append((e1, s2))
                left, right = (e1, e1 + 2), (s2 - 2, s2)
                iv["splice_donor"][contig].append(left if strand != "-" else right)
                iv["splice_acceptor"][contig].append(right if strand != "-" else left)
    for name, path in (beds or {}).items():
        for contig, s, e, _, _ in iter_bed(path):
            iv[name][contig].append((s, e))
    return iv


class Targets:
    """Per-base labels of ``features`` (in that order) from ``element_intervals``."""

    def __init__(self, features: Sequence[str], gtf=None, beds: dict | None = None):
        self.features = list(features)
        iv = element_intervals(gtf, beds)
        absent = [f for f in self.features if f not in iv and f not in GTF_ELEMENTS]
        if absent:
            raise ValueError(f"no source for element(s) {absent}: give a BED file for each (name=file.bed)")
        if gtf is None and any(f in GTF_ELEMENTS and f not in iv for f in self.features):
            missing = [f for f in self.features if f in GTF_ELEMENTS and f not in iv]
            raise ValueError(f"element(s) {missing} come from a GTF/GFF: give one (or a BED file per element)")
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


def segmentation_metrics(labels: Sequence[np.ndarray], probs: Sequence[np.ndarray], features: Sequence[str],
                         threshold: float = 0.5) -> pd.DataFrame:
    """One row per element over every base: positives, MCC (p >= threshold), PR-AUC, and top-k
    accuracy for splice sites (NaN where a metric is undefined: no positive base)."""
    from sklearn.metrics import average_precision_score, matthews_corrcoef

    from .splice.metrics import topk_accuracy

    y = np.concatenate([np.asarray(a) for a in labels]).astype(np.int8)
    p = np.concatenate([np.asarray(a) for a in probs]).astype(np.float64)
    rows = []
    for j, f in enumerate(features):
        t, s = y[:, j], p[:, j]
        pos = int(t.sum())
        rows.append({"element": f, "bases": len(t), "positives": pos,
                     "mcc": float(matthews_corrcoef(t, s >= threshold)) if 0 < pos < len(t) else math.nan,
                     "prauc": float(average_precision_score(t, s)) if pos else math.nan,
                     "topk": topk_accuracy(t, s) if f in SPLICE_SITES else math.nan})
    return pd.DataFrame(rows)


# -- training -------------------------------------------------------------------------------------------------


@dataclass
class SegmentTrainConfig:
    method: Literal["frozen", "ia3", "lora", "full"] = "ia3"
    lr: float | None = None  # default 1e-3 (head and adapters), 1e-4 when every weight trains
    epochs: int = 3
    batch_size: int = 2
    max_steps: int | None = None
    max_minutes: float | None = None
    loss: Literal["focal", "ce"] = "focal"
    focal_gamma: float = 2.0
    eval_every: int = 200
    patience: int = 5
    num_layers_head: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        from .config import check_fields

        check_fields(self)
        if self.lr is None:
            self.lr = 1e-4 if self.method == "full" else 1e-3


def base_index(batch, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(src [B, bases], valid [B, bases]): the SegmentNT output position of each base of each row
    (``SegmentNTModel.output_index`` for the batch, for the loss)."""
    from .segment_nt import SegmentNTModel

    n = int(batch.seq_lengths.max(initial=0))
    src = np.zeros((len(batch), n), dtype=np.int64)
    valid = np.zeros((len(batch), n), dtype=bool)
    for r in range(len(batch)):
        s, dst = SegmentNTModel.output_index(batch, r)
        src[r, dst] = s
        valid[r, dst] = True
    return torch.as_tensor(src, device=device), torch.as_tensor(valid, device=device)


def segmentation_loss(logits: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, cfg: SegmentTrainConfig) -> torch.Tensor:
    """logits [B, L, F, 2], y [B, L, F] (0/1), valid [B, L]: focal (or CE) loss, mean over valid bases and elements."""
    logp = torch.log_softmax(logits.float(), -1).gather(-1, y.long().unsqueeze(-1))[..., 0]
    w = (1 - logp.exp()).pow(cfg.focal_gamma) if cfg.loss == "focal" else torch.ones_like(logp)
    m = valid.unsqueeze(-1).to(logp.dtype)
    return -(w * logp * m).sum() / (m.sum() * logits.shape[2]).clamp(min=1)


def from_backbone(nt, features: Sequence[str], num_layers_head: int = 2, rescaling_factor: float | None = None, seed: int = 0):
    """A SegmentNT model on an NT v2 model's weights, with a new (random, seeded) U-Net head."""
    from .segment_nt import SegmentNTConfig, SegmentNTModel

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


def train_segmentation(model, data: SegmentationWindows, cfg: SegmentTrainConfig | None = None, *,
                       valid: SegmentationWindows | None = None, runtime=None):
    """Train ``model`` (a ``SegmentNTModel`` whose ``features`` are ``data.features``) in place
    with the shared loop; adapters are merged into the backbone at the end. Returns the model."""
    from . import adapters, engine
    from .training import train_loop

    cfg = cfg or SegmentTrainConfig()
    if list(model.config.features) != list(data.features):
        raise ValueError(f"the model predicts {model.config.features}, the windows are labelled {data.features}")
    rt = engine.as_runtime(runtime)
    device = torch.device(rt.device) if rt.device is not None else next(model.parameters()).device
    model.to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        for p in model.nt.parameters():
            p.requires_grad_(cfg.method == "full")
        if cfg.method in ("ia3", "lora"):
            adapters.attach(model.nt, cfg.method)
        params = [p for p in model.parameters() if p.requires_grad]
        rng = np.random.default_rng(cfg.seed)

        def batches(epoch: int):
            perm = rng.permutation(len(data))
            for i in range(0, len(data), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                b, ids, mask = model.encode([data.sequences[k] for k in idx], device)
                src, ok = base_index(b, device)
                y = torch.zeros(ok.shape + (len(data.features),), dtype=torch.long, device=device)
                for r, k in enumerate(idx):
                    y[r, : len(data.labels[k])] = torch.as_tensor(data.labels[k].astype(np.int64), device=device)
                yield ids, mask, src, ok, y

        def step_loss(m, batch) -> torch.Tensor:
            ids, mask, src, ok, y = batch
            logits = m(ids, mask).logits  # [B, 6(T-1), F, 2]
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
                         desc=f"segmentation ({cfg.method})", total_steps=cfg.epochs * math.ceil(len(data) / cfg.batch_size))
    if cfg.method in ("ia3", "lora"):
        adapters.merge(model.nt)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train_result = {"steps": res.steps, "best_valid_prauc": res.best_score, "stopped": res.stopped, "config": asdict(cfg)}
    return model.eval()


def evaluate_segmentation(model, data: SegmentationWindows, runtime=None) -> pd.DataFrame:
    return segmentation_metrics(data.labels, model.predict(data.sequences, runtime=runtime), data.features)
