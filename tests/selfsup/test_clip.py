"""CLIP: symmetric loss, tokenizer, text tower invariances, captions and unseen prompts."""
import itertools
import math

import torch
import torch.nn.functional as F

from dlnotes.selfsup.clip import (CLIP, DIGIT_TEMPLATES, DIGIT_WORDS, FASHION_NAMES, FASHION_TEMPLATES,
                                  CaptionTokenizer, TextEncoder, class_prompts, clip_loss, image_attributes,
                                  retrieval_recall, training_vocabulary)


def test_clip_loss_is_symmetric_and_matches_a_hand_written_version():
    torch.manual_seed(0)
    img, txt, scale = torch.randn(5, 8), torch.randn(5, 8), torch.tensor(math.log(10.0))
    loss = clip_loss(img, txt, scale)
    assert torch.allclose(loss, clip_loss(txt, img, scale))  # swapping the towers changes nothing
    i, t = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    total = 0.0
    for k in range(5):
        row = [10 * (i[k] @ t[j]).item() for j in range(5)]  # image k against all captions
        col = [10 * (i[j] @ t[k]).item() for j in range(5)]  # caption k against all images
        total += -row[k] + math.log(sum(math.exp(r) for r in row))
        total += -col[k] + math.log(sum(math.exp(c) for c in col))
    assert abs(loss.item() - total / 10) < 1e-5
    # a permutation of the pairs (same pairing) leaves the loss unchanged; breaking the pairing raises it
    p = torch.randperm(5)
    assert torch.allclose(loss, clip_loss(img[p], txt[p], scale), atol=1e-6)
    aligned = clip_loss(img, img, scale)
    assert aligned < clip_loss(img, img.roll(1, 0), scale)


def test_temperature_is_learnable_and_capped():
    m = CLIP(vocab_size=20, embed_dim=8, width=8, d_model=16, n_layers=1, n_heads=2)
    with torch.no_grad():
        m.logit_scale.fill_(10.0)
    loss = m.loss(torch.rand(4, 1, 28, 28), torch.tensor([[1, 5, 2], [1, 6, 2], [1, 7, 2], [1, 8, 2]]))
    loss.backward()
    assert abs(m.logit_scale.item() - math.log(100.0)) < 1e-6 and m.logit_scale.grad is not None


def test_tokenizer_round_trip_and_unknown_words():
    tok = CaptionTokenizer(["a", "photo", "of", "shoe", "7"])
    ids = tok.encode(["A photo of a shoe!", "zebra 7"])
    assert ids[0].tolist() == [1] + [tok.stoi[w] for w in ["a", "photo", "of", "a", "shoe"]] + [2]
    assert ids[1].tolist() == [1, tok.UNK, tok.stoi["7"], 2, 0, 0, 0]
    tok2 = CaptionTokenizer.from_json(tok.to_json())
    assert torch.equal(tok2.encode(["a shoe"]), tok.encode(["a shoe"]))


def test_text_encoder_ignores_padding_and_reads_the_eos_feature():
    torch.manual_seed(0)
    enc = TextEncoder(vocab_size=30, embed_dim=8, d_model=16, n_layers=2, n_heads=2).eval()
    short = torch.tensor([[1, 5, 6, 2]])
    padded = torch.tensor([[1, 5, 6, 2, 0, 0, 0]])
    assert torch.allclose(enc(short), enc(padded), atol=1e-5)
    # causal: the eos feature depends on every word, a token's feature only on earlier ones
    other = torch.tensor([[1, 5, 7, 2]])
    assert not torch.allclose(enc(short), enc(other))
    h1, h2 = enc.tokens(short), enc.tokens(other)
    assert torch.allclose(h1[:, :2], h2[:, :2], atol=1e-5)


def test_zero_shot_prompts_are_never_training_captions():
    attrs = ["thin", "regular", "thick", "slanted right", "slanted left", "upright", "short", "medium", "tall",
             "small", "large", "dark", "grey", "bright"]
    seen = set()
    for t, k, a in itertools.product(DIGIT_TEMPLATES, range(10), attrs):
        seen.add(t.format(w=DIGIT_WORDS[k], n=k, a=a))
    for t, (names, descs), a in itertools.product(FASHION_TEMPLATES, FASHION_NAMES, attrs):
        for c, d in itertools.product(names, descs):
            seen.add(t.format(c=c, d=d, a=a))
    for domain in ("mnist", "fashion_mnist"):
        prompts = class_prompts(domain)
        assert len(prompts) == 10
        assert not seen.intersection(p for group in prompts for p in group)
    vocab = set(training_vocabulary())
    assert {"seven", "7", "sneaker", "thick", "slanted"} <= vocab


def test_attributes_measure_slant_thickness_and_size():
    img = torch.zeros(6, 28, 28, dtype=torch.uint8)
    for r in range(6, 22):  # a stroke leaning right: top is further right
        img[0, r, 14 + (22 - r) // 3] = 255
        img[1, r, 14 - (22 - r) // 3] = 255
        img[2, r, 14] = 255
    img[3, 6:22, 12:17] = 255  # thick
    img[4, 10:18, 14] = 255  # short
    img[5, 4:24, 13:15] = 255
    a = image_attributes(img, torch.zeros(6, dtype=torch.long))
    assert a[0]["slant"] == "slanted right" and a[1]["slant"] == "slanted left" and a[2]["slant"] == "upright"
    assert a[3]["stroke"] == "thick" and a[4]["height"] == "short"


def test_retrieval_recall_is_perfect_for_an_aligned_model():
    class Fake:
        def encode_image(self, x):
            return F.normalize(x.flatten(1)[:, :4], dim=-1)

        def encode_text(self, ids):
            return F.normalize(F.one_hot(ids[:, 1] - 4, 4).float(), dim=-1)

    tok = CaptionTokenizer(["ca", "cb", "cc", "cd"])
    imgs = torch.zeros(4, 28, 28, dtype=torch.uint8)
    for k in range(4):
        imgs[k, 0, k] = 255
    caps = ["ca", "cb", "cc", "cd"]
    r = retrieval_recall(Fake(), tok, imgs, caps, ks=(1,))
    assert r["i2t_recall@1"] == 1.0 and r["t2i_recall@1"] == 1.0
    r = retrieval_recall(Fake(), tok, imgs, caps[::-1], ks=(1,))
    assert r["i2t_recall@1"] == 0.0
