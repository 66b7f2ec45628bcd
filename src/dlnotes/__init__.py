"""dlnotes: runnable, tested implementations of a deep-learning course's lectures 6 to 13."""
__version__ = "0.1.0"
