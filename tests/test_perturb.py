"""The perturbation layer over any predictor: SpliceAI-style per-base scores (known answers from an
exact motif predictor: SNVs, a deletion, an insertion, the minus strand, masking), per-sequence
effects that equal ``ntkit predict`` on the reference and alternative windows, mutagenesis equal
to scoring the same SNVs, and sharded jobs equal to one process."""


import numpy as np
import pandas as pd
import pysam
import pytest

import ntkit
from ntkit.models.checkpoint import save_checkpoint
from ntkit.cli import main
from ntkit.io.genome import Genome, write_fasta
from ntkit.tasks.perturb import EffectOptions, GeneIndex, align_alt, base_effects, variant_effects_to_files
from ntkit.tasks.predictors import Predictor
from ntkit.core.sequence import reverse_complement
from ntkit.tasks.splice import Transcript
from ntkit.tasks.variants import iter_records

DONOR = "CAGGTAAGT"  # exon ...CAG | GTAAGT... intron: the donor is the last exon base (the G before GT)


class Motif(Predictor):
    """An exact per-base predictor with known outputs: donor probability 1 at the G before every
    GTAAGT read 5' -> 3', acceptor 1 at the base after every TTTTTTAG."""

    kind, outputs, stranded, receptive_field, max_length = "base", ("acceptor", "donor"), True, 8, 10_000
    score_names = {"acceptor": ("AG", "AL"), "donor": ("DG", "DL")}

    def __init__(self, exact=True):
        self.exact = exact

    def predict(self, sequences, runtime=None):
        for s in sequences:
            p = np.zeros((len(s), 2))
            for i in range(len(s)):
                if s[i + 1 : i + 7] == "GTAAGT" and s[i] == "G":
                    p[i, 1] = 1
                if i >= 8 and s[i - 8 : i] == "TTTTTTAG":
                    p[i, 0] = 1
            yield p


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    d = tmp_path_factory.mktemp("perturb")
    rng = np.random.default_rng(4)
    seq = list(rng.choice(list("ACGT"), 4000))
    for p in (1000, 1600):  # donors of the + gene (0-based position of the exon's last G)
        seq[p - 2 : p + 7] = list(DONOR)
    seq[2490:2498] = list("TTTTTTAG")  # an acceptor at 2498 on the + strand
    minus = 3300  # a donor of the - gene: on the reverse strand, at + position 3300
    seq[minus - 6 : minus + 3] = list(reverse_complement(DONOR))  # read 5' -> 3' on the - strand: CAG|GTAAGT
    seq = "".join(seq)
    write_fasta(d / "g.fa", [("7", seq)])
    genes = [Transcript("PLUS", "7", "+", 500, 2800, acceptors=[2498], donors=[1000, 1600]),
             Transcript("MINUS", "7", "-", 3000, 3900, donors=[minus])]
    return d, seq, genes


def vcf(path, seq, records):
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=7,length=4000>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"7\t{pos}\t{name}\t{ref}\t{alt}\t.\t.\t." for name, pos, ref, alt in sorted(records, key=lambda r: r[1])]
    path.write_text("\n".join(lines) + "\n")
    return path


def score(genome, records, tmp_path, exact=True, **opts):
    d, seq, genes = genome
    g = Genome(d / "g.fa")
    alleles = [a for rec in iter_records(vcf(tmp_path / "v.vcf", seq, records)) for a in rec]
    pred = Motif(exact)
    rows = base_effects(pred, alleles, g, GeneIndex(genes, g), EffectOptions(**opts).resolve(pred))
    return pd.DataFrame(rows)


def test_splice_scores_have_known_answers(genome, tmp_path):
    d, seq, genes = genome
    other = lambda b: "A" if b != "A" else "C"  # noqa: E731
    records = [
        ("gt", 1002, seq[1001], "C"),  # the G of GT (1-based 1002): donor 1000 lost, 1 base before POS
        ("del", 1601, seq[1600:1602], seq[1600]),  # a 1-bp deletion of the G of GT after the anchor G: donor 1600 lost at POS
        ("ins", 2201, seq[2200], seq[2200] + "GTAAGT"),  # an insertion making a donor at its anchor (if the anchor is G)
        ("acc", 2497, seq[2496], other(seq[2496])),  # the A of the acceptor's AG
        ("minus", 3300, seq[3299], other(seq[3299])),  # + C at 1-based 3300: the G of the - gene's GT (read on the - strand)
        ("deep", 1300, seq[1299], other(seq[1299])),  # nothing near
        ("outside", 100, seq[99], other(seq[99])),  # in no gene
        ("complex", 1200, seq[1199:1202], "TT"),  # REF 3 > 1 and ALT 2 > 1 bases
    ]
    t = score(genome, records, tmp_path).set_index("id")
    assert (t.loc["gt", "DS_DL"], t.loc["gt", "DP_DL"]) == (1.0, -1) and t.loc["gt", ["DS_AG", "DS_AL", "DS_DG"]].sum() == 0
    assert (t.loc["del", "DS_DL"], t.loc["del", "DP_DL"]) == (1.0, 0) and t.loc["del", "status"] == "scored"
    gained = 1.0 if seq[2200] == "G" else 0.0
    assert (t.loc["ins", "DS_DG"], t.loc["ins", "DP_DG"] if gained else 0) == (gained, 0)
    assert (t.loc["acc", "DS_AL"], t.loc["acc", "DP_AL"]) == (1.0, 2)  # the acceptor (first exon base) is 2 after the A of AG
    assert (t.loc["minus", "DS_DL"], t.loc["minus", "DP_DL"], t.loc["minus", "gene"], t.loc["minus", "strand"]) == (1.0, 1, "MINUS", "-")  # DP in genome coordinates
    assert t.loc["deep", ["DS_AG", "DS_AL", "DS_DG", "DS_DL"]].sum() == 0
    assert t.loc["outside", "status"] == "not_in_gene" and pd.isna(t.loc["outside", "gene"])
    assert t.loc["complex", "status"] == "complex_indel"
    # a predictor that is not exact reads the alternative in the tile: the same answers for this local one
    pd.testing.assert_frame_equal(score(genome, records, tmp_path, exact=False).set_index("id").drop(columns="window_start"),
                                  t.drop(columns="window_start"))


def test_masking_is_spliceai_m(genome, tmp_path):
    d, seq, genes = genome
    records = [("gt", 1002, seq[1001], "C"), ("ins", 2201, seq[2200], seq[2200] + "GTAAGT")]
    genes[0].donors.append(2200)  # annotate the gain's position: a "gain" there is a known site
    try:
        m = score(genome, records, tmp_path, mask=True).set_index("id")
        plain = score(genome, records, tmp_path).set_index("id")
    finally:
        genes[0].donors.pop()
    assert m.loc["gt", "DS_DL"] == 1.0  # a loss at an annotated donor stays
    assert m.loc["ins", "DS_DG"] == 0.0 and plain.loc["ins", "DS_DG"] == (1.0 if seq[2200] == "G" else 0.0)


def test_alignment_of_indels_is_spliceai():
    y = np.arange(1, 12, dtype=float)[:, None]  # distance 5: 11 positions of a 1-base allele
    assert align_alt(y[:10], 3, 1, 4).tolist() == [[1], [2], [3], [4], [5], [0], [0], [6], [7], [8], [9], [10]]  # 2 bases deleted
    ins = np.array([1, 2, 3, 9, 7, 4, 5, 6], dtype=float)[:, None]  # distance 3, alt 2 bases: the inserted base reduced to the max
    assert align_alt(ins, 1, 2, 3).ravel().tolist() == [1, 2, 3, 9, 4, 5, 6]


def test_splice_job_shards_equal_one_and_write_spliceai_vcf(genome, tmp_path):
    d, seq, genes = genome
    records = [("gt", 1002, seq[1001], "C"), ("del", 1601, seq[1600:1602], seq[1600]), ("outside", 100, seq[99], "G" if seq[99] != "G" else "T"),
               ("minus", 3300, seq[3299], "A" if seq[3299] != "A" else "C")]
    v = vcf(tmp_path / "v.vcf", seq, records)
    # SpliceAI's table, 1-based: exon ends / starts; on the - strand an exon's first base is the donor
    tx = tmp_path / "tx.txt"
    tx.write_text("PLUS\t0\tchr7\t+\t501\t2800\t1001,1601,\t1002,2499,\nMINUS\t0\tchr7\t-\t3001\t3900\t3200,\t3301,\n")
    one = variant_effects_to_files(Motif(), v, d / "g.fa", [tmp_path / "one.tsv", tmp_path / "one.vcf.gz"], transcripts=tx)
    assert one["merged"] and one["summary"] == "3/4 alleles scored; skipped not_in_gene: 1"
    for i in (1, 0):
        r = variant_effects_to_files(Motif(), v, d / "g.fa", [tmp_path / "two.tsv"], transcripts=tx, chunk_size=1, shard=f"{i}/2")
    assert r["merged"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one.tsv", sep="\t"), pd.read_csv(tmp_path / "two.tsv", sep="\t"))
    recs = {r.id: r for r in pysam.VariantFile(str(tmp_path / "one.vcf.gz"))}
    assert recs["gt"].info["NT_SPLICE"] == ("C|PLUS|0.00|0.00|0.00|1.00|-50|-50|-50|-1",)  # no change: DP -distance, as SpliceAI
    assert recs["outside"].info["NT_STATUS"] == ("not_in_gene",) and "NT_SPLICE" not in recs["outside"].info
    assert recs["del"].info["NT_STATUS"] == ("scored",) and recs["del"].info["NT_SPLICE"][0].endswith("|1.00|-50|-50|-50|0")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, genome):
    """A small fine-tuned classifier and its base, saved, with a VCF of SNVs and indels."""
    from ntkit.tasks.finetune import FinetuneConfig, finetune

    d = tmp_path_factory.mktemp("clf")
    base = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=41), seed=0)
    save_checkpoint(base, d / "base")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 120)) for _ in range(40)]
    labels = [int("GGG" in s) for s in seqs]
    ft = finetune(base, seqs, labels, FinetuneConfig(method="lora", epochs=1, lr=1e-2))
    ft.save_adapter(d / "ad")
    _, seq, _ = genome
    recs = [(f"s{p}", p, seq[p - 1], "ACGT"[("ACGT".index(seq[p - 1]) + 1) % 4]) for p in range(300, 380, 7)]
    recs += [("del", 400, seq[399:402], seq[399]), ("ins", 450, seq[449], seq[449] + "TTG")]
    return d, vcf(d / "v.vcf", seq, recs)


def test_adapter_effects_equal_predict_on_ref_and_alt(genome, classifier, tmp_path, capsys):
    gd, seq, _ = genome
    d, v = classifier
    args = ["score-variants", "--vcf", str(v), "--fasta", str(gd / "g.fa"), "--model", str(d / "base"), "--adapter", str(d / "ad"),
            "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "e.tsv"), str(tmp_path / "e.vcf.gz")]) == 0
    t = pd.read_csv(tmp_path / "e.tsv", sep="\t")
    assert (t["status"] == "scored").all() and len(t) == 14
    w = 120  # the adapter's median training length: the window it reads
    refs, alts = [], []
    for r in t.itertuples():
        s0 = r.window_start - 1
        full = seq[s0 : s0 + w + len(r.ref)]
        rel = r.pos - 1 - s0
        refs.append(full[:w])
        alts.append((full[:rel] + r.alt + full[rel + len(r.ref):])[:w])
    write_fasta(tmp_path / "windows.fa", [(f"ref{i}", s) for i, s in enumerate(refs)] + [(f"alt{i}", s) for i, s in enumerate(alts)])
    assert main(["predict", str(tmp_path / "windows.fa"), "--adapter", str(d / "ad"), "--model", str(d / "base"), "--no-progress",
                 "--out", str(tmp_path / "p.tsv")]) == 0
    p = pd.read_csv(tmp_path / "p.tsv", sep="\t").set_index("id")
    n = len(t)
    np.testing.assert_allclose(t["ref_prob_1"], p.loc[[f"ref{i}" for i in range(n)], "prob_1"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(t["alt_prob_1"], p.loc[[f"alt{i}" for i in range(n)], "prob_1"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(t["delta_prob_1"], t["alt_prob_1"] - t["ref_prob_1"], atol=1e-6)
    lo = lambda x: np.log(x) - np.log1p(-x)  # noqa: E731
    np.testing.assert_allclose(t["logodds_1"], lo(t["alt_prob_1"]) - lo(t["ref_prob_1"]), rtol=1e-4, atol=1e-4)
    assert "NT_DELTA_PROB_1" in str(pysam.VariantFile(str(tmp_path / "e.vcf.gz")).header)
    # mutagenesis with the adapter gives the same numbers for the same SNVs
    assert main(["mutagenesis", "--fasta", str(gd / "g.fa"), "--model", str(d / "base"), "--adapter", str(d / "ad"), "--regions",
                 "7:300-380", "--no-progress", "--out", str(tmp_path / "mut")]) == 0
    m = pd.read_parquet(tmp_path / "mut" / "mutagenesis.parquet").set_index(["pos", "alt"])
    snv = t[t["id"].str.startswith("s")].set_index(["pos", "alt"])
    np.testing.assert_allclose(m.loc[snv.index, "delta_prob_1"], snv["delta_prob_1"], rtol=1e-5, atol=1e-7)
    assert (tmp_path / "mut" / "delta_prob_1.bedgraph").exists() and (tmp_path / "mut" / "heatmap.png").exists()


# -- windowed per-base predictors: SegmentNT's elements, NTv3's tracks ----------------------------------------


def _hand_delta(predictor, seq, start, length, a_pos0, ref, alt, D):
    """Reference and alternative predictions of the tile from ``start`` over the allele's
    neighbourhood, each on its own bases, computed by hand (one forward per window)."""
    ref_w = seq[start : start + length]
    rel = a_pos0 - start
    alt_w = (seq[start:start + length + len(ref)][:rel] + alt + seq[start + rel + len(ref):start + length + len(ref)])[:length]
    p_ref, p_alt = (np.asarray(p, dtype=np.float64) for p in predictor.predict([ref_w, alt_w]))
    o = predictor.output_span(length)[0]  # predictions start at start + o
    y_ref = p_ref[a_pos0 - D - start - o : a_pos0 + len(ref) + D - start - o]
    y_alt = p_alt[a_pos0 - D - start - o : a_pos0 + len(alt) + D - start - o]
    return y_ref, y_alt


def test_segment_nt_effects_equal_hand_computed_windows(genome, tmp_path):
    from ntkit.models import segment_nt
    from ntkit.tasks.predictors import Elements

    d, seq, _ = genome
    g = Genome(d / "g.fa")
    pred = Elements(segment_nt.build("segment-nt-tiny"))
    opts = EffectOptions(window_bp=1200, distance=40).resolve(pred)
    a_, b_ = pred.valid(1200, None)
    assert (opts.window_bp, opts.tile_stride_bp) == (1200, (b_ - a_ - 80) // 2)
    recs = [("s1", 1500, seq[1499], "A" if seq[1499] != "A" else "C"), ("s2", 2345, seq[2344], "G" if seq[2344] != "G" else "T"),
            ("del", 2001, seq[2000:2004], seq[2000]), ("ins", 2702, seq[2701], seq[2701] + "ACG")]
    alleles = [a for rec in iter_records(vcf(tmp_path / "v.vcf", seq, recs)) for a in rec]
    rows = pd.DataFrame(base_effects(pred, alleles, g, None, opts))
    assert rows["status"].eq("scored").all() and rows["gene"].isna().all()
    for _, r in rows.iterrows():
        start, pos0 = int(r["window_start"]) - 1, int(r["pos"]) - 1
        assert start + a_ <= pos0 - 40 and pos0 + len(r["ref"]) + 40 <= start + b_  # the neighbourhood in the trusted centre
        y_ref, y_alt = _hand_delta(pred, seq, start, 1200, pos0, r["ref"], r["alt"], 40)
        delta = align_alt(y_alt, len(r["ref"]), len(r["alt"]), 40) - y_ref
        for c, o in enumerate(pred.outputs):
            assert r[f"DS_{o}_gain"] == pytest.approx(max(delta[:, c].max(), 0), abs=1e-6)
            assert r[f"DS_{o}_loss"] == pytest.approx(max(-delta[:, c].min(), 0), abs=1e-6)
            if delta[:, c].max() > 1e-6:
                assert r[f"DP_{o}_gain"] == int(delta[:, c].argmax()) - 40
    assert rows[[c for c in rows.columns if c.startswith("DS_")]].to_numpy().max() > 0  # random weights still move something
    with pytest.raises(ValueError, match="splice model"):
        EffectOptions(mask=True).resolve(pred)
    with pytest.raises(ValueError, match="trusted centre"):
        EffectOptions(window_bp=1200, distance=500).resolve(pred)


@pytest.fixture(scope="module")
def ntv3_post(tmp_path_factory):
    from ntkit.models import ntv3

    d = tmp_path_factory.mktemp("ntv3post")
    m = ntv3.build("ntv3-tiny-post")
    torch = pytest.importorskip("torch")
    with torch.no_grad():  # random heads, away from softplus's flat start
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(m, d / "m")
    return m, d / "m"


def test_ntv3_track_effects_are_sums_over_the_crop(genome, ntv3_post, tmp_path):
    from ntkit.tasks.predictors import Tracks, load_predictor

    d, seq, _ = genome
    g = Genome(d / "g.fa")
    model, _ = ntv3_post
    pred = Tracks(model, "human")
    opts = EffectOptions(window_bp=1024, distance=30).resolve(pred)
    assert opts.tile_stride_bp == (384 - 60) // 2  # crop of 1024: 384 bases
    recs = [("s", 2000, seq[1999], "A" if seq[1999] != "A" else "C"), ("del", 2501, seq[2500:2503], seq[2500]),
            ("ins", 3001, seq[3000], seq[3000] + "GG"), ("edge", 100, seq[99], "A" if seq[99] != "A" else "C")]
    alleles = [a for rec in iter_records(vcf(tmp_path / "v.vcf", seq, recs)) for a in rec]
    rows = pd.DataFrame(base_effects(pred, alleles, g, None, opts)).set_index("id")
    assert rows.loc["edge", "status"] == "outside_prediction"  # the crop of the first window starts at base 320
    for name in ("s", "del", "ins"):
        r = rows.loc[name]
        assert r["status"] == "scored"
        y_ref, y_alt = _hand_delta(pred, seq, int(r["window_start"]) - 1, 1024, int(r["pos"]) - 1, r["ref"], r["alt"], 30)
        for c, o in enumerate(pred.outputs[:3]):  # tracks: sums on each allele's own bases
            assert r[f"SUM_{o}"] == pytest.approx(y_alt[:, c].sum() - y_ref[:, c].sum(), rel=1e-5, abs=1e-5)
            assert r[f"LFC_{o}"] == pytest.approx(np.log2(1 + y_alt[:, c].sum()) - np.log2(1 + y_ref[:, c].sum()), rel=1e-5, abs=1e-6)
        delta = align_alt(y_alt, len(r["ref"]), len(r["alt"]), 30) - y_ref
        assert r["DS_exon_gain"] == pytest.approx(max(delta[:, 3].max(), 0), abs=1e-6)
    assert [c for c in rows.columns if c.startswith(("DS_", "SUM_"))] == ["DS_exon_gain", "DS_exon_loss", "DS_promoter_gain",
                                                                          "DS_promoter_loss", "SUM_h_dnase", "SUM_h_cage", "SUM_h_atac"]
    # a selection of outputs gives the same numbers for those outputs alone
    sel = load_predictor(model, species="human", outputs=["h_cage", "promoter"])
    rows2 = pd.DataFrame(base_effects(sel, [a for rec in iter_records(tmp_path / "v.vcf") for a in rec], g, None,
                                      EffectOptions(window_bp=1024, distance=30).resolve(sel))).set_index("id")
    cols = ["SUM_h_cage", "LFC_h_cage", "DS_promoter_gain", "DS_promoter_loss", "DP_promoter_gain"]
    assert list(c for c in rows2.columns if c[:3] in ("SUM", "LFC", "DS_", "DP_")) == ["DS_promoter_gain", "DS_promoter_loss",
                                                                                       "DP_promoter_gain", "DP_promoter_loss",
                                                                                       "SUM_h_cage", "LFC_h_cage"]
    pd.testing.assert_frame_equal(rows2[cols], rows[cols])
    with pytest.raises(ValueError, match="no output named nope"):
        load_predictor(model, species="human", outputs=["nope"])


def test_windowed_predictors_in_the_cli(genome, ntv3_post, tmp_path, capsys):
    from ntkit.models import segment_nt

    d, seq, _ = genome
    seg = tmp_path / "seg"
    save_checkpoint(segment_nt.build("segment-nt-tiny"), seg)
    recs = [("s", 2000, seq[1999], "A" if seq[1999] != "A" else "C"), ("edge", 100, seq[99], "A" if seq[99] != "A" else "C")]
    v = vcf(tmp_path / "v.vcf", seq, recs)
    out = [str(tmp_path / "e.vcf.gz"), str(tmp_path / "e.tsv")]
    assert main(["score-variants", "--vcf", str(v), "--fasta", str(d / "g.fa"), "--model", str(seg), "--window-bp", "1200",
                 "--no-progress", "--out", *out]) == 0
    t = pd.read_csv(out[1], sep="\t")
    assert "DS_exon_gain" in t and t["gene"].isna().all() and t["status"].eq("scored").all()
    rec = next(iter(pysam.VariantFile(out[0])))
    entry = rec.info["NT_EFFECT"][0].split("|")
    assert entry[:2] == [rec.alts[0], "."] and float(entry[2]) == pytest.approx(t.loc[0, "DS_protein_coding_gene_gain"], abs=0.006)
    # NTv3 tracks: mutagenesis writes a bedGraph per selected track sum and element gain
    _, post = ntv3_post
    capsys.readouterr()
    assert main(["info", str(post), "--tracks", "human"]) == 0
    assert capsys.readouterr().out.split() == ["h_dnase", "h_cage", "h_atac", "exon", "promoter"]
    assert main(["mutagenesis", "--fasta", str(d / "g.fa"), "--model", str(post), "--species", "human", "--outputs", "h_dnase", "exon",
                 "--window-bp", "1024", "--distance", "20", "--regions", "7:2001-2010", "--no-progress", "--out", str(tmp_path / "mut")]) == 0
    m = pd.read_parquet(tmp_path / "mut" / "mutagenesis.parquet")
    assert len(m) == 30 and {"SUM_h_dnase", "LFC_h_dnase", "DS_exon_gain"} <= set(m.columns)
    assert "30 rows: SNVs of 10 bases x 3 ALTs\n" in capsys.readouterr().out
    assert (tmp_path / "mut" / "SUM_h_dnase.bedgraph").exists() and (tmp_path / "mut" / "DS_exon_gain.bedgraph").exists()
    assert main(["score-variants", "--vcf", str(v), "--fasta", str(d / "g.fa"), "--model", str(seg), "--transcripts", str(v),
                 "--no-progress", "--out", str(tmp_path / "x.tsv")]) == 2
    assert "--transcripts gives the genes of a splice model" in capsys.readouterr().err
