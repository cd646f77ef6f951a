"""Reading raw batches (CSV rows as clients send them) and prediction files.

Shared by ``monitor`` and ``explain``: both take the same batch layout (a file, or a directory of
part files as Spark or a batch transform writes them), so both accept and reject the same input.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from abalone_model.errors import InputDataError
from abalone_model.features import FeatureError, encoder_for
from abalone_model.schema import Schema


def data_files(path: Path, what: str) -> list[Path]:
    """A file, or a directory's files (names starting with ``_`` or ``.`` skipped, like Spark's)."""
    if path.is_file():
        return [path]
    found = sorted(p for p in path.glob("[!_.]*") if p.is_file()) if path.is_dir() else []
    if not found:
        raise InputDataError(f"{what} {path} not found or empty: pass a file or a directory")
    return found


def read_batch(path: Path, schema: Schema) -> tuple[list[list[str]], list[str]]:
    """(rows of text cells in the schema's raw order, ignored columns) of a CSV file or dir.

    A header is optional (any column order; the target column is allowed and ignored); without
    one the columns must be the raw features in schema order. Blank lines are skipped.
    """
    rows: list[list[str]] = []
    ignored: set[str] = set()
    for file in data_files(path, "batch"):
        try:
            with file.open(newline="", encoding="utf-8-sig") as fh:
                lines = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputDataError(f"cannot read batch file {file}: {exc}; pass UTF-8 CSV") from exc
        part, dropped = in_schema_order(file, lines, schema)
        rows += part
        ignored.update(dropped)
    if not rows:
        raise InputDataError(
            f"batch {path} has no data rows: pass CSV rows of {', '.join(schema.raw_names)}"
        )
    return rows, sorted(ignored)


def in_schema_order(
    file: Path | str, lines: list[list[str]], schema: Schema
) -> tuple[list[list[str]], list[str]]:
    rows = [r for r in lines if r]
    if not rows:
        return [], []
    width, names, target = len(rows[0]), schema.raw_names, schema.target.name
    line = next((i for i, r in enumerate(lines, 1) if r and len(r) != width), None)
    if line is not None:
        raise InputDataError(
            f"batch file {file} line {line}: {len(lines[line - 1])} fields where the first row "
            f"has {width}; every row needs the same columns"
        )
    header = [c.strip() for c in rows[0]]
    if not any(c in (*names, target) for c in header):  # no header: schema order
        if width != len(names):
            raise InputDataError(
                f"batch file {file}: {width} columns and no header; expected {len(names)} "
                f"({', '.join(names)}) or a header naming them"
            )
        return rows, []
    keep = [i for i, c in enumerate(header) if c != target]
    try:
        order = encoder_for(schema).column_order([header[i] for i in keep])
    except FeatureError as exc:
        raise InputDataError(f"batch file {file}: {exc.message}") from None
    where = dict(zip(order, keep, strict=True))
    positions = [where[j] for j in range(len(names))]
    dropped = [target] if len(keep) < width else []
    if positions == list(range(width)):
        return rows[1:], dropped
    return [[r[p] for p in positions] for r in rows[1:]], dropped


def read_numbers(path: Path, what: str) -> np.ndarray:
    """Predictions: numbers separated by newlines or commas, from a file or a directory."""
    text = " ".join(f.read_text(encoding="utf-8") for f in data_files(path, what))
    try:
        values = np.array([t for t in re.split(r"[\s,]+", text) if t], dtype=np.float64)
    except ValueError as exc:
        raise InputDataError(f"{what} {path}: {exc}; expected one number per line") from None
    if not len(values) or not np.isfinite(values).all():
        raise InputDataError(f"{what} {path}: needs at least one value, all finite")
    return values
