"""ntkit.models.spliceai and SpliceAI as a predictor: the published Keras ensemble read with h5py
(per-base outputs equal to the Keras models' within 1e-5, ``../shared/reference/spliceai_golden``),
the official command line's ``SpliceAI=`` entries reproduced on its three shared outputs, the
incremental forward of alternative alleles equal to a full forward, and any PyTorch module on
one-hot DNA through score-variants and mutagenesis (``predictors.OneHotModel``)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import torch

import ntkit
from ntkit.cli import main
from ntkit.core.sequence import one_hot
from ntkit.io.genome import write_fasta
from ntkit.models import spliceai
from ntkit.models.checkpoint import save_checkpoint
from ntkit.models.spliceai import keras
from ntkit.tasks.mutagenesis import mutagenesis_to_files
from ntkit.tasks.perturb import EffectOptions, variant_effects_to_files
from ntkit.tasks.predictors import OneHotModel, load_predictor, spliceai_predictor
from ntkit.tasks.splice.data import read_transcripts

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "spliceai_golden"


def installed() -> bool:
    try:
        keras.installed_folder()
        return True
    except keras.SpliceAIWeightsError:
        return False


needs_weights = pytest.mark.skipif(not installed(), reason="SpliceAI's weights: `pip install --no-deps spliceai` (the test extras)")
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"{GOLDEN} not found (../shared)")


@pytest.fixture(scope="module")
def published():
    return spliceai.load_published()


# -- the published weights -------------------------------------------------------------------------------------------


@needs_weights
@needs_golden
def test_published_ensemble_equals_the_keras_models(published):
    g = np.load(GOLDEN / "per_base.npz")
    with torch.no_grad():
        out = published(torch.from_numpy(g["x"].astype(np.float32)), per_model=True)
    # float32 convolutions in another order than TensorFlow's: agreement to ~1e-7 measured, 1e-5 required
    assert np.abs(out.probabilities.numpy() - g["y"]).max() <= 1e-5
    assert np.abs(out.per_model.numpy() - g["y_models"]).max() <= 1e-5
    assert published.config.name == "spliceai-10k" and published.flank == 5000 and "CC BY-NC" in published.licence


@needs_weights
def test_load_by_name_or_folder_and_the_missing_package(tmp_path, monkeypatch):
    m = ntkit.load("spliceai")
    assert isinstance(m, spliceai.SpliceAI) and len(m.nets) == 5 and not m.training
    for f in keras.MODEL_FILES:
        (tmp_path / "w").mkdir(exist_ok=True)
        (tmp_path / "w" / f).symlink_to(keras.installed_folder() / f)
    m2 = ntkit.load(tmp_path / "w")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(keras.importlib.metadata, "distribution", lambda name: (_ for _ in ()).throw(
        keras.importlib.metadata.PackageNotFoundError(name)))
    with pytest.raises(keras.SpliceAIWeightsError, match="pip install --no-deps spliceai"):
        ntkit.load("spliceai")


def test_a_file_that_is_not_a_keras_model_is_named(tmp_path):
    (tmp_path / "spliceai1.h5").write_bytes(b"not hdf5")
    with pytest.raises(keras.SpliceAIWeightsError, match=r"spliceai1\.h5: not a readable HDF5 file"):
        ntkit.load(tmp_path)


def test_an_architecture_saves_and_loads_and_refuses_a_short_input(tmp_path):
    m = spliceai.build("spliceai-tiny", seed=3)
    save_checkpoint(m, tmp_path / "m")
    m2 = ntkit.load(tmp_path / "m")
    x = torch.from_numpy(one_hot("".join(np.random.default_rng(0).choice(list("ACGT"), 400))))[None]
    with torch.no_grad():
        assert torch.equal(m(x).probabilities, m2(x).probabilities)
        with pytest.raises(ValueError, match="give more than 200"):  # flank 100: 2 x (5 + 5 + 20 + 20)
            m(x[:, :150])


# -- alternative alleles from a reference's activations --------------------------------------------------------------


@pytest.mark.parametrize("ref_len,alt_len", [(1, 1), (1, 4), (5, 1), (3, 3)])
def test_patched_alternatives_equal_a_full_forward(ref_len, alt_len):
    m = spliceai.build("spliceai-tiny", seed=1)
    rng = np.random.default_rng(ref_len * 10 + alt_len)
    F, D = m.flank, 7
    seqs = ["".join(rng.choice(list("ACGT"), 2 * F + 60)) for _ in range(2)]
    tiles, ps, alts = [0, 1, 1], [F + 10, F + 20, F + 40], []
    for t, p in zip(tiles, ps):
        alt = "".join(rng.choice(list("ACGT"), alt_len))
        alts.append(seqs[t][p] + alt[1:] if ref_len == 1 else alt)
    x_ref = torch.from_numpy(np.stack([one_hot(s) for s in seqs]))
    A = alt_len
    ref_p, alt_p = m.alternative_probabilities(x_ref, torch.tensor(tiles), torch.tensor(ps), torch.full((3,), ref_len - A),
                                               torch.from_numpy(np.stack([one_hot(a) for a in alts])), D)
    with torch.no_grad():
        assert torch.allclose(ref_p, m(x_ref).probabilities, atol=1e-6)
        for b, (t, p) in enumerate(zip(tiles, ps)):
            full = m(torch.from_numpy(one_hot(seqs[t][:p] + alts[b] + seqs[t][p + ref_len:]))[None]).probabilities[0]
            # the same sums over other slices of the same values: float32 rounding only
            assert torch.allclose(alt_p[b], full[p - D - F : p + A + D - F], atol=1e-6)


# -- the official tool's outputs -------------------------------------------------------------------------------------


def entries(path) -> dict:
    f = pysam.VariantFile(str(path))
    key = "SpliceAI" if "SpliceAI" in f.header.info else "NT_SPLICE"
    out = {}
    for r in f:
        for e in r.info.get(key) or ():
            v = e.split("|")
            out[(r.chrom, r.pos, r.ref, v[0], v[1])] = v[2:]
    return out


@pytest.fixture(scope="module")
def chr20_fasta(shared_data, tmp_path_factory):
    return shared_data / "genomes" / "GRCh37_chr20.fa.gz"


@needs_weights
@needs_golden
@pytest.mark.parametrize("vcf,golden,distance,mask", [
    ("golden:chr20_splice_snvs.vcf", "chr20_splice_snvs.spliceai.vcf", 50, False),
    ("variants/chr20_indels_1000G.vcf.gz", "chr20_indels_1000G.spliceai.vcf", 50, False),
    ("variants/chr20_indels_1000G.vcf.gz", "chr20_indels_1000G.D500M1.spliceai.vcf", 500, True),
])
def test_the_official_tools_entries_are_reproduced(published, chr20_fasta, shared_data, tmp_path, vcf, golden, distance, mask):
    vcf = GOLDEN / vcf.split(":")[1] if vcf.startswith("golden:") else shared_data / vcf
    res = variant_effects_to_files(spliceai_predictor(published), vcf, chr20_fasta, [tmp_path / "o.vcf.gz", tmp_path / "o.tsv"],
                                   transcripts="grch37", options=EffectOptions(distance=distance, mask=mask))
    assert res["merged"]
    ours, theirs = entries(tmp_path / "o.vcf.gz"), entries(GOLDEN / golden)
    assert set(ours) == set(theirs) and len(theirs) >= 95  # the same alleles and genes, nothing more or less
    table = pd.read_csv(tmp_path / "o.tsv", sep="\t").set_index(["pos", "ref", "alt", "gene"])
    for k, want in theirs.items():
        got = ours[k]
        if want[0] == ".":  # REF and ALT both longer than one base: SpliceAI writes no scores
            assert got == want
            continue
        row = table.loc[k[1:]]
        ds = row[["DS_AG", "DS_AL", "DS_DG", "DS_DL"]].to_numpy(float)
        # DS rounded to 2 decimals by the tool: the unrounded value within half a step (+ float noise)
        assert np.abs(ds - np.array(want[:4], float)).max() <= 0.0051 + 1e-6, (k, ds, want)
        assert got[4:] == want[4:], (k, got, want)  # DP exactly


def test_gene_tables_and_the_nearest_boundary(tmp_path):
    t = tmp_path / "genes.txt"
    t.write_text("#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"
                 "A\t20\t+\t99\t500\t99,300,\t200,500,\nB\t20\t-\t149\t400\t149,\t400,\n")
    a, b = read_transcripts(t)
    # 0-based exon first bases 99, 300; 0-based last bases 199, 499; splice sites: donor 199, acceptor 300
    assert (a.start, a.end, a.donors, a.acceptors, a.boundaries, a.order) == (99, 500, [199], [300], [99, 199, 300, 499], 1)
    assert (b.strand, b.boundaries, b.order) == ("-", [149, 399], 2)
    from ntkit.tasks.perturb import _nearest_boundary
    assert _nearest_boundary(a, 249) == -50 and _nearest_boundary(a, 250) == 50  # 199 and 300
    a.boundaries = [100, 200]
    assert _nearest_boundary(a, 150) == -50  # a tie goes upstream (SpliceAI's min over sorted positions)


# -- any PyTorch model -----------------------------------------------------------------------------------------------


class GTDetector(torch.nn.Module):
    """A user's model on [B, 4, L] one-hot: per base, 'this base starts GT' and a track of G+C
    counts in a 5-base window, cropping 2 bases each side."""

    def forward(self, x):
        g, t = x[:, 2], x[:, 3]
        gt = g[:, 2:-2] * t[:, 3:-1]
        gc = torch.nn.functional.avg_pool1d((x[:, 1] + x[:, 2])[:, None], 5, 1)[:, 0] * 5
        return torch.stack([gt, gc], 1)


def test_a_user_model_through_score_variants_and_mutagenesis(tmp_path):
    rng = np.random.default_rng(4)
    seq = "".join(rng.choice(list("ACGT"), 3000))
    seq = seq[:1000] + "AAGTAA" + seq[1006:]
    write_fasta(tmp_path / "g.fa", [("1", seq)])
    pysam.faidx(str(tmp_path / "g.fa"))
    pred = OneHotModel(GTDetector(), ("gt", "gc"), layout="BCL", flank=2, probability=[True, False], name="gt-detector")
    v = tmp_path / "v.vcf"
    v.write_text("##fileformat=VCFv4.2\n##contig=<ID=1,length=3000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                 "1\t1003\tkill\tG\tA\t.\t.\t.\n1\t1500\tdel\t" + seq[1499:1502] + "\t" + seq[1499] + "\t.\t.\t.\n")
    res = variant_effects_to_files(pred, v, tmp_path / "g.fa", [tmp_path / "o.tsv"], options=EffectOptions(distance=10))
    t = pd.read_csv(tmp_path / "o.tsv", sep="\t").set_index("id")
    assert res["scored"] == 2
    assert (t.loc["kill", "DS_gt_loss"], t.loc["kill", "DP_gt_loss"]) == (1.0, 0)  # the GT at 1003 (1-based) is gone
    assert t.loc["kill", "SUM_gc"] == -5.0  # one G less, seen by 5 windows
    m = mutagenesis_to_files(pred, tmp_path / "g.fa", tmp_path / "mut", ["1:1001-1010"], options=EffectOptions(distance=5))
    mt = pd.read_parquet(tmp_path / "mut" / "mutagenesis.parquet")
    assert m["merged"] and len(mt) == 30
    lost = mt[(mt["pos"] == 1003) & (mt["DS_gt_loss"] == 1.0)]
    assert len(lost) == 3  # any change of the G loses the site


def test_spliceai_architecture_through_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(2)
    seq = "".join(rng.choice(list("ACGT"), 2000))
    write_fasta(tmp_path / "g.fa", [("20", seq)])
    pysam.faidx(str(tmp_path / "g.fa"))
    save_checkpoint(spliceai.build("spliceai-tiny", seed=0), tmp_path / "sai")
    (tmp_path / "genes.txt").write_text("#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"
                                        "P\t20\t+\t100\t1900\t100,1000,\t800,1900,\nM\t20\t-\t500\t1500\t500,\t1500,\n")
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n##contig=<ID=20,length=2000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                    f"20\t50\t.\t{seq[49]}\tG\t.\t.\t.\n"
                                    f"20\t900\t.\t{seq[899]}\t{'A' if seq[899] != 'A' else 'C'}\t.\t.\t.\n"
                                    f"20\t950\t.\t{seq[949:951]}\tTT\t.\t.\t.\n")
    rc = main(["--quiet", "splice", "score-variants", "--splice-model", str(tmp_path / "sai"), "--vcf", str(tmp_path / "v.vcf"),
               "--fasta", str(tmp_path / "g.fa"), "--annotation", str(tmp_path / "genes.txt"), "--out", str(tmp_path / "o.vcf"),
               str(tmp_path / "o.tsv")])
    assert rc == 0, capsys.readouterr().err
    e = entries(tmp_path / "o.vcf")
    assert [k[4] for k in e if k[1] == 900] == ["P", "M"]  # genes in the table's order, as SpliceAI
    assert e[("20", 950, seq[949:951], "TT", "P")] == ["."] * 8  # an MNV: SpliceAI's '.' scores
    assert pd.read_csv(tmp_path / "o.tsv", sep="\t").query("pos == 50")["status"].tolist() == ["not_in_gene"]


def test_load_predictor_names_spliceai(tmp_path):
    m = spliceai.build("spliceai-tiny")
    p = load_predictor(m)
    assert p.outputs == ("acceptor", "donor") and p.stranded and p.flank == m.flank and p.exact
    save_checkpoint(m, tmp_path / "m")
    assert load_predictor(None, splice_model=tmp_path / "m").describe()["module"] == "spliceai-tiny"
    shutil.rmtree(tmp_path / "m")


def test_splice_windows_read_as_runs_equal_one_window_at_a_time(tmp_path):
    """SpliceAI on splice windows: adjacent windows of a strand read as one input give the same
    probabilities as each window read alone with its flanks (a pure convolution: float rounding only)."""
    from ntkit.io.genome import Genome
    from ntkit.tasks.predictors import splice_window_probabilities
    from ntkit.tasks.splice import build_windows

    rng = np.random.default_rng(7)
    seq = "".join(rng.choice(list("ACGT"), 6000))
    write_fasta(tmp_path / "g.fa", [("7", seq)])
    tx = tmp_path / "tx.txt"
    tx.write_text("PLUS\t0\tchr7\t+\t501\t5000\t1001,2601,\t1002,2499,\nMINUS\t0\tchr7\t-\t2001\t5500\t3200,\t3301,\n")
    g = Genome(tmp_path / "g.fa")
    data = build_windows(g, read_transcripts(tx), 400, context=50)
    pred = spliceai_predictor(spliceai.build("spliceai-tiny", seed=2))
    runs = splice_window_probabilities(pred, data, g)
    alone = splice_window_probabilities(pred, data, g, max_run=1)  # every window its own input
    assert len(data) >= 8 and all(a.shape == (len(s), 3) for a, s in zip(runs, data.sequences))
    assert max(np.abs(a - b).max() for a, b in zip(runs, alone)) < 1e-5
    assert np.allclose(runs[0].sum(1), 1, atol=1e-5)


def test_selected_outputs_score_as_the_full_predictor(tmp_path):
    rng = np.random.default_rng(9)
    seq = "".join(rng.choice(list("ACGT"), 1500))
    write_fasta(tmp_path / "g.fa", [("20", seq)])
    (tmp_path / "genes.txt").write_text("#NAME\tCHROM\tSTRAND\tTX_START\tTX_END\tEXON_START\tEXON_END\n"
                                        "P\t20\t+\t300\t1200\t300,800,\t600,1200,\n")
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n##contig=<ID=20,length=1500>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                    + "".join(f"20\t{p}\t.\t{seq[p - 1]}\t{'A' if seq[p - 1] != 'A' else 'C'}\t.\t.\t.\n"
                                              for p in (500, 700, 900)))
    m = spliceai.build("spliceai-tiny", seed=4)
    for name, p in (("all", load_predictor(m)), ("donor", load_predictor(m, outputs=["donor"]))):
        variant_effects_to_files(p, tmp_path / "v.vcf", tmp_path / "g.fa", [tmp_path / f"{name}.tsv"], transcripts=tmp_path / "genes.txt")
    full, donor = (pd.read_csv(tmp_path / f"{n}.tsv", sep="\t") for n in ("all", "donor"))
    pd.testing.assert_frame_equal(full[["DS_DG", "DS_DL", "DP_DG", "DP_DL"]], donor[["DS_DG", "DS_DL", "DP_DG", "DP_DL"]])


def test_info_describes_spliceai(capsys):
    import json

    assert main(["info", "spliceai-tiny"]) == 0
    out = json.loads(capsys.readouterr().out)
    # 2 networks: stem 4x8+8, skip 8x8+8, 4 units of 2 BatchNorms (weight and bias, 2 x 8) and 2 convs (8x8x11+8), 2 taps, out 8x3+3
    per_net = 40 + 72 + 4 * (2 * 16 + 2 * 712) + 2 * 72 + 27
    assert out["family"] == "spliceai" and out["parameters"] == 2 * per_net and out["flank"] == 100
    assert out["jobs"]["score-variants"] == "yes" and out["jobs"]["embed"].startswith("no: SpliceAI is a convolutional")
