"""Jobs that shard, resume and never leave a half-written output (ntkit.runtime.jobs, through the CLI)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pysam
import pytest

import ntkit
from ntkit.runtime import jobs
from ntkit.models.checkpoint import save_checkpoint
from ntkit.cli import main
from ntkit.io.genome import iter_fasta, write_fasta

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("jobs")
    rng = np.random.default_rng(7)
    contigs = {"20": "".join(rng.choice(list("ACGT"), 20_000)), "21": "".join(rng.choice(list("ACGT"), 5_000))}
    write_fasta(d / "ref.fa", list(contigs.items()))
    pysam.faidx(str(d / "ref.fa"))
    lines = ["##fileformat=VCFv4.2"] + [f"##contig=<ID={c},length={len(s)}>" for c, s in contigs.items()]
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    for c, s in contigs.items():
        for pos in sorted(rng.choice(np.arange(1, len(s) + 1), len(s) // 40, replace=False)):
            ref = s[pos - 1]
            lines.append(f"{c}\t{pos}\t.\t{ref}\t{'ACGT'[('ACGT'.index(ref) + 1) % 4]}\t.\tPASS\t.")
    (d / "v.vcf").write_text("\n".join(lines) + "\n")
    pysam.tabix_compress(str(d / "v.vcf"), str(d / "v.vcf.gz"))
    write_fasta(d / "seqs.fa", [(f"s{i}", "".join(rng.choice(list("ACGT"), int(n)))) for i, n in enumerate(rng.integers(20, 400, 600))])
    model = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=41), seed=3)
    save_checkpoint(model, d / "model")
    return d


def cli(*args) -> None:
    assert main([str(a) for a in args]) == 0


def test_atomic_output_keeps_previous_file(tmp_path):
    p = tmp_path / "out.tsv"
    p.write_text("good\n")
    with pytest.raises(RuntimeError):
        with jobs.atomic_output(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert p.read_text() == "good\n" and os.listdir(tmp_path) == ["out.tsv"]
    with jobs.atomic_output(p) as tmp:
        tmp.write_text("new\n")
    assert p.read_text() == "new\n" and os.listdir(tmp_path) == ["out.tsv"]


def test_check_output_refuses_inputs_and_unwritable_folders(tmp_path):
    f = tmp_path / "in.fa"
    f.write_text(">a\nACGT\n")
    with pytest.raises(ValueError, match="is an input file"):
        jobs.check_output(f, [f])
    with pytest.raises(ValueError, match="cannot write into"):
        jobs.check_output(f / "sub" / "out.parquet")  # a folder below a file
    assert jobs.check_output(tmp_path / "new" / "out.parquet") == tmp_path / "new" / "out.parquet"


def test_shard_parse_and_chunks(monkeypatch):
    assert jobs.Shard.parse("1/4") == jobs.Shard(1, 4) and jobs.Shard(1, 4).owns(5) and not jobs.Shard(1, 4).owns(4)
    for bad in ("4/4", "1", "-1/2", "a/b"):
        with pytest.raises(ValueError):
            jobs.Shard.parse(bad)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert jobs.Shard.parse(None) == jobs.Shard(2, 3)
    assert list(jobs.chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(jobs.chunks([5, 1, 1, 9, 2], 10, weight=lambda x: x, max_weight=7)) == [[5, 1, 1], [9], [2]]


def test_manifest_mismatch_refused_and_restart(tmp_path):
    out = tmp_path / "o.parquet"
    jobs.PartStore(out, {"job": "x", "options": {"a": 1}})
    jobs.PartStore(out, {"job": "x", "options": {"a": 1}})  # same run: resumes
    with pytest.raises(ValueError, match=r"another run \(options.a: 1 -> 2\)"):
        jobs.PartStore(out, {"job": "x", "options": {"a": 2}})
    s = jobs.PartStore(out, {"job": "x", "options": {"a": 2}}, restart=True)
    assert s.manifest["options"] == {"a": 2}


def test_embed_sharded_equals_unsharded(case, tmp_path):
    args = ["embed", case / "seqs.fa", "--model", case / "model", "--chunk-size", 64, "--no-progress", "--layers", 1, -1]
    cli(*args, "--out", tmp_path / "one.parquet")
    cli(*args, "--out", tmp_path / "two.parquet", "--shard", "1/2")
    assert not (tmp_path / "two.parquet").exists()  # waits for shard 0
    cli(*args, "--out", tmp_path / "two.parquet", "--shard", "0/2")  # the last shard merges
    one, two = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet")
    assert len(one) == 600 and list(one["id"]) == [f"s{i}" for i in range(600)]
    pd.testing.assert_frame_equal(one, two)
    assert not (tmp_path / "two.parquet.parts").exists()


@pytest.mark.parametrize("outs", [("t.tsv", "a.vcf.gz"), ("t.parquet",)])
def test_score_variants_sharded_equals_unsharded_and_merge(case, tmp_path, outs):
    base = ["score-variants", "--vcf", case / "v.vcf.gz", "--fasta", case / "ref.fa", "--model", case / "model",
            "--scores", "llr", "llr_unmasked", "embedding", "--chunk-size", 50, "--no-progress"]
    cli(*base, "--out", *[tmp_path / f"one.{o}" for o in outs])
    three = [tmp_path / f"three.{o}" for o in outs]
    for i in (2, 0, 1):
        cli(*base, "--out", *three, "--shard", f"{i}/3")
    read = (lambda p: pd.read_parquet(p)) if outs[0].endswith("parquet") else (lambda p: pd.read_csv(p, sep="\t"))
    one, sharded = read(tmp_path / f"one.{outs[0]}"), read(three[0])
    assert len(one) == 625 and (one["status"] == "scored").all()
    pd.testing.assert_frame_equal(one, sharded)
    if len(outs) > 1:
        recs = lambda p: [str(r) for r in pysam.VariantFile(str(p))]  # noqa: E731
        assert recs(tmp_path / f"one.{outs[1]}") == recs(three[1]) and (three[1].parent / (three[1].name + ".tbi")).exists()
    # shards that do not merge themselves: `ntkit merge`
    store = jobs.PartStore(tmp_path / "m.parquet", {"job": "x"})
    store.remove()
    manual = [tmp_path / f"m.{o}" for o in outs]
    for i in (0, 1):
        cli(*base, "--out", *manual, "--shard", f"{i}/2")
    assert manual[0].exists()  # the second shard found every chunk done
    pd.testing.assert_frame_equal(read(manual[0]), one)


def test_merge_command(case, tmp_path, capsys):
    out = tmp_path / "e.parquet"
    args = ["embed", case / "seqs.fa", "--model", case / "model", "--chunk-size", 100, "--no-progress", "--out", out]
    cli(*args, "--shard", "0/2")
    assert main(["merge", str(out)]) == 2 and "not every chunk" in capsys.readouterr().err
    # shard 1 ran elsewhere and left its parts, but did not merge (as when a Slurm task was killed after its last part)
    store = jobs.PartStore.open(out)
    cli(*args, "--shard", "1/2")
    assert out.exists() and not store.dir.exists()
    cli(*args[:-2], "--out", tmp_path / "ref.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "ref.parquet"))


def test_kill_mid_run_then_rerun_equals_uninterrupted(case, tmp_path):
    out = tmp_path / "s.tsv"
    out.write_text("previous good output\n")
    cmd = [sys.executable, "-m", "ntkit.cli", "score-variants", "--vcf", str(case / "v.vcf.gz"), "--fasta", str(case / "ref.fa"),
           "--model", str(case / "model"), "--scores", "llr", "embedding", "--chunk-size", "10", "--batch-tokens", "256",
           "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = tmp_path / "s.tsv.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 3 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("part-*.parquet")))
    assert 3 <= done < 63, f"the kill did not land mid-run ({done} parts)"
    assert out.read_text() == "previous good output\n"  # the old output is intact
    for p in parts.glob("part-*.parquet"):
        pq.ParquetFile(p).metadata  # every part on disk is complete
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    resumed = pd.read_csv(out, sep="\t")
    cli(*cmd[3:-1], tmp_path / "clean.tsv")
    pd.testing.assert_frame_equal(resumed, pd.read_csv(tmp_path / "clean.tsv", sep="\t"))
    assert not parts.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


RSS_SCRIPT = """
import resource, sys
import numpy as np
import ntkit
from ntkit.io.genome import write_fasta
from ntkit.tasks.perturb import score_variants_to_files
d, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
L = n * 10
seq = "".join(rng.choice(list("ACGT"), L))
write_fasta(f"{d}/ref.fa", [("1", seq)])
with open(f"{d}/v.vcf", "w") as f:
    f.write(f"##fileformat=VCFv4.2\\n##contig=<ID=1,length={L}>\\n#CHROM\\tPOS\\tID\\tREF\\tALT\\tQUAL\\tFILTER\\tINFO\\n")
    for pos in range(5, L, 10):
        ref = seq[pos - 1]
        f.write(f"1\\t{pos}\\t.\\t{ref}\\t{'ACGT'[('ACGT'.index(ref) + 1) % 4]}\\t.\\tPASS\\t.\\n")
del seq
model = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=41), seed=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
res = score_variants_to_files(model, f"{d}/v.vcf", f"{d}/ref.fa", [f"{d}/out.parquet", f"{d}/out.vcf.gz"],
                              scores=["llr_unmasked"], chunk_size=1024)
assert res["scored"] == n - 1 or res["scored"] == n, res
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.slow
def test_memory_stays_flat_as_input_grows(tmp_path):
    """Peak RSS of the scoring itself (after setup), 2,000 vs 20,000 SNVs: the per-variant cost of
    holding results (285 KB per variant before the engine) would add gigabytes."""
    growth = {}
    for n in (2_000, 20_000):
        d = tmp_path / str(n)
        d.mkdir()
        r = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(d), str(n)], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        growth[n] = int(r.stdout.split()[-1]) / 1024  # MB
    assert growth[20_000] - growth[2_000] < 60, growth


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(case, tmp_path):
    """Under torchrun each rank takes its shard from RANK/WORLD_SIZE; the last to finish merges."""
    args = ["score-variants", "--vcf", str(case / "v.vcf.gz"), "--fasta", str(case / "ref.fa"), "--model", str(case / "model"),
            "--scores", "llr", "embedding", "--chunk-size", "40", "--no-progress"]
    cli(*args, "--out", tmp_path / "one.tsv")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
                        "-m", "ntkit.cli", *args, "--out", str(tmp_path / "two.tsv")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("wrote ") == 1 and "ntkit merge" not in r.stdout  # only the merging rank speaks
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two.tsv", sep="\t"), pd.read_csv(tmp_path / "one.tsv", sep="\t"))


# -- merges verify what they join and write only where asked ------------------------------------------------


def sharded(case, tmp_path, name="a.parquet"):
    """An embed job of 6 sequences in 3 chunks, shards 0 and 1 run: shard 2 is left to finish it."""
    write_fasta(tmp_path / "six.fa", [(f"s{i}", "ACGTAC" * (i + 3)) for i in range(6)])
    args = ["embed", tmp_path / "six.fa", "--model", case / "model", "--chunk-size", 2, "--no-progress", "--out", tmp_path / name]
    cli(*args, "--shard", "0/3")
    cli(*args, "--shard", "1/3")
    return args, tmp_path / f"{name}.parts"


def test_an_edited_part_is_never_merged(case, tmp_path, capsys):
    args, parts = sharded(case, tmp_path)
    t = pq.read_table(parts / "part-000001.parquet").slice(0, 1)  # one row dropped, values changed
    pq.write_table(t, parts / "part-000001.parquet")
    assert main([str(a) for a in args + ["--shard", "2/3"]]) == 2
    err = capsys.readouterr().err
    assert "part-000001.parquet was changed after it was written" in err and "--restart" in err
    assert not (tmp_path / "a.parquet").exists() and parts.exists()  # nothing merged, nothing deleted
    (parts / "part-000001.parquet").write_bytes(b"PAR1 truncated")
    (parts / "part-000001.json").unlink()
    assert main(["merge", str(tmp_path / "a.parquet")]) == 2
    assert "not every chunk is done yet (waiting for 1 chunk(s): [1]); run the missing shards" in capsys.readouterr().err


def test_an_edited_chunk_count_is_never_merged(case, tmp_path, capsys):
    args, parts = sharded(case, tmp_path)
    cli(*args, "--shard", "2/3", "--out", tmp_path / "unused.parquet")  # unrelated
    (parts / "chunks.json").write_text('{"chunks": 2, "items": 6}')  # 3 -> 2: chunk 2 would be dropped
    (parts / "part-000002.parquet").write_bytes((parts / "part-000000.parquet").read_bytes())
    (parts / "part-000002.json").write_text((parts / "part-000000.json").read_text())
    assert main(["merge", str(tmp_path / "a.parquet")]) == 2
    assert "part-000002.parquet lies beyond the 2 chunk(s)" in capsys.readouterr().err
    (parts / "part-000002.parquet").unlink()
    assert main(["merge", str(tmp_path / "a.parquet")]) == 2
    assert "the parts hold 4 input items of 6" in capsys.readouterr().err
    assert parts.exists() and not (tmp_path / "a.parquet").exists()


def test_a_manifest_cannot_choose_where_merge_writes(case, tmp_path, capsys):
    import json

    args, parts = sharded(case, tmp_path)
    victim = tmp_path / "precious.txt"
    victim.write_text("a user's file\n")
    m = json.loads((parts / "manifest.json").read_text())
    for outputs in ([str(victim)], ["../precious.txt"], ["a.parquet", "sub/x.tsv"], ["precious.txt"]):
        (parts / "manifest.json").write_text(json.dumps({**m, "outputs": outputs}))
        assert main(["merge", str(tmp_path / "a.parquet")]) == 2
        err = capsys.readouterr().err
        assert "outputs must be file names beside a.parquet.parts" in err or "does not own a.parquet.parts" in err, err
    assert victim.read_text() == "a user's file\n"
    with pytest.raises(ValueError, match="outputs of one job go into one folder"):
        jobs.prepare_outputs([tmp_path / "a.tsv", tmp_path / "sub" / "b.parquet"])


def test_truncated_parts_and_garbage_locks_say_what_to_do(case, tmp_path, capsys):
    args, parts = sharded(case, tmp_path)
    cli(*args, "--shard", "2/3", "--out", tmp_path / "b.parquet")
    args_b = [a if a != tmp_path / "a.parquet" else tmp_path / "c.parquet" for a in args]
    cli(*args_b, "--shard", "0/3")
    cli(*args_b, "--shard", "1/3")
    c_parts = tmp_path / "c.parquet.parts"
    (c_parts / "merge.lock").write_text("\x00\x01garbage")
    assert main([str(a) for a in args_b + ["--shard", "2/3"]]) == 2
    assert "merge.lock is not a merge lock of ntkit" in capsys.readouterr().err
    (c_parts / "merge.lock").unlink()
    data = (c_parts / "part-000000.parquet").read_bytes()
    (c_parts / "part-000000.parquet").write_bytes(data[: len(data) // 2])
    assert main(["merge", str(tmp_path / "c.parquet")]) == 2
    err = capsys.readouterr().err
    assert "part-000000.parquet was changed after it was written" in err and "rerun its shard" in err


def test_dead_writers_temporaries_are_swept_live_ones_kept(case, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".tmp-{jobs.HOST}-{dead.pid}-e.parquet"
    live = tmp_path / f".tmp-{jobs.HOST}-{os.getpid()}-other.parquet"
    foreign = tmp_path / f".tmp-00000000-{dead.pid}-x.parquet"  # another host's: its pid means nothing here
    for p in (stale, live, foreign):
        p.write_bytes(b"half")
    write_fasta(tmp_path / "s.fa", [("a", "ACGTACGTAC")])
    cli("embed", tmp_path / "s.fa", "--model", case / "model", "--no-progress", "--out", tmp_path / "e.parquet")
    assert not stale.exists() and live.exists() and foreign.exists()


def test_provenance_never_records_a_hub_token(monkeypatch):
    import sys

    from ntkit.runtime.jobs import provenance

    monkeypatch.setattr(sys, "argv", ["ntkit", "embed", "s.fa", "--token", "hf_secret", "--cache-dir", "c", "--token=hf_other"])
    about = provenance()
    assert "hf_secret" not in about["command"] and "hf_other" not in about["command"]
    assert about["command"] == "ntkit embed s.fa --token *** --cache-dir c --token=***"


# -- `ntkit merge` by hand: every sharded job ---------------------------------------------------------------


def _job_names() -> set[str]:
    """The names of every sharded job in the library (``jobs.Job("name", ...)``)."""
    import re

    return {m for p in (ROOT / "ntkit").rglob("*.py") for m in re.findall(r'jobs\.Job\(\s*"([\w-]+)"', p.read_text())}


@pytest.fixture(scope="module")
def merge_models(case):
    from ntkit.tasks.finetune import FinetuneConfig, finetune
    from ntkit.models.segment_nt.model import save_folder
    from ntkit.tasks.segmentation import from_backbone

    base = ntkit.load(case / "model")
    seqs = [s for _, s in iter_fasta(case / "seqs.fa")][:16]
    finetune(base, seqs, [i % 2 for i in range(16)], FinetuneConfig(method="head", epochs=1)).save_adapter(case / "adapter")
    save_folder(from_backbone(ntkit.build("nt-v2-tiny", seed=0), ["exon", "intron"], seed=0), case / "segment")
    return case


def _read(path: Path):
    import pyBigWig

    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".bw":
        with pyBigWig.open(str(path)) as bw:
            return {c: np.asarray(bw.values(c, 0, n)) for c, n in bw.chroms().items()}
    return path.read_text() if path.suffix != ".png" else path.stat().st_size > 0


JOBS = {  # job name -> (command line without --out / --shard, output name under the folder or file)
    "embed": lambda c: (["embed", c / "seqs.fa", "--model", c / "model", "--chunk-size", 150], "e.parquet"),
    "predict": lambda c: (["predict", c / "seqs.fa", "--adapter", c / "adapter", "--model", c / "model", "--chunk-size", 150], "p.tsv"),
    "variant-effects": lambda c: (["score-variants", "--vcf", c / "v.vcf.gz", "--fasta", c / "ref.fa", "--model", c / "model",
                                   "--scores", "llr", "--chunk-size", 40], "s.tsv"),
    "mutagenesis": lambda c: (["mutagenesis", "--fasta", c / "ref.fa", "--model", c / "model", "--regions", "21:101-160",
                               "--scores", "llr", "--chunk-size", 20], "mut/"),
    "annotate": lambda c: (["annotate", "--model", c / "segment", "--fasta", c / "ref.fa", "--regions", "21:1-4000",
                            "--window-bp", "1200", "--chunk-size", 1], "ann/"),
}


def test_every_sharded_job_has_a_merge_case():
    assert set(JOBS) == _job_names()


@pytest.mark.parametrize("job", sorted(JOBS))
def test_merge_by_hand_after_every_shard_finished(merge_models, tmp_path, monkeypatch, capsys, job):
    """Every shard finished but none merged (killed right before it, as a Slurm array can be):
    `ntkit merge` joins the parts into what one process writes."""
    cmd, out = JOBS[job](merge_models)
    one, two = tmp_path / "one" / out, tmp_path / "two" / out
    cli(*cmd, "--out", one, "--no-progress")
    with monkeypatch.context() as m:
        m.setattr(jobs, "finish", lambda store, merge, wait=True: {"merged": False, "waiting_for": "a merge (killed before it)"})
        for i in range(3):
            cli(*cmd, "--out", two, "--no-progress", "--shard", f"{i}/3")
    said = capsys.readouterr().out
    parts = re.search(r"`ntkit merge (\S+)`", said).group(1)  # the command each shard printed
    assert Path(parts).name.endswith(".parts") and Path(parts).is_dir()
    cli("merge", parts)
    assert not Path(parts).exists()
    files = sorted(p.relative_to(one if one.is_dir() else one.parent) for p in (one.rglob("*") if one.is_dir() else [one])
                   if p.is_file() and not p.name.startswith("."))  # not the receipts: they name their folder
    assert files
    for f in files:
        a, b = _read((one if one.is_dir() else one.parent) / f), _read((two if two.is_dir() else two.parent) / f)
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b)
        elif isinstance(a, dict):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
        else:
            assert a == b, f


def test_a_part_rewritten_with_its_record_is_caught_by_its_row_count(case, tmp_path, capsys):
    """A part with one row removed and its record rewritten to match (sha256 recomputed): embed
    knows its rows per input (one per sequence), so the merge refuses it."""
    import json

    args, parts = sharded(case, tmp_path)
    cli(*args, "--shard", "2/3", "--out", tmp_path / "whole.parquet")  # for its rows
    part = parts / "part-000001.parquet"
    pq.write_table(pq.read_table(part).slice(0, 1), part)
    rec = json.loads((parts / "part-000001.json").read_text())
    (parts / "part-000001.json").write_text(json.dumps({**rec, "rows": 1, "sha256": jobs.file_checksum(part)}))
    assert main([str(a) for a in args + ["--shard", "2/3"]]) == 2
    err = capsys.readouterr().err
    assert "part-000001.parquet holds 1 rows for 2 input items (1 each)" in err and "--restart" in err
    assert not (tmp_path / "a.parquet").exists()


def test_a_shard_without_torchrun_says_it_ran_and_how_to_merge(case, tmp_path, capsys):
    write_fasta(tmp_path / "six.fa", [(f"s{i}", "ACGTAC" * (i + 3)) for i in range(6)])
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2"}
    env.pop("TORCHELASTIC_RUN_ID", None)
    r = subprocess.run([sys.executable, "-m", "ntkit.cli", "embed", str(tmp_path / "six.fa"), "--model", str(case / "model"),
                        "--chunk-size", "2", "--no-progress", "--out", str(tmp_path / "e.parquet")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "shard 0/2: done; outputs wait for" in r.stdout and f"`ntkit merge {tmp_path / 'e.parquet.parts'}`" in r.stdout
