"""Splice-site prediction at nucleotide resolution, SpliceAI's metrics and classical baselines.

Labels (per nucleotide, transcript orientation): 0 none, 1 acceptor (first base of an exon after
an intron), 2 donor (last base of an exon before an intron), as in SpliceAI. Minus-strand genes
are reverse-complemented, so the model always reads 5' -> 3' of the transcript; predictions are
mapped back to genome coordinates on output.

Transcript tables: SpliceAI's ``canonical_dataset.txt`` (name, paralog, chrom, strand, tx_start,
tx_end, exon ends, exon starts; 1-based) or a GTF/GFF (exons grouped by transcript).

Heads (``ntkit.tasks.splice.model``): ``linear`` (each token's embedding -> 6 x 3 logits, as NT), ``segment``
(NT token embeddings brought to the bases they cover, added to a one-hot stem of the bases, then
SpliceAI's dilated residual convolutions) and ``bases`` (the same without NT). Windows can carry
unlabelled context on each side (``build_windows(context=...)``), as SpliceAI's flanks. Training
(``ntkit.tasks.splice.train``): weighted or focal cross-entropy, early stopping on validation PR-AUC.

Metrics (SpliceAI, per class on held-out data): top-k accuracy, with k the number of true sites of
the class: the fraction of true sites among the k highest-scoring positions; and PR-AUC
(average precision, scikit-learn). Baselines scored on the same positions: MaxEntScan (donor
9-mer, acceptor 23-mer; Yeo & Burge 2004, from its published tables) and a position weight
matrix fitted on the training sites.
"""

from ntkit.tasks.segmentation import topk_accuracy
from ntkit.tasks.splice.baselines import MaxEntScan, SitePWM
from ntkit.tasks.splice.data import (
           CLASSES,
           CONTEXT,
           SPLICEAI_TEST_CHROMS,
           SpliceWindows,
           Transcript,
           build_windows,
           read_transcripts,
           split_by_chromosome,
)
from ntkit.tasks.splice.metrics import evaluate_splice, results_table, splice_metrics
from ntkit.tasks.splice.model import HEADS, SpliceModel
from ntkit.tasks.splice.predict import (
           iter_predict_windows,
           load_splice_model,
           predict_windows,
           save_splice_model,
           to_genome_table,
           write_bedgraph,
)
from ntkit.tasks.splice.train import SpliceTrainConfig, train_splice

__all__ = ["CLASSES", "CONTEXT", "SPLICEAI_TEST_CHROMS", "MaxEntScan", "SitePWM", "HEADS", "SpliceModel", "SpliceTrainConfig", "SpliceWindows",
           "Transcript", "build_windows", "evaluate_splice", "iter_predict_windows", "load_splice_model", "predict_windows",
           "read_transcripts", "results_table", "save_splice_model", "split_by_chromosome", "splice_metrics", "to_genome_table",
           "topk_accuracy", "train_splice", "write_bedgraph"]
