"""Request bodies -> encoded matrices, predictions -> response bodies; no HTTP server code.

Everything here is a pure function of bytes and header strings, so it is tested directly (property
tests) and the ASGI app stays a thin shell. A client's mistake is always a ``ClientError`` (HTTP
415/406) or a ``FeatureError`` (HTTP 400), never any other exception.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

import numpy as np

from abalone_model.features import Encoder, FeatureError

CSV, JSON = "text/csv", "application/json"
FAMILIES = (CSV, JSON)
VECTOR_MIN_BYTES = 2048  # above this a CSV body goes through numpy's C reader first
# Bytes the vectorised route vouches for: printable ASCII minus quote and underscore, plus LF.
_VECTOR_SAFE = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"_", b"") + b"\n"


class ClientError(Exception):
    """A request the server refuses as a whole (bad media type), with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message}


# --- media types ----------------------------------------------------------------------------------
def _media(value: str) -> tuple[str, dict[str, str]]:
    kind, *params = value.split(";")
    parsed = {}
    for param in params:
        key, _, val = param.partition("=")
        parsed[key.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), parsed


def request_family(content_type: str | None) -> str:
    """``text/csv`` or ``application/json`` from a Content-Type header (parameters ignored)."""
    kind = _media(content_type or "")[0]
    if kind in FAMILIES:
        return kind
    raise ClientError(
        415,
        f"unsupported Content-Type {content_type or '(none)'!r:.60}: send text/csv or "
        "application/json",
    )


def response_family(accept: str | None, family: str) -> str:
    """The answer's media type from Accept (q-values honoured); none -> the request's family."""
    if not accept or not accept.strip():
        return family
    best, best_q = None, 0.0
    for item in accept.split(","):
        kind, params = _media(item)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        match = _match(kind, family)
        if match and q > best_q:
            best, best_q = match, q
    if best is None:
        raise ClientError(
            406, f"unsupported Accept {accept!r:.60}: accept text/csv or application/json"
        )
    return best


def _match(kind: str, family: str) -> str | None:
    if kind in FAMILIES:
        return kind
    if kind in ("*/*", "*", ""):
        return family
    if kind.endswith("/*"):  # text/* or application/*: the request's family first
        options = [f for f in (family, *FAMILIES) if f.startswith(kind[:-1])]
        return options[0] if options else None
    return None


# --- CSV ------------------------------------------------------------------------------------------
def _text_rows(body: bytes) -> list[list[str]]:
    """Non-blank rows of cells; quoted fields only when the body has a quote (csv module)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeatureError(
            f"the body is not UTF-8 text (byte {exc.start}): send plain CSV"
        ) from None
    if '"' in text:
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error as exc:
            raise FeatureError(f"malformed CSV: {exc}") from None
    else:
        rows = [line.removesuffix("\r").split(",") for line in text.split("\n")]
    return [r for r in rows if any(cell.strip() for cell in r)]


def _is_header(encoder: Encoder, cells: Sequence[str]) -> bool:
    """A first row is a header when any cell is a raw column name (never a valid value here)."""
    names = encoder.name_set
    return any(cell.strip() in names for cell in cells)


def parse_csv_exact(encoder: Encoder, body: bytes) -> np.ndarray:
    """The reference CSV route: pure Python, exact row/field errors."""
    rows = _text_rows(body)
    if rows and _is_header(encoder, rows[0]):
        return encoder.encode_rows(rows[1:], rows[0])
    return encoder.encode_rows(rows)


def parse_csv_vector(encoder: Encoder, body: bytes) -> np.ndarray | None:
    """The fast route for large bodies, or None when the exact route must decide."""
    if b'"' in body:
        return None  # quoted fields: the csv module's job
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n")
    first, _, rest = body.partition(b"\n")
    if not first.isascii():
        return None
    cells = first.decode("ascii").split(",")
    order: Sequence[int] = range(len(encoder.raw_names))
    if _is_header(encoder, cells):
        order = encoder.column_order(cells)
    else:
        rest = body
    if rest.translate(None, _VECTOR_SAFE):
        return None  # a byte outside the safe set (incl. a lone CR): not ours to judge
    lines = rest.rstrip(b"\n").split(b"\n")  # trailing newlines end the body, not rows
    if not all(lines):
        return None  # blank lines: the exact route skips them and numbers the rows
    return encoder.encode_lines(lines, list(order))


def parse_csv(encoder: Encoder, body: bytes) -> np.ndarray:
    """CSV body -> encoded matrix; large bodies try the vectorised route first."""
    if len(body) >= VECTOR_MIN_BYTES:
        matrix = parse_csv_vector(encoder, body)
        if matrix is not None:
            return matrix
    return parse_csv_exact(encoder, body)


# --- JSON -----------------------------------------------------------------------------------------
def parse_json(encoder: Encoder, body: bytes) -> np.ndarray:
    """``{"instances": [record | list, ...]}`` -> encoded matrix."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FeatureError(f"malformed JSON: {str(exc)[:80]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise FeatureError(
            'JSON must be an object {"instances": [...]} of records or lists of raw features'
        )
    return encoder.encode_records(doc["instances"])


def parse_body(encoder: Encoder, family: str, body: bytes) -> np.ndarray:
    """Dispatch on the request family; an empty body is a 400 with a hint."""
    if not body.strip():
        raise FeatureError(f"empty body: send {family} rows of {encoder.expected}")
    return parse_csv(encoder, body) if family == CSV else parse_json(encoder, body)


# --- responses ------------------------------------------------------------------------------------
def format_predictions(predictions: np.ndarray, family: str) -> bytes:
    """One prediction per line (CSV) or {"predictions": [...]} (JSON).

    Nine significant digits: exact for the model's float32 outputs, and twice as fast as repr.
    """
    values = predictions.tolist()
    cells = map("%.9g".__mod__, values)
    if family == CSV:
        return ("\n".join(cells) + "\n").encode()
    if not np.isfinite(predictions).all():  # never from a valid model; keep the JSON valid anyway
        return json.dumps({"predictions": [v if np.isfinite(v) else None for v in values]}).encode()
    return ('{"predictions": [' + ", ".join(cells) + "]}").encode()
