"""The Omniglot few-shot protocol and N-way K-shot episodes (Lecture 13, "Metric embeddings").

Protocol (Vinyals et al. 2016, used by Snell et al. 2017 and Finn et al. 2017):

* all 1623 characters, background alphabets then evaluation alphabets, each in sorted
  ``alphabet/character`` order; the first 1200 are for training and the remaining 423 for
  testing (this is the split whose test list begins at ``Gurmukhi/character42``);
* every character rotated by 0, 90, 180 and 270 degrees is a class of its own, so training has
  4800 classes and testing 1692; 20 drawings per class, 28x28 grayscale.

An *episode* (task) ``T`` draws ``N`` classes, then for each class ``K`` support and ``Q`` query
drawings *without replacement*, so a query never appears among the supports. Test accuracy is
the mean over >= 1000 episodes with its 95% confidence interval (:mod:`dlnotes.eval.fewshot`).

Episodes are a pure function of ``(seed, step)``, so training resumes without loader state.
``evaluate_embeddings`` embeds every test image once and runs the episodes on the embeddings,
which is exact for methods whose scores depend on per-image embeddings (batch norm in eval mode).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..eval.fewshot import mean_ci95
from ..nn.backbones import to_float

N_TRAIN_CHARS = 1200


@dataclass
class FewShotData:
    """Images ``(n_classes, n_drawings, H, W)`` uint8 for one split; class ``c`` is a character
    (``chars[c]``) at a rotation (``rotations[c]`` quarter turns)."""
    images: torch.Tensor
    chars: torch.Tensor  # (n_classes,) index of the source character (across both splits)
    rotations: torch.Tensor  # (n_classes,) quarter turns

    @property
    def n_classes(self) -> int:
        return self.images.shape[0]

    @property
    def n_drawings(self) -> int:
        return self.images.shape[1]

    def subset(self, classes) -> "FewShotData":
        idx = torch.as_tensor(classes, dtype=torch.long)
        return FewShotData(self.images[idx], self.chars[idx], self.rotations[idx])


def with_rotations(images: torch.Tensor, char_ids: torch.Tensor, rotations=(0, 1, 2, 3)) -> FewShotData:
    """Rotated copies as new classes: ``(C, D, H, W) -> (len(rotations) * C, D, H, W)``."""
    imgs = torch.cat([torch.rot90(images, r, dims=(2, 3)) for r in rotations])
    chars = char_ids.repeat(len(rotations))
    rots = torch.tensor(rotations).repeat_interleave(images.shape[0])
    return FewShotData(imgs.contiguous(), chars, rots)


def omniglot_splits(size: int = 28, rotations: bool = True, test_rotations: bool = True,
                    n_train_chars: int = N_TRAIN_CHARS) -> tuple[FewShotData, FewShotData, list]:
    """``(train, test, names)`` under the Vinyals protocol; character-disjoint by construction."""
    from ..data.images import omniglot

    bg, bg_names = omniglot("background", size)
    ev, ev_names = omniglot("evaluation", size)
    images = torch.cat([bg, ev])  # (1623, 20, H, W)
    names = list(bg_names) + list(ev_names)
    ids = torch.arange(images.shape[0])
    tr, te = slice(0, n_train_chars), slice(n_train_chars, None)
    rot_tr = (0, 1, 2, 3) if rotations else (0,)
    rot_te = (0, 1, 2, 3) if test_rotations else (0,)
    return with_rotations(images[tr], ids[tr], rot_tr), with_rotations(images[te], ids[te], rot_te), names


class EpisodeSampler:
    """N-way K-shot Q-query episodes over ``n_classes`` classes of ``n_drawings`` each.

    ``episode(step)`` returns ``(classes (N,), support (N, K), query (N, Q))``: class ids and
    drawing indices; support and query drawings of a class are disjoint.
    """

    def __init__(self, n_classes: int, n_drawings: int, n_way: int, k_shot: int, n_query: int, seed: int = 0):
        if n_way > n_classes:
            raise ValueError(f"{n_way}-way episodes need at least {n_way} classes, have {n_classes}")
        if k_shot + n_query > n_drawings:
            raise ValueError(f"{k_shot} shots + {n_query} queries exceed {n_drawings} drawings per class")
        self.n_classes, self.n_drawings = n_classes, n_drawings
        self.n_way, self.k_shot, self.n_query, self.seed = n_way, k_shot, n_query, seed

    def episode(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        classes = torch.randperm(self.n_classes, generator=g)[: self.n_way]  # (N,)
        # one permutation of the drawings per class: first K are supports, next Q are queries
        keys = torch.rand(self.n_way, self.n_drawings, generator=g)
        order = keys.argsort(dim=1)  # (N, D), each row a permutation
        support = order[:, : self.k_shot]  # (N, K)
        query = order[:, self.k_shot: self.k_shot + self.n_query]  # (N, Q)
        return classes, support, query


def episode_images(data: FewShotData, classes, support, query, device="cpu"):
    """Float images ``(N, K, 1, H, W)`` and ``(N, Q, 1, H, W)`` for one episode."""
    c = classes[:, None]
    xs = to_float(data.images[c, support]).to(device)
    xq = to_float(data.images[c, query]).to(device)
    return xs, xq


def query_labels(n_way: int, n_query: int, device="cpu") -> torch.Tensor:
    """Labels of the flattened queries ``(N * Q,)``: class ``n`` for rows ``n*Q .. n*Q+Q-1``."""
    return torch.arange(n_way, device=device).repeat_interleave(n_query)


@torch.no_grad()
def embed_all(embed, data: FewShotData, batch: int = 1024, device="cpu") -> torch.Tensor:
    """``embed`` applied to every image: ``(n_classes, n_drawings, *feature_shape)``."""
    flat = data.images.reshape(-1, *data.images.shape[2:])
    outs = [embed(to_float(flat[i: i + batch]).to(device)).float().cpu() for i in range(0, len(flat), batch)]
    z = torch.cat(outs)
    return z.reshape(data.n_classes, data.n_drawings, *z.shape[1:])


@torch.no_grad()
def evaluate_embeddings(scores, z: torch.Tensor, n_way: int, k_shot: int, n_query: int = 15,
                        episodes: int = 1000, seed: int = 12345) -> dict[str, float]:
    """Accuracy over ``episodes`` test episodes on precomputed embeddings ``z (C, D, ...)``.

    ``scores(zs (N, K, ...), zq (N*Q, ...)) -> (N*Q, N)``: higher means more likely.
    Returns ``{"accuracy", "ci95", "episodes"}``.
    """
    sampler = EpisodeSampler(z.shape[0], z.shape[1], n_way, k_shot, n_query, seed)
    y = query_labels(n_way, n_query).to(z.device)
    accs = torch.empty(episodes, dtype=torch.float64)
    for e in range(episodes):
        classes, s, q = sampler.episode(e)
        zs = z[classes[:, None], s]  # (N, K, ...)
        zq = z[classes[:, None], q].flatten(0, 1)  # (N*Q, ...)
        accs[e] = (scores(zs, zq).argmax(-1) == y).double().mean()
    mean, half = mean_ci95(accs)
    return {"accuracy": mean, "ci95": half, "episodes": episodes}


SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def setting_key(n_way: int, k_shot: int) -> str:
    return f"{n_way}way{k_shot}shot"
