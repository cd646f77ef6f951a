"""AWS Glue 5.1 Spark job: raw abalone CSV -> validated, one-hot encoded, seeded 70/15/15 splits.

One self-contained file: Glue receives only this script (and ``schema.json`` via ``--extra-files``),
so it imports nothing but pyspark, the standard library, boto3 and (on Glue) awsglue. The same file
runs locally with ``pyspark==3.5.6`` in local mode:

    python src/abalone_model/etl.py --input data.csv --output out/

Writes ``train/``, ``validation/``, ``test/`` (CSV with header: target, then encoded features),
``baseline/statistics.json`` (train-split statistics: the drift reference) and ``manifest.json``.
Nothing row-level is collected to the driver: only aggregates, so it scales with the cluster.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

try:  # present only on Glue
    from awsglue.utils import getResolvedOptions
except ImportError:
    getResolvedOptions = None

try:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
except ImportError:
    SparkSession = None

SPLITS = ("train", "validation", "test")
QUANTILES = {f"p{round(q * 100):02d}": q for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)}
CORRUPT = "_corrupt_record"
PROBLEM = "_problem"
CHUNK = 8 * 1024 * 1024
# Local runs are short: the quick JIT tier alone starts Spark several seconds faster.
LOCAL_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
JAVA_MISSING = (
    "Java 17 runtime not found: install a JDK 17 (apt-get install openjdk-17-jre-headless) "
    "or set JAVA_HOME"
)


class EtlError(Exception):
    """A failure the user can act on; printed as one ``error: ...`` line."""


@dataclass(frozen=True)
class Config:
    """Job arguments, parsed from the strings Glue (or the shell) passes."""

    input: str
    output: str
    schema_file: str = "schema.json"
    seed: int = 42
    max_bad_fraction: float = 0.05
    train_fraction: float = 0.70
    validation_fraction: float = 0.15

    @classmethod
    def from_strings(cls, raw: dict[str, str]) -> Config:
        def number(name: str, kind: type) -> int | float:
            text = raw.get(name, str(getattr(cls, name)))
            try:
                return kind(text)
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise EtlError(f"--{name} must be {what}, got {text!r}") from None

        cfg = cls(
            input=raw["input"],
            output=raw["output"].rstrip("/") or "/",
            schema_file=raw.get("schema_file", cls.schema_file),
            seed=number("seed", int),
            max_bad_fraction=number("max_bad_fraction", float),
            train_fraction=number("train_fraction", float),
            validation_fraction=number("validation_fraction", float),
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        if not 0 <= self.max_bad_fraction <= 1:
            raise EtlError("--max_bad_fraction must be between 0 and 1")
        tf, vf = self.train_fraction, self.validation_fraction
        if not (0 < tf < 1 and 0 <= vf < 1 and tf + vf <= 1):
            raise EtlError(
                f"--train_fraction {tf} and --validation_fraction {vf} must be in [0, 1) with "
                "train > 0 and a sum of at most 1 (test gets the rest)"
            )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + exit 2
        raise EtlError(f"{message} (run with --help for the job arguments)")


def parse_args(argv: list[str]) -> Config:
    """Glue's getResolvedOptions when present, argparse otherwise; unknown (Glue) args ignored."""
    optional = [f for f in Config.__dataclass_fields__ if f not in ("input", "output")]
    if getResolvedOptions is not None:
        missing = [n for n in ("input", "output") if f"--{n}" not in argv]
        if missing:
            raise EtlError(f"missing job argument(s): {', '.join('--' + n for n in missing)}")
        present = [n for n in optional if f"--{n}" in argv]
        return Config.from_strings(getResolvedOptions(argv, ["input", "output", *present]))
    parser = _Parser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--input", required=True, help="raw CSV: s3:// URI or local path")
    parser.add_argument("--output", required=True, help="output prefix: s3:// or local dir")
    for name in optional:
        parser.add_argument(f"--{name}", default=str(getattr(Config, name)))
    known, _ = parser.parse_known_args(argv[1:])
    return Config.from_strings(vars(known))


# --- schema -------------------------------------------------------------------------------------


def load_schema(name: str) -> dict:
    """The schema JSON: working directory first (Glue's --extra-files), then next to this script."""
    path = Path(name)
    places = [path] if path.is_absolute() else [Path.cwd() / path, Path(__file__).parent / path]
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        where = ", ".join(str(p) for p in places)
        raise EtlError(f"schema file not found (looked in {where}): pass --schema_file")
    try:
        schema = json.loads(found.read_text(encoding="utf-8"))
        for col in (*schema["features"], schema["target"]):
            if col["type"] not in ("float", "int", "category") or not col["name"]:
                raise ValueError(f"column {col['name']!r} has unknown type {col['type']!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise EtlError(f"schema file {found} is invalid ({exc}): fix it") from None
    return schema


def raw_names(schema: dict) -> list[str]:
    """Raw CSV columns: features then target."""
    return [c["name"] for c in schema["features"]] + [schema["target"]["name"]]


def encoded_names(schema: dict) -> list[str]:
    """Model-matrix features: one ``<name>_<category>`` per category, in the schema's order."""
    out: list[str] = []
    for col in schema["features"]:
        if col["type"] == "category":
            out += [f"{col['name']}_{c}" for c in col["categories"]]
        else:
            out.append(col["name"])
    return out


# --- read and validate --------------------------------------------------------------------------


def read_raw(spark: SparkSession, uri: str, schema: dict) -> DataFrame:
    """The CSV as all-string columns (plus a corrupt-record column); wrong header -> EtlError."""
    first = spark.read.text(uri).first()
    if first is None or not first.value.strip():
        raise EtlError(f"input {uri} is empty: it needs a header row and data rows")
    header = [h.strip() for h in next(csv.reader([first.value.lstrip("\ufeff")]))]
    expected = raw_names(schema)
    missing = [n for n in expected if n not in header]
    unexpected = [n for n in header if n not in expected]
    if missing or unexpected or len(set(header)) != len(header):
        raise EtlError(
            f"input {uri} has the wrong columns (missing: {missing or 'none'}; unexpected: "
            f"{unexpected or 'none'}; header: {header}): expected {expected} in any order"
        )
    fields = [T.StructField(n, T.StringType()) for n in (*header, CORRUPT)]
    return spark.read.csv(uri, schema=T.StructType(fields), header=True, mode="PERMISSIVE")


def _problem(col: dict) -> tuple[Column, Column]:
    """(typed value, reason it is bad or null) for one raw column, with try-cast semantics."""
    raw = F.trim(F.col(col["name"]))
    if col["type"] == "category":
        return raw, F.when(raw.isNull() | (raw == ""), "missing").when(
            ~raw.isin(*col["categories"]), "unknown category"
        )
    value = F.expr(f"try_cast(trim(`{col['name']}`) AS DOUBLE)")
    in_range = F.lit(True)
    for key, op in (("gt", "__gt__"), ("ge", "__ge__"), ("lt", "__lt__"), ("le", "__le__")):
        if col.get(key) is not None:
            in_range = in_range & getattr(value, op)(F.lit(float(col[key])))
    reason = (
        F.when(raw.isNull() | (raw == ""), "missing")
        .when(value.isNull(), "unparseable")
        .when(F.isnan(value) | (F.abs(value) == float("inf")), "non-finite")
    )
    if col["type"] == "int":
        reason = reason.when(value != F.floor(value), "not a whole number")
        value = value.cast("long")
    return value, reason.when(~in_range, "out of range")


def validate(raw: DataFrame, schema: dict) -> DataFrame:
    """Typed columns plus ``_problem``: the row's first problem ("column: reason") or null."""
    typed, reasons = [], [F.when(F.col(CORRUPT).isNotNull(), "row: wrong number of fields")]
    for col in (*schema["features"], schema["target"]):
        value, reason = _problem(col)
        typed.append(value.alias(col["name"]))
        reasons.append(F.concat(F.lit(f"{col['name']}: "), reason))
    return raw.select(*typed, F.coalesce(*reasons).alias(PROBLEM))


def count_rows(assigned: DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """(rows per problem, 'ok' for good rows; good rows per split): one small aggregate."""
    problems: dict[str, int] = {}
    splits = dict.fromkeys(SPLITS, 0)
    for r in assigned.groupBy(PROBLEM, "split").count().collect():
        key = r[PROBLEM] or "ok"
        problems[key] = problems.get(key, 0) + r["count"]
        if r[PROBLEM] is None:
            splits[r["split"]] += r["count"]
    return problems, splits


# --- split, encode, statistics ------------------------------------------------------------------


def assign_split(typed: DataFrame, schema: dict, cfg: Config) -> DataFrame:
    """Adds ``split``: a hash of seed + typed row content -> [0, 1), the same for any partitioning;
    identical rows land in the same split (no leakage between train and test)."""
    key = F.xxhash64(F.lit(cfg.seed), *[F.col(n) for n in raw_names(schema)])
    bucket = key.bitwiseAND(F.lit((1 << 53) - 1)) / float(1 << 53)
    edge = cfg.train_fraction + cfg.validation_fraction
    split = F.when(bucket < cfg.train_fraction, "train").when(bucket < edge, "validation")
    return typed.withColumn("split", split.otherwise("test"))


def encode(df: DataFrame, schema: dict) -> DataFrame:
    """Target first, then encoded features (one-hot ints for categories, doubles otherwise)."""
    cols = [F.col(schema["target"]["name"])]
    for col in schema["features"]:
        name = col["name"]
        if col["type"] == "category":
            cols += [(F.col(name) == c).cast("int").alias(f"{name}_{c}") for c in col["categories"]]
        else:
            cols.append(F.col(name).cast("double"))
    return df.select(*cols)


def statistics(train: DataFrame, schema: dict) -> dict:
    """Per-column count/mean/stddev/min/max/quantiles and category frequencies: one Spark job."""
    numeric = [*encoded_names(schema), schema["target"]["name"]]
    aggs = []
    for n in numeric:
        c = F.col(n).cast("double")
        aggs += [F.count(c), F.mean(c), F.stddev_samp(c), F.min(c), F.max(c)]
        aggs.append(F.percentile_approx(c, list(QUANTILES.values()), 10000))
    row = encode(train, schema).agg(*aggs).first()
    stats: dict = {"split": "train", "rows": row[0], "numeric": {}, "categorical": {}}
    for i, n in enumerate(numeric):
        count, mean, std, lo, hi, qs = row[6 * i : 6 * i + 6]
        stats["numeric"][n] = {
            "count": count, "mean": mean, "stddev": std, "min": lo, "max": hi,
            "quantiles": dict(zip(QUANTILES, qs or [], strict=False)),
        }  # fmt: skip
    for col in schema["features"]:
        if col["type"] == "category":  # one-hot mean = frequency
            means = {c: stats["numeric"][f"{col['name']}_{c}"]["mean"] for c in col["categories"]}
            stats["categorical"][col["name"]] = {
                "counts": {c: round((m or 0.0) * row[0]) for c, m in means.items()},
                "frequencies": {c: m or 0.0 for c, m in means.items()},
            }
    return stats


# --- I/O: hashing and small JSON files ----------------------------------------------------------


def _s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def sha256_of(uri: str) -> str:
    """SHA-256 of the input, streamed in chunks (boto3 for s3://), never whole in memory."""
    digest = hashlib.sha256()
    if uri.startswith(("s3://", "s3a://")):
        import boto3

        bucket, key = _s3(uri)
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    path = Path(uri)
    if not path.is_file():
        raise EtlError(f"input file {uri} not found: pass --input a CSV file or s3:// URI")
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(uri: str, obj: dict) -> None:
    """Small JSON documents: boto3 put_object for s3://, a plain file write locally."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    if uri.startswith(("s3://", "s3a://")):
        import boto3

        bucket, key = _s3(uri)
        boto3.client("s3").put_object(
            Bucket=bucket, Key=key, Body=text.encode(), ContentType="application/json"
        )
        return
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    Path(uri).write_text(text, encoding="utf-8")


# --- the job ------------------------------------------------------------------------------------


def check_bad_rows(problems: dict[str, int], cfg: Config) -> None:
    """Fail when there is no data or more than --max_bad_fraction of the rows are bad."""
    rows_in = sum(problems.values())
    dropped = rows_in - problems.get("ok", 0)
    if rows_in == 0:
        raise EtlError(f"input {cfg.input} has a header but no data rows")
    if dropped / rows_in > cfg.max_bad_fraction:
        bad = sorted(((v, k) for k, v in problems.items() if k != "ok"), reverse=True)
        top = "; ".join(f"{k}: {v}" for v, k in bad[:5])
        raise EtlError(
            f"{dropped} of {rows_in} rows ({dropped / rows_in:.1%}) are bad, more than "
            f"--max_bad_fraction {cfg.max_bad_fraction} ({top}): fix the data or "
            "raise --max_bad_fraction"
        )


def process(raw: DataFrame, schema: dict, cfg: Config, input_sha256: str) -> dict:
    """Validate, split, encode and write everything; returns the manifest."""
    assigned = assign_split(validate(raw, schema), schema, cfg).cache()
    outputs = {s: f"{cfg.output}/{s}/" for s in SPLITS}
    outputs["test_raw"] = f"{cfg.output}/test_raw/"
    outputs["statistics"] = f"{cfg.output}/baseline/statistics.json"
    outputs["manifest"] = f"{cfg.output}/manifest.json"
    try:
        problems, split_rows = count_rows(assigned)
        check_bad_rows(problems, cfg)
        good = assigned.filter(F.col(PROBLEM).isNull())
        for split in SPLITS:
            part = encode(good.filter(F.col("split") == split), schema)
            part.write.mode("overwrite").csv(outputs[split], header=True)
        # The held-out rows once more as clients send them (target first, then the raw features):
        # what the endpoint system tests replay.
        raw_cols = [schema["target"]["name"], *(c["name"] for c in schema["features"])]
        test_raw = good.filter(F.col("split") == "test").select(*raw_cols)
        test_raw.write.mode("overwrite").csv(outputs["test_raw"], header=True)
        write_json(outputs["statistics"], statistics(good.filter("split = 'train'"), schema))
    finally:
        assigned.unpersist()
    kept = problems.pop("ok", 0)
    manifest = {
        "input": cfg.input,
        "input_sha256": input_sha256,
        **{k: v for k, v in asdict(cfg).items() if k not in ("input", "output")},
        "rows": {
            "in": kept + sum(problems.values()),
            "kept": kept,
            "dropped": sum(problems.values()),
            "dropped_by_reason": dict(sorted(problems.items())),
        },
        "split_counts": split_rows,
        "columns": [schema["target"]["name"], *encoded_names(schema)],
        "outputs": outputs,
        "schema": schema,
    }
    write_json(outputs["manifest"], manifest)
    return manifest


def run(spark: SparkSession, cfg: Config) -> dict:
    """The whole job for one configuration, on a given session."""
    schema = load_schema(cfg.schema_file)
    digest = sha256_of(cfg.input)
    return process(read_raw(spark, cfg.input, schema), schema, cfg, digest)


def _local_uri(uri: str) -> str:
    return uri if "://" in uri else str(Path(uri).resolve())


def get_spark() -> tuple[SparkSession, bool]:
    """GlueContext's session on Glue; else a small local session. Returns (session, created)."""
    if getResolvedOptions is not None:
        from awsglue.context import GlueContext
        from pyspark.context import SparkContext

        return GlueContext(SparkContext.getOrCreate()).spark_session, False
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        raise EtlError(JAVA_MISSING)
    try:
        spark = (
            SparkSession.builder.master(os.environ.get("ETL_SPARK_MASTER", "local[*]"))
            .appName("abalone-etl")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.extraJavaOptions", LOCAL_JVM_OPTIONS)
            .getOrCreate()
        )
    except Exception as exc:  # the JVM failed to start: PySparkRuntimeError JAVA_GATEWAY_EXITED
        raise EtlError(f"{JAVA_MISSING} ({str(exc).splitlines()[0]})") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark, True


def _first_line(exc: Exception) -> str:
    """The informative line of a Spark error (the Java exception, not the py4j call site)."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def summary(m: dict) -> str:
    reasons = ", ".join(f"{k}: {v}" for k, v in m["rows"]["dropped_by_reason"].items()) or "none"
    splits = ", ".join(f"{k} {v}" for k, v in m["split_counts"].items())
    return (
        f"etl: read {m['rows']['in']} rows, kept {m['rows']['kept']}, dropped "
        f"{m['rows']['dropped']} ({reasons})\netl: {splits} -> {m['outputs']['manifest']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: one ``error: ...`` line and exit 2 for any failure the user can fix."""
    argv = list(sys.argv if argv is None else argv)
    try:
        if SparkSession is None:
            raise EtlError("pyspark is not installed: pip install pyspark==3.5.6")
        cfg = parse_args(argv)
        cfg = replace(cfg, input=_local_uri(cfg.input), output=_local_uri(cfg.output))
        schema = load_schema(cfg.schema_file)  # fail fast, before a JVM starts
        digest = sha256_of(cfg.input)
        spark, created = get_spark()
        try:
            manifest = process(read_raw(spark, cfg.input, schema), schema, cfg, digest)
            print(summary(manifest))
        finally:
            if created:
                spark.stop()
    except EtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Spark/S3 failures: one line; anything else is a bug -> traceback
        module = type(exc).__module__
        if module.startswith(("botocore", "boto3")):
            hint = "check the s3:// URIs, the AWS credentials and their S3 permissions"
        elif module.startswith(("pyspark", "py4j")):
            hint = "check the --input and --output paths and the Spark log"
        else:
            raise
        print(f"error: {_first_line(exc)}: {hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
