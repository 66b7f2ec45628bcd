"""Tiers 1-2 for Lecture 8's pretrained language models: tokenizers, BERT masking and pairs, causal
masking in GPT-2, direction separation in ELMo's biLM, sampling filters, and short learning runs."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from dlnotes.engine.config import ConfigError
from dlnotes.sequence import bert as B
from dlnotes.sequence import elmo as E
from dlnotes.sequence import finetune as FT
from dlnotes.sequence import gpt2 as G
from dlnotes.sequence import sst2 as S
from dlnotes.sequence import tokenize as TK
from tests.conftest import needs_data


@pytest.fixture(scope="module")
def wordpiece():
    return TK.train_wordpiece(TK.builtin_paragraphs(), vocab_size=2000)


@pytest.fixture(scope="module")
def bpe():
    return TK.train_byte_bpe(TK.builtin_paragraphs(), vocab_size=2000)


# ----------------------------------------------------------------------------- tokenizers
def test_wordpiece_splits_walking_into_subwords(wordpiece):
    parts = TK.pieces(wordpiece, "Walking")
    assert len(parts) >= 2 and all(p.startswith("##") for p in parts[1:])
    assert "".join(p.removeprefix("##") for p in parts) == "walking"  # lower-cased, nothing lost
    enc = wordpiece.encode("first part", "second part")
    assert enc.tokens[0] == "[CLS]" and enc.tokens.count("[SEP]") == 2 and enc.type_ids[-1] == 1


def test_byte_bpe_round_trips_any_text(bpe):
    text = "Walking in Zürich costs 5€ — naïve café ☕ 日本"
    ids = bpe.encode(text).ids
    assert bpe.get_vocab_size() == 2000 and bpe.decode(ids) == text  # bytes: no unknown symbols
    assert len(TK.pieces(bpe, " walking")) <= len(" walking".encode())  # merges shorten the byte sequence


# ----------------------------------------------------------------------------- BERT
def test_mlm_masking_statistics():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (400, 500), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    inputs, labels = B.mask_tokens(ids, special, 1000, mask_id=4, g=g, prob=0.15)
    chosen = labels != -100
    n = chosen.sum().item()
    assert abs(n / (~special).sum().item() - 0.15) < 0.003  # 15% of the non-special positions
    assert not chosen[special].any() and (labels[chosen] == ids[chosen]).all()
    as_mask = (inputs[chosen] == 4).float().mean().item()
    unchanged = (inputs[chosen] == ids[chosen]).float().mean().item()
    rand = 1 - as_mask - unchanged
    assert abs(as_mask - 0.8) < 0.01 and abs(unchanged - 0.1) < 0.01 and abs(rand - 0.1) < 0.01
    assert (inputs[~chosen] == ids[~chosen]).all()  # nothing else is touched


def test_nsp_pairs_layout(wordpiece):
    data = B.PairData(wordpiece, TK.builtin_paragraphs()[:400], max_len=48)
    ids, seg, special, is_next = data.batch(200, seed=0)
    assert 0.35 < is_next.float().mean() < 0.65
    for r in range(20):
        row = ids[r][ids[r] != data.pad].tolist()
        assert row[0] == data.cls and row[-1] == data.sep and row.count(data.sep) == 2
        first_sep = row.index(data.sep)
        assert (seg[r, :first_sep + 1] == 0).all() and (seg[r, first_sep + 1:len(row)] == 1).all()
    assert ids.shape[1] == 48


def test_nsp_pairs_pack_whole_sentence_spans(wordpiece):
    docs = [" ".join(f"Item {d} number {k} is here." for k in range(12)) for d in range(30)]
    data = B.PairData(wordpiece, docs, max_len=40, short_prob=0.0, pack=True)
    streams = [",".join(str(t) for k in np.nonzero(data.doc_of == d)[0] for t in data.sents[k]) for d in range(30)]

    def docs_holding(tokens):  # documents whose token stream contains ``tokens`` contiguously
        key = ",".join(map(str, tokens))
        return {d for d, s in enumerate(streams) if f",{key}," in f",{s},"}

    ids, seg, special, is_next = data.batch(64, seed=1)
    assert 0.3 < is_next.float().mean() < 0.7
    assert (ids != data.pad).float().mean() > 0.9  # spans fill the input (one sentence each would not)
    for r in range(64):
        row = ids[r][ids[r] != data.pad].tolist()
        cut = row.index(data.sep)
        a, b = row[1:cut], row[cut + 1:-1]
        assert a and b
        (doc_a,) = docs_holding(a)
        if is_next[r]:
            assert docs_holding(a + b) == {doc_a}  # B continues A in its document
        else:
            assert len(docs_holding(b)) == 1 and doc_a not in docs_holding(b)  # B comes from another one


def test_nsp_pairs_without_packing_hold_one_sentence_each(wordpiece):
    docs = [" ".join(f"Item {d} number {k} is here." for k in range(12)) for d in range(30)]
    data = B.PairData(wordpiece, docs, max_len=40, short_prob=0.0, pack=False)
    sents = {tuple(s): i for i, s in enumerate(data.sents)}  # every sentence differs (its doc and number)
    ids, seg, special, is_next = data.batch(64, seed=1)
    assert 0.3 < is_next.float().mean() < 0.7
    for r in range(64):
        row = ids[r][ids[r] != data.pad].tolist()
        cut = row.index(data.sep)
        a, b = sents[tuple(row[1:cut])], sents[tuple(row[cut + 1:-1])]  # each side is exactly one sentence
        assert (b == a + 1) if is_next[r] else (data.doc_of[b] != data.doc_of[a])
        assert seg[r, cut + 1:len(row)].eq(1).all() and seg[r, :cut + 1].eq(0).all()


def test_nsp_pairs_refuse_documents_without_two_sentences(wordpiece):
    with pytest.raises(ValueError, match="two sentences"):
        B.PairData(wordpiece, ["One sentence only here.", "Another lone sentence here."], max_len=32)


@needs_data("english_corpus")
def test_wiki_documents_hold_every_paragraph_in_order():
    import gzip

    from dlnotes.data.registry import path

    files = TK.wiki_files(0, held_out=True)
    paras = list(TK.wiki_paragraphs(files))
    docs = list(TK.wiki_paragraphs(files, documents=True))
    with gzip.open(path("english_corpus", files[0]), "rt", encoding="utf-8") as fh:
        articles = sum(line.startswith("<doc") for line in fh)
    assert 1 < len(docs) <= articles < len(paras)  # one string per article (an article may be title-only)
    assert " ".join(docs) == " ".join(paras)  # nothing lost, nothing reordered


def test_bert_padding_does_not_change_features():
    torch.manual_seed(0)
    m = B.BERT(50, 16, 2, 2, 16, 0.0).eval()
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    a = m.features(ids, torch.zeros_like(ids))
    b = m.features(padded, torch.zeros_like(padded))[:, :5]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- GPT-2
def test_encoded_corpus_cache_keeps_each_tokenizers_ids_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("DLNOTES_CACHE", str(tmp_path))
    paras = TK.builtin_paragraphs()
    held = paras[int(0.9 * len(paras)):]
    toks = [TK.train_byte_bpe(paras[:len(paras) // 2], 500), TK.train_byte_bpe(paras[len(paras) // 2:], 500)]
    assert toks[0].to_str() != toks[1].to_str() and toks[0].to_str()[:2000] == toks[1].to_str()[:2000]
    for tok in toks + toks:  # the second pass reads the cache
        want = [i for e in tok.encode_batch(held) for i in e.ids + [tok.token_to_id(TK.GPT_EOT)]]
        assert G.encoded_corpus(tok, "builtin", 0, held_out=True).tolist() == want


def test_causal_mask_no_leakage_from_the_future():
    torch.manual_seed(0)
    cfg = G.GPT2Config(context=16, n_layers=2, n_heads=2, d_model=32, dropout=0.0)
    m = G.build_model(cfg, 100).eval()
    x = torch.randint(0, 100, (2, 16))
    y = x.clone()
    y[:, 9] = (y[:, 9] + 1) % 100
    lx, _ = m(x)
    ly, _ = m(y)
    torch.testing.assert_close(lx[:, :9], ly[:, :9])  # positions before the change see nothing of it
    assert (lx[:, 9:] - ly[:, 9:]).abs().amax(-1).min() > 1e-6  # later ones do


@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("pool", ["last", "mean", "eot"])
def test_gpt2_classifier_ignores_right_padding(pool, bos):
    torch.manual_seed(0)
    m = G.build_model(G.GPT2Config(context=16, n_layers=1, n_heads=2, d_model=16, dropout=0.0), 30)
    clf = FT.Classifier("gpt2", m, 16, pad_id=0, dropout=0.0, pool=pool, bos=bos).eval()
    a = clf(torch.tensor([[5, 6, 7]]))
    b = clf(torch.tensor([[5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 9, 4]]))
    torch.testing.assert_close(a, b[:1], atol=1e-5, rtol=1e-5)
    lead = [0] if bos else []  # the leading <|endoftext|> (= pad) is read, then the sentence, then an eot
    h = m.blocks(m.pos(m.tok_embed(torch.tensor([lead + [5, 6, 7, 0]]))))[0][len(lead):]  # (4, C) from the "5"
    z = {"mean": h[:3].mean(0), "last": h[2], "eot": h[3]}[pool]
    torch.testing.assert_close(a[0], clf.head(z), atol=1e-5, rtol=1e-5)
    if bos:  # the sentence's states differ from those read without the leading token
        assert not torch.allclose(a, FT.Classifier("gpt2", m, 16, pad_id=0, dropout=0.0, pool=pool).eval()(
            torch.tensor([[5, 6, 7]])))


def test_gpt2_eot_pool_keeps_the_appended_token_inside_the_context():
    torch.manual_seed(0)
    m = G.build_model(G.GPT2Config(context=8, n_layers=1, n_heads=2, d_model=16, dropout=0.0), 30)
    clf = FT.Classifier("gpt2", m, 16, pad_id=0, dropout=0.0, pool="eot").eval()
    full = torch.arange(1, 9)[None]  # 8 real tokens fill the context: the 8th gives way to the eot
    h = m.blocks(m.pos(m.tok_embed(torch.tensor([[1, 2, 3, 4, 5, 6, 7, 0]]))))[0]
    torch.testing.assert_close(clf(full)[0], clf.head(h[7]), atol=1e-5, rtol=1e-5)
    both = FT.Classifier("gpt2", m, 16, pad_id=0, dropout=0.0, pool="eot", bos=True).eval()
    h = m.blocks(m.pos(m.tok_embed(torch.tensor([[0, 1, 2, 3, 4, 5, 6, 0]]))))[0]  # two real tokens give way
    torch.testing.assert_close(both(full)[0], both.head(h[7]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_bert_classifier_reads_cls_through_the_pooler_or_the_mean_of_real_tokens(pool):
    torch.manual_seed(0)
    m = B.BERT(30, 16, 1, 2, 16, 0.0).eval()
    clf = FT.Classifier("bert", m, 16, pad_id=0, dropout=0.0, pool=pool).eval()
    a = clf(torch.tensor([[2, 5, 6, 3]]))
    b = clf(torch.tensor([[2, 5, 6, 3, 0, 0], [2, 5, 6, 7, 8, 3]]))
    torch.testing.assert_close(a, b[:1], atol=1e-5, rtol=1e-5)  # padding is neither attended to nor averaged
    h = m.features(torch.tensor([[2, 5, 6, 3]]), torch.zeros(1, 4, dtype=torch.long))[0]  # (4, d)
    z = h.mean(0) if pool == "mean" else m.pooler(h[0])
    torch.testing.assert_close(a[0], clf.head(z), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model,pool", [("elmo", "mean"), ("gpt2", "max"), ("bert", "first"), ("bert", "eot"),
                                        ("elmo", "eot")])
def test_finetune_config_names_a_pool_it_cannot_use(model, pool):
    with pytest.raises(ConfigError, match=f"pool: '{pool}' with model={model}"):
        FT.FinetuneConfig(model=model, pool=pool).check()


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_layer_decay_gives_each_depth_its_rate_from_embeddings_to_head(kind):
    from dlnotes.engine.schedules import set_lr
    torch.manual_seed(0)
    lm = (G.build_model(G.GPT2Config(context=16, n_layers=3, n_heads=2, d_model=16), 30) if kind == "gpt2"
          else B.BERT(30, 16, 3, 2, 16, 0.1))
    clf = FT.Classifier(kind, lm, 16, pad_id=0)
    opt = FT.layerwise_optimizer(clf, 1e-3, 0.01, 0.5)
    set_lr(opt, 2e-3)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert len(rate) == len(list(clf.parameters()))  # every parameter once
    tok = lm.tok_embed.weight if kind == "gpt2" else lm.tok.weight
    blocks = lm.blocks.layers if kind == "gpt2" else lm.encoder.layers
    assert rate[id(tok)] == (2e-3 / 16, 0.01)  # embeddings: depth 0 of 4
    for i, block in enumerate(blocks):  # block i at depth i + 1: 2e-3 * 0.5^(3 - i)
        assert {rate[id(p)] for p in block.parameters() if p.dim() >= 2} == {(2e-3 * 0.5 ** (3 - i), 0.01)}
        assert {rate[id(p)] for p in block.parameters() if p.dim() < 2} == {(2e-3 * 0.5 ** (3 - i), 0.0)}
    assert rate[id(clf.head.weight)] == (2e-3, 0.01) and rate[id(clf.head.bias)] == (2e-3, 0.0)
    plain = FT.layerwise_optimizer(clf, 1e-3, 0.01, 1.0)  # no decay: GPT-2's two groups, one rate
    set_lr(plain, 2e-3)
    assert [(g["lr"], g["weight_decay"]) for g in plain.param_groups] == [(2e-3, 0.01), (2e-3, 0.0)]


@pytest.mark.parametrize("model,decay", [("elmo", 0.8), ("gpt2", 0.0), ("bert", 1.5)])
def test_finetune_config_refuses_a_layer_decay_it_cannot_use(model, decay):
    with pytest.raises(ConfigError, match=f"layer_decay: {decay} with model={model}"):
        FT.FinetuneConfig(model=model, layer_decay=decay).check()


def test_gpt2_auxiliary_lm_loss_is_the_next_token_loss_of_the_real_tokens():
    torch.manual_seed(0)
    m = G.build_model(G.GPT2Config(context=16, n_layers=1, n_heads=2, d_model=16, dropout=0.0), 30)
    clf = FT.Classifier("gpt2", m, 16, pad_id=0, dropout=0.0).eval()
    a, b = [5, 6, 7, 8], [9, 3]
    logits, lm = clf.forward_with_lm(torch.tensor([a, b + [0, 0]]))
    _, la = m(torch.tensor([a[:-1]]), torch.tensor([a[1:]]))
    _, lb = m(torch.tensor([b[:-1]]), torch.tensor([b[1:]]))
    torch.testing.assert_close(lm, (3 * la + lb) / 4)  # the mean over the 4 predicted real tokens; padding ignored
    torch.testing.assert_close(logits, clf(torch.tensor([a, b + [0, 0]])))
    assert clf.forward_with_lm(torch.tensor([a]), lm_loss=False)[1] is None


def test_gpt2_auxiliary_lm_loss_with_a_leading_eot_also_predicts_the_first_word():
    torch.manual_seed(0)
    m = G.build_model(G.GPT2Config(context=16, n_layers=1, n_heads=2, d_model=16, dropout=0.0), 30)
    clf = FT.Classifier("gpt2", m, 16, pad_id=0, dropout=0.0, bos=True).eval()
    a, b = [5, 6, 7, 8], [9, 3]
    _, lm = clf.forward_with_lm(torch.tensor([a, b + [0, 0]]))
    _, la = m(torch.tensor([[0] + a[:-1]]), torch.tensor([a]))
    _, lb = m(torch.tensor([[0] + b[:-1]]), torch.tensor([b]))
    torch.testing.assert_close(lm, (4 * la + 2 * lb) / 6)  # 6 real tokens, each predicted from its prefix


def test_finetune_config_keeps_the_leading_eot_to_gpt2():
    FT.FinetuneConfig(model="gpt2", bos=True).check()
    for model in ("bert", "elmo"):
        with pytest.raises(ConfigError, match=f"bos: true with model={model}"):
            FT.FinetuneConfig(model=model, bos=True).check()


def test_lp_ft_probe_trains_the_head_alone_on_features_in_the_rows_order(tmp_path):
    from dlnotes.engine import Run
    torch.manual_seed(0)
    m = G.build_model(G.GPT2Config(context=16, n_layers=1, n_heads=2, d_model=32, dropout=0.1), 30)
    clf = FT.Classifier("gpt2", m, 32, pad_id=0, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(1, 30, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (400,), generator=g)]
    labels = torch.tensor([int(s[-1] < 15) for s in seqs])  # read off the last token, which the feature holds
    run = Run(tmp_path / "r", quiet=True)
    z = FT.frozen_features(clf, seqs, run, batch=64)
    assert clf.training  # back in training mode
    clf.eval()
    for i in (0, 7, 399):  # dropout off; each row where its sequence was, whatever the length-sorted batches
        torch.testing.assert_close(z[i], clf.features(torch.tensor([seqs[i]]))[0][0], atol=1e-5, rtol=1e-5)
    clf.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    acc = FT.probe_head(clf, seqs, labels, FT.FinetuneConfig(probe_l2=1e-4), run)
    from sklearn.linear_model import LogisticRegression
    reference = LogisticRegression(C=100.0, max_iter=5000).fit(z.numpy(), labels.numpy()).score(z.numpy(), labels)
    assert acc > 0.9 and acc >= reference - 0.01  # as well as a logistic regression fitted to convergence
    with torch.no_grad():  # the classifier's own head now holds the fitted weights
        assert float((clf.head(z).argmax(-1) == labels).float().mean()) == acc
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # the language model is untouched


def test_l2sp_pulls_the_language_model_back_toward_its_pretrained_weights_after_the_step(tmp_path):
    # Li et al. (2018), decoupled as AdamW's decay: w <- w - lr_t alpha (w - w0); the head is not anchored
    from dlnotes.engine import Run
    torch.manual_seed(0)
    m = G.build_model(G.GPT2Config(context=16, n_layers=1, n_heads=2, d_model=16, dropout=0.0), 30)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(1, 30, (5,), generator=g).tolist() for _ in range(16)]
    data = (seqs, torch.tensor([int(s[-1] < 15) for s in seqs]))
    cfg = FT.FinetuneConfig(batch_size=16, epochs=1.0, warmup=0, lr=1e-2)  # one step, at the peak rate 1e-2
    run, out = Run(tmp_path / "r", quiet=True), {}
    for alpha in (0.0, 30.0):
        torch.manual_seed(2)
        clf = FT.Classifier("gpt2", copy.deepcopy(m), 16, pad_id=0, dropout=0.0)
        FT.finetune(clf, data, data, cfg, run, f"a{alpha}", l2sp=alpha)
        out[alpha] = clf
    run.close()
    moved = 0
    for (name, w0), plain, anchored in zip(m.named_parameters(), out[0.0].lm.parameters(), out[30.0].lm.parameters()):
        torch.testing.assert_close(anchored, plain + 0.3 * (w0 - plain), atol=1e-6, rtol=1e-6, msg=name)
        moved += int(not torch.allclose(plain, w0))
    assert moved > 5  # the plain step did move the language model
    torch.testing.assert_close(out[30.0].head.weight, out[0.0].head.weight)


def test_finetune_config_refuses_an_l2sp_weight_past_the_pretrained_values():
    with pytest.raises(ConfigError, match="l2sp: 20000.0 with lr=0.0001"):
        FT.FinetuneConfig(l2sp=2e4).check()
    with pytest.raises(ConfigError, match="l2sp: -1.0"):
        FT.FinetuneConfig(l2sp=-1.0).check()


def test_finetune_config_refuses_a_negative_probe_penalty():
    with pytest.raises(ConfigError, match="probe_l2: -0.1"):
        FT.FinetuneConfig(probe=True, probe_l2=-0.1).check()


def test_top_k_and_nucleus_filters():
    logits = torch.log(torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]))
    k = G.filter_logits(logits, 1.0, top_k=2)
    assert torch.isfinite(k).tolist() == [True, True, False, False, False]
    p = G.filter_logits(logits, 1.0, top_p=0.8)  # 0.5 + 0.2 < 0.8 <= 0.5 + 0.2 + 0.15
    assert torch.isfinite(p).tolist() == [True, True, True, False, False]
    p = G.filter_logits(logits, 1.0, top_p=0.5)
    assert torch.isfinite(p).tolist() == [True, False, False, False, False]
    hot = torch.softmax(G.filter_logits(logits, 0.5), -1)
    assert hot[0] > 0.5  # temperature < 1 sharpens


# ----------------------------------------------------------------------------- ELMo
def test_bilm_directions_do_not_see_what_they_predict():
    torch.manual_seed(0)
    m = E.BiLM(40, 8, 8, 2, 0.0).eval()
    x = torch.randint(0, 40, (2, 10))
    y = x.clone()
    y[:, 6] = (y[:, 6] + 1) % 40
    hx, hy = m.layer_states(x)[-1], m.layer_states(y)[-1]
    torch.testing.assert_close(hx[:, :6, :8], hy[:, :6, :8])  # forward states before the change
    torch.testing.assert_close(hx[:, 7:, 8:], hy[:, 7:, 8:])  # backward states after it
    assert (hx[:, 6:, :8] - hy[:, 6:, :8]).abs().max() > 0 and (hx[:, :7, 8:] - hy[:, :7, 8:]).abs().max() > 0


def test_elmo_mix_and_padding():
    torch.manual_seed(0)
    m = E.BiLM(40, 8, 8, 2, 0.0).eval()
    with torch.no_grad():
        m.mix.w.copy_(torch.tensor([0.0, 0.0, 5.0]))
        m.mix.gamma.fill_(2.0)
    x = torch.tensor([[3, 4, 5, 6]])
    layers = m.layer_states(x)
    s = torch.softmax(m.mix.w, 0)
    torch.testing.assert_close(m.mix(layers), 2.0 * (s[0] * layers[0] + s[1] * layers[1] + s[2] * layers[2]))
    a = E.sentence_features(m, x, pad_id=0)
    b = E.sentence_features(m, torch.tensor([[3, 4, 5, 6, 0, 0]]), pad_id=0)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_elmo_sampled_softmax_tends_to_the_full_softmax():
    torch.manual_seed(0)
    m = E.BiLM(50, 16, 16, 1, 0.0)
    h, y = torch.randn(40, 16), torch.randint(0, 50, (40,))
    q = torch.rand(50, dtype=torch.float64) + 0.2  # a non-uniform proposal
    q /= q.sum()
    full = torch.nn.functional.cross_entropy(m.softmax(h), y)
    g_full = torch.autograd.grad(full, m.softmax.weight)[0]
    errors = []
    for k in (50, 400_000):
        cand = torch.multinomial(q, k, replacement=True, generator=torch.Generator().manual_seed(1))
        loss = m.sampled_xent(h, y, cand, torch.log(k * q).float())
        g = torch.autograd.grad(loss, m.softmax.weight)[0]
        errors.append(((loss - full).abs().item(), ((g - g_full).norm() / g_full.norm()).item()))
    assert errors[1][0] < 0.01 and errors[1][1] < 0.02  # many candidates: loss and gradient match
    assert errors[0][1] > 2 * errors[1][1]  # and the estimate improves with K
    # an accidental hit (the target among the candidates) is masked, not counted twice
    cand = y[:1].repeat(8)
    assert torch.isfinite(m.sampled_xent(h[:1], y[:1], cand, torch.zeros(50)))
    torch.testing.assert_close(m.sampled_xent(h[:1], y[:1], cand, torch.zeros(50)), torch.zeros(()))


# ----------------------------------------------------------------------------- tier 2: losses fall within seconds
def test_tiny_gpt_and_bert_learn(bpe, wordpiece):
    torch.manual_seed(0)
    paras = TK.builtin_paragraphs()
    data = torch.tensor([i for e in bpe.encode_batch(paras[:1500]) for i in e.ids])
    cfg = G.GPT2Config(context=16, n_layers=1, n_heads=2, d_model=32, dropout=0.0)
    m = G.build_model(cfg, bpe.get_vocab_size())
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for step in range(50):
        x, y = G.get_batch(data, 16, 16, seed=step)
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert G.evaluate(m, data, 16, 16) < math.log(2000) - 1.2  # from ln V = 7.6 nats to below 6.4

    pairs = B.PairData(wordpiece, paras[:1500], max_len=32)
    bm = B.BERT(2000, 32, 1, 2, 32, 0.0, pairs.pad)
    opt = torch.optim.AdamW(bm.parameters(), lr=5e-3)
    for step in range(50):
        mlm, nsp, _ = B.bert_losses(bm, pairs, 16, step, 2000, 0.15, "cpu")
        opt.zero_grad()
        (mlm + nsp).backward()
        opt.step()
    with torch.no_grad():
        mlm = sum(B.bert_losses(bm, pairs, 32, 10_000 + i, 2000, 0.15, "cpu")[0].item() for i in range(3)) / 3
    assert mlm < math.log(2000) - 1.0  # masked tokens: from ln V = 7.6 nats to below 6.6


def test_bert_build_model_takes_its_shape_from_the_config():
    cfg = B.BERTConfig(n_layers=3, n_heads=2, d_model=24, max_len=20, dropout=0.0)
    m = B.build_model(cfg, 70, 5)
    assert len(m.encoder.layers) == 3 and m.tok.weight.shape == (70, 24) and m.pos.weight.shape == (20, 24)
    assert m.pad_id == 5 and m.tok.padding_idx == 5


def test_bert_mlm_logits_at_chosen_positions_equal_the_full_ones():
    torch.manual_seed(0)
    m = B.BERT(50, 16, 2, 2, 16, 0.0).eval()
    ids, seg = torch.randint(4, 50, (3, 12)), torch.zeros(3, 12, dtype=torch.long)
    chosen = torch.rand(3, 12) < 0.3
    full, nsp_full = m(ids, seg)
    part, nsp_part = m(ids, seg, chosen)
    assert full.shape == (3, 12, 50) and part.shape == (int(chosen.sum()), 50)
    torch.testing.assert_close(part, full[chosen])
    torch.testing.assert_close(nsp_part, nsp_full)


def test_length_grouped_batches_cover_every_sentence_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, 1000)
    batches = S.length_grouped_batches(lengths, 32, seed=0, pool=10)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))  # a permutation
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random = sum(32 * lengths[rng.permutation(1000)[:32]].max() for _ in range(len(batches)))
    assert padded < 0.7 * random  # grouped batches carry far less padding than random ones
    assert not np.array_equal(batches[0], S.length_grouped_batches(lengths, 32, seed=1, pool=10)[0])


# ----------------------------------------------------------------------------- SST-2 fine-tuning
def test_ptb_detokenize_restores_raw_text():
    d = TK.ptb_detokenize
    assert d("it 's a charming and often affecting journey .") == "it's a charming and often affecting journey."
    assert d("it does n't work , and ca n't ( really ) .") == "it doesn't work, and can't (really)."
    assert d("the film 's `` big idea '' is -lrb- sigh -rrb- old") == 'the film\'s "big idea" is (sigh) old'
    assert d("costs $ 5 , or 50 % ... ; why ?") == "costs $5, or 50%...; why?"
    assert d("") == "" and d("n't") == "n't" and d("  well-made   film ") == "well-made film"
    assert d("-- and that 's that !") == "-- and that's that!"  # dashes keep their spaces


@pytest.mark.parametrize("kind", ["gpt2", "bert", "elmo"])
def test_sst2_classifier_runs_on_the_ids_device(kind):
    # the meta device carries no data: a tensor made on the CPU inside forward would raise on mixing
    if kind == "gpt2":
        lm = G.build_model(G.GPT2Config(context=16, n_layers=1, n_heads=2, d_model=16, dropout=0.0), 30)
    elif kind == "bert":
        lm = B.BERT(30, 16, 1, 2, 16, 0.0)
    else:
        lm = E.BiLM(30, 8, 8, 1, 0.0)
    clf = FT.Classifier(kind, lm, 16, pad_id=0, dropout=0.0).to("meta")
    ids = torch.empty(3, 7, dtype=torch.long, device="meta")
    assert clf(ids).shape == (3, 2) and clf(ids).device.type == "meta"


def test_training_sentences_are_the_texts_no_longer_one_contains():
    rows = ["a gentle film", "gentle film", "film", "a gentle", "too long", "long", "a gentle film"]
    assert S.training_sentences(rows) == ["a gentle film", "too long"]


def test_holding_out_sentences_drops_the_phrases_only_they_contain():
    rows = [("a gentle film", 1), ("gentle film", 1), ("film", 1), ("a gentle", 1), ("too long a film", 0),
            ("too long", 0), ("long", 0), ("the films drag", 0), ("films", 0), ("drag", 0), ("a gentle", 1)]
    seen = set()
    for seed in range(8):
        train, held = S.hold_out_sentences(rows, 1, seed)
        (sent, y), = held
        assert (sent, y) in rows and sent in S.training_sentences(s for s, _ in rows)
        kept = [s for s, _ in train]
        assert sent not in kept
        for s, _ in rows:  # a phrase stays exactly when a sentence still in train contains it as whole words
            inside = [t for t in S.training_sentences(s for s, _ in rows) if t != sent and f" {s} " in f" {t} "]
            assert (s in kept) == bool(inside), (sent, s)
        seen.add(sent)
    assert seen == {"a gentle film", "too long a film", "the films drag"}
    train, _ = S.hold_out_sentences(rows, 1, [s for s in range(8) if S.hold_out_sentences(rows, 1, s)[1][0][0]
                                               == "the films drag"][0])
    assert "film" in [s for s, _ in train] and "films" not in [s for s, _ in train]  # "films" is not "film"
    with pytest.raises(ConfigError, match="holdout: 3"):
        S.hold_out_sentences(rows, 3)


@pytest.mark.parametrize("kind", ["gpt2", "bert", "elmo"])
def test_adapting_on_task_text_lowers_each_models_own_loss(tmp_path, kind, bpe, wordpiece):
    # tier 2: a few dozen steps of the pretraining objective on a small text fit it (Peters et al. 2018, 3.4)
    from dlnotes.engine import Run

    torch.manual_seed(0)
    if kind == "gpt2":
        tok, lm = bpe, G.build_model(G.GPT2Config(context=32, n_layers=1, n_heads=2, d_model=32, dropout=0.0), 2000)
    elif kind == "bert":
        tok, lm = wordpiece, B.BERT(2000, 32, 1, 2, 32, 0.0, wordpiece.token_to_id("[PAD]"))
    else:
        tok, lm = wordpiece, E.BiLM(2000, 32, 32, 1, 0.0)
    sentences = TK.builtin_paragraphs()[:40]
    cfg = FT.FinetuneConfig(model=kind, max_len=32, batch_size=16, adapt_epochs=1.0, adapt_lr=1e-2, warmup=2)
    n = len(sentences) if kind == "bert" else sum(len(e.ids) + 1 for e in tok.encode_batch(sentences))
    cfg.adapt_epochs = 60 * cfg.batch_size * (1 if kind == "bert" else cfg.max_len) / n  # about 60 steps
    run = Run(tmp_path, device="cpu", quiet=True)
    out = FT.adapt_lm(kind, lm, tok, sentences, cfg, run)
    run.close()
    assert 50 <= out["adapt_steps"] <= 70
    assert out["adapt_loss_last"] < out["adapt_loss_first"] - 1.5  # nats, from about ln V = 7.6
