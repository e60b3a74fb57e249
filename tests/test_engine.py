import numpy as np
import pytest
import torch

import ntkit
from ntkit import Runtime
from ntkit.runtime import engine


@pytest.fixture(scope="module")
def model():
    return ntkit.build("nt-v2-tiny", seed=0)


def test_token_batches_sorted_and_within_budget():
    lengths = [5, 3, 9, 3, 20, 4]
    batches = engine.token_batches(lengths, batch_tokens=12)
    # sorted by length (stable): 3(1) 3(3) 4(5) 5(0) 9(2) 20(4); 20 exceeds the budget: a batch of its own
    assert [b.tolist() for b in batches] == [[1, 3, 5], [0], [2], [4]]  # 2 x 9 > 12
    assert [b.tolist() for b in engine.token_batches(lengths, 100, batch_size=2)] == [[1, 3], [5, 0], [2, 4]]


def test_run_keeps_input_order_and_budget(model):
    rng = np.random.default_rng(0)
    requests = [int(n) for n in rng.integers(1, 40, size=57)]
    seen = []

    def forward(m, batch):
        assert not m.training and not torch.is_grad_enabled()
        seen.append(batch)
        return [r * 10 for r in batch]

    out = list(engine.run(model, iter(requests), forward, length=lambda r: r, runtime=engine.Runtime(batch_tokens=64), lookahead=10))
    assert out == [r * 10 for r in requests]
    for b in seen:
        assert len(b) == 1 or len(b) * max(b) <= 64
    # the look-ahead buffer bounds what is held: no batch mixes requests from two buffers
    assert sum(len(b) for b in seen) == len(requests) and max(len(b) for b in seen) <= 10


def test_run_reads_lazily(model):
    pulled = []

    def requests():
        for i in range(100):
            pulled.append(i)
            yield i

    it = engine.run(model, requests(), lambda m, b: b, length=lambda r: 1, lookahead=8)
    assert next(it) == 0
    assert len(pulled) <= 9  # one buffer (plus the generator's look at the next item at most)
    it.close()


def test_model_state_restored(model):
    model.train()
    out = list(engine.run(model, ["ACGTAC" * 5], lambda m, b: [m.training], length=lambda s: 6))
    assert out == [False] and model.training
    # an interrupted stream restores it too
    it = engine.run(model, ["A"] * 20, lambda m, b: [0] * len(b), length=lambda s: 2, lookahead=2)
    next(it)
    assert not model.training
    it.close()
    assert model.training
    model.eval()


def test_mean_pool_excludes_cls_and_padding():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    ids = torch.tensor([[3, 10, 11, 1], [3, 10, 11, 12]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    np.testing.assert_allclose(engine.mean_pool(h, ids, mask, cls_id=3).numpy(), [[1.5], [6.0]])


@pytest.mark.gpu
def test_cuda_results_equal_cpu_and_model_stays_home(tmp_path):
    from ntkit.tasks.embed import embed
    from ntkit.io.genome import write_fasta
    from ntkit.tasks.variants import score_variants

    m = ntkit.build(ntkit.get_preset("nt-v2-tiny").replace(max_tokens=41), seed=0)
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), int(n))) for n in rng.integers(10, 600, 50)]
    cpu = embed(m, seqs, layers=[1, -1])
    gpu = embed(m, seqs, layers=[1, -1], runtime=Runtime(device="cuda"))
    assert engine.model_device(m).type == "cpu"
    for l in cpu:
        np.testing.assert_allclose(gpu[l], cpu[l], rtol=1e-3, atol=1e-4)
    seq = "".join(rng.choice(list("ACGT"), 3000))
    write_fasta(tmp_path / "ref.fa", [("1", seq)])
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"1\t{p}\t.\t{seq[p - 1]}\t{'ACGT'[('ACGT'.index(seq[p - 1]) + 1) % 4]}\t.\t.\t." for p in range(5, 3000, 37)]
    (tmp_path / "v.vcf").write_text("\n".join(lines) + "\n")
    kw = dict(scores=["llr", "llr_unmasked", "embedding"])
    a = score_variants(m, tmp_path / "v.vcf", tmp_path / "ref.fa", **kw).table
    b = score_variants(m, tmp_path / "v.vcf", tmp_path / "ref.fa", runtime=Runtime(device="cuda"), **kw).table
    cols = [c for c in a.columns if c.startswith(("llr", "l1", "l2", "cos", "dot"))]
    np.testing.assert_allclose(b[cols].to_numpy(), a[cols].to_numpy(), rtol=1e-3, atol=1e-3)
