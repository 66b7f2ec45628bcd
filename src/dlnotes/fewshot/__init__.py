"""Lecture 13: few-shot learning (episodes, MAML, metric learning)."""
