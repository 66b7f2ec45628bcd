"""Datasets (registry, checksums, loaders), tokenisation helpers and step-indexed samplers."""
from .registry import DataError, available, cache_dir, data_root, fetch, path, verify

__all__ = ["DataError", "available", "cache_dir", "data_root", "fetch", "path", "verify"]
