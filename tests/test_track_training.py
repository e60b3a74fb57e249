"""ntkit.tasks.tracks: NTv3 track and element heads trained on bigWig/BED files (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import pyBigWig
import pysam
import pytest
import torch

from ntkit.models import ntv3
from ntkit.io.genome import Genome, write_fasta
from ntkit.tasks.tracks import TrackModel, TrackTargets, TrackTrainConfig, evaluate_tracks, track_windows, train_tracks


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """GC-rich islands in an AT background; the track is a smoothed GC signal, the element the islands."""
    d = tmp_path_factory.mktemp("tracks")
    rng = np.random.default_rng(0)
    n = 40_000
    seq = rng.choice(list("AT"), n)
    islands = []
    for s in range(300, n - 400, 900):
        k = int(rng.integers(80, 250))
        seq[s:s + k] = rng.choice(list("GC"), k)
        islands.append((s, s + k))
    seq = "".join(seq)
    write_fasta(d / "g.fa", [("c1", seq[:30_000]), ("c2", seq[30_000:])])
    pysam.faidx(str(d / "g.fa"))
    gc = np.array([c in "GC" for c in seq], dtype=np.float64)
    signal = np.convolve(gc, np.ones(21) / 21, mode="same") * 5
    with pyBigWig.open(str(d / "gc.bw"), "w") as bw:
        bw.addHeader([("c1", 30_000), ("c2", n - 30_000)])
        bw.addEntries("c1", 0, values=signal[:30_000].tolist(), span=1, step=1)
        bw.addEntries("c2", 0, values=signal[30_000:].tolist(), span=1, step=1)
    with open(d / "islands.bed", "w") as f:
        for s, e in islands:
            c, off = ("c1", 0) if e <= 30_000 else ("c2", 30_000)
            if s >= off:
                f.write(f"{c}\t{s - off}\t{e - off}\n")
    return d


def test_targets_read_bigwig_and_bed(data):
    t = TrackTargets({"gc": data / "gc.bw"}, {"island": data / "islands.bed"})
    y, e = t.values("c1", 290, 310)
    assert y.shape == (20, 1) and e.shape == (20, 1) and e[:10, 0].sum() == 0 and e[10:, 0].all()
    with pytest.raises(ValueError, match="not a bigWig"):
        TrackTargets({"x": data / "islands.bed"})


def test_train_learns_saves_and_loads(data, tmp_path):
    genome = Genome(data / "g.fa")
    targets = TrackTargets({"gc": data / "gc.bw"}, {"island": data / "islands.bed"})
    train = track_windows(genome, ["c1"], 512, max_windows=40)
    valid = track_windows(genome, ["c2"], 512, max_windows=10)
    base = ntv3.build("ntv3-tiny", seed=0)
    cfg = TrackTrainConfig(method="ia3", tracks=["gc"], elements=["island"], window_bp=512, epochs=8, batch_size=4, lr=3e-3)
    torch.manual_seed(cfg.seed)  # the untrained heads: drawn from the global generator, seeded here (not by earlier tests)
    before = evaluate_tracks(TrackModel(ntv3.build("ntv3-tiny", seed=0), cfg), valid, targets)
    model = train_tracks(base, genome, targets, train, cfg)
    after = evaluate_tracks(model, valid, targets)
    assert after["pearson_gc"] > 0.8 and after["prauc_island"] > 0.8 and after["score"] > before["score"] + 0.2
    model.save(tmp_path / "tm")
    again = TrackModel.load(ntv3.build("ntv3-tiny", seed=0), tmp_path / "tm")
    assert evaluate_tracks(again, valid, targets) == pytest.approx(after)
    with pytest.raises(ValueError, match="other weights"):
        TrackModel.load(ntv3.build("ntv3-tiny", seed=1), tmp_path / "tm")


def test_cli_train_and_predict(data, tmp_path):
    from ntkit.cli import main

    rc = main(["--quiet", "tracks", "train", "--model", "ntv3-tiny", "--random-init", "--fasta", str(data / "g.fa"),
               "--bigwig", f"gc={data / 'gc.bw'}", "--bed", f"island={data / 'islands.bed'}", "--train-contigs", "c1",
               "--valid-contigs", "c2", "--window-bp", "512", "--max-windows", "8", "--epochs", "1", "--method", "frozen",
               "--out", str(tmp_path / "tm"), "--no-progress"])
    assert rc == 0 and (tmp_path / "tm" / "training.json").exists()
    rc = main(["--quiet", "tracks", "predict", "--model", "ntv3-tiny", "--random-init", "--adapter", str(tmp_path / "tm"),
               "--fasta", str(data / "g.fa"), "--regions", "c2:1-2000", "--out", str(tmp_path / "pred"), "--no-progress"])
    assert rc == 0
    with pyBigWig.open(str(tmp_path / "pred" / "tracks.gc.bw")) as bw:
        assert bw.intervals("c2")[0][0] == 0 and bw.intervals("c2")[-1][1] == 2000
    assert (tmp_path / "pred" / "tracks.bed").exists()


def _bigwig(path, chroms: dict, values: dict | None = None):
    with pyBigWig.open(str(path), "w") as bw:
        bw.addHeader(list(chroms.items()))
        for c, v in (values or {}).items():
            bw.addEntries(c, 0, values=list(map(float, v)), span=1, step=1)
    return path


def test_targets_that_would_train_on_nothing_are_refused(data, tmp_path):
    """Fault cases of ``tracks train``: each would train a head on zeros and exit 0."""
    genome = Genome(data / "g.fa")
    # a bigWig of another naming/assembly: no chromosome is a FASTA contig
    other = _bigwig(tmp_path / "other.bw", {"chrZ": 1000}, {"chrZ": np.ones(1000)})
    with pytest.raises(ValueError, match=r"other\.bw: its chromosomes \(chrZ\) match no contig of g\.fa \(c1, c2\)"):
        TrackTargets({"x": other}, genome=genome)
    # an empty bigWig (a header, no values): named, not a numpy broadcast message
    empty = _bigwig(tmp_path / "empty.bw", {"c1": 30_000})
    with pytest.raises(ValueError, match=r"empty\.bw: an empty bigWig, no values \(track 'x'\)"):
        TrackTargets({"x": empty}, genome=genome)
    # an empty element BED is an error (not "no source ... give a BED file")
    (tmp_path / "none.bed").write_text("track name=x\n")
    with pytest.raises(ValueError, match=r"none\.bed: no BED records for element 'enh'"):
        TrackTargets(beds={"enh": tmp_path / "none.bed"}, genome=genome)
    # a BED line past its contig's end is an error naming the line, not clipped
    (tmp_path / "past.bed").write_text("c1\t100\t200\nc2\t9000\t10500\n")
    with pytest.raises(ValueError, match=r"past\.bed:2: c2:9000-10500 ends past the end of c2 \(10,000 bases in g\.fa\)"):
        TrackTargets(beds={"enh": tmp_path / "past.bed"}, genome=genome)
    # a track with values only on a contig that is not trained on: all zero over the training windows
    c2only = _bigwig(tmp_path / "c2only.bw", {"c1": 30_000, "c2": 10_000}, {"c2": np.ones(10_000)})
    targets = TrackTargets({"cov": c2only}, genome=genome)
    cfg = TrackTrainConfig(method="frozen", tracks=["cov"], window_bp=512, max_steps=1)
    with pytest.raises(ValueError, match=r"c2only\.bw: 'cov' is all zero over the 5 training windows on c1"):
        train_tracks(ntv3.build("ntv3-tiny", seed=0), genome, targets, track_windows(genome, ["c1"], 512, max_windows=5), cfg)
    # the same contig for training and validation (chr-prefixed alias included)
    with pytest.raises(ValueError, match="contig chrc1 is in both --train-contigs and --valid-contigs"):
        genome.check_disjoint({"--train-contigs": ["c1", "c2"], "--valid-contigs": ["chrc1"]})


def test_cli_refuses_bad_targets_before_loading_the_model(data, tmp_path, capsys):
    from ntkit.cli import main

    other = _bigwig(tmp_path / "other.bw", {"chrZ": 1000}, {"chrZ": np.ones(1000)})
    rc = main(["tracks", "train", "--model", "ntv3-tiny", "--random-init", "--fasta", str(data / "g.fa"), "--bigwig", f"x={other}",
               "--train-contigs", "c1", "--out", str(tmp_path / "tm")])
    err = capsys.readouterr().err
    assert rc == 2 and "match no contig of g.fa" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty.bed").write_text("")
    rc = main(["tracks", "train", "--model", "ntv3-tiny", "--random-init", "--fasta", str(data / "g.fa"), "--bed", f"e={tmp_path / 'empty.bed'}",
               "--train-contigs", "c1", "--valid-contigs", "c2", "--out", str(tmp_path / "tm")])
    assert rc == 2 and "no BED records for element 'e'" in capsys.readouterr().err
    rc = main(["tracks", "train", "--model", "ntv3-tiny", "--random-init", "--fasta", str(data / "g.fa"), "--bigwig", f"gc={data / 'gc.bw'}",
               "--train-contigs", "c1", "--valid-contigs", "c1", "--out", str(tmp_path / "tm")])
    assert rc == 2 and "contig c1 is in both --train-contigs and --valid-contigs" in capsys.readouterr().err
    assert not (tmp_path / "tm" / "tracks_config.json").exists()
