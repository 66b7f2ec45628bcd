"""Lectures 9-11: reinforcement learning (policy gradients, search, Q-learning, DQN, actor-critic, AlphaZero)."""
