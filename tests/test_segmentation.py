"""ntkit.tasks.segmentation: targets from GTF/BED, metrics, training a SegmentNT model (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import pysam
import pytest
import torch
from sklearn.metrics import average_precision_score, matthews_corrcoef

import ntkit
from ntkit.io.genome import Genome, write_fasta
from ntkit.models import adapters
from ntkit.models.nt.model import build
from ntkit.tasks.segmentation import BasesSegmenter, SegmentTrainConfig, Targets, build_windows, element_intervals, evaluate_segmentation, focal_loss, from_backbone, segmentation_metrics, train_segmentation
from ntkit.tasks.splice import Transcript, read_transcripts

GTF = """\
# GENCODE-style: gene, transcript with UTR + CDS records (+ strand)
c1\tsrc\tgene\t101\t400\t.\t+\t.\tgene_id "g1"; gene_type "protein_coding";
c1\tsrc\texon\t101\t150\t.\t+\t.\tgene_id "g1"; transcript_id "t1";
c1\tsrc\texon\t201\t250\t.\t+\t.\tgene_id "g1"; transcript_id "t1";
c1\tsrc\texon\t351\t400\t.\t+\t.\tgene_id "g1"; transcript_id "t1";
c1\tsrc\tCDS\t121\t150\t.\t+\t0\tgene_id "g1"; transcript_id "t1";
c1\tsrc\tCDS\t201\t250\t.\t+\t0\tgene_id "g1"; transcript_id "t1";
c1\tsrc\tCDS\t351\t370\t.\t+\t0\tgene_id "g1"; transcript_id "t1";
c1\tsrc\tUTR\t101\t120\t.\t+\t.\tgene_id "g1"; transcript_id "t1";
c1\tsrc\tUTR\t371\t400\t.\t+\t.\tgene_id "g1"; transcript_id "t1";
# Ensembl-style minus-strand lncRNA
c1\tsrc\tgene\t501\t700\t.\t-\t.\tgene_id "g2"; gene_biotype "lncRNA";
c1\tsrc\texon\t501\t550\t.\t-\t.\tgene_id "g2"; transcript_id "t2";
c1\tsrc\texon\t651\t700\t.\t-\t.\tgene_id "g2"; transcript_id "t2";
c1\tsrc\tfive_prime_utr\t681\t700\t.\t-\t.\tgene_id "g2"; transcript_id "t2";
"""


@pytest.fixture()
def gtf(tmp_path):
    p = tmp_path / "a.gtf"
    p.write_text(GTF)
    return p


def test_element_intervals(gtf, tmp_path):
    (tmp_path / "ctcf.bed").write_text("c1\t10\t30\nc1\t800\t820\n")
    iv = element_intervals(gtf, {"CTCF-bound": tmp_path / "ctcf.bed"})
    assert iv["protein_coding_gene"]["c1"] == [(100, 400)] and iv["lncRNA"]["c1"] == [(500, 700)]
    assert sorted(iv["intron"]["c1"]) == [(150, 200), (250, 350), (550, 650)]
    # + strand: donor = the intron's first two bases, acceptor its last two; - strand: mirrored.
    assert sorted(iv["splice_donor"]["c1"]) == [(150, 152), (250, 252), (648, 650)]
    assert sorted(iv["splice_acceptor"]["c1"]) == [(198, 200), (348, 350), (550, 552)]
    assert sorted(iv["5UTR"]["c1"]) == [(100, 120), (680, 700)] and iv["3UTR"]["c1"] == [(370, 400)]
    assert iv["CTCF-bound"]["c1"] == [(10, 30), (800, 820)]
    t = Targets(["exon", "splice_donor", "CTCF-bound"], gtf, {"CTCF-bound": tmp_path / "ctcf.bed"})
    y = t.labels("c1", 140, 160)
    assert y.shape == (20, 3) and y[:, 0].tolist() == [1] * 10 + [0] * 10 and y[:, 1].tolist() == [0] * 10 + [1, 1] + [0] * 8
    with pytest.raises(ValueError, match="no source for element"):
        Targets(["enhancer_Tissue_specific"], gtf)


def test_a_transcript_table_gives_the_gtf_elements(gtf, tmp_path):
    """SpliceAI's table (splice sites as exon-side bases) and the GTF of the same transcripts give
    the same exons, introns and splice dinucleotides, on both strands."""
    table = tmp_path / "tx.txt"  # 1-based: exon ends, exon starts of the junctions
    table.write_text("t1\t0\tc1\t+\t101\t400\t150,250,\t201,351,\nt2\t0\tc1\t-\t501\t700\t550,\t651,\n")
    tx = read_transcripts(table)
    assert tx[1].donors == [650] and tx[1].acceptors == [549]  # minus strand: the donor is an exon's first base
    a, b = element_intervals(None, transcripts=tx), element_intervals(gtf)
    for e in ("exon", "intron", "splice_donor", "splice_acceptor"):
        assert sorted(a[e]["c1"]) == sorted(b[e]["c1"]), e
    assert a["protein_coding_gene"]["c1"] == [(100, 400), (500, 700)]  # the table lists protein-coding genes' transcripts
    one = Transcript("x", "c1", "+", 0, 100)  # a one-exon transcript: the exon, no intron
    assert dict(element_intervals(None, transcripts=[one])["exon"]) == {"c1": [(0, 100)]}
    t = Targets(["splice_acceptor", "exon"], transcripts=tx)
    assert t.labels("c1", 196, 202)[:, 0].tolist() == [0, 0, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="come from a GTF"):
        Targets(["5UTR"], transcripts=tx)


def test_one_focal_loss_for_segmentation_and_splice_models():
    from ntkit.tasks.splice.train import SpliceTrainConfig, splice_loss

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(40, 3, generator=g), torch.randint(0, 3, (40,), generator=g)
    y[:5] = -100  # unlabelled
    cfg = SpliceTrainConfig(site_weight=10.0, focal_gamma=2.0)
    keep = y >= 0
    logp = torch.log_softmax(logits[keep], -1)[torch.arange(int(keep.sum())), y[keep]]
    w = torch.tensor([1.0, 10.0, 10.0])[y[keep]]
    expected = -(w * (1 - logp.exp()) ** 2 * logp).sum() / w.sum()  # SpliceAI sites weighted, focal
    assert splice_loss(logits, y, cfg).item() == pytest.approx(expected.item(), rel=1e-6)
    z, t = torch.randn(2, 7, 3, 2, generator=g), torch.randint(0, 2, (2, 7, 3), generator=g)
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[1, 5:] = False  # the end of a shorter row
    ce = torch.nn.functional.cross_entropy(z[valid].reshape(-1, 2), t[valid].reshape(-1))
    assert focal_loss(z, t, valid.unsqueeze(-1).expand(t.shape)).item() == pytest.approx(ce.item(), rel=1e-6)


def test_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    y = [rng.random((50, 2)) < 0.2 for _ in range(3)]
    p = [np.clip(a * 0.6 + rng.random(a.shape) * 0.5, 0, 1) for a in y]
    r = segmentation_metrics(y, p, ["exon", "splice_donor"])
    Y, P = np.concatenate(y), np.concatenate(p)
    assert r.mcc[0] == pytest.approx(matthews_corrcoef(Y[:, 0], P[:, 0] >= 0.5))
    assert r.prauc[1] == pytest.approx(average_precision_score(Y[:, 1], P[:, 1]))
    k = int(Y[:, 1].sum())
    assert r.topk[1] == pytest.approx(Y[np.argsort(-P[:, 1])[:k], 1].mean()) and np.isnan(r.topk[0])


def _genome(tmp_path):
    """GC-rich 'exons' in an AT-rich background: a head on a random backbone can learn that."""
    rng = np.random.default_rng(1)
    seq = list(rng.choice(list("AT"), 40_000))
    lines = []
    for i, s in enumerate(range(200, 39_000, 700)):
        n = int(rng.integers(60, 200))
        seq[s:s + n] = rng.choice(list("GC"), n)
        lines.append(f"c1\tx\texon\t{s + 1}\t{s + n}\t.\t+\t.\ttranscript_id \"t{i}\";")
    seq2 = list(rng.choice(list("AT"), 6_000))  # a second contig, held out (drawn after c1: c1 is as before)
    for i, s in enumerate(range(200, 5_500, 700)):
        n = int(rng.integers(60, 200))
        seq2[s:s + n] = rng.choice(list("GC"), n)
        lines.append(f"c2\tx\texon\t{s + 1}\t{s + n}\t.\t+\t.\ttranscript_id \"u{i}\";")
    write_fasta(tmp_path / "g.fa", [("c1", "".join(seq)), ("c2", "".join(seq2))])
    pysam.faidx(str(tmp_path / "g.fa"))
    (tmp_path / "g.gtf").write_text("\n".join(lines) + "\n")
    return Genome(tmp_path / "g.fa"), tmp_path / "g.gtf"


def test_train_segment_nt_learns_and_round_trips(tmp_path):
    genome, gtf = _genome(tmp_path)
    targets = Targets(["exon"], gtf)
    data = build_windows(genome, targets, ["c1"], 1200, max_windows=24)
    assert len(data) == 24 and data.labels[0].shape == (1200, 1)
    backbone = build("nt-v2-tiny", seed=0)
    model = from_backbone(backbone, ["exon"], seed=0)
    before = evaluate_segmentation(model, data)
    train_segmentation(model, data, SegmentTrainConfig(method="ia3", epochs=6, batch_size=4, lr=3e-3))
    after = evaluate_segmentation(model, data)
    assert after.prauc[0] > 0.9 > before.prauc[0] and after.mcc[0] > 0.7
    assert not adapters.has_adapter(model.nt)  # merged
    from ntkit.models.segment_nt.model import save_folder

    save_folder(model, tmp_path / "seg")
    again = ntkit.load(tmp_path / "seg")
    a, b = model.predict(data.sequences[:2]), again.predict(data.sequences[:2])
    assert all(np.allclose(x, y, atol=1e-6) for x, y in zip(a, b))


def test_cli_train_then_annotate(tmp_path):
    from ntkit.cli import main

    genome, gtf = _genome(tmp_path)
    rc = main(["--quiet", "segment", "train", "--model", "nt-v2-tiny", "--random-init", "--fasta", str(genome.path), "--gtf", str(gtf),
               "--features", "exon", "--train-contigs", "c1", "--test-contigs", "c2", "--window-bp", "1200", "--max-windows", "8",
               "--epochs", "1", "--out", str(tmp_path / "seg"), "--no-progress"])
    assert rc == 0 and (tmp_path / "seg" / "metrics.tsv").exists() and (tmp_path / "seg" / "training.json").exists()
    rc = main(["--quiet", "annotate", "--model", str(tmp_path / "seg"), "--fasta", str(genome.path), "--regions", "c1:1-3000",
               "--out", str(tmp_path / "ann"), "--window-bp", "1200", "--no-progress"])
    assert rc == 0 and (tmp_path / "ann" / "annotation.exon.bw").exists()
    # the same exons from a SpliceAI-style table: the same metrics
    rows = [r.split("\t") for r in gtf.read_text().splitlines()]
    table = tmp_path / "tx.txt"
    table.write_text("".join(f"t{i}\t0\t{r[0]}\t+\t{r[3]}\t{r[4]}\t\t\n" for i, r in enumerate(rows)))
    for name, src in (("gtf", ["--gtf", str(gtf)]), ("table", ["--transcripts", str(table)])):
        assert main(["--quiet", "segment", "evaluate", "--model", str(tmp_path / "seg"), "--fasta", str(genome.path), *src,
                     "--contigs", "c1", "--window-bp", "1200", "--max-windows", "4", "--out", str(tmp_path / f"{name}.tsv"),
                     "--no-progress"]) == 0
    assert (tmp_path / "gtf.tsv").read_text() == (tmp_path / "table.tsv").read_text()
    assert main(["--quiet", "segment", "train", "--model", "nt-v2-tiny", "--random-init", "--fasta", str(genome.path),
                 "--bed", "ctcf.bed", "--train-contigs", "c1", "--out", str(tmp_path / "x")]) == 2


def test_bases_only_baseline_learns_and_predicts_rows_alone(tmp_path):
    genome, gtf = _genome(tmp_path)
    data = build_windows(genome, Targets(["exon"], gtf), ["c1"], 1200, max_windows=24)
    torch.manual_seed(0)
    conv = BasesSegmenter(["exon"], channels=8)
    train_segmentation(conv, data, SegmentTrainConfig(epochs=4, batch_size=4, lr=3e-3))
    r = evaluate_segmentation(conv, data)
    assert r.prauc[0] > 0.9 and conv.train_result["steps"] == 24
    short = data.sequences[0][:700]
    together = conv.predict([short, data.sequences[1]])
    assert np.allclose(together[0], conv.predict([short])[0], atol=1e-6) and together[0].shape == (700, 1)
    with pytest.raises(ValueError, match="the model predicts"):
        train_segmentation(BasesSegmenter(["intron"]), data)


def test_element_files_and_contig_sets_that_would_mislead_are_refused(tmp_path, capsys):
    from ntkit.cli import main

    genome, gtf = _genome(tmp_path)
    (tmp_path / "empty.bed").write_text("# nothing\n")
    with pytest.raises(ValueError, match=r"empty\.bed: no BED records for element 'CTCF-bound' \(an empty file\)"):
        Targets(["CTCF-bound"], beds={"CTCF-bound": tmp_path / "empty.bed"})
    (tmp_path / "past.bed").write_text("c1\t10\t20\nc2\t5990\t6010\n")
    with pytest.raises(ValueError, match=r"past\.bed:2: c2:5990-6010 ends past the end of c2 \(6,000 bases in g\.fa\)"):
        Targets(["CTCF-bound"], beds={"CTCF-bound": tmp_path / "past.bed"}, genome=genome)
    Targets(["CTCF-bound"], beds={"CTCF-bound": tmp_path / "past.bed"})  # without a genome there is no length to check against
    base = ["--quiet", "segment", "train", "--model", "nt-v2-tiny", "--random-init", "--fasta", str(genome.path), "--gtf", str(gtf),
            "--features", "exon", "--window-bp", "1200", "--out", str(tmp_path / "seg")]
    assert main(base + ["--train-contigs", "c1", "--valid-contigs", "chrc1"]) == 2
    assert "contig chrc1 is in both --train-contigs and --valid-contigs" in capsys.readouterr().err
    assert main(base + ["--train-contigs", "c1", "--test-contigs", "c1"]) == 2
    assert "contig c1 is in both --train-contigs and --test-contigs" in capsys.readouterr().err
    # evaluating on a contig without any annotated element: a named error, not numpy's "need at least one array"
    write_fasta(tmp_path / "h.fa", [("c1", "ACGT" * 2000), ("c9", "ACGT" * 2000)])
    pysam.faidx(str(tmp_path / "h.fa"))
    from ntkit.models.segment_nt.model import save_folder

    save_folder(from_backbone(build("nt-v2-tiny", seed=0), ["exon"], seed=0), tmp_path / "snt")
    rc = main(["--quiet", "segment", "evaluate", "--model", str(tmp_path / "snt"), "--fasta", str(tmp_path / "h.fa"), "--gtf", str(gtf),
               "--contigs", "c9", "--window-bp", "1200"])
    err = capsys.readouterr().err
    assert rc == 2 and "no window of 1,200 bases with an annotated element on c9" in err, err
    with pytest.raises(ValueError, match="no windows to evaluate"):
        segmentation_metrics([], [], ["exon"])
