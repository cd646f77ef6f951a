"""Shared AWS helpers: one-line errors, the wait loop's progress lines, S3 paths (no AWS needed)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from mlops import aws
from mlops.errors import EXIT_FAILED, PipelineError
from mlops.steps.train import LOG_GROUP, LogTail

LINK = "https://us-east-1.console.aws.amazon.com/sagemaker/job"


class Clock:
    """Fake monotonic clock: each call returns the next time; sleeps are recorded, not slept."""

    def __init__(self, times: list[float]) -> None:
        self.times: Iterator[float] = iter(times)
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return next(self.times)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def statuses(*values: str, **extra: str):
    """A describe() returning each status in turn (the last one repeats)."""
    seq = list(values)
    calls: list[int] = []

    def describe() -> dict[str, str]:
        calls.append(1)
        return {"Status": seq[min(len(calls), len(seq)) - 1], **extra}

    describe.calls = calls  # type: ignore[attr-defined]
    return describe


def wait(describe, clock: Clock, **kwargs):
    return aws.wait_for(
        "training job j",
        describe,
        lambda d: d["Status"],
        done={"Completed"},
        failed={"Failed", "Stopped"},
        clock=clock,
        sleep=clock.sleep,
        **kwargs,
    )


def stderr_lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


def test_one_line_per_status_change_with_elapsed_time(capsys):
    clock = Clock([100.0, 100.0, 101.5, 103.0, 110.25])
    polled: list[dict] = []
    result = wait(
        statuses("Starting", "InProgress", "InProgress", "Completed"),
        clock,
        link=LINK,
        on_poll=polled.append,
    )
    assert stderr_lines(capsys) == [
        f"  training job j: {LINK}",
        "  training job j: Starting after 0.0s",
        "  training job j: InProgress after 1.5s",
        "  training job j: Completed after 10.2s",
    ]
    assert result.status == "Completed"
    assert result.seconds == pytest.approx(10.25)
    assert result.description["Status"] == "Completed"
    assert len(polled) == 4


def test_polling_stays_quick_during_the_first_minute(capsys):
    clock = Clock([0.0] * 8)
    wait(statuses(*["InProgress"] * 6, "Completed"), clock, poll=0.2, max_poll=30.0)
    assert clock.sleeps == pytest.approx([0.2, 0.3, 0.45, 0.5, 0.5, 0.5])
    assert len(stderr_lines(capsys)) == 2  # no link: InProgress, Completed


def test_polling_backs_off_to_the_maximum_after_a_minute():
    clock = Clock([0.0] + [100.0] * 7)
    wait(statuses(*["InProgress"] * 6, "Completed"), clock, poll=1.0, max_poll=3.0)
    assert clock.sleeps == pytest.approx([1.0, 1.5, 2.25, 3.0, 3.0, 3.0])


def test_failure_raises_with_the_aws_reason_and_the_link(capsys):
    clock = Clock([0.0, 0.0, 2.0])
    describe = statuses("InProgress", "Failed", FailureReason="AlgorithmError: out of memory")
    with pytest.raises(PipelineError) as exc:
        wait(describe, clock, link=LINK)
    assert str(exc.value) == f"training job j Failed: AlgorithmError: out of memory (see {LINK})"
    assert exc.value.exit_code == EXIT_FAILED
    assert stderr_lines(capsys)[-1] == "  training job j: Failed after 2.0s"


def test_failure_reason_from_a_callback_wins_and_a_missing_one_is_said():
    with pytest.raises(PipelineError, match=r"^training job j Stopped: Bucket \(S3\) failed$"):
        wait(
            statuses("Stopped", FailureReason="generic"),
            Clock([0.0, 0.0]),
            reason_of=lambda _d: "Bucket (S3) failed",
        )
    with pytest.raises(PipelineError, match=r"^training job j Failed: no reason given$"):
        wait(statuses("Failed"), Clock([0.0, 0.0]))


def test_gives_up_after_the_timeout():
    clock = Clock([0.0, 10.0, 50.0, 125.0])
    with pytest.raises(PipelineError) as exc:
        wait(statuses("InProgress"), clock, timeout=120)
    assert str(exc.value) == "training job j: still InProgress after 125s; gave up waiting"
    assert len(clock.sleeps) == 2


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeStacks")


def raiser(exc: Exception):
    def fn(**_kwargs):
        raise exc

    return fn


def test_call_returns_the_result_and_passes_keywords():
    assert aws.call("add", lambda **kw: kw["a"] + kw["b"], a=1, b=2) == 3


def test_call_turns_a_client_error_into_one_line():
    with pytest.raises(PipelineError) as exc:
        aws.call("read bootstrap stack s", raiser(client_error("ValidationError", "no stack s")))
    assert str(exc.value) == "read bootstrap stack s: ValidationError: no stack s"
    assert exc.value.__suppress_context__


def test_call_without_credentials_says_what_to_do():
    with pytest.raises(PipelineError) as exc:
        aws.call("list buckets", raiser(NoCredentialsError()))
    assert str(exc.value).startswith("list buckets: no AWS credentials (configure credentials")
    assert "\n" not in str(exc.value)


def test_call_turns_a_connection_error_into_one_line():
    error = EndpointConnectionError(endpoint_url="https://example.invalid")
    with pytest.raises(PipelineError, match=r"^describe: Could not connect.*example\.invalid"):
        aws.call("describe", raiser(error))


def test_session_without_a_region_is_a_clear_error(monkeypatch, tmp_path):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(PipelineError, match="no AWS region: set AWS_REGION or pass --region"):
        aws.session()
    assert aws.session("eu-west-1").region_name == "eu-west-1"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/runs/1/train.csv", ("bucket", "runs/1/train.csv")),
        ("s3://bucket/prefix/", ("bucket", "prefix/")),
        ("s3://bucket", ("bucket", "")),
    ],
)
def test_split_s3(uri, expected):
    assert aws.split_s3(uri) == expected


@pytest.mark.parametrize("uri", ["https://bucket/key", "bucket/key", "s3:///key", ""])
def test_split_s3_refuses_other_uris(uri):
    with pytest.raises(PipelineError, match="not an s3:// URI"):
        aws.split_s3(uri)


def test_s3_uri_joins_parts_without_doubled_slashes():
    assert aws.s3_uri("b", "/runs/", "r1", "", "training/") == "s3://b/runs/r1/training"
    assert aws.split_s3(aws.s3_uri("b", "capture", "dev")) == ("b", "capture/dev")


def test_console_link_names_the_region():
    assert (
        aws.console("eu-west-1", "sagemaker/home")
        == "https://eu-west-1.console.aws.amazon.com/sagemaker/home"
    )


def test_sha256_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n" * 1000)
    assert aws.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


class FakeS3:
    def __init__(self, body: bytes) -> None:
        self.body, self.asked = body, []

    def get_object(self, **kwargs):
        self.asked.append(kwargs)
        return {"Body": io.BytesIO(self.body)}


def test_read_json_object():
    s3 = FakeS3(b'{"rmse": 2.0}')
    assert aws.read_json_object(s3, "s3://b/eval/evaluation.json") == {"rmse": 2.0}
    assert s3.asked == [{"Bucket": "b", "Key": "eval/evaluation.json"}]
    with pytest.raises(PipelineError, match=r"^s3://b/x is not valid JSON$"):
        aws.read_json_object(FakeS3(b"<html>"), "s3://b/x")


class FakeLogs:
    """Just enough of a CloudWatch Logs client for LogTail."""

    class exceptions:  # mirrors boto3's client.exceptions
        class ResourceNotFoundException(Exception):
            pass

    def __init__(self, pages: list) -> None:
        self.pages, self.asked = pages, []

    def filter_log_events(self, **kwargs):
        self.asked.append(kwargs)
        page = self.pages.pop(0)
        if isinstance(page, Exception):
            raise page
        return {"events": page}


def event(n: int, ts: int, message: str) -> dict:
    return {"eventId": str(n), "timestamp": ts, "message": message}


def test_log_tail_prints_each_event_once_and_moves_on(capsys):
    logs = FakeLogs(
        [
            FakeLogs.exceptions.ResourceNotFoundException(),  # the group appears with the first log
            [event(1, 1000, "loading data\n"), event(2, 1005, "train:rmse=2.1")],
            [event(2, 1005, "train:rmse=2.1"), event(3, 1010, "done")],
        ]
    )
    tail = LogTail(logs, "mlops-train-r1")
    for _ in range(3):
        tail({})
    assert stderr_lines(capsys) == ["    | loading data", "    | train:rmse=2.1", "    | done"]
    assert [a["startTime"] for a in logs.asked] == [0, 0, 1005]
    assert {a["logGroupName"] for a in logs.asked} == {LOG_GROUP}
    assert {a["logStreamNamePrefix"] for a in logs.asked} == {"mlops-train-r1"}
