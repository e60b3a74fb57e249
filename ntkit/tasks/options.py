"""The options of ntkit's jobs: their configuration dataclasses and defaults, in one module that
imports neither torch nor any model, so that the command line reads every default from here and
``ntkit <command> --help`` answers without loading torch. Each job's module re-exports its own
(``ntkit.tasks.finetune.FinetuneConfig`` is ``FinetuneConfig`` here).

Imports: ``ntkit.core`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from ntkit.core.fields import check_fields

# -- fine-tuning and the benchmark (``ntkit.tasks.finetune``, ``ntkit.tasks.benchmark``) -------------------------------

Method = Literal["ia3", "lora", "full", "head"]
# Learning rate per method when none is given: NT's 3e-3 for IA3; LoRA and a head alone train a
# little more gently; every weight at a pretraining-like rate.
LEARNING_RATES = {"ia3": 3e-3, "lora": 1e-3, "full": 5e-5, "head": 1e-3}


@dataclass
class FinetuneConfig:
    method: Method = "ia3"
    task: Literal["classification", "regression"] = "classification"
    n_classes: int = 2
    lora_rank: int = 8
    lora_alpha: float = 16.0
    head_dropout: float = 0.1
    lr: float | None = None  # default: LEARNING_RATES[method]
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 8
    patience: int = 3  # epochs without validation improvement before stopping
    valid_fraction: float = 0.1  # held out of the training data for early stopping
    max_steps: int | None = None
    seed: int = 0
    classes: list[int | str] | None = None  # class k's label (from the training data); saved with the adapter
    sequence_bp: int | None = None  # median length of the training sequences (set by finetune): the window variant effects read
    # Regression: the training targets' mean and standard deviation (set by finetune). The head
    # predicts z-scores (it starts at the mean, and one learning rate suits any unit); outputs are
    # in the targets' units.
    target_mean: float | None = None
    target_scale: float | None = None
    species: str | None = None  # a post-trained NTv3's conditioning (``model.backbone(species)``); saved with the adapter
    # Both strands: train on each sequence or its reverse complement (a fair coin per sequence and
    # epoch, from the seeded generator), predict the mean of the two strands' outputs (class
    # probabilities or values), so a sequence and its reverse complement get one prediction. Saved
    # with the adapter: a loaded model predicts as it was trained (transformers' classes, reading
    # the same peft adapter, see the forward strand only).
    reverse_complement: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.classes, tuple):
            self.classes = list(self.classes)
        check_fields(self)
        if self.lr is None:
            self.lr = LEARNING_RATES[self.method]
        if self.classes is not None and len(self.classes) != self.n_classes:
            raise ValueError(f"{len(self.classes)} class names for n_classes={self.n_classes}")
        if self.task == "classification" and self.n_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, not {self.n_classes}")
        if not self.lr > 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"FinetuneConfig: lr > 0, batch_size >= 1 and epochs >= 1 needed (got {self.lr}, {self.batch_size}, {self.epochs})")


METHODS = ("kmer", "probe", "mlp", "random-probe", "ia3", "random-ia3", "lora", "full")
DOWNSTREAM_METHODS = ("kmer", "probe", "random-probe")  # the demo's and model card's frozen-embedding comparison
# The demo's and model card's frozen features read both strands (the tasks do not depend on the strand;
# averaging a sequence's and its reverse complement's embeddings gave +0.02-0.03 MCC on the NT sample
# and on human_enhancers_cohn, BENCHMARKS.md; the 6-mer baseline then counts both strands too);
# ``ntkit benchmark`` keeps NT's forward-strand protocol unless asked (--reverse-complement).
DEMO_REVERSE_COMPLEMENT = True
# The demo's and model card's probes read the means of this many equal segments of each sequence
# (``embed``'s ``bins``), concatenated: where along the sequence a feature lies (BENCHMARKS.md,
# "Where along the sequence"); ``ntkit benchmark`` keeps NT's one mean unless asked (--bins).
DEMO_BINS = 3
DEMO_TASKS = ("promoter_all", "enhancers", "splice_sites_donors", "H3K4me3")  # ``ntkit demo``'s default tasks (``all``: every one)


# -- zero-shot scores, mutagenesis and perturbations (``variants``, ``mutagenesis``, ``perturb``) ------------------

SCORES = ("llr", "llr_unmasked", "embedding")
DEFAULT_SCORES = ("llr", "embedding")  # score-variants: the masked marginal for SNVs, distances for every allele
MUTAGENESIS_SCORES = ("llr", "llr_unmasked")  # the two marginals: one forward per tile scores its every SNV (wild-type)


@dataclass
class EffectOptions:
    """What is scored and how (the fields that change a score; recorded in a job's manifest);
    ``resolve(predictor)`` (a ``predictors.Predictor``) fills in the predictor's defaults."""

    window_bp: int | None = None  # sequence and windowed predictors: bases per window (default: the predictor's)
    tile_stride_bp: int | None = None  # grid step of the tiles (default: a quarter of a window; 128 per-base)
    distance: int = 50  # per-base predictors: bases each side of the variant where gains and losses are sought
    mask: bool = False  # per-base predictors: SpliceAI's -M (gains at annotated sites, losses elsewhere count 0)
    label_key: str | None = None

    def resolve(self, predictor) -> "EffectOptions":
        if predictor.kind == "lm":  # NT's zero-shot scores: their own options (variants.ScoreOptions)
            return replace(self, label_key=self.label_key or predictor.score_options.label_key)
        if predictor.kind == "base":
            if self.distance < 0:
                raise ValueError(f"distance must be >= 0, not {self.distance}")
            if self.mask and not predictor.stranded:
                raise ValueError("mask (SpliceAI's -M) needs a splice model: its annotated sites are the genes' exon ends")
            if predictor.windowed:
                return self._windowed(predictor)
            flank = getattr(predictor, "flank", 0)
            if flank:  # tiles of S + 4D predicted bases and the flank each side (see _flanked_pairs)
                stride = self.tile_stride_bp or 1024
                return replace(self, tile_stride_bp=stride, window_bp=stride + 4 * self.distance + 2 * flank)
            stride = self.tile_stride_bp or 128
            need = 2 * (self.distance + predictor.receptive_field)
            if need + 2 <= predictor.max_length < need + 2 * stride:  # the predictor cannot read that much: a finer grid
                stride = max(1, (predictor.max_length - need) // 2)
            width = need + 2 * stride
            if width > predictor.max_length:
                raise ValueError(f"distance {self.distance} + the receptive field ({predictor.receptive_field} bases each side) "
                                 f"need windows of {width} bases; the model reads {predictor.max_length}: a smaller --distance")
            return replace(self, window_bp=width, tile_stride_bp=stride)
        w = self.window_bp or getattr(predictor, "window_bp", None) or predictor.max_length
        if not 1 <= w <= predictor.max_length:
            raise ValueError(f"window_bp must be in [1, {predictor.max_length}] for this model, not {w}")
        stride = self.tile_stride_bp or max(1, w // 4)
        if not 1 <= stride <= w:
            raise ValueError(f"tile_stride_bp must be in [1, {w}], not {stride}")
        return replace(self, window_bp=w, tile_stride_bp=stride)

    def _windowed(self, predictor) -> "EffectOptions":
        # An allele (at most `stride` bases) lies within stride / 2 of its tile's centre: its
        # neighbourhood fits the trusted centre [a, b) when 2 * stride + 2 * distance <= b - a.
        w = predictor.window(self.window_bp)
        a, b = predictor.valid(w, None)
        most = (b - a - 2 * self.distance) // 2
        if most < 1:
            raise ValueError(f"distance {self.distance}: the trusted centre of a {w}-base window is {b - a} bases; "
                             "a smaller --distance or a longer --window-bp")
        stride = self.tile_stride_bp or most
        if not 1 <= stride <= most:
            raise ValueError(f"tile_stride_bp must be in [1, {most}] for windows of {w} bases and distance {self.distance}")
        return replace(self, window_bp=w, tile_stride_bp=stride)


# -- annotation, tracks, segmentation, splice sites -----------------------------------------------------------------

MAX_BIGWIGS = 64  # channels written as bigWig without naming them (--channels): file handles, disk


@dataclass
class AnnotateOptions:
    window_bp: int | None = None  # bases per model input (default: the predictor's)
    flank_bp: int | None = None  # SegmentNT: bases each side of a window's kept centre (default: window / 8)
    threshold: float = 0.5  # probability channels: calls where p >= threshold
    min_length: int = 1  # bases of the shortest call
    channels: list[str] | None = None  # the channels written (default: all, up to MAX_BIGWIGS)
    parquet: bool = False  # also a per-base parquet table
    windows_per_chunk: int = 16

    def __post_init__(self) -> None:
        # each bound names the command-line option too: the CLI passes these through unchanged
        if not 0 < self.threshold <= 1:
            raise ValueError(f"--threshold {self.threshold}: calls are made on probabilities, give a value in (0, 1]")
        for option, v, low in (("--min-length", self.min_length, 1), ("--window-bp", self.window_bp, 1), ("--flank-bp", self.flank_bp, 0),
                               ("--chunk-size", self.windows_per_chunk, 1)):
            if v is not None and v < low:
                raise ValueError(f"{option} {v}: must be at least {low}")


@dataclass
class TrackTrainConfig:
    method: Literal["frozen", "ia3", "lora", "full"] = "ia3"
    loss: Literal["poisson", "mse"] = "poisson"
    tracks: list[str] = field(default_factory=list)  # channel names, in output order (set from the data)
    elements: list[str] = field(default_factory=list)
    species: str | None = None  # post-trained bases: the species whose conditioning the trunk uses
    window_bp: int = 8192
    crop_fraction: float | None = None  # default: the base's keep_target_center_fraction if < 1, else 0.375
    lr: float | None = None  # default 1e-3 (heads and adapters), 1e-4 for full
    epochs: int = 3
    batch_size: int = 2
    max_steps: int | None = None
    max_minutes: float | None = None
    eval_every: int = 200
    patience: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.lr is None:
            self.lr = 1e-4 if self.method == "full" else 1e-3
        if not (self.tracks or self.elements):
            raise ValueError("give at least one bigWig track or BED element to train on")


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
        check_fields(self)
        if self.lr is None:
            self.lr = 1e-4 if self.method == "full" else 1e-3


def check_head_method(head: str, method: str) -> None:
    """The ``bases`` head reads the bases alone: the base model does not run, so nothing of it can
    train (an IA3 adapter that never ran would be saved as if it had, and refused at every load)."""
    if head == "bases" and method != "frozen":
        raise ValueError(f"--head bases reads the bases alone (the base model is not run): --method {method} cannot apply; "
                         "use --method frozen (its default)")


@dataclass
class SpliceTrainConfig:
    """Defaults are the recipe measured in BENCHMARKS.md (segment head, focal loss, sites weighted 10)."""

    method: Literal["ia3", "full", "frozen"] | None = None  # default: ia3; frozen with the bases head (the base is not run)
    head: Literal["linear", "segment", "bases"] = "segment"
    channels: int = 32  # width of the convolutional heads
    lr: float | None = None  # default: 1e-3 for the convolutional heads, 3e-3 for linear (1e-4 when every weight trains)
    epochs: int = 3
    batch_size: int = 4
    max_minutes: float | None = None
    site_weight: float = 10.0  # loss weight of acceptor/donor vs none (SpliceAI: 1; >1 for short runs)
    loss: Literal["ce", "focal"] = "focal"
    focal_gamma: float = 2.0
    eval_every: int = 200  # steps between validation evaluations (with validation windows)
    patience: int = 5  # evaluations without a better validation PR-AUC before stopping
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.method is None:
            self.method = "frozen" if self.head == "bases" else "ia3"
        check_head_method(self.head, self.method)
        if self.lr is None:
            self.lr = 1e-3 if self.head != "linear" else 1e-4 if self.method == "full" else 3e-3


# -- review pages (``ntkit.tasks.report``) ---------------------------------------------------------------------------


@dataclass
class ReportOptions:
    max_loci: int = 50  # loci shown, highest scores first (the page grows by about the size per locus)
    flanking: int = 1000  # bases of sequence and tracks embedded around each locus
    distance: int = 200  # per-base predictors: bases each side of a variant whose REF and ALT predictions are drawn
    rank_by: str | None = None  # the score column that orders the loci (default: the largest |score| of each allele)
    title: str = "ntkit variant review"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.max_loci < 1 or self.flanking < 1 or self.distance < 0:
            raise ValueError("--max-loci and --flanking must be >= 1 and --distance >= 0")
