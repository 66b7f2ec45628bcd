"""Tier 1 for the recurrent translators, decoding and BLEU; tier 2 small learning tasks."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlnotes.eval.bleu import bleu, token_bleu
from dlnotes.sequence.seq2seq import (AdditiveAttention, AttentionGRU, EncoderDecoderGRU, beam_search,
                                      greedy_decode)
from dlnotes.sequence.translation import TransformerTranslator
from tests.conftest import needs_data

BOS, EOS = 2, 3


def test_additive_attention_is_the_notes_formula_and_ignores_padding():
    torch.manual_seed(0)
    att = AdditiveAttention(6, 4, 5)
    s, h = torch.randn(2, 4), torch.randn(2, 7, 6)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    alpha = att(s, att.keys(h), pad)
    W = torch.cat([att.W_h.weight, att.W_s.weight], 1)  # W acting on [h_j; s]
    for b in range(2):
        n = 5 if b else 7
        scores = torch.stack([att.w(torch.tanh(W @ torch.cat([h[b, j], s[b]]))).squeeze() for j in range(n)])
        torch.testing.assert_close(alpha[b, :n], torch.softmax(scores, 0))
    assert alpha[1, 5:].abs().max() == 0


@pytest.mark.parametrize("cls", [EncoderDecoderGRU, AttentionGRU])
def test_teacher_forced_forward_equals_stepwise_decoding(cls):
    torch.manual_seed(1)
    model = cls(20, 30, 8, 16, dropout=0.0).eval() if cls is EncoderDecoderGRU else \
        cls(20, 30, 8, 16, 16, 12, dropout=0.0).eval()
    src = torch.randint(4, 20, (3, 6))
    src[2, 4:] = 0  # padding
    tgt = torch.randint(4, 30, (3, 5))
    full = F.log_softmax(model(src, tgt), -1)
    state = model.start(src)
    for t in range(5):
        logp, state = model.step(tgt[:, : t + 1], state)
        torch.testing.assert_close(logp, full[:, t], atol=1e-5, rtol=1e-4)


def test_encoder_final_state_ignores_padding():
    torch.manual_seed(2)
    model = EncoderDecoderGRU(20, 30, 8, 16, dropout=0.0).eval()
    src = torch.randint(4, 20, (1, 5))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(model.start(src)["c"], model.start(padded)["c"])


class _Markov:
    """A hand-made model where greedy decoding is misled: after BOS, 'A' (p=.6) leads to five
    equally likely continuations, 'B' (p=.4) is followed by EOS for sure. Best sentence: 'B'."""

    def start(self, src):
        return {"dummy": torch.zeros(src.shape[0], 1)}

    def step(self, tokens, state):
        n = tokens.shape[0]
        logp = torch.full((n, 8), -1e9)
        last = tokens[:, -1]
        logp[last == BOS, 4], logp[last == BOS, 5] = math.log(0.6), math.log(0.4)
        logp[last == 4, 3:8] = math.log(0.2)
        logp[last == 5, EOS] = 0.0
        logp[last >= 6, EOS] = 0.0
        logp[last == EOS, EOS] = 0.0
        return logp, state


def test_beam_search_beats_greedy_where_greedy_is_misled():
    src = torch.zeros(2, 3, dtype=torch.long)
    assert greedy_decode(_Markov(), src, BOS, EOS)[0] == [4]  # 'A' then EOS (p = .6 * .2)
    assert beam_search(_Markov(), src, BOS, EOS, beam=2, alpha=0.0) == [[5], [5]]  # 'B' (p = .4)


def test_beam_of_one_equals_greedy_on_a_transformer():
    torch.manual_seed(3)
    model = TransformerTranslator(20, 25, d_model=32, n_heads=4, n_encoder=1, n_decoder=1, d_ff=64,
                                  dropout=0.0).eval()
    src = torch.randint(4, 20, (4, 7))
    assert beam_search(model, src, BOS, EOS, beam=1, max_len=10, alpha=0.0) == greedy_decode(model, src, BOS, EOS, 10)


def test_token_bleu_matches_sacrebleu_and_bleu_wrapper():
    import sacrebleu

    hyps = ["the cat sat on the mat today", "a man rides a red bike in the park", "two dogs play"]
    refs = ["the cat sat on a mat", "a man is riding a red bicycle in the park", "two dogs are playing in snow"]
    ours = token_bleu([h.split() for h in hyps], [r.split() for r in refs])
    ref = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none").score
    assert ours == pytest.approx(ref, abs=1e-6)
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert 0 < bleu(hyps, refs) < 100


def test_transformer_learns_to_reverse_sequences():
    """Tier 2: a 1-layer encoder-decoder reverses 8 random tokens (8 symbols) after 200 steps."""
    torch.manual_seed(0)
    V, L = 12, 8

    def batch(n, g):
        x = torch.randint(4, V, (n, L), generator=g)
        ends = (torch.full((n, 1), BOS), torch.full((n, 1), EOS))
        return torch.cat([ends[0], x, ends[1]], 1), torch.cat([ends[0], x.flip(1), ends[1]], 1)

    model = TransformerTranslator(V, V, d_model=64, n_heads=4, n_encoder=1, n_decoder=1, d_ff=128, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        src, tgt = batch(64, g)
        loss = F.cross_entropy(model(src, tgt[:, :-1]).reshape(-1, V), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    src, tgt = batch(200, torch.Generator().manual_seed(123))
    out = greedy_decode(model.eval(), src, BOS, EOS, L + 2)
    correct = sum(a == b for o, t in zip(out, tgt[:, 1:-1].tolist()) for a, b in zip(o, t))
    assert correct / (200 * L) >= 0.95


@needs_data("multi30k")
def test_attention_gru_lowers_its_loss_on_multi30k_pairs():
    """Tier 2: on 2,000 real pairs the attention GRU's held-out loss falls well below the unigram level."""
    from dlnotes.data import text as T
    from dlnotes.data.sampling import StepSampler
    from dlnotes.sequence.translation import encode, evaluate_loss, pad_batch, train_tokenizer

    torch.manual_seed(0)
    pairs = T.multi30k("train")[:2200]
    src_tok = train_tokenizer([p[0] for p in pairs[:2000]], 600, True)
    tgt_tok = train_tokenizer([p[1] for p in pairs[:2000]], 600, True)
    src = encode(src_tok, [p[0] for p in pairs], 24)
    tgt = encode(tgt_tok, [p[1] for p in pairs], 24)
    model = AttentionGRU(src_tok.get_vocab_size(), tgt_tok.get_vocab_size(), 48, 64, 64, 48, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sampler = StepSampler(2000, 64)
    before = evaluate_loss(model, src[2000:], tgt[2000:], "cpu")
    for step in range(STEPS_GRU):
        idx = sampler.indices(step).tolist()
        s, t = pad_batch([src[i] for i in idx], "cpu"), pad_batch([tgt[i] for i in idx], "cpu")
        loss = F.cross_entropy(model(s, t[:, :-1]).flatten(0, 1), t[:, 1:].flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate_loss(model, src[2000:], tgt[2000:], "cpu")
    assert before > 6.0
    assert after < GRU_BOUND, (before, after)


STEPS_GRU, GRU_BOUND = 60, 4.6
