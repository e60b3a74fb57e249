import numpy as np
import pandas as pd
import pysam
import pytest
from sklearn.metrics import average_precision_score

import ntkit
from ntkit.models import adapters
from ntkit.models.checkpoint import save_checkpoint
from ntkit.core.sequence import reverse_complement
from ntkit.io.genome import Genome, write_fasta
from ntkit.tasks.splice import CONTEXT, MaxEntScan, SitePWM, SpliceTrainConfig, SpliceWindows, Transcript, build_windows, evaluate_splice, load_splice_model, predict_windows, read_transcripts, results_table, save_splice_model, splice_metrics, split_by_chromosome, to_genome_table, topk_accuracy, train_splice


@pytest.fixture(scope="module")
def mes(shared_data):
    d = shared_data / "splice"
    return MaxEntScan(d / "maxentscan_score5_matrix.txt", d / "maxentscan_score3_matrix.txt")


def test_maxentscan_published_examples(mes):
    assert mes.score5("cagGTAAGT") == pytest.approx(10.86, abs=0.005)  # MaxEntScan web examples
    assert mes.score3("ttccaaacgaacttttgtAGgga") == pytest.approx(2.89, abs=0.005)
    seq = "ACGT" * 5 + "CAGGTAAGTCC" + "ttccaaacgaacttttgtAGggaTT".upper()
    s = mes.site_scores(seq)
    donor = 20 + 2  # last exonic base of CAG|GTAAGT
    assert s[donor, 2] == pytest.approx(mes.score5(seq[donor - 2 : donor + 7]))
    acc = 31 + 20  # first exonic base after ...tgtAG
    assert s[acc, 1] == pytest.approx(mes.score3(seq[acc - 20 : acc + 3]))
    assert np.isinf(s[0, 1]) and np.isinf(s[-1, 2])
    assert np.isneginf(mes.score5("CAGGTNAGT"))


def test_topk_and_prauc_known_answers():
    y = np.array([0, 1, 0, 1, 0, 0])
    s = np.array([0.1, 0.9, 0.8, 0.2, 0.0, 0.3])
    assert topk_accuracy(y, s) == 0.5  # k = 2: top-2 = positions 1, 2 -> one true site
    labels = [np.array([0, 1, 2, 0]), np.array([2, 0, 0, 1])]
    scores = [np.eye(3)[l] * 0.9 + 0.05 for l in labels]
    m = splice_metrics(labels, scores)
    assert m["acceptor_topk"] == 1.0 and m["donor_prauc"] == pytest.approx(1.0) and m["acceptor_sites"] == 2
    rng = np.random.default_rng(0)
    sc = [rng.random((4, 3)), rng.random((4, 3))]
    m = splice_metrics(labels, sc)
    y = np.concatenate(labels)
    assert m["donor_prauc"] == pytest.approx(average_precision_score(y == 2, np.concatenate(sc)[:, 2]))


def test_real_chr20_labels_follow_gt_ag(shared_data, tmp_path):
    tx = read_transcripts(shared_data / "splice/spliceai_canonical_dataset_hg19.txt", ["chr20"])
    assert len(tx) == 520 and {t.strand for t in tx} == {"+", "-"}
    g = Genome(shared_data / "genomes/GRCh37_chr20.fa.gz")
    short = sorted(tx, key=lambda t: t.end - t.start)[100:160]
    w = build_windows(g, short, 3000)
    gt = ag = nd = na = 0
    for s, lab in zip(w.sequences, w.labels):
        for p in np.nonzero(lab == 2)[0]:
            if p + 3 <= len(s):
                nd += 1
                gt += s[p + 1 : p + 3] == "GT"
        for p in np.nonzero(lab == 1)[0]:
            if p >= 2:
                na += 1
                ag += s[p - 2 : p] == "AG"
    assert nd > 50 and na > 50
    assert gt / nd > 0.97 and ag / na > 0.97  # canonical dinucleotides in transcript orientation, both strands
    w.save(tmp_path / "w.npz")
    back = SpliceWindows.load(tmp_path / "w.npz")
    assert back.sequences == w.sequences and back.strand == w.strand and back.start == w.start
    assert all(np.array_equal(a, b) for a, b in zip(back.labels, w.labels)) and back.counts() == w.counts()
    tr, te = split_by_chromosome(tx + read_transcripts(shared_data / "splice/spliceai_canonical_dataset_hg19.txt", ["chr1"])[:5])
    assert {t.chrom for t in te} == {"chr1"} and {t.chrom for t in tr} == {"chr20"}


def test_gtf_minus_strand_and_genome_mapping(tmp_path):
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 2000))
    write_fasta(tmp_path / "g.fa", [("chr9", seq)])
    (tmp_path / "a.gtf").write_text(
        'chr9\tx\texon\t101\t200\t.\t-\t.\ttranscript_id "m";\n'
        'chr9\tx\texon\t501\t600\t.\t-\t.\ttranscript_id "m";\n'
        'chr9\tx\texon\t1001\t1100\t.\t+\t.\ttranscript_id "p";\n'
        'chr9\tx\texon\t1301\t1400\t.\t+\t.\ttranscript_id "p";\n')
    tx = {t.name: t for t in read_transcripts(tmp_path / "a.gtf")}
    assert tx["p"].donors == [1099] and tx["p"].acceptors == [1300]
    assert tx["m"].donors == [500] and tx["m"].acceptors == [199]  # minus: donor at the upstream exon's genomic start
    w = build_windows(Genome(tmp_path / "g.fa"), list(tx.values()), 1000)
    mi = w.strand.index("-")
    s = w.sequences[mi]
    assert s == reverse_complement(seq[w.start[mi] : w.start[mi] + len(s)])
    onehot = [np.eye(3)[l] for l in w.labels]
    t = to_genome_table(w, onehot, min_prob=0.5)
    got = {(r.strand, r.pos, "donor" if r.p_donor > 0.5 else "acceptor") for r in t.itertuples()}
    assert got == {("-", 500, "donor"), ("-", 199, "acceptor"), ("+", 1099, "donor"), ("+", 1300, "acceptor")}


def test_train_predict_save_load_and_evaluate(tmp_path, mes):
    rng = np.random.default_rng(1)
    seqs, labels = [], []
    for i in range(12):
        s = list(rng.choice(list("ACGT"), 300))
        lab = np.zeros(300, np.uint8)
        for p in (60, 150, 240):
            s[p - 2 : p + 7] = list("CAGGTAAGT")
            lab[p] = 2
        seqs.append("".join(s))
        labels.append(lab)
    data = SpliceWindows(seqs, labels, ["c"] * 12, [0] * 12, ["+"] * 12, ["t"] * 12)
    base = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0)
    m = train_splice(base, data, SpliceTrainConfig(method="ia3", head="linear", loss="ce", site_weight=1.0, lr=3e-2, epochs=6, batch_size=4))
    p = predict_windows(m, data)
    assert p[0].shape == (300, 3) and np.allclose(p[0].sum(1), 1, atol=1e-5)
    save_splice_model(m, tmp_path / "sm")
    adapters.detach(m.base)
    m2 = load_splice_model(tmp_path / "sm", ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0))
    np.testing.assert_allclose(predict_windows(m2, data)[0], p[0], rtol=1e-4, atol=1e-6)
    df = evaluate_splice(m2, data, {"MaxEntScan": mes, "PWM": SitePWM().fit(data)})
    assert list(df["method"]) == ["ntkit (linear head, ia3)", "MaxEntScan", "PWM"]
    assert df.set_index("method").loc["MaxEntScan", "donor_topk"] == 1.0  # perfect consensus sites
    assert "| MaxEntScan |" in results_table(df)


def planted(n=16, L=300, seed=1):
    """Windows with donors at consensus CAG|GTAAGT sites, acceptors at a polypyrimidine + AG."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for _ in range(n):
        s = list(rng.choice(list("ACGT"), L))
        lab = np.zeros(L, np.uint8)
        for p in rng.choice(np.arange(30, L - 30, 20), 3, replace=False):
            s[p - 2 : p + 7] = list("CAGGTAAGT")
            lab[p] = 2
        seqs.append("".join(s))
        labels.append(lab)
    return SpliceWindows(seqs, labels, ["c"] * n, [0] * n, ["+"] * n, ["t"] * n)


@pytest.mark.parametrize("head,method", [("segment", "frozen"), ("bases", "frozen"), ("segment", "ia3")])
def test_convolutional_heads_learn_and_round_trip(tmp_path, head, method):
    data, valid = planted(24), planted(8, seed=2)
    base = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0)
    cfg = SpliceTrainConfig(method=method, head=head, lr=3e-3, epochs=8, batch_size=4, site_weight=20.0, loss="focal", eval_every=6)
    m = train_splice(base, data, cfg, valid=valid)
    assert m.best_valid_prauc is not None
    metrics = splice_metrics(valid.labels, predict_windows(m, valid))
    assert metrics["donor_topk"] >= 0.8, metrics
    if head == "bases":
        assert all(not p.requires_grad for p in m.base.parameters())
    p = predict_windows(m, valid)
    save_splice_model(m, tmp_path / "sm")
    if method == "ia3":
        adapters.detach(m.base)
    m2 = load_splice_model(tmp_path / "sm", ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0))
    assert m2.head_kind == head
    np.testing.assert_allclose(predict_windows(m2, valid)[0], p[0], rtol=1e-4, atol=1e-5)


def test_context_bases_are_seen_not_scored(tmp_path):
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), 3000))
    write_fasta(tmp_path / "g.fa", [("c1", seq)])
    tx = Transcript("t", "c1", "+", 1000, 2000, acceptors=[1500], donors=[1200])
    w = build_windows(Genome(tmp_path / "g.fa"), [tx], 500, context=300)
    assert [len(s) for s in w.sequences] == [1100, 1100] and w.start == [700, 1200]
    assert (w.labels[0][:300] == CONTEXT).all() and (w.labels[0][800:] == CONTEXT).all()
    assert w.counts() == {"none": 998, "acceptor": 1, "donor": 1}
    assert w.sequences[0] == seq[700:1800]
    probs = [np.tile([0.0, 1.0, 1.0], (len(s), 1)) for s in w.sequences]
    t = to_genome_table(w, probs)
    assert t["pos"].min() == 1000 and t["pos"].max() == 1999 and len(t) == 1000  # context positions are not output
    m = splice_metrics(w.labels, [np.tile([0.0, 0.5, 0.5], (len(s), 1)) for s in w.sequences])
    assert m["acceptor_sites"] == 1 and m["donor_sites"] == 1


def motif_donors(model, seqs, **kw):
    """An exact stand-in for a trained splice model: donor probability 1 at the G of every
    ``CAG|GTAAGT`` (the last exon base), 0 elsewhere; so the delta scores have known values."""
    for s in seqs:
        p = np.zeros((len(s), 3), dtype=np.float32)
        for i in range(2, len(s) - 6):
            if s[i - 2 : i + 7] == "CAGGTAAGT":
                p[i, 2] = 1.0
        p[:, 0] = 1 - p[:, 2]
        yield p


def test_splice_model_as_predictor_scores_canonical_gt_vs_deep_intronic(tmp_path, monkeypatch):
    """A splice model behind ``predictors.SpliceSites`` through the perturbation layer: the G of a
    donor's GT loses the donor one base before POS, a deep intronic SNV and a small insertion
    change nothing, a variant outside every gene is a counted skip."""
    from ntkit.tasks import predictors
    from ntkit.tasks.perturb import variant_effects_to_files
    from ntkit.tasks.predictors import SpliceSites
    from ntkit.tasks.splice.model import SpliceModel

    rng = np.random.default_rng(3)
    seq = list(rng.choice(list("ACGT"), 6000))
    donors = list(range(300, 5700, 200))
    for p in donors:  # exon ...CAG | GTAAGT... intron; the donor label is the last exon base (G)
        seq[p - 2 : p + 7] = list("CAGGTAAGT")
    seq = "".join(seq)
    write_fasta(tmp_path / "g.fa", [("7", seq)])
    (tmp_path / "tx.txt").write_text("tx1\t0\t7\t+\t101\t5900\t" + ",".join(str(d + 1) for d in donors) + ",\t"
                                     + ",".join(str(d + 101) for d in donors) + ",\n")
    # 300 tokens (1794 bp): the windows of distance 50 and the head's 600-base receptive field each side fit
    m = SpliceModel(ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=300), seed=0), "frozen", head="bases").eval()
    pred = SpliceSites(m)
    assert pred.exact and pred.receptive_field == m.head.receptive_field // 2
    monkeypatch.setattr(predictors, "iter_predict_windows", motif_donors)  # where SpliceSites calls it
    d = donors[10]
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
             f"7\t{d + 2}\tgt\t{seq[d + 1]}\tC\t.\t.\t.",  # the G of GT (1-based POS d + 2)
             f"7\t{d + 50}\tins\t{seq[d + 49]}\t{seq[d + 49]}TT\t.\t.\t.",
             f"7\t{d + 101}\tdeep\t{seq[d + 100]}\t{'A' if seq[d + 100] != 'A' else 'C'}\t.\t.\t.",
             f"7\t5950\tout\t{seq[5949]}\t{'A' if seq[5949] != 'A' else 'C'}\t.\t.\t."]
    (tmp_path / "v.vcf").write_text("\n".join(lines) + "\n")
    r = variant_effects_to_files(pred, tmp_path / "v.vcf", tmp_path / "g.fa", [tmp_path / "s.tsv", tmp_path / "s.vcf.gz"],
                                 transcripts=tmp_path / "tx.txt")
    assert r["summary"] == "3/4 alleles scored; skipped not_in_gene: 1"
    t = pd.read_csv(tmp_path / "s.tsv", sep="\t").set_index("id")
    assert list(t["status"]) == ["scored", "scored", "scored", "not_in_gene"]  # in VCF order
    assert tuple(t.loc["gt", ["DS_DL", "DP_DL", "DS_AG", "DS_AL", "DS_DG"]]) == (1.0, -1, 0.0, 0.0, 0.0)  # the donor (POS - 1) is lost
    assert (t.loc[["deep", "ins"], ["DS_AG", "DS_AL", "DS_DG", "DS_DL"]] == 0).all().all()
    recs = [r for r in pysam.VariantFile(str(tmp_path / "s.vcf.gz"))]
    assert recs[0].info["NT_SPLICE"][0].startswith("C|tx1|") and "NT_SPLICE" not in recs[3].info

def test_bases_head_defaults_to_a_usable_model_and_refuses_an_adapter(tmp_path, capsys):
    """``--head bases`` never runs the base model: its default method is ``frozen`` (the saved model
    loads everywhere); an adapter method with it is refused before any training."""
    from ntkit.cli import main

    assert SpliceTrainConfig(head="bases").method == "frozen" and SpliceTrainConfig().method == "ia3"
    with pytest.raises(ValueError, match="--head bases reads the bases alone .* --method ia3 cannot apply; use --method frozen"):
        SpliceTrainConfig(head="bases", method="ia3")
    planted(8).save(tmp_path / "w.npz")
    save_checkpoint(ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=64), seed=0), tmp_path / "base")
    args = ["splice", "train", "--model", str(tmp_path / "base"), "--data", str(tmp_path / "w.npz"), "--head", "bases", "--epochs", "1",
            "--no-progress"]
    assert main(args + ["--method", "full", "--out", str(tmp_path / "x")]) == 2
    assert "--head bases reads the bases alone" in capsys.readouterr().err and not (tmp_path / "x" / "splice_config.json").exists()
    assert main(args + ["--out", str(tmp_path / "sm")]) == 0
    m = load_splice_model(tmp_path / "sm", ntkit.load(tmp_path / "base"))
    assert m.method == "frozen" and predict_windows(m, planted(2))[0].shape == (300, 3)
