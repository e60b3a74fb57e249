"""NTv3 through ntkit's jobs: zero-shot variant scores, embeddings, fine-tuning, pretraining."""

from __future__ import annotations

import numpy as np
import pysam
import pytest
import torch

from ntkit.models import ntv3
from ntkit.tasks.embed import embed, read_embeddings, write_embeddings
from ntkit.tasks.finetune import FinetuneConfig, FinetunedModel, finetune
from ntkit.io.genome import write_fasta
from ntkit.tasks.pretrain import PretrainConfig, pretrain
from ntkit.tasks.variants import score_variants

RNG = np.random.default_rng(0)
SEQ = "".join(RNG.choice(list("ACGT"), 3000))


@pytest.fixture(scope="module")
def model():
    return ntv3.build("ntv3-tiny", seed=0)


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    d = tmp_path_factory.mktemp("g")
    write_fasta(d / "g.fa", [("chr1", SEQ)])
    pysam.faidx(str(d / "g.fa"))
    alt = lambda b: "A" if b != "A" else "C"  # noqa: E731
    rows = [(101, SEQ[100], alt(SEQ[100])), (1500, SEQ[1499], alt(SEQ[1499])), (2000, SEQ[1999:2002], SEQ[1999]),
            (2500, SEQ[2499], SEQ[2499] + "GT")]
    with open(d / "v.vcf", "w") as f:
        f.write("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=3000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        f.writelines(f"chr1\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for p, r, a in rows)
    return d


def test_zero_shot_scores_are_single_base_marginals(model, genome):
    s = score_variants(model, genome / "v.vcf", genome / "g.fa", scores=("llr", "llr_unmasked", "embedding"), window_tokens=1024)
    t = s.table
    assert list(t.status) == ["scored"] * 4
    assert t.llr[2:].isna().all() and t["l2_-1"].notna().all()  # indels: embedding distances only
    tid = model.tokenizer.token_to_id
    for r in t.iloc[:2].itertuples():
        st = int(r.window_start) - 1
        ids = model.tokenizer.batch_encode([SEQ[st:st + 1024]]).to_torch()[0]
        i = r.pos - 1 - st
        masked = ids.clone()
        masked[0, i] = model.tokenizer.mask_id
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0, i], -1)
            lpm = torch.log_softmax(model(masked).logits[0, i], -1)
        assert r.llr_unmasked == pytest.approx((lp[tid[r.alt]] - lp[tid[r.ref]]).item(), abs=1e-5)
        assert r.llr == pytest.approx((lpm[tid[r.alt]] - lpm[tid[r.ref]]).item(), abs=1e-5)


def test_embeddings_per_base_and_chunked(model):
    seq = SEQ[:700]
    e = embed(model, [seq], pooling="nucleotide")[-1][0]
    ids = model.tokenizer.batch_encode([seq]).to_torch()[0]
    with torch.no_grad():
        whole = model(ids).embedding[0, :700].numpy()
    assert e.shape == (700, model.config.hidden_size) and np.allclose(e, whole, atol=1e-5)
    mean = embed(model, [seq], pooling="mean")[-1][0]
    assert np.allclose(mean, whole.mean(0), atol=1e-5)
    # A context of 256 bases: 700 bases in overlapping chunks; a base in the middle of the second chunk
    # equals the forward of that chunk alone.
    small = ntv3.build(ntv3.NTv3Config(**{**ntv3.PRESETS["ntv3-tiny"].__dict__, "max_tokens": 256}), seed=0)
    small.load_state_dict(model.state_dict())
    chunked = embed(small, [seq], pooling="nucleotide", overlap_bp=64)[-1][0]
    assert chunked.shape == (700, model.config.hidden_size)
    with pytest.raises(ValueError, match="no <cls>"):
        embed(model, [seq], pooling="cls")


def test_embeddings_of_inner_levels(model, tmp_path):
    """Any layer: the mean of a level's per-base vectors equals its own positions' mean where the
    sequence fills them (448 bases: 56 transformer positions of 8 bases); widths are the level's."""
    seq = SEQ[:448]
    e = embed(model, [seq], layers=[0, 1, 4, -1], pooling="mean")
    ids = model.tokenizer.batch_encode([seq]).to_torch()[0]
    with torch.no_grad():
        o = model(ids, output_hidden_states=True)
    assert [e[k].shape[1] for k in (0, 1, 4, -1)] == [32, 42, 64, model.config.hidden_size]  # filter_list 32, 42, 53, 64
    np.testing.assert_allclose(e[4][0], o.all_hidden_states[3][0].mean(0).numpy(), atol=1e-5)  # transformer layer 1
    np.testing.assert_allclose(e[1][0], o.all_hidden_states[0][0].mean(0).numpy(), atol=1e-5)  # down level 1
    np.testing.assert_allclose(e[-1][0], o.embedding[0].mean(0).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="layer 9 out of range"):
        embed(model, [seq], layers=[9])
    ids, back = read_embeddings(write_embeddings(tmp_path / "e.parquet", ["s"], e))  # each layer at its own width
    assert ids == ["s"] and all(np.array_equal(back[k], e[k]) for k in e)


def test_finetune_ia3_and_lora(tmp_path):
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("GC" if i % 2 else "AT"), 150)) for i in range(40)]
    labels = [i % 2 for i in range(40)]
    for method in ("ia3", "lora"):
        ft = finetune(ntv3.build("ntv3-tiny", seed=0), seqs, labels, FinetuneConfig(method=method, epochs=3, batch_size=8, lr=5e-3, valid_fraction=0.0))
        names = [n for n, p in ft.named_parameters() if p.requires_grad]
        assert any("key_head" in n or "query_head" in n for n in names)  # the adapter sits on NTv3's projections
        p = ft.predict(seqs)
        assert ((p[:, 1] > 0.5) == np.array(labels, bool)).mean() > 0.9
        ft.save_adapter(tmp_path / method)
        again = FinetunedModel.load_adapter(ntv3.build("ntv3-tiny", seed=0), tmp_path / method)
        assert np.allclose(again.predict(seqs[:4]), p[:4], atol=1e-5)


def test_pretrain_ntv3_runs_and_resumes_bit_exact(tmp_path):
    rng = np.random.default_rng(2)
    motif = "".join(rng.choice(list("ACGT"), 200))
    write_fasta(tmp_path / "genome.fa", [("chrS", "".join("".join(rng.choice(list("ACGT"), 300)) + motif for _ in range(40))),
                                         ("chrV", "".join(rng.choice(list("ACGT"), 5000)))])
    base = dict(model="ntv3-tiny", model_overrides={"max_tokens": 256}, sources=[{"fasta": str(tmp_path / "genome.fa"), "contigs": ["chrS"]}],
                valid_regions=["chrV"], window_tokens=256, batch_size=2, tokens_per_step=1024, lr_init=1e-4, lr_peak=2e-3,
                warmup_steps=2, checkpoint_every=2, eval_every=2, eval_windows=4, log_every=1, precision="fp32", progress=False, seed=3)
    pretrain(PretrainConfig.from_dict({**base, "max_steps": 4, "out_dir": str(tmp_path / "ref")}))
    pretrain(PretrainConfig.from_dict({**base, "max_steps": 2, "out_dir": str(tmp_path / "split")}))
    pretrain(PretrainConfig.from_dict({**base, "max_steps": 4, "out_dir": str(tmp_path / "split")}))
    import ntkit

    a, b = ntkit.load(tmp_path / "ref" / "model"), ntkit.load(tmp_path / "split" / "model")
    assert isinstance(a, ntv3.NTv3Model) and a.config.max_tokens == 256
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    log = (tmp_path / "ref" / "log.csv").read_text().splitlines()
    assert len(log) == 5 and "valid_perplexity" in log[0]


def test_length_curriculum_stages_and_resume_across_a_boundary(tmp_path):
    from ntkit.tasks.pretrain import stages, tokens_before, windows_before

    rng = np.random.default_rng(5)
    write_fasta(tmp_path / "genome.fa", [("chrS", "".join(rng.choice(list("ACGT"), 20_000))), ("chrV", "".join(rng.choice(list("ACGT"), 3000)))])
    base = dict(model="ntv3-tiny", model_overrides={"max_tokens": 256}, sources=[{"fasta": str(tmp_path / "genome.fa"), "contigs": ["chrS"]}],
                valid_regions=["chrV"], window_tokens=256, length_schedule=[[0, 64], [3, 128], [5, 256]], batch_size=2,
                tokens_per_step=512, lr_init=1e-4, lr_peak=2e-3, warmup_steps=2, checkpoint_every=2, eval_every=3, eval_windows=2,
                log_every=1, precision="fp32", progress=False, seed=3)
    cfg = PretrainConfig.from_dict({**base, "out_dir": str(tmp_path / "x")})
    st = stages(cfg, world=1)
    # micro-batches of about batch_size x window_tokens = 512 tokens; tokens_per_step 512 in each stage
    assert [(s.start, s.window_tokens, s.batch_size, s.accum, s.G, s.first_window) for s in st] == [
        (0, 64, 8, 1, 8, 0), (3, 128, 4, 1, 4, 24), (5, 256, 2, 1, 2, 32)]
    assert [windows_before(st, k) for k in (0, 3, 4, 5, 6)] == [0, 24, 28, 32, 34]
    assert tokens_before(st, 6) == 3 * 512 + 2 * 512 + 512
    pretrain(PretrainConfig.from_dict({**base, "max_steps": 6, "out_dir": str(tmp_path / "ref")}))
    pretrain(PretrainConfig.from_dict({**base, "max_steps": 4, "out_dir": str(tmp_path / "split")}))  # stops inside stage 2
    pretrain(PretrainConfig.from_dict({**base, "max_steps": 6, "out_dir": str(tmp_path / "split")}))
    import ntkit

    a, b = ntkit.load(tmp_path / "ref" / "model"), ntkit.load(tmp_path / "split" / "model")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    log = (tmp_path / "ref" / "log.csv").read_text().splitlines()
    assert [int(r.split(",")[-1]) for r in log[1:]] == [64, 64, 64, 128, 128, 256]  # the window length of each step
    with pytest.raises(ValueError, match="length_schedule"):
        PretrainConfig.from_dict({**base, "length_schedule": [[2, 64]]})
    with pytest.raises(ValueError, match="exceeds the model context"):
        pretrain(PretrainConfig.from_dict({**base, "length_schedule": [[0, 64], [2, 512]], "max_steps": 1, "out_dir": str(tmp_path / "y")}))
    # another schedule is another run: no silent resume
    with pytest.raises(ValueError, match="length_schedule"):
        pretrain(PretrainConfig.from_dict({**base, "length_schedule": [[0, 64], [4, 128]], "max_steps": 6, "out_dir": str(tmp_path / "split")}))


def test_cli_jobs(genome, tmp_path):
    from ntkit.cli import main

    common = ["--model", "ntv3-tiny", "--random-init", "--no-progress"]
    assert main(["--quiet", "score-variants", *common, "--vcf", str(genome / "v.vcf"), "--fasta", str(genome / "g.fa"),
                 "--out", str(tmp_path / "s.vcf.gz"), "--window-tokens", "512"]) == 0
    assert main(["--quiet", "mutagenesis", *common, "--fasta", str(genome / "g.fa"), "--regions", "chr1:101-105",
                 "--out", str(tmp_path / "mut"), "--window-tokens", "256"]) == 0
    assert (tmp_path / "mut" / "mutagenesis.parquet").exists()
    write_fasta(tmp_path / "s.fa", [("a", SEQ[:300]), ("b", SEQ[300:700])])
    assert main(["--quiet", "embed", str(tmp_path / "s.fa"), *common, "--layers", "4", "-1", "--out", str(tmp_path / "e.parquet")]) == 0
    ids, emb = read_embeddings(tmp_path / "e.parquet")
    assert ids == ["a", "b"] and emb[4].shape == (2, 64) and emb[-1].shape == (2, 32)  # a transformer layer, the output


def test_mutagenesis_rows_at_a_contig_start_carry_their_status(genome, tmp_path, capsys):
    """A post-trained NTv3's heads see a window's centre crop only: SNVs at the contig's first bases
    are outside every crop. Each row says so (status), its scores NA, and the summary counts them."""
    import pandas as pd

    from ntkit.cli import main

    ntv3.save_folder(ntv3.build("ntv3-tiny-post", seed=0), tmp_path / "post")
    assert main(["mutagenesis", "--model", str(tmp_path / "post"), "--species", "mouse", "--fasta", str(genome / "g.fa"),
                 "--regions", "chr1:1-10", "--out", str(tmp_path / "mut"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    t = pd.read_parquet(tmp_path / "mut" / "mutagenesis.parquet")
    assert len(t) == 30 and set(t["status"]) == {"outside_prediction"}
    scores = [c for c in t.columns if c.startswith(("SUM_", "DS_"))]
    assert scores and t[scores].isna().all().all()
    assert "30 of them not scored (outside_prediction: 30: NA scores)" in out
