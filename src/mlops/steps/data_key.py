"""Training data named by a repository dispatch (``mlops etl --data-key``, env MLOPS_DATA_KEY).

The key arrives in an untrusted payload (anyone with the token, or any object created under
``training/``, can send one), so it is checked before anything uses it: its characters, its
prefix, that the object exists in the data bucket, and that it is a CSV the ETL can read (UTF-8,
a header, rows as wide as the header, and the very columns of the configured data in any order,
which is what the model's Glue script expects). Any refusal is one line (ConfigError, exit 4).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path
from typing import Any

from mlops.aws import log, s3_uri
from mlops.context import Context
from mlops.errors import ConfigError

PREFIX = "training/"
KEY_RE = re.compile(r"^training/(?:[A-Za-z0-9][A-Za-z0-9._-]*/)*[A-Za-z0-9][A-Za-z0-9._-]*\.csv$")
MAX_KEY = 512
MAX_BYTES = 5 * 1024**3  # the largest single PUT object S3 takes: a bigger one is multipart data
REASONS = ("new-data", "drift", "")


def check_key(key: str) -> str:
    """The key, if it is one a dispatch may name; a one-line refusal otherwise."""
    shown = key if len(key) <= 80 and key.isprintable() else f"{key[:40]!r}..."
    if not key.startswith(PREFIX):
        raise ConfigError(f"data key {shown}: must be under {PREFIX} in the data bucket")
    if len(key) > MAX_KEY or ".." in key or not KEY_RE.fullmatch(key):
        raise ConfigError(
            f"data key {shown}: use a path of letters, digits, '.', '_', '-' and '/' ending in .csv"
        )
    return key


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise ConfigError(
            f"retrain reason {reason[:40]!r}: expected one of new-data, drift (from deploy.yml)"
        )
    return reason


def header_of(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return next(csv.reader(f), [])


def check_csv(data: bytes, expected: list[str], where: str) -> int:
    """Rows of a CSV with the ``expected`` header; a one-line refusal otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text: the ETL reads CSV") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows, [])
        width, count = len(header), 0
        for number, row in enumerate(rows, start=2):
            if row and len(row) != width:
                raise ConfigError(
                    f"{where} line {number}: {len(row)} fields, the header has {width}"
                )
            count += bool(row)
    except csv.Error as exc:
        raise ConfigError(f"{where} is not a CSV the ETL can read: {exc}") from None
    if sorted(h.strip() for h in header) != sorted(expected):  # the ETL takes any order
        raise ConfigError(
            f"{where}: header {','.join(header)[:120]!r} is not the training data's "
            f"{','.join(expected)[:120]!r}"
        )
    if not count:
        raise ConfigError(f"{where} has a header and no rows")
    return count


def fetch(ctx: Context, key: str) -> dict[str, Any]:
    """The dispatched object checked: its URI and sha256 (for the reuse decision) and size."""
    key = check_key(key)
    s3, bucket = ctx.client("s3"), ctx.account.DataBucket
    where = s3_uri(bucket, key)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise ConfigError(f"data key: {where} does not exist") from None
        raise ConfigError(f"data key: cannot read {where}: {code}") from None
    if head.get("ContentLength", 0) > MAX_BYTES:
        raise ConfigError(f"data key: {where} is over {MAX_BYTES} bytes")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    rows = check_csv(data, header_of(ctx.root / ctx.config.data), where)
    log(f"etl: training on {where} ({rows} rows), named by the dispatch")
    return {"data_uri": where, "data_sha256": hashlib.sha256(data).hexdigest(), "rows": rows}
