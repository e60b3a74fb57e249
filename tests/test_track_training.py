"""ntkit.track_training: NTv3 track and element heads trained on bigWig/BED files (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import pyBigWig
import pysam
import pytest

from ntkit import ntv3
from ntkit.genome import Genome, write_fasta
from ntkit.track_training import (TrackModel, TrackTargets, TrackTrainConfig, evaluate_tracks, track_windows, train_tracks)


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
