"""Lecture 13: self-supervised and multimodal learning (pretext tasks, SimCLR, CLIP)."""
