"""``dlnotes classify --run CLIP_RUN image.png --labels "a shirt,a shoe,..."``: zero-shot
classification of a user's image with a trained CLIP run (Lecture 13).

The image is read as grayscale, made light-on-dark like the training data (inverted when its
border is brighter than its centre), its ink bounding box is scaled into a 20x20 box and centred in
28x28 (the MNIST convention), and it is compared with the embedding of each label's text; the
softmax of the scaled cosine similarities is printed, most likely label first.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def preprocess(path: str | Path, size: int = 28) -> torch.Tensor:
    """An image file -> ``(size, size)`` uint8, ink bright on a dark background, centred."""
    from PIL import Image

    img = torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0)  # (H, W)
    border = torch.cat([img[0], img[-1], img[:, 0], img[:, -1]]).mean()
    if border > 0.5:  # dark drawing on a light page: invert
        img = 1 - img
    img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-6)
    ink = (img > 0.2).nonzero()
    if len(ink):
        (r0, c0), (r1, c1) = ink.min(0).values, ink.max(0).values
        img = img[r0: r1 + 1, c0: c1 + 1]
    h, w = img.shape
    scale = 20 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = F.interpolate(img[None, None], size=(nh, nw), mode="bilinear", align_corners=False)[0, 0]
    out = torch.zeros(size, size)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top: top + nh, left: left + nw] = small
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def classify(run_dir: str | Path, image: str | Path, labels: list[str]) -> list[tuple[str, float]]:
    """``[(label, probability), ...]`` sorted by probability."""
    from ..nn.backbones import to_float
    from .clip import load_clip

    model, tok, _ = load_clip(run_dir)
    x = to_float(preprocess(image))[None]  # (1, 1, 28, 28)
    i = model.encode_image(x)  # (1, E)
    t = model.encode_text(tok.encode(labels))  # (L, E)
    p = torch.softmax(model.logit_scale.exp() * i @ t.T, dim=-1)[0]
    return sorted(zip(labels, p.tolist()), key=lambda kv: -kv[1])


def cmd_classify(args) -> int:
    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    if len(labels) < 2:
        print("dlnotes: error: --labels needs at least two comma-separated labels", file=sys.stderr)
        return 2
    for what, p in (("run directory", Path(args.run) / "config.json"), ("image", Path(args.image))):
        if not p.exists():
            print(f"dlnotes: error: {what} not found: {p}", file=sys.stderr)
            return 3
    try:
        ranked = classify(args.run, args.image, labels)
    except FileNotFoundError as e:
        print(f"dlnotes: error: {e}", file=sys.stderr)
        return 3
    for label, prob in ranked:
        print(f"{prob:7.2%}  {label}")
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("classify", help="zero-shot classify an image with a trained CLIP run")
    p.add_argument("--run", required=True, help="a run directory of clip-mnist-fashion")
    p.add_argument("image", help="an image file (PNG, JPEG, ...)")
    p.add_argument("--labels", required=True, help='comma-separated label texts, e.g. "a shirt,a shoe,a bag"')
    p.set_defaults(fn=cmd_classify)
