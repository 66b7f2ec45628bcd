"""Dataset registry: which files each dataset has, their sha256, sizes and canonical URLs.

The facts live in ``registry.json`` (built from the data root's manifest). The data root is
``$DLNOTES_DATA`` (default ``~/.cache/dlnotes``); parsed caches go to ``$DLNOTES_CACHE``
(default ``~/.cache/dlnotes/cache``), since the data root may be read-only.

:func:`path` is how every loader reaches a file: a missing file or a checksum mismatch raises
:class:`DataError` naming the file, the expected sha256 and the command that fetches it.
Checksums are verified once per (path, size, mtime) and remembered in the cache folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from functools import lru_cache
from pathlib import Path


class DataError(RuntimeError):
    """A dataset file is missing or corrupt; the message says which and how to get it."""


@lru_cache(maxsize=1)
def registry() -> dict:
    return json.loads((Path(__file__).with_name("registry.json")).read_text())


def data_root() -> Path:
    return Path(os.environ.get("DLNOTES_DATA") or Path.home() / ".cache" / "dlnotes").expanduser()


def cache_dir() -> Path:
    path = Path(os.environ.get("DLNOTES_CACHE") or Path.home() / ".cache" / "dlnotes" / "cache").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _verified_db() -> Path:
    return cache_dir() / "verified.json"


def _load_verified() -> dict:
    try:
        return json.loads(_verified_db().read_text())
    except (OSError, ValueError):
        return {}


def _remember(key: str) -> None:
    db = _load_verified()
    db[key] = True
    tmp = _verified_db().with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(db))
    os.replace(tmp, _verified_db())


def dataset(name: str) -> dict:
    reg = registry()
    if name not in reg:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]


def available(name: str) -> bool:
    """True when every file of the dataset is present (not checksummed: see :func:`verify`)."""
    root = data_root() / name
    return all((root / f).exists() for f in dataset(name)["files"])


def path(name: str, file: str, check: bool = True) -> Path:
    """Path of ``file`` of dataset ``name``, verified against its sha256 on first use."""
    info = dataset(name)["files"].get(file)
    if info is None:
        raise DataError(f"dataset {name!r} has no file {file!r}; files: {', '.join(dataset(name)['files'])}")
    p = data_root() / name / file
    if not p.exists():
        raise DataError(f"missing data file {p} (expected sha256 {info['sha256']}).\n"
                        f"Get it with: dlnotes data fetch {name}   (or point DLNOTES_DATA at a folder that has it)")
    if check:
        st = p.stat()
        key = f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}"
        if key not in _load_verified():
            if st.st_size != info["bytes"] or sha256_file(p) != info["sha256"]:
                raise DataError(f"corrupt data file {p}: sha256 does not match the expected {info['sha256']} "
                                f"({st.st_size} bytes, expected {info['bytes']}).\n"
                                f"Delete it and run: dlnotes data fetch {name}")
            _remember(key)
    return p


def verify(name: str) -> dict[str, str]:
    """Check every file of a dataset: ``{file: 'ok' | 'missing' | 'corrupt'}``."""
    out = {}
    for file, info in dataset(name)["files"].items():
        p = data_root() / name / file
        if not p.exists():
            out[file] = "missing"
        elif p.stat().st_size != info["bytes"] or sha256_file(p) != info["sha256"]:
            out[file] = "corrupt"
        else:
            out[file] = "ok"
    return out


def fetch(name: str, progress: bool = True) -> list[Path]:
    """Download the dataset's missing files from their canonical URLs, checking sha256.

    Only called when a user asks (``dlnotes data fetch NAME``); tests never download.
    Each file is written to a temporary name and renamed once its checksum matches.
    """
    from tqdm import tqdm

    got = []
    for file, info in dataset(name)["files"].items():
        dest = data_root() / name / file
        if dest.exists() and sha256_file(dest) == info["sha256"]:
            continue
        if not info.get("url"):
            raise DataError(f"{name}/{file} has no direct download URL; see its sources: "
                            + "; ".join(dataset(name)["source"]) + f"\nPlace the file at {dest}.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        h = hashlib.sha256()
        with urllib.request.urlopen(info["url"], timeout=60) as resp, open(tmp, "wb") as f:
            total = int(resp.headers.get("Content-Length") or info["bytes"])
            with tqdm(total=total, unit="B", unit_scale=True, desc=file, disable=not progress) as bar:
                while block := resp.read(1 << 16):
                    f.write(block)
                    h.update(block)
                    bar.update(len(block))
        if h.hexdigest() != info["sha256"]:
            tmp.unlink(missing_ok=True)
            raise DataError(f"downloaded {info['url']} but its sha256 {h.hexdigest()} != expected {info['sha256']}")
        os.replace(tmp, dest)
        got.append(dest)
    return got
