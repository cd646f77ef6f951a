"""A dispatched data key is checked before anything trains on it (an untrusted payload)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from mlops.errors import EXIT_CONFIG, ConfigError
from mlops.steps import data_key

ROOT = Path(__file__).resolve().parents[2]
HEADER = "sex,length,diameter,height,whole_weight,shucked_weight,viscera_weight,shell_weight,rings"
ROW = "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15"


@pytest.mark.parametrize("key", ["training/x.csv", "training/2026/12/batch_1.v2.csv"])
def test_good_keys(key):
    assert data_key.check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "raw/abalone.csv",  # outside training/
        "training/",
        "training/x.txt",
        "training/../raw/abalone.csv",
        "training/a..b.csv",
        "training/$(id).csv",
        'training/a"b.csv',
        "training/a b.csv",
        "training/x.csv\n",
        "training//x.csv",
        "training/.hidden.csv",
        "training/" + "a" * 600 + ".csv",
    ],
)
def test_bad_keys_are_one_line_config_errors(key):
    with pytest.raises(ConfigError) as refused:
        data_key.check_key(key)
    assert refused.value.exit_code == EXIT_CONFIG
    assert "\n" not in str(refused.value)


def test_reasons():
    assert data_key.check_reason("drift") == "drift" and data_key.check_reason("") == ""
    with pytest.raises(ConfigError, match="new-data, drift"):
        data_key.check_reason("rm -rf")


def csv_bytes(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_a_csv_with_the_training_header_passes():
    assert data_key.check_csv(csv_bytes(HEADER, ROW, ROW), HEADER.split(","), "s3://b/k") == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe\x00bin", "not UTF-8"),
        (csv_bytes("a,b,c", ROW), "header"),
        (csv_bytes(HEADER), "no rows"),
        (csv_bytes(HEADER, "M,0.4"), "line 2: 2 fields"),
        (b"", "header"),
    ],
)
def test_what_the_etl_cannot_read_is_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        data_key.check_csv(data, HEADER.split(","), "s3://b/k")


def test_the_expected_header_is_the_configured_datas():
    assert data_key.header_of(ROOT / "src/abalone_model/data/abalone.csv") == HEADER.split(",")


class S3:
    class exceptions:
        ClientError = ClientError

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def head_object(self, Bucket: str, Key: str) -> dict:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
        return {"ContentLength": len(self.objects[Key])}

    def get_object(self, Bucket: str, Key: str) -> dict:
        return {"Body": io.BytesIO(self.objects[Key])}


def ctx(objects: dict[str, bytes]):
    return SimpleNamespace(
        client=lambda _service: S3(objects),
        account=SimpleNamespace(DataBucket="data"),
        root=ROOT,
        config=SimpleNamespace(data="src/abalone_model/data/abalone.csv"),
    )


def test_fetch_returns_the_uri_and_the_sha_of_the_named_object():
    import hashlib

    data = csv_bytes(HEADER, ROW)
    found = data_key.fetch(ctx({"training/x.csv": data}), "training/x.csv")
    assert found == {
        "data_uri": "s3://data/training/x.csv",
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "rows": 1,
    }


def test_fetch_refuses_a_missing_object_and_checks_the_key_first():
    with pytest.raises(ConfigError, match=r"s3://data/training/none\.csv does not exist"):
        data_key.fetch(ctx({}), "training/none.csv")
    with pytest.raises(ConfigError, match="under training/"):
        data_key.fetch(ctx({"raw/x.csv": b""}), "raw/x.csv")


def test_the_etl_trains_on_the_named_data_and_decides_reuse_on_its_sha(monkeypatch):
    """etl.run with a data key: no upload of the configured data, the Glue input is the object,
    and the reuse key is made of the object's sha256."""
    from mlops.steps import etl

    seen = {}

    def plan(_ctx, retrain, data_sha256=""):
        seen["plan"] = (retrain, data_sha256)
        return {"ModelPackageArn": "arn:reused"}

    monkeypatch.setattr(
        etl.data_key_mod,
        "fetch",
        lambda _c, key: {"data_uri": f"s3://data/{key}", "data_sha256": "abc", "rows": 1},
    )
    monkeypatch.setattr(etl.reuse, "plan", plan)
    monkeypatch.setattr(
        etl.reuse, "etl_outputs", lambda found: {"reused_from": found["ModelPackageArn"]}
    )
    manifest = SimpleNamespace(update=lambda *a: None)
    result = etl.run(SimpleNamespace(manifest=manifest), False, "training/x.csv", "new-data")
    assert seen["plan"] == (False, "abc") and result == {"reused_from": "arn:reused"}


def test_the_columns_may_come_in_any_order_as_the_etl_takes_them():
    shuffled = ",".join(reversed(HEADER.split(",")))
    assert data_key.check_csv(csv_bytes(shuffled, ROW), HEADER.split(","), "s3://b/k") == 1
    doubled = HEADER + ",rings"
    with pytest.raises(ConfigError, match="header"):
        data_key.check_csv(csv_bytes(doubled, ROW + ",1"), HEADER.split(","), "s3://b/k")


def test_the_glue_job_reads_the_dispatched_object_and_the_configured_data_is_not_uploaded(
    monkeypatch,
):
    from mlops.steps import etl

    started, uploaded = {}, []

    class Glue:
        def get_job(self, JobName):
            return {"Job": {"Command": {"ScriptLocation": "s3://art/code/etl.py"}}}

        def start_job_run(self, JobName, Arguments):
            started.update(Arguments)
            return {"JobRunId": "jr_1"}

    named = {"data_uri": "s3://data/training/x.csv", "data_sha256": "abc", "rows": 1}
    monkeypatch.setattr(etl.data_key_mod, "fetch", lambda _c, _k: named)
    monkeypatch.setattr(etl.reuse, "plan", lambda *_a: None)
    monkeypatch.setattr(etl, "upload_if_changed", lambda _s3, path, uri: uploaded.append(uri))
    monkeypatch.setattr(etl, "wait_for", lambda *a, **k: None)
    monkeypatch.setattr(etl, "read_json_object", lambda *_a: {"split_counts": {"train": 1}})
    records = {}
    cfg = SimpleNamespace(
        glue_script="src/abalone_model/etl.py", glue_extra_files=(), etl={"seed": "42"}, data="x"
    )
    context = SimpleNamespace(
        config=cfg,
        account=SimpleNamespace(GlueJobName="job", ArtifactBucket="art", DataBucket="data"),
        client=lambda service: Glue() if service == "glue" else None,
        root=ROOT,
        run_id="r1",
        region="us-east-1",
        manifest=SimpleNamespace(update=lambda section, values: records.update({section: values})),
    )
    result = etl.run(context, False, "training/x.csv", "new-data")
    assert started["--input"] == "s3://data/training/x.csv"
    assert uploaded == ["s3://art/code/etl.py"]  # the script only: no raw/ upload
    assert (result["data_uri"], result["data_sha256"]) == ("s3://data/training/x.csv", "abc")
    assert records["etl"]["data_uri"] == "s3://data/training/x.csv"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MLOPS_DATA_KEY": "../raw/abalone.csv"},
            "error: data key ../raw/abalone.csv: must be under training/",
        ),
        (
            {"MLOPS_RETRAIN_REASON": "$(id)"},
            "error: retrain reason '$(id)': expected one of new-data, drift",
        ),
    ],
)
def test_the_cli_refuses_a_bad_payload_in_one_line_before_any_aws_call(
    env, message, monkeypatch, tmp_path, capsys
):
    from mlops import cli

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: no call made
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--manifest", str(tmp_path / "run.json"), "etl"]) == EXIT_CONFIG
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(message)


class RecordingS3(S3):
    """S3 that records the bucket of each call and answers HeadObject as told."""

    def __init__(self, objects: dict[str, bytes], code: str = "", length: int | None = None):
        super().__init__(objects)
        self.code, self.length, self.buckets = code, length, []

    def head_object(self, Bucket: str, Key: str) -> dict:
        self.buckets.append(Bucket)
        if self.code:
            raise ClientError({"Error": {"Code": self.code, "Message": "m"}}, "HeadObject")
        head = super().head_object(Bucket, Key)
        return head if self.length is None else {"ContentLength": self.length}

    def get_object(self, Bucket: str, Key: str) -> dict:
        self.buckets.append(Bucket)
        return super().get_object(Bucket, Key)


def ctx_with(s3: S3):
    def client(service: str):
        assert service == "s3"
        return s3

    return SimpleNamespace(**{**vars(ctx({})), "client": client})


def test_fetch_reads_the_key_from_the_data_bucket():
    s3 = RecordingS3({"training/x.csv": csv_bytes(HEADER, ROW)})
    data_key.fetch(ctx_with(s3), "training/x.csv")
    assert s3.buckets == ["data", "data"]


@pytest.mark.parametrize("code", ["NoSuchKey", "NotFound"])
def test_fetch_calls_every_not_found_code_a_missing_object(code):
    with pytest.raises(ConfigError, match=r"s3://data/training/x\.csv does not exist"):
        data_key.fetch(ctx_with(RecordingS3({}, code=code)), "training/x.csv")


def test_fetch_names_s3s_code_when_the_object_cannot_be_read():
    with pytest.raises(ConfigError, match=r"^data key: cannot read s3://data/training/x\.csv: Acc"):
        data_key.fetch(ctx_with(RecordingS3({}, code="AccessDenied")), "training/x.csv")


def test_fetch_refuses_an_object_over_the_single_put_limit():
    s3 = RecordingS3({"training/x.csv": b""}, length=data_key.MAX_BYTES + 1)
    with pytest.raises(ConfigError, match=r"s3://data/training/x\.csv is over 5368709120 bytes"):
        data_key.fetch(ctx_with(s3), "training/x.csv")


def test_fetch_takes_an_object_of_exactly_the_limit_or_of_no_stated_length():
    data = csv_bytes(HEADER, ROW)
    for length in (data_key.MAX_BYTES, None):
        s3 = RecordingS3({"training/x.csv": data}, length=length)
        if length is None:
            s3.head_object = lambda Bucket, Key: {}
        assert data_key.fetch(ctx_with(s3), "training/x.csv")["rows"] == 1


def test_a_bad_dispatched_csv_is_refused_naming_its_uri():
    s3 = RecordingS3({"training/x.csv": csv_bytes(HEADER)})
    with pytest.raises(ConfigError, match=r"^s3://data/training/x\.csv has a header and no rows"):
        data_key.fetch(ctx_with(s3), "training/x.csv")


def test_a_key_is_shown_whole_up_to_80_characters_and_cut_beyond():
    exact = "raw/" + "a" * 76
    with pytest.raises(ConfigError, match=f"data key {exact}: must be under"):
        data_key.check_key(exact)
    longer = "raw/" + "a" * 77
    with pytest.raises(ConfigError) as refused:
        data_key.check_key(longer)
    assert f"data key {longer[:40]!r}...: must be under" in str(refused.value)


def test_a_key_of_the_maximum_length_is_taken_and_one_longer_is_refused():
    key = "training/" + "a" * (data_key.MAX_KEY - len("training/.csv")) + ".csv"
    assert data_key.check_key(key) == key
    with pytest.raises(ConfigError, match="use a path of letters, digits"):
        data_key.check_key(key[:-4] + "a.csv")


def test_a_long_reason_is_shown_cut_to_40_characters():
    with pytest.raises(ConfigError) as refused:
        data_key.check_reason("r" * 41)
    assert f"retrain reason {'r' * 40!r}: expected" in str(refused.value)


def test_a_csv_field_the_reader_cannot_take_is_a_one_line_refusal():
    data = csv_bytes(HEADER, "M," + "1" * 200_000 + ",0.365,0.095,0.514,0.2245,0.101,0.15,15")
    with pytest.raises(ConfigError, match=r"^s3://b/k is not a CSV the ETL can read: field larger"):
        data_key.check_csv(data, HEADER.split(","), "s3://b/k")


def test_a_header_with_a_byte_order_mark_is_the_training_header():
    data = b"\xef\xbb\xbf" + csv_bytes(HEADER, ROW)
    assert data_key.check_csv(data, HEADER.split(","), "s3://b/k") == 1


def test_an_empty_data_file_has_an_empty_header(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    assert data_key.header_of(tmp_path / "empty.csv") == []
