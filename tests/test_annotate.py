"""ntkit.tasks.annotate: tiling, stitching, bigWig/BED/parquet outputs, shards; SegmentNT and NTv3 predictors."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pyBigWig
import pysam
import pytest
import torch

from ntkit.models import ntv3, segment_nt
from ntkit.tasks.annotate import AnnotateOptions, annotate_to_files, plan_windows
from ntkit.cli import main
from ntkit.io.genome import write_fasta
from ntkit.tasks.predictors import Elements, Predictor, Tracks

RNG = np.random.default_rng(0)
C1 = "".join(RNG.choice(list("ACGT"), 3000))
C2 = "".join(RNG.choice(list("ACGT"), 400)) + "N" * 40 + "GATTACA" * 30


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    d = tmp_path_factory.mktemp("genome")
    write_fasta(d / "g.fa", [("chr1", C1), ("chr2", C2)])
    pysam.faidx(str(d / "g.fa"))
    return d / "g.fa"


class LocalGC(Predictor):
    """An exact local stand-in: channel 0 = G/C fraction over +-R bases (N and outside count 0),
    channel 1 = 1 on bases of 'GATTACA' runs (a probability for calls)."""

    kind, fixed_window, R = "base", False, 5
    outputs = ("gc", "motif")
    probability = [False, True]

    def window(self, w):
        return w or 200

    def valid(self, w, f):
        f = 2 * self.R if f is None else f
        return f, w - f

    def output_span(self, n):
        return 0, n

    @classmethod
    def full(cls, seq: str) -> np.ndarray:
        gc = np.array([c in "GC" for c in seq], dtype=np.float32)
        k = np.ones(2 * cls.R + 1, dtype=np.float32) / (2 * cls.R + 1)
        motif = np.zeros(len(seq), dtype=np.float32)
        i = seq.find("GATTACA")
        while i >= 0:
            motif[i:i + 7] = 1
            i = seq.find("GATTACA", i + 1)
        return np.stack([np.convolve(gc, k, mode="same"), motif], axis=1)

    def predict(self, sequences, runtime=None):
        for s in sequences:
            yield self.full(s)


def _bw(path, contig, n):
    with pyBigWig.open(str(path)) as bw:
        return np.array(bw.values(contig, 0, n), dtype=np.float32)


def test_windows_tile_regions():
    ws = list(plan_windows("c", 10, 1000, 200, (20, 180), fixed=False))
    assert ws[0].keep_start == 10 and ws[-1].keep_end == 1000
    assert all(a.keep_end == b.keep_start for a, b in zip(ws, ws[1:]))
    assert all(w.keep_start - w.start == 20 for w in ws) and all(w.end - w.start == 200 for w in ws[:-1])
    assert ws[-1].end == 1000 + 20  # the last window: its kept part and the right flank
    fixed = list(plan_windows("c", 0, 500, 256, (80, 176), fixed=True))
    assert all(w.end - w.start == 256 for w in fixed) and fixed[-1].keep_end == 500


def test_stitched_equals_one_pass_for_exact_predictor(fasta, tmp_path):
    """With flanks >= the receptive field, tiling is invisible: every base equals one pass over the contig."""
    res = annotate_to_files(LocalGC(), fasta, tmp_path, opts=AnnotateOptions(window_bp=150, flank_bp=7, parquet=True))
    assert res["merged"] and res["bases"] == len(C1) + len(C2)
    for contig, seq in (("chr1", C1), ("chr2", C2)):
        assert np.allclose(_bw(tmp_path / "annotation.gc.bw", contig, len(seq)), LocalGC.full(seq)[:, 0], atol=1e-6)
    t = pq.read_table(tmp_path / "annotation.parquet").to_pandas()
    assert len(t) == len(C1) + len(C2) and t.pos.iloc[len(C1)] == 0 and t.contig.iloc[-1] == "chr2"
    # Calls: every GATTACA run is one BED record, merged across window boundaries (the repeat
    # at 440-650 spans two windows).
    bed = [line.split("\t") for line in (tmp_path / "annotation.bed").read_text().splitlines()]
    expected = []
    for contig, seq in (("chr1", C1), ("chr2", C2)):
        on = np.concatenate(([0], LocalGC.full(seq)[:, 1] > 0.5, [0])).astype(int)
        edges = np.flatnonzero(np.diff(on))
        expected += [[contig, str(a), str(b), "motif", "1000", "."] for a, b in zip(edges[::2], edges[1::2])]
    assert bed == expected and ["chr2", "440", str(440 + 7 * 30), "motif", "1000", "."] in bed


def test_shards_resume_and_region_options(fasta, tmp_path):
    opts = AnnotateOptions(window_bp=120, flank_bp=10, windows_per_chunk=3, min_length=8)
    one = annotate_to_files(LocalGC(), fasta, tmp_path / "one", regions=["chr2:401-650", "chr1:11-500", "chr1:400-900"], opts=opts)
    a = annotate_to_files(LocalGC(), fasta, tmp_path / "sh", regions=["chr2:401-650", "chr1:11-500", "chr1:400-900"], opts=opts, shard="0/2")
    assert not a["merged"]
    b = annotate_to_files(LocalGC(), fasta, tmp_path / "sh", regions=["chr2:401-650", "chr1:11-500", "chr1:400-900"], opts=opts, shard="1/2")
    assert b["merged"] and one["bases"] == b["bases"] == 890 + 250  # chr1 regions merged: 10..900
    for name in ("annotation.gc.bw", "annotation.motif.bw", "annotation.bed"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "sh" / name).read_bytes()
    with pyBigWig.open(str(tmp_path / "one" / "annotation.gc.bw")) as bw:
        assert bw.intervals("chr1")[0][0] == 10 and bw.intervals("chr1")[-1][1] == 900
    again = annotate_to_files(LocalGC(), fasta, tmp_path / "one", regions=["chr2:401-650", "chr1:11-500", "chr1:400-900"], opts=opts)
    assert again.get("already_done")
    with pytest.raises(ValueError, match="outside chr1"):
        annotate_to_files(LocalGC(), fasta, tmp_path / "x", regions=["chr1:10-5000"], opts=opts)
    with pytest.raises(ValueError, match="unknown channel"):
        annotate_to_files(LocalGC(), fasta, tmp_path / "x", opts=AnnotateOptions(channels=["dnase"]))


def test_segment_nt_region_in_one_window_equals_model(fasta, tmp_path):
    model = segment_nt.build("segment-nt-tiny")
    res = annotate_to_files(Elements(model), fasta, tmp_path, regions=["chr2"], opts=AnnotateOptions(window_bp=1200, flank_bp=0))
    assert res["merged"]
    direct = model.predict([C2])[0]
    assert np.allclose(_bw(tmp_path / "annotation.exon.bw", "chr2", len(C2)), direct[:, 2], atol=1e-6)
    # Tiled with flanks: every base annotated once, values are probabilities.
    res = annotate_to_files(Elements(model), fasta, tmp_path / "tiled", regions=["chr1"], opts=AnnotateOptions(window_bp=600))
    v = _bw(tmp_path / "tiled" / "annotation.intron.bw", "chr1", len(C1))
    assert res["bases"] == len(C1) and np.all((v > 0) & (v < 1))


def test_ntv3_tracks_equal_model_crop(fasta, tmp_path):
    model = ntv3.build("ntv3-tiny-post")
    pred = Tracks(model, "mouse")
    assert pred.outputs == ("m_dnase", "exon", "promoter") and pred.probability == [False, True, True]
    res = annotate_to_files(pred, fasta, tmp_path, regions=["chr1:1001-1384"], prefix="mouse", opts=AnnotateOptions(window_bp=1024))
    assert res["bases"] == 384  # one window: its crop is 0.375 x 1024 = 384 bases
    s, e = model.crop(1024)
    w0 = 1000 - s
    seq = C1[w0:w0 + 1024]
    with torch.no_grad():
        out = model(model.tokenizer.batch_encode([seq]).to_torch()[0], species="mouse")
    with pyBigWig.open(str(tmp_path / "mouse.m_dnase.bw")) as bw:
        got = np.array(bw.values("chr1", 1000, 1384))
    assert np.allclose(got, out.bigwig_tracks_logits[0, :, 0].numpy(), atol=1e-5)
    with pyBigWig.open(str(tmp_path / "mouse.exon.bw")) as bw:
        got = np.array(bw.values("chr1", 1000, 1384))
    assert np.allclose(got, out.bed_tracks_logits[0, :, 0].softmax(-1)[:, 1].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="multiples of 8"):
        annotate_to_files(pred, fasta, tmp_path / "bad", opts=AnnotateOptions(window_bp=1001))


def test_cli(fasta, tmp_path, capsys):
    rc = main(["--quiet", "annotate", "--model", "segment-nt-tiny", "--random-init", "--fasta", str(fasta), "--regions", "chr2",
               "--out", str(tmp_path / "a"), "--window-bp", "600", "--channels", "exon", "intron", "--no-progress"])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")) == [
        "annotation.bed", "annotation.exon.bw", "annotation.intron.bw"]
    rc = main(["--quiet", "tracks", "predict", "--model", "ntv3-tiny-post", "--random-init", "--fasta", str(fasta), "--regions", "chr1:1-800",
               "--species", "human", "--out", str(tmp_path / "t"), "--window-bp", "512", "--no-progress"])
    assert rc == 0 and (tmp_path / "t" / "human.h_cage.bw").exists()
    assert main(["--quiet", "annotate", "--model", "segment-nt-tiny", "--fasta", str(fasta), "--out", str(tmp_path / "b")]) == 2
    assert "preset" in capsys.readouterr().err
    assert main(["--quiet", "tracks", "predict", "--model", "ntv3-tiny-post", "--random-init", "--fasta", str(fasta), "--species", "cat",
                 "--out", str(tmp_path / "c")]) == 2
    assert "unknown species 'cat'" in capsys.readouterr().err


def test_whole_contig_with_default_options_on_the_shipped_genome(tmp_path):
    """SegmentNT over all of chr20 (63 Mb; the shipped genome is N outside its real stretches) with
    the default window and flank: windows at the contig's ends and over N runs hold more tokens
    than the context and run in pieces (``SegmentNTModel.pieces``)."""
    from ntkit.io.datasets import SHIPPED

    segment_nt.save_folder(segment_nt.build("segment-nt-tiny", seed=0), tmp_path / "snt")
    fasta = SHIPPED / "genomes/GRCh37_chr20.fa.gz"
    assert main(["--quiet", "annotate", "--model", str(tmp_path / "snt"), "--fasta", str(fasta), "--channels", "exon",
                 "--out", str(tmp_path / "ann"), "--no-progress"]) == 0
    with pyBigWig.open(str(tmp_path / "ann" / "annotation.exon.bw")) as bw:
        assert bw.chroms() == {"20": 63_025_520}
        first, stretch, last = (np.asarray(bw.values("20", a, a + 1000)) for a in (0, 30_000_000, 63_024_520))
    assert all(np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all() for v in (first, stretch, last))
    assert np.ptp(stretch) > 0  # real sequence: values vary
