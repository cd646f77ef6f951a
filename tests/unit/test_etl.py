"""The Glue ETL script, run in-process on the session-scoped local Spark (see conftest.py)."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import statistics as pystats
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from abalone_model import etl
from abalone_model.schema import DATA_FILE, SCHEMA_FILE, Schema

SCRIPT = Path(etl.__file__)
SCHEMA = Schema.load()
SCHEMA_DICT = json.loads(SCHEMA_FILE.read_text())
HEADER = [*SCHEMA.raw_names, SCHEMA.target.name]
GOOD = "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15"


pytestmark = pytest.mark.cost(30)  # seconds on two workers: scheduled first


def good(rings: int) -> str:
    return f"{GOOD.rsplit(',', 1)[0]},{rings}"


def config(out: Path, data: Path = DATA_FILE, **overrides: str) -> etl.Config:
    return etl.Config.from_strings({"input": str(data), "output": str(out), **overrides})


def write_csv(path: Path, lines: list[str], header: list[str] = HEADER) -> Path:
    path.write_text("\n".join([",".join(header), *lines]) + "\n")
    return path


def split_rows(out: Path, split: str) -> list[list[str]]:
    """Data rows of every part file of one split (each part has its own header row)."""
    rows = []
    for part in sorted((out / split).glob("*.csv")):
        with part.open(newline="") as handle:
            reader = csv.reader(handle)
            assert next(reader) == ["rings", *SCHEMA.encoded_names]
            rows += list(reader)
    return rows


def expected_encoded_rows() -> Counter:
    """The real data encoded by hand with the package's own schema (an independent oracle)."""
    out: Counter = Counter()
    with DATA_FILE.open(newline="") as handle:
        for rec in csv.DictReader(handle):
            numbers = {n: float(rec[n]) for n in HEADER if n != "sex"}
            if any(SCHEMA.column(n).problem(v) for n, v in numbers.items()):
                continue
            onehot = tuple(float(rec["sex"] == c) for c in SCHEMA.column("sex").categories)
            rest = tuple(numbers[n] for n in SCHEMA.raw_names if n != "sex")
            out[(numbers["rings"], *onehot, *rest)] += 1
    return out


@pytest.fixture(scope="module")
def real_run(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("etl") / "out"
    return etl.run(spark, config(out)), out


def test_script_imports_only_what_glue_provides():
    allowed = set(sys.stdlib_module_names) | {"pyspark", "boto3", "awsglue"}
    imported = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import: Glue receives this one file"
            imported.add(node.module.split(".")[0])
    assert {"pyspark", "boto3"} <= imported
    assert imported <= allowed, f"not on Glue 5.1: {sorted(imported - allowed)}"


@pytest.mark.spark
def test_happy_path_counts(real_run):
    manifest, out = real_run
    rows = manifest["rows"]
    assert rows == {
        "in": 4177,
        "kept": 4175,
        "dropped": 2,
        "dropped_by_reason": {"height: out of range": 2},
    }
    counts = manifest["split_counts"]
    assert sum(counts.values()) == rows["kept"]
    for split, share in (("train", 0.70), ("validation", 0.15), ("test", 0.15)):
        assert len(split_rows(out, split)) == counts[split]
        assert abs(counts[split] / rows["kept"] - share) < 0.02, counts


@pytest.mark.spark
def test_one_hot_and_values_match_the_raw_data(real_run):
    _, out = real_run
    got = Counter(tuple(float(v) for v in row) for s in etl.SPLITS for row in split_rows(out, s))
    assert got == expected_encoded_rows()
    for row in got:
        assert sorted(row[1:4]) == [0.0, 0.0, 1.0]


@pytest.mark.spark
def test_split_is_the_same_for_any_partitioning_and_run(spark, real_run, tmp_path):
    manifest, out = real_run
    schema = etl.load_schema("schema.json")
    raw = etl.read_raw(spark, str(DATA_FILE), schema).repartition(8)
    assert raw.rdd.getNumPartitions() == 8
    other = etl.process(raw, schema, config(tmp_path / "p8"), "x")
    assert other["split_counts"] == manifest["split_counts"]
    cli_out = tmp_path / "cli"
    argv = [str(SCRIPT), "--input", str(DATA_FILE), "--output", str(cli_out), "--JOB_NAME", "j"]
    assert etl.main(argv) == 0
    for split in etl.SPLITS:
        reference = sorted(map(tuple, split_rows(out, split)))
        assert sorted(map(tuple, split_rows(tmp_path / "p8", split))) == reference
        assert sorted(map(tuple, split_rows(cli_out, split))) == reference
    assert (cli_out / "baseline/statistics.json").read_text() == (
        out / "baseline/statistics.json"
    ).read_text()


@pytest.mark.spark
def test_seed_changes_the_split_and_duplicates_stay_together(spark, tmp_path):
    data = write_csv(tmp_path / "d.csv", [GOOD] * 30 + [good(i) for i in range(31, 51)])
    raw = etl.read_raw(spark, str(data), SCHEMA_DICT).repartition(5)
    typed = etl.validate(raw, SCHEMA_DICT)
    a = etl.assign_split(typed, SCHEMA_DICT, config(tmp_path)).withColumnRenamed("split", "a")
    both = etl.assign_split(a, SCHEMA_DICT, config(tmp_path, seed="7"))
    assert both.filter("a != split").count() > 0
    duplicates = both.filter("rings = 15")
    assert duplicates.count() == 30
    assert duplicates.select("a", "split").distinct().count() == 1


@pytest.mark.spark
def test_wrong_columns_are_named(spark, tmp_path):
    header = [h for h in HEADER if h != "rings"] + ["colour"]
    data = write_csv(tmp_path / "bad.csv", [GOOD + ",red"], header)
    with pytest.raises(etl.EtlError, match=r"missing: \['rings'\].*unexpected: \['colour'\]"):
        etl.run(spark, config(tmp_path / "out", data))
    assert not (tmp_path / "out").exists()


@pytest.mark.spark
def test_only_a_missing_column_is_one_line_naming_it(spark, tmp_path, capsys):
    header = [h for h in HEADER if h != "rings"]
    data = write_csv(tmp_path / "no-rings.csv", [GOOD.rsplit(",", 1)[0]], header)
    out = tmp_path / "out"
    assert etl.main([str(SCRIPT), "--input", str(data), "--output", str(out)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: input {data} has the wrong columns (missing: ['rings'];")
    assert "unexpected: none" in lines[0]
    assert lines[0].endswith(f"expected {HEADER} in any order")
    assert "UNRESOLVED" not in lines[0]
    assert not out.exists()


@pytest.mark.spark
@pytest.mark.parametrize(
    ("header", "words"),
    [
        ([*HEADER, "rings"], r"missing: none; unexpected: none; header: \[.*'rings', 'rings'\]"),
        ([*HEADER, "colour"], r"missing: none; unexpected: \['colour'\]"),
    ],
)
def test_duplicate_or_extra_column_alone_is_refused(spark, tmp_path, header, words):
    data = write_csv(tmp_path / "d.csv", [GOOD + ",15"], header)
    with pytest.raises(etl.EtlError, match=words):
        etl.read_raw(spark, str(data), SCHEMA_DICT)


@pytest.mark.spark
def test_header_with_bom_spaces_and_any_order_is_accepted(spark, tmp_path):
    order = list(reversed(HEADER))
    values = list(reversed(GOOD.split(",")))
    path = tmp_path / "bom.csv"
    path.write_text("\ufeff" + ", ".join(order) + "\n" + ",".join(values) + "\n")
    raw = etl.read_raw(spark, str(path), SCHEMA_DICT)
    assert raw.columns == [*order, etl.CORRUPT]
    row = etl.validate(raw, SCHEMA_DICT).first()
    assert row[etl.PROBLEM] is None and row["rings"] == 15 and row["sex"] == "M"


@pytest.mark.spark
@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_input_is_named(spark, tmp_path, text):
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(etl.EtlError, match=r"is empty: it needs a header row and data rows"):
        etl.read_raw(spark, str(path), SCHEMA_DICT)


@pytest.mark.spark
def test_bad_rows_counted_per_column_and_reason(spark, tmp_path):
    bad = [
        "M,abc,0.365,0.095,0.514,0.2245,0.101,0.15,15",
        "M,NaN,0.365,0.095,0.514,0.2245,0.101,0.15,15",
        "M,0.455,Infinity,0.095,0.514,0.2245,0.101,0.15,15",
        "M,3.5,0.365,0.095,0.514,0.2245,0.101,0.15,15",
        "X,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15",
        ",0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15",
        "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,7.5",
        "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15",
    ]
    padded = " F , 0.455 ,0.365,0.095,0.514,0.2245,0.101,0.15, 9 "
    data = write_csv(tmp_path / "d.csv", [GOOD, padded, *bad])
    problems, splits = etl.count_rows(
        etl.assign_split(
            etl.validate(etl.read_raw(spark, str(data), SCHEMA_DICT), SCHEMA_DICT),
            SCHEMA_DICT,
            config(tmp_path),
        )
    )
    assert problems == {
        "ok": 2,
        "length: unparseable": 1,
        "length: non-finite": 1,
        "diameter: non-finite": 1,
        "length: out of range": 1,
        "sex: unknown category": 1,
        "sex: missing": 1,
        "rings: not a whole number": 1,
        "row: wrong number of fields": 1,
    }
    assert sum(splits.values()) == 2


@pytest.mark.spark
def test_bad_fraction_threshold(spark, tmp_path):
    lines = [good(i) for i in range(1, 19)] + ["M,0,0,0,0,0,0,0,1"] * 2
    data = write_csv(tmp_path / "d.csv", lines)
    with pytest.raises(etl.EtlError, match=r"2 of 20 rows \(10.0%\) are bad.*--max_bad_fraction"):
        etl.run(spark, config(tmp_path / "strict", data))
    manifest = etl.run(spark, config(tmp_path / "lenient", data, max_bad_fraction="0.1"))
    assert manifest["rows"]["dropped"] == 2 and manifest["rows"]["kept"] == 18
    assert sum(len(split_rows(tmp_path / "lenient", s)) for s in etl.SPLITS) == 18


@pytest.mark.spark
def test_statistics_describe_the_train_split(real_run):
    manifest, out = real_run
    stats = json.loads((out / "baseline/statistics.json").read_text())
    train = [[float(v) for v in row] for row in split_rows(out, "train")]
    columns = ["rings", *SCHEMA.encoded_names]
    assert stats["rows"] == len(train) == manifest["split_counts"]["train"]
    assert set(stats["numeric"]) == set(columns)
    for i, name in enumerate(columns):
        values = [row[i] for row in train]
        s = stats["numeric"][name]
        assert s["count"] == len(values)
        assert s["mean"] == pytest.approx(pystats.fmean(values), rel=1e-9)
        assert s["stddev"] == pytest.approx(pystats.stdev(values), rel=1e-9)
        assert (s["min"], s["max"]) == (min(values), max(values))
        qs = list(s["quantiles"].values())
        assert list(s["quantiles"]) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
        assert s["min"] <= qs[0] and qs == sorted(qs) and qs[-1] <= s["max"]
        assert qs[3] == pytest.approx(pystats.median(values), abs=0.02 * (s["max"] - s["min"]))
    sex = stats["categorical"]["sex"]
    assert sex["counts"] == {c: sum(r[1 + i] for r in train) for i, c in enumerate("MFI")}
    assert sum(sex["frequencies"].values()) == pytest.approx(1.0)


@pytest.mark.spark
def test_manifest_records_input_hash_and_outputs(real_run):
    manifest, out = real_run
    assert manifest["input_sha256"] == hashlib.sha256(DATA_FILE.read_bytes()).hexdigest()
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["seed"] == 42 and manifest["schema"] == SCHEMA_DICT
    assert manifest["columns"] == ["rings", *SCHEMA.encoded_names]
    assert manifest["outputs"]["train"] == f"{out}/train/"


def test_arguments_as_glue_passes_them(monkeypatch, capsys):
    argv = ["x.py", "--JOB_NAME", "j", "--input", "a", "--output", "b/", "--seed", "7"]
    cfg = etl.parse_args(argv)
    assert (cfg.input, cfg.output, cfg.seed, cfg.train_fraction) == ("a", "b", 7, 0.7)
    asked = []

    def fake_resolved(argv, names):
        asked.append(names)
        return {n: argv[argv.index(f"--{n}") + 1] for n in names}

    monkeypatch.setattr(etl, "getResolvedOptions", fake_resolved)
    cfg = etl.parse_args(["x.py", "--input", "s3://b/k", "--output", "s3://b/o", "--seed", "3"])
    assert asked == [["input", "output", "seed"]] and cfg.seed == 3
    with pytest.raises(etl.EtlError, match=r"missing job argument.*--output"):
        etl.parse_args(["x.py", "--input", "a"])
    monkeypatch.setattr(etl, "getResolvedOptions", None)
    assert etl.main(["x.py", "--input", "a", "--output", "b", "--seed", "abc"]) == 2
    assert capsys.readouterr().err == "error: --seed must be an integer, got 'abc'\n"
    assert etl.main(["x.py", "--input", "a", "--output", "b", "--train_fraction", "0.9"]) == 2
    assert "test gets the rest" in capsys.readouterr().err


def test_schema_file_found_in_working_directory_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert etl.load_schema("schema.json") == SCHEMA_DICT
    (tmp_path / "schema.json").write_text(json.dumps({**SCHEMA_DICT, "name": "from-cwd"}))
    assert etl.load_schema("schema.json")["name"] == "from-cwd"
    with pytest.raises(etl.EtlError, match="schema file not found"):
        etl.load_schema("nope.json")


def test_no_java_gives_one_line(tmp_path):
    env = {"PATH": str(tmp_path), "JAVA_HOME": str(tmp_path / "nowhere"), "HOME": str(tmp_path)}
    argv = [sys.executable, str(SCRIPT), "--input", str(DATA_FILE), "--output", str(tmp_path)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [f"error: {etl.JAVA_MISSING}"]
    assert os.listdir(tmp_path) == []


class FakeSpark:
    """Just enough of SparkSession.read for read_raw's header check (no JVM: mutation runs)."""

    def __init__(self, first_line: str | None) -> None:
        self.first_line, self.csv_calls = first_line, []
        self.read = self

    def text(self, uri):
        line = self.first_line
        return type("Df", (), {"first": lambda _self: None if line is None else Row(line)})()

    def csv(self, uri, **kwargs):
        self.csv_calls.append((uri, kwargs))
        return "frame"


class Row:
    def __init__(self, value: str) -> None:
        self.value = value


def test_header_check_without_spark():
    header = "\ufeff" + " , ".join(reversed(HEADER))
    fake = FakeSpark(header)
    assert etl.read_raw(fake, "in.csv", SCHEMA_DICT) == "frame"
    ((uri, kwargs),) = fake.csv_calls
    assert uri == "in.csv" and kwargs["header"] is True and kwargs["mode"] == "PERMISSIVE"
    assert kwargs["schema"].fieldNames() == [*reversed(HEADER), etl.CORRUPT]
    assert {f.dataType.typeName() for f in kwargs["schema"].fields} == {"string"}
    for first in (None, "", "  "):
        with pytest.raises(etl.EtlError, match=r"^input in.csv is empty: it needs a header row"):
            etl.read_raw(FakeSpark(first), "in.csv", SCHEMA_DICT)
    only_missing = ",".join(h for h in HEADER if h != "rings")
    with pytest.raises(etl.EtlError) as info:
        etl.read_raw(FakeSpark(only_missing), "in.csv", SCHEMA_DICT)
    assert str(info.value) == (
        f"input in.csv has the wrong columns (missing: ['rings']; unexpected: none; header: "
        f"{HEADER[:-1]}): expected {HEADER} in any order"
    )
    with pytest.raises(etl.EtlError, match=r"missing: none; unexpected: none; header: .*'rings'\]"):
        etl.read_raw(FakeSpark(",".join([*HEADER, "rings"])), "in.csv", SCHEMA_DICT)
    with pytest.raises(etl.EtlError, match=r"missing: none; unexpected: \['colour'\]"):
        etl.read_raw(FakeSpark(",".join([*HEADER, "colour"])), "in.csv", SCHEMA_DICT)
    assert not fake.csv_calls[1:]


@pytest.mark.parametrize(
    ("fraction", "bad", "fails"),
    [("0.1", 2, False), ("0.1", 3, True), ("0", 0, False), ("0", 1, True), ("1", 20, False)],
)
def test_bad_fraction_boundary(fraction, bad, fails):
    cfg = etl.Config.from_strings({"input": "in.csv", "output": "o", "max_bad_fraction": fraction})
    problems = {"ok": 20 - bad, "length: unparseable": bad} if bad < 20 else {"x: missing": 20}
    if fails:
        with pytest.raises(etl.EtlError, match=rf"^{bad} of 20 rows .* are bad, more than"):
            etl.check_bad_rows(problems, cfg)
    else:
        etl.check_bad_rows(problems, cfg)
    with pytest.raises(etl.EtlError, match=r"^input in\.csv has a header but no data rows$"):
        etl.check_bad_rows({}, cfg)


def test_bad_rows_message_lists_the_top_five_reasons():
    cfg = etl.Config.from_strings({"input": "in.csv", "output": "o"})
    problems = {"ok": 1, **{f"c{i}: missing": i for i in range(1, 8)}}
    with pytest.raises(etl.EtlError) as info:
        etl.check_bad_rows(problems, cfg)
    assert str(info.value) == (
        "28 of 29 rows (96.6%) are bad, more than --max_bad_fraction 0.05 (c7: missing: 7; "
        "c6: missing: 6; c5: missing: 5; c4: missing: 4; c3: missing: 3): fix the data or raise "
        "--max_bad_fraction"
    )


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"max_bad_fraction": "-0.01"}, "--max_bad_fraction must be between 0 and 1"),
        ({"max_bad_fraction": "1.01"}, "--max_bad_fraction must be between 0 and 1"),
        ({"train_fraction": "0"}, "--train_fraction 0.0 and --validation_fraction 0.15"),
        ({"train_fraction": "1"}, "--train_fraction 1.0"),
        ({"validation_fraction": "-0.1"}, "--validation_fraction -0.1"),
        ({"validation_fraction": "1"}, "--validation_fraction 1.0"),
        ({"train_fraction": "0.5", "validation_fraction": "0.51"}, "a sum of at most 1"),
        ({"max_bad_fraction": "lots"}, "--max_bad_fraction must be a number, got 'lots'"),
        ({"seed": "1.5"}, "--seed must be an integer, got '1.5'"),
    ],
)
def test_config_limits_are_refused(overrides, words):
    with pytest.raises(etl.EtlError, match=words.replace("(", r"\(")):
        etl.Config.from_strings({"input": "i", "output": "o", **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_bad_fraction": "0"},
        {"max_bad_fraction": "1"},
        {"train_fraction": "0.5", "validation_fraction": "0.5"},
        {"train_fraction": "0.99", "validation_fraction": "0"},
    ],
)
def test_config_limits_are_inclusive_where_documented(overrides):
    cfg = etl.Config.from_strings({"input": "i", "output": "s3://b/o/", **overrides})
    assert cfg.output == "s3://b/o"
    assert etl.Config.from_strings({"input": "i", "output": "/"}).output == "/"


def test_unknown_argument_and_missing_input_are_one_line(monkeypatch):
    monkeypatch.setattr(etl, "getResolvedOptions", None)
    with pytest.raises(etl.EtlError, match=r"--input.* \(run with --help for the job arguments\)$"):
        etl.parse_args(["x.py", "--output", "o"])
    cfg = etl.parse_args(["x.py", "--input", "i", "--output", "o", "--schema_file", "s.json"])
    assert (cfg.schema_file, cfg.max_bad_fraction) == ("s.json", 0.05)
    assert cfg.validation_fraction == 0.15


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "Expecting property name"),
        ('{"features": []}', "'target'"),
        ('{"features": [], "target": {"name": "r", "type": "text"}}', "unknown type 'text'"),
        (
            '{"features": [{"name": "", "type": "float"}], "target": {"name": "r", "type": "int"}}',
            "column '' has unknown type",
        ),
    ],
)
def test_invalid_schema_file_is_named(tmp_path, text, words):
    path = tmp_path / "schema.json"
    path.write_text(text)
    pattern = rf"^schema file {path} is invalid \(.*{words}.*\): fix it"
    with pytest.raises(etl.EtlError, match=pattern):
        etl.load_schema(str(path))


# --- validation details the tests above leave open ------------------------------------------------
def test_every_row_bad_counts_all_of_them_and_lists_only_problems():
    cfg = etl.Config.from_strings({"input": "in.csv", "output": "o"})
    with pytest.raises(etl.EtlError) as info:
        etl.check_bad_rows({"length: missing": 3, "sex: unknown category": 1}, cfg)
    assert str(info.value).startswith(
        "4 of 4 rows (100.0%) are bad, more than --max_bad_fraction 0.05 "
        "(length: missing: 3; sex: unknown category: 1): "
    )
    with pytest.raises(etl.EtlError) as info:
        etl.check_bad_rows({"ok": 90, "length: missing": 10}, cfg)
    assert "(length: missing: 10): fix the data" in str(info.value)


def test_read_raw_reads_the_header_line_of_the_given_input():
    class Recording(FakeSpark):
        def text(self, uri):
            self.text_uri = uri
            return super().text(uri)

    fake = Recording(",".join(HEADER))
    assert etl.read_raw(fake, "s3://bucket/raw.csv", SCHEMA_DICT) == "frame"
    assert fake.text_uri == "s3://bucket/raw.csv"


def test_schema_file_defaults_when_glue_does_not_pass_it():
    assert etl.Config.from_strings({"input": "i", "output": "o"}).schema_file == "schema.json"


def test_glue_names_every_missing_argument(monkeypatch):
    monkeypatch.setattr(etl, "getResolvedOptions", lambda argv, names: pytest.fail("resolved"))
    with pytest.raises(etl.EtlError) as info:
        etl.parse_args(["x.py", "--JOB_NAME", "j"])
    assert str(info.value) == "missing job argument(s): --input, --output"


def test_locally_a_missing_output_is_one_line_naming_it(monkeypatch):
    monkeypatch.setattr(etl, "getResolvedOptions", None)
    with pytest.raises(etl.EtlError, match=r"required: --output \(run with --help"):
        etl.parse_args(["x.py", "--input", "i"])


def test_unknown_arguments_are_never_taken_as_abbreviations(monkeypatch):
    monkeypatch.setattr(etl, "getResolvedOptions", None)
    cfg = etl.parse_args(["x.py", "--input", "i", "--output", "o", "--train", "0.9"])
    assert cfg.train_fraction == 0.7


def test_train_fraction_one_leaves_no_test_split():
    with pytest.raises(etl.EtlError) as info:
        etl.Config.from_strings(
            {"input": "i", "output": "o", "train_fraction": "1", "validation_fraction": "0"}
        )
    assert str(info.value) == (
        "--train_fraction 1.0 and --validation_fraction 0.0 must be in [0, 1) with train > 0 "
        "and a sum of at most 1 (test gets the rest)"
    )


def test_max_bad_fraction_message_is_exact():
    with pytest.raises(etl.EtlError) as info:
        etl.Config.from_strings({"input": "i", "output": "o", "max_bad_fraction": "2"})
    assert str(info.value) == "--max_bad_fraction must be between 0 and 1"


def test_a_missing_absolute_schema_path_is_named_once(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(etl.EtlError) as info:
        etl.load_schema(str(missing))
    assert str(info.value) == f"schema file not found (looked in {missing}): pass --schema_file"


def test_a_missing_relative_schema_lists_both_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(etl.EtlError) as info:
        etl.load_schema("nope.json")
    here = SCRIPT.parent / "nope.json"
    assert str(info.value) == (
        f"schema file not found (looked in {tmp_path / 'nope.json'}, {here}): pass --schema_file"
    )


# --- survivors of the mutation run (argument, schema and header validation) -----------------------
def test_output_prefix_loses_only_trailing_slashes():
    cfg = etl.Config.from_strings({"input": "i", "output": "s3://b/DATAX//"})
    assert cfg.output == "s3://b/DATAX"


def test_validation_fraction_one_is_refused_even_when_train_is_tiny():
    # 1e-20 + 1.0 == 1.0 in floats, so only the vf < 1 bound refuses this split
    with pytest.raises(etl.EtlError) as info:
        etl.Config.from_strings(
            {"input": "i", "output": "o", "train_fraction": "1e-20", "validation_fraction": "1"}
        )
    assert str(info.value) == (
        "--train_fraction 1e-20 and --validation_fraction 1.0 must be in [0, 1) with train > 0 "
        "and a sum of at most 1 (test gets the rest)"
    )


def test_header_strips_only_the_byte_order_mark():
    header = ["Xsex", *HEADER[1:]]
    with pytest.raises(etl.EtlError) as info:
        etl.read_raw(FakeSpark("\ufeff" + ",".join(header)), "in.csv", SCHEMA_DICT)
    assert str(info.value) == (
        f"input in.csv has the wrong columns (missing: ['sex']; unexpected: ['Xsex']; header: "
        f"{header}): expected {HEADER} in any order"
    )


def test_schema_is_read_as_utf8_whatever_the_locale(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(
        json.dumps({**SCHEMA_DICT, "description": "abalone \u2014 ring count"}, ensure_ascii=False),
        encoding="utf-8",
    )
    code = (
        "import runpy, sys; ns = runpy.run_path(sys.argv[1], run_name='etl_script'); "
        "print(ascii(ns['load_schema'](sys.argv[2])['description']))"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    argv = [sys.executable, "-c", code, str(SCRIPT), str(path)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "'abalone \\u2014 ring count'\n"), proc.stderr
