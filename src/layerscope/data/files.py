"""Point clouds from files: .npy, .npz, .csv and .parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SUFFIXES = (".npy", ".npz", ".csv", ".parquet")


def load_points(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read a point cloud (one row per point) from a file.

    Parameters
    ----------
    path : str or Path
        ``.npy`` (no pickles), ``.npz`` (one array, or the one named by ``key``),
        ``.csv`` (numbers only; a header row is detected and skipped) or ``.parquet``
        (every column must be numeric).
    key : str, optional
        Array name inside an ``.npz`` file with several arrays.

    Returns
    -------
    numpy.ndarray
        As stored; validation is the estimators' job.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            if key is None:
                if len(names) != 1:
                    raise ValueError(f"{path} holds arrays {names}; choose one with key=... (--key)")
                key = names[0]
            if key not in names:
                raise ValueError(f"{path} has no array {key!r}; it holds {names}")
            return archive[key]
    if suffix == ".csv":
        frame = pd.read_csv(path, header=None)
        if frame.shape[0] > 0 and not _numeric_row(frame.iloc[0]):
            frame = pd.read_csv(path)  # the first row was a header
        return _numeric(frame, path)
    if suffix == ".parquet":
        return _numeric(pd.read_parquet(path), path)
    raise ValueError(f"cannot read {path}: unknown file type {suffix!r} (use one of {', '.join(SUFFIXES)})")


def _numeric_row(row: pd.Series) -> bool:
    return bool(pd.to_numeric(row, errors="coerce").notna().all())


def _numeric(frame: pd.DataFrame, path: Path) -> np.ndarray:
    bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ValueError(f"{path}: columns {bad[:5]} are not numeric; a point cloud must hold numbers only")
    return frame.to_numpy(dtype=np.float64)
