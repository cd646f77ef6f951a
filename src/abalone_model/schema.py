"""The model's feature schema: raw columns, types, ranges and encoding.

One source of truth, stored as data in ``schema.json`` so that the Glue script (which may import
only what Glue provides) reads the very same file, shipped to Glue with ``--extra-files``.
Training copies it into the model artefact, so the encoding travels with the model.
This module is standard-library only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_FILE = Path(__file__).with_name("schema.json")
DATA_FILE = Path(__file__).with_name("data") / "abalone.csv"


@dataclass(frozen=True)
class Column:
    """One raw column: ``float``, ``int`` or ``category``, with optional bounds gt/ge/lt/le."""

    name: str
    type: str
    categories: tuple[str, ...] = ()
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    @property
    def is_category(self) -> bool:
        return self.type == "category"

    @property
    def encoded_names(self) -> tuple[str, ...]:
        """Model-matrix columns for this raw column (one-hot for categories)."""
        if self.is_category:
            return tuple(f"{self.name}_{c}" for c in self.categories)
        return (self.name,)

    def bounds_text(self) -> str:
        parts = []
        for op, key in ((">", "gt"), (">=", "ge"), ("<", "lt"), ("<=", "le")):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{op} {value:g}")
        return " and ".join(parts) or "any finite number"

    def problem(self, value: float) -> str | None:
        """Why ``value`` is not acceptable for this numeric column, or None when it is."""
        if not math.isfinite(value):
            return "must be a finite number"
        if self.type == "int" and value != int(value):
            return "must be a whole number"
        if (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        ):
            return f"must be {self.bounds_text()}"
        return None


@dataclass(frozen=True)
class Schema:
    """Raw features in request/CSV order, the target, and the encoded model-matrix order."""

    name: str
    features: tuple[Column, ...]
    target: Column
    description: str = field(default="", compare=False)

    @property
    def raw_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.features)

    @property
    def encoded_names(self) -> tuple[str, ...]:
        return tuple(n for c in self.features for n in c.encoded_names)

    def column(self, name: str) -> Column:
        for col in (*self.features, self.target):
            if col.name == name:
                return col
        raise KeyError(name)

    @classmethod
    def from_dict(cls, raw: dict) -> Schema:
        def col(d: dict) -> Column:
            return Column(
                name=d["name"],
                type=d["type"],
                categories=tuple(d.get("categories", ())),
                gt=d.get("gt"),
                ge=d.get("ge"),
                lt=d.get("lt"),
                le=d.get("le"),
            )

        return cls(
            name=raw["name"],
            features=tuple(col(d) for d in raw["features"]),
            target=col(raw["target"]),
            description=raw.get("description", ""),
        )

    @classmethod
    def load(cls, path: str | Path = SCHEMA_FILE) -> Schema:
        """Read a schema file (the packaged one by default, or the copy inside a model)."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
