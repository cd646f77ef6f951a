"""Raw features -> the encoded model matrix, with validation driven by the schema.

Plain functions shared by the server, the tests and any later batch code. The schema (normally the
copy that travels with the model) decides the columns, their order, ranges and one-hot encoding;
nothing here names an abalone column. Every rejection is a ``FeatureError`` naming the 1-based data
row and the field, so a client can fix its request.

Only malformed input is rejected: a non-number, NaN/inf (or a number float32 cannot hold), a
fraction in an int column, an unknown category, a wrong column count. A value outside the schema's
training range (gt/ge/lt/le) is a monitoring signal, not a client error: it is encoded and
predicted like any other, and ``Encoder.out_of_range`` counts such values per feature afterwards.

Two routes give bit-identical matrices: ``Encoder.encode_rows``/``encode_records`` (pure Python,
exact error messages) and ``Encoder.encode_lines`` (numpy's C text reader, for large CSV bodies),
which only accepts input it can vouch for and otherwise returns None so the caller re-runs the
exact route.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from abalone_model.errors import ModelError
from abalone_model.schema import Column, Schema

F32_MAX = float(np.finfo(np.float32).max)  # the model sees float32: anything larger becomes inf


class FeatureError(ModelError):
    """A request row or field that does not fit the schema (HTTP 400 when served)."""

    exit_code = 3

    def __init__(self, message: str, row: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.row, self.field = message, row, field

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: message plus row/field where they apply."""
        out: dict[str, Any] = {"error": self.message}
        if self.row is not None:
            out["row"] = self.row
        if self.field is not None:
            out["field"] = self.field
        return out


def _where(row: int | None) -> str:
    return f"row {row}: " if row is not None else ""


class Encoder:
    """The schema compiled once into lookup tables for fast per-row and vectorised encoding."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.raw_names: tuple[str, ...] = schema.raw_names
        self.name_set = frozenset(self.raw_names)
        self.width = len(schema.encoded_names)
        self.offsets: list[int] = []  # first encoded column of each raw column
        self.onehot: list[dict[str, int] | None] = []  # category -> encoded column
        pos = 0
        for col in schema.features:
            self.offsets.append(pos)
            self.onehot.append(
                {c: pos + i for i, c in enumerate(col.categories)} if col.is_category else None
            )
            pos += len(col.encoded_names)
        self.expected = ", ".join(self.raw_names)

    # --- header ---------------------------------------------------------------------------------
    def column_order(self, columns: Sequence[str]) -> list[int]:
        """Schema index of each given column name; errors name unknown, repeated or missing ones."""
        index = {n: i for i, n in enumerate(self.raw_names)}
        names = [str(c).strip() for c in columns]
        unknown = [n for n in names if n not in index]
        if unknown:
            raise FeatureError(
                f"header: unknown column {unknown[0]!r}; expected the columns {self.expected}",
                field=unknown[0],
            )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise FeatureError(f"header: column {repeated[0]!r} appears twice", field=repeated[0])
        missing = [n for n in self.raw_names if n not in names]
        if missing:
            raise FeatureError(
                f"header: missing column {missing[0]!r}; expected the columns {self.expected}",
                field=missing[0],
            )
        return [index[n] for n in names]

    # --- one value ------------------------------------------------------------------------------
    def _number(self, col: Column, value: Any, row: int | None, from_text: bool) -> float:
        if from_text:
            text = value.strip()
            try:
                number = float(text)
            except ValueError:
                number = None
            if number is None or "_" in text:
                raise FeatureError(
                    f"{_where(row)}{col.name} is not a number: {value[:40]!r}", row, col.name
                )
        else:
            if type(value) not in (int, float):
                raise FeatureError(
                    f"{_where(row)}{col.name} must be a JSON number, got {value!r:.40}",
                    row,
                    col.name,
                )
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
        problem = _malformed(col, number)
        if problem:
            raise FeatureError(
                f"{_where(row)}{col.name} {problem}, got {value!r:.40}", row, col.name
            )
        return number

    def _category(self, col: Column, table: dict[str, int], value: Any, row: int | None) -> int:
        key = value.strip() if isinstance(value, str) else value
        if not isinstance(key, str) or key not in table:
            raise FeatureError(
                f"{_where(row)}unknown {col.name} {value!r:.40}: "
                f"expected one of {', '.join(col.categories)}",
                row,
                col.name,
            )
        return table[key]

    def _encode_one(
        self, values: Sequence[Any], order: Sequence[int], row: int, from_text: bool
    ) -> list[float]:
        if len(values) != len(order):
            raise FeatureError(
                f"row {row}: expected {len(order)} columns ({self.expected}), got {len(values)}",
                row,
            )
        out = [0.0] * self.width
        features, onehot, offsets = self.schema.features, self.onehot, self.offsets
        for value, i in zip(values, order, strict=True):
            table = onehot[i]
            if table is None:
                out[offsets[i]] = self._number(features[i], value, row, from_text)
            else:
                out[self._category(features[i], table, value, row)] = 1.0
        return out

    # --- public routes --------------------------------------------------------------------------
    def encode_rows(
        self, rows: Sequence[Sequence[str]], columns: Sequence[str] | None = None
    ) -> np.ndarray:
        """Text rows (CSV cells) in schema order, or in the order ``columns`` names."""
        order = self.column_order(columns) if columns is not None else range(len(self.raw_names))
        order = list(order)
        matrix = [self._encode_one(r, order, n, True) for n, r in enumerate(rows, 1)]
        return self._finish(matrix)

    def encode_records(self, records: Sequence[Any]) -> np.ndarray:
        """JSON instances: objects keyed by raw column name, or lists in schema order."""
        natural = list(range(len(self.raw_names)))
        matrix = []
        for n, rec in enumerate(records, 1):
            if isinstance(rec, dict):
                order = self._record_order(rec, n)
                matrix.append(self._encode_one(list(rec.values()), order, n, False))
            elif isinstance(rec, list):
                matrix.append(self._encode_one(rec, natural, n, False))
            else:
                raise FeatureError(
                    f"row {n}: an instance must be an object or a list, got {type(rec).__name__}",
                    n,
                )
        return self._finish(matrix)

    def _record_order(self, rec: dict, row: int) -> list[int]:
        try:
            return self.column_order(list(rec))
        except FeatureError as exc:
            message = exc.message.replace("header: ", f"row {row}: ").replace("column", "field")
            raise FeatureError(message, row, exc.field) from None

    def _finish(self, matrix: list[list[float]]) -> np.ndarray:
        if not matrix:
            raise FeatureError("no data rows: send at least one row of " + self.expected)
        return np.array(matrix, dtype=np.float32)

    def encode_lines(self, lines: Sequence[bytes], order: Sequence[int]) -> np.ndarray | None:
        """Vectorised route for many CSV lines (LF-split, printable ASCII, no quotes/underscores).

        Returns the encoded matrix, or None when anything is off (malformed value, blank line, odd
        spacing around a category); the caller then runs ``encode_rows`` for the exact error, so
        both routes accept the same input with the same values and reject it with the same message.
        """
        try:
            table = np.loadtxt(
                lines,
                delimiter=",",
                comments=None,
                quotechar=None,
                dtype=self._line_dtype(tuple(order)),
                encoding="latin1",
                ndmin=1,
            )
        except (ValueError, TypeError, OverflowError):
            return None
        if len(table) != len(lines) or not len(table):
            return None  # a skipped blank line: let the exact route number the rows
        out = np.zeros((len(table), self.width), dtype=np.float32)
        for i in order:
            values, onehot = table[f"c{i}"], self.onehot[i]
            if onehot is None:
                if not _all_valid(self.schema.features[i], values):
                    return None
                out[:, self.offsets[i]] = values
            else:
                seen = np.zeros(len(values), dtype=bool)
                for category, pos in onehot.items():
                    hit = values == category.encode()
                    out[:, pos] = hit
                    seen |= hit
                if not seen.all():
                    return None
        return out

    def out_of_range(self, matrix: np.ndarray) -> dict[str, int]:
        """Values outside the schema's training ranges, per numeric feature (those with any).

        Judged on the encoded float32 matrix, bounds cast to float32 too: the values the model
        sees, and one answer whichever route (exact, vectorised, JSON) built the matrix.
        """
        counts = {}
        for col, pos in zip(self.schema.features, self.offsets, strict=True):
            if col.is_category:
                continue
            outside = len(matrix) - int(np.count_nonzero(_inside(col, matrix[:, pos])))
            if outside:
                counts[col.name] = outside
        return counts

    @lru_cache(maxsize=16)  # noqa: B019 - one encoder per schema, few column orders
    def _line_dtype(self, order: tuple[int, ...]) -> np.dtype:
        """Structured row type: a category field is one byte longer than its longest category,
        so a longer (truncated) cell can never pass for a category."""
        fields = []
        for i in order:
            col = self.schema.features[i]
            if col.is_category:
                size = max(len(c.encode()) for c in col.categories) + 1
                fields.append((f"c{i}", f"S{size}"))
            else:
                fields.append((f"c{i}", "f8"))
        return np.dtype(fields)


def _malformed(col: Column, number: float) -> str | None:
    """Why a numeric value cannot be encoded at all, or None (range is not checked here)."""
    if not math.isfinite(number):
        return "must be a finite number"
    if abs(number) > F32_MAX:
        return f"must be at most {F32_MAX:.4g} in size (float32)"
    if col.type == "int" and number != int(number):
        return "must be a whole number"
    return None


def _all_valid(col: Column, values: np.ndarray) -> bool:
    """The vectorised twin of ``_malformed``: True when every value can be encoded."""
    ok = np.abs(values) <= F32_MAX  # False for NaN and inf too
    if col.type == "int":
        ok &= np.floor(values) == values
    return bool(ok.all())


def _inside(col: Column, values: np.ndarray) -> np.ndarray:
    """Per value: within the column's training range (the bounds as float32, like the values)."""
    ok = np.ones(len(values), dtype=bool)
    for bound, test in (
        (col.gt, np.greater),
        (col.ge, np.greater_equal),
        (col.lt, np.less),
        (col.le, np.less_equal),
    ):
        if bound is not None:
            ok &= test(values, np.float32(bound))
    return ok


@lru_cache(maxsize=8)
def encoder_for(schema: Schema) -> Encoder:
    """The compiled encoder for a schema (cached: schemas are immutable)."""
    return Encoder(schema)


def encode_rows(
    schema: Schema, rows: Sequence[Sequence[str]], columns: Sequence[str] | None = None
) -> np.ndarray:
    """Text rows in schema raw order (or in ``columns`` order) -> float32 encoded matrix."""
    return encoder_for(schema).encode_rows(rows, columns)


def encode_records(schema: Schema, records: Sequence[Any]) -> np.ndarray:
    """JSON-style records (dicts by name, or lists in raw order) -> float32 encoded matrix."""
    return encoder_for(schema).encode_records(records)
