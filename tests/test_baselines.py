import numpy as np
import torch

import ntkit
from ntkit.tasks.baselines import MarkovKmer, UnigramKmer, evaluate_baselines, kmer_counts, visible_left_contexts
from ntkit.tasks.pretrain_data import Window
from ntkit.tasks.pretrain import evaluate_mlm
from ntkit.models.nt.tokenizer import Tokenizer


def kmer_index(kmer: str, tok: Tokenizer) -> int:
    return int(tok.encode(kmer)[1]) - tok.kmer_offset


def test_kmer_counts_sliding_both_strands_skip_n():
    c = kmer_counts(["ACGTA"], 2, both_strands=False)
    order = {b: i for i, b in enumerate("ATCG")}
    code = lambda s: sum(order[ch] * 4 ** (len(s) - 1 - i) for i, ch in enumerate(s))  # noqa: E731
    assert {i for i in np.nonzero(c)[0]} == {code(k) for k in ["AC", "CG", "GT", "TA"]}
    both = kmer_counts(["ACGTA"], 2)  # reverse complement TACGT adds TA, AC, CG, GT
    assert both[code("AC")] == 2 and both[code("TA")] == 2 and both.sum() == 8
    assert kmer_counts(["ACNGT"], 2, both_strands=False).sum() == 2  # AC, GT


def test_unigram_uses_tokenizer_kmer_order():
    tok = Tokenizer("v2")
    u = UnigramKmer(alpha=0.01).fit(["GATTACA" * 500])
    top = np.argsort(u.logp)[::-1][:14]
    assert kmer_index("GATTAC", tok) in top and kmer_index("ATTACA", tok) in top
    assert np.isclose(np.exp(u.logp).sum(), 1.0)


def test_markov_kmer_distribution_is_normalised_and_learns_periodic_sequence():
    tok = Tokenizer("v2")
    m = MarkovKmer(order=5, alpha=0.001).fit(["ACGTTGCA" * 2000])
    for ctx in ["", "A", "GTTGC", "CATTT"]:
        assert np.isclose(np.exp(m.log_probs([ctx])[0]).sum(), 1.0)
    lp = m.log_probs(["ACGTT"])[0]
    assert lp.argmax() == kmer_index("GCAACG", tok)
    assert np.exp(lp.max()) > 0.99


def test_visible_left_contexts_stop_at_masked_and_n():
    seq = "ACGTACGT??????NACG??????"
    assert visible_left_contexts(seq, [8, 18, 0, 3], order=5) == ["TACGT", "ACG", "", "ACG"]


def test_baselines_score_the_same_positions_as_the_model():
    rng = np.random.default_rng(0)
    windows = [Window("".join(rng.choice(list("ACGT"), 600)) + "NN" + "".join(rng.choice(list("ACGT"), 100)), "x", "c", 0) for _ in range(5)]
    model = ntkit.build("nt-v2-tiny", seed=0)
    tok = model.tokenizer
    grad = []  # evaluation records no autograd graph (its memory would grow with every held-out batch)
    hook = model.register_forward_hook(lambda *_: grad.append(torch.is_grad_enabled()))
    ev = evaluate_mlm(model, windows, tok, window_tokens=130, seed=9)
    hook.remove()
    assert grad and not any(grad)
    seqs = ["".join(rng.choice(list("ACGT"), 5000))]
    res = evaluate_baselines({"u": UnigramKmer().fit(seqs), "m": MarkovKmer().fit(seqs)}, windows, tok, 130, seed=9)
    assert res["u"]["n_kmer"] == res["m"]["n_kmer"] == ev["n_kmer"] > 50
    # On uniform random DNA no predictor beats 4096-way chance by much.
    assert abs(res["u"]["kmer_perplexity"] - 4096) / 4096 < 0.25
