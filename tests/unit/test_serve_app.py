"""The hosting contract: every status code through the ASGI app in-process, plus a real uvicorn."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from abalone_model import model as artefact
from abalone_model.errors import ModelError
from abalone_model.features import encode_rows
from abalone_model.schema import DATA_FILE, Schema
from abalone_model.serve import server
from abalone_model.serve.app import InferenceApp

SCHEMA = Schema.load()
NAMES = list(SCHEMA.raw_names)
ROW = "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"
CSV_H = {"content-type": "text/csv"}


@pytest.fixture(scope="session")
def raw_rows() -> list[list[str]]:
    with DATA_FILE.open(newline="") as fh:
        return [[r[n] for n in NAMES] for r in csv.DictReader(fh)][:400]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, raw_rows) -> Path:
    """A tiny real model in the artefact layout, trained on 400 rows (a fraction of a second)."""
    with DATA_FILE.open(newline="") as fh:
        rings = [float(r["rings"]) for r in csv.DictReader(fh)][:400]
    data = xgb.DMatrix(encode_rows(SCHEMA, raw_rows), label=np.array(rings))
    booster = xgb.train({"max_depth": 3, "nthread": 1, "seed": 0}, data, num_boost_round=20)
    return artefact.save(tmp_path_factory.mktemp("model"), booster, SCHEMA, {"note": "test"})


@pytest.fixture(scope="session")
def app(model_dir) -> InferenceApp:
    return InferenceApp(model=artefact.load(model_dir))


def call(app, method="POST", path="/invocations", body=b"", headers=None, chunks=None):
    """Drive the ASGI callable once; returns (status, headers dict, body bytes)."""
    heads = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "headers": heads}
    parts = list(chunks) if chunks is not None else [body]
    sent: list[dict] = []

    async def receive():
        chunk = parts.pop(0) if parts else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, end = sent
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, end["body"]


def error_of(response) -> dict:
    _, headers, body = response
    assert headers["content-type"] == "application/json"
    return json.loads(body)


def test_ping_after_load(app):
    assert call(app, "GET", "/ping")[0] == 200
    assert call(app, "GET", "/ping")[2] == b""


def test_ping_answers_503_until_lifespan_loaded_the_model(model_dir):
    app = InferenceApp(model_dir=model_dir)
    assert call(app, "GET", "/ping")[0] == 503
    assert call(app, body=ROW.encode(), headers=CSV_H)[0] == 503
    assert _lifespan(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert call(app, "GET", "/ping")[0] == 200


def test_lifespan_fails_on_a_broken_model(tmp_path):
    (tmp_path / "model.ubj").write_bytes(b"not a model")
    sent = _lifespan(InferenceApp(model_dir=tmp_path))
    assert sent == ["lifespan.startup.failed"]


def _lifespan(app) -> list[str]:
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    return sent


def test_csv_prediction_matches_the_model(app, raw_rows):
    body = "\n".join(",".join(r) for r in raw_rows[:50]).encode()
    status, headers, out = call(app, body=body, headers=CSV_H)
    assert status == 200 and headers["content-type"] == "text/csv"
    expected = app.model.predict(encode_rows(SCHEMA, raw_rows[:50]))
    got = np.array(out.decode().split(), dtype=np.float64)
    np.testing.assert_array_equal(got.astype(np.float32), expected.astype(np.float32))


def test_reordered_header_gives_the_same_predictions(app, raw_rows):
    plain = "\n".join(",".join(r) for r in raw_rows).encode()
    order = [3, 7, 0, 5, 1, 6, 2, 4]
    lines = [",".join(NAMES[i] for i in order)]
    lines += [",".join(r[i] for i in order) for r in raw_rows]
    reordered = "\r\n".join(lines).encode()
    assert len(reordered) > 2048  # exercises the vectorised route too
    first = call(app, body=plain, headers=CSV_H)
    second = call(app, body=reordered, headers=CSV_H)
    assert first[0] == second[0] == 200 and first[2] == second[2]
    assert len(first[2].split()) == len(raw_rows)


def test_json_in_json_out_and_accept_negotiation(app):
    record = dict(zip(NAMES, [ROW.split(",")[0], *map(float, ROW.split(",")[1:])], strict=True))
    body = json.dumps({"instances": [record, list(record.values())]}).encode()
    status, headers, out = call(app, body=body, headers={"content-type": "application/json"})
    assert status == 200 and headers["content-type"] == "application/json"
    predictions = json.loads(out)["predictions"]
    assert len(predictions) == 2 and predictions[0] == predictions[1]
    csv_out = call(app, body=ROW.encode(), headers={**CSV_H, "accept": "application/json"})
    assert json.loads(csv_out[2])["predictions"] == predictions[:1]
    as_csv = call(
        app, body=body, headers={"content-type": "application/json", "accept": "text/csv"}
    )
    assert as_csv[1]["content-type"] == "text/csv" and len(as_csv[2].split()) == 2


@pytest.mark.parametrize(
    ("body", "row", "field"),
    [
        (f"{ROW}\nX{ROW[1:]}", 2, "sex"),
        (f"{ROW}\n{ROW},1", 2, None),
        (ROW.replace("0.15", "abc"), 1, "shell_weight"),
        (ROW.replace("0.455", "nan"), 1, "length"),
        (ROW.replace("0.365", "inf"), 1, "diameter"),
        (ROW.replace("0.514", "1e39"), 1, "whole_weight"),  # inf once float32
        (ROW.replace(",0.514,", ",,"), 1, "whole_weight"),  # a missing value
        (f"{ROW}\n{ROW.replace(',0.15', ',-inf')}", 2, "shell_weight"),
        ("", None, None),
    ],
)
def test_bad_csv_is_400_naming_row_and_field(app, body, row, field):
    response = call(app, body=body.encode(), headers=CSV_H)
    assert response[0] == 400
    error = error_of(response)
    assert error.get("row") == row and error.get("field") == field and error["error"]


def test_bad_json_shape_is_400(app):
    response = call(app, body=b'{"rows": []}', headers={"content-type": "application/json"})
    assert response[0] == 400 and "instances" in error_of(response)["error"]


def test_oversize_body_is_413(model_dir):
    small = InferenceApp(model=artefact.load(model_dir), max_body=100)
    declared = call(small, body=b"", headers={**CSV_H, "content-length": "101"})
    assert declared[0] == 413 and "limit" in error_of(declared)["error"]
    streamed = call(small, headers=CSV_H, chunks=[ROW.encode() + b"\n"] * 3)
    assert streamed[0] == 413
    assert call(small, body=ROW.encode(), headers=CSV_H)[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/invocations", {"content-type": "text/plain"}, 415),
        ("POST", "/invocations", {}, 415),
        ("POST", "/invocations", {**CSV_H, "accept": "text/html"}, 406),
        ("GET", "/nowhere", {}, 404),
        ("GET", "/invocations", {}, 405),
        ("POST", "/ping", {}, 405),
    ],
)
def test_client_errors(app, method, path, headers, status):
    response = call(app, method, path, ROW.encode(), headers)
    assert response[0] == status and error_of(response)["error"]
    if status == 405:
        assert response[1]["allow"]


def test_unexpected_error_is_a_generic_500_and_the_app_keeps_serving(app, caplog):
    class Broken:
        schema = SCHEMA

        def predict(self, matrix):
            raise RuntimeError("boom")

    broken = InferenceApp(model=Broken())
    response = call(broken, body=ROW.encode(), headers=CSV_H)
    assert response[0] == 500 and "boom" not in error_of(response)["error"]
    assert "boom" in caplog.text
    broken.use(app.model)
    assert call(broken, body=ROW.encode(), headers=CSV_H)[0] == 200


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "9090")
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "3")
    args = server.parse_args([])
    assert (args.port, args.workers) == (9090, 3)
    monkeypatch.delenv("SAGEMAKER_MODEL_SERVER_WORKERS")
    assert server.parse_args([]).workers == len(os.sched_getaffinity(0))
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "http")
    with pytest.raises(ModelError, match="SAGEMAKER_BIND_TO_PORT"):
        server.parse_args([])


def _serve(env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, "-m", "abalone_model", "serve"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_missing_model_exits_non_zero_with_one_line(tmp_path):
    proc = _serve({"SM_MODEL_DIR": str(tmp_path / "absent"), "SAGEMAKER_BIND_TO_PORT": "1"})
    _, err = proc.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "model" in lines[0]


def _free_port() -> int:
    from mlops.local.endpoints import free_port  # outside the ephemeral range: see there

    return free_port()


def test_child_server_ports_come_from_outside_the_ephemeral_range():
    """A port bound to 0 elsewhere (a Spark driver's socket) can never be one we poll."""
    from mlops.local import endpoints

    low = endpoints._ephemeral_low()
    ports = {endpoints.free_port() for _ in range(50)}
    assert all(endpoints.PORTS_FROM <= p < low for p in ports) and len(ports) > 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        assert taken.getsockname()[1] >= low  # what the kernel gives: the range we avoid


@pytest.fixture(scope="module")
def live(model_dir):
    """A real `python -m abalone_model serve` (one worker) on an ephemeral loopback port."""
    port = _free_port()
    proc = _serve(
        {
            "SM_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        }
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                assert resp.status == 200
                break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "server did not answer /ping in 60 s"
            time.sleep(0.2)
    yield url, port
    proc.terminate()
    proc.wait(timeout=20)


def test_live_server_predicts_and_survives_bad_requests(live):
    url, _ = live
    bad = urllib.request.Request(f"{url}/invocations", data=b"M,1", headers=CSV_H)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=10)
    assert info.value.code == 400 and json.loads(info.value.read())["row"] == 1
    good = urllib.request.Request(f"{url}/invocations", data=ROW.encode(), headers=CSV_H)
    with urllib.request.urlopen(good, timeout=10) as resp:
        assert resp.status == 200 and float(resp.read()) > 0


def test_live_server_refuses_a_declared_oversize_body_without_reading_it(live):
    _, port = live
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 7000000\r\n\r\n"
        )
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")


# --- the payload limit at its boundary, declared and streamed -----------------------------------


@pytest.fixture(scope="module")
def limited(model_dir):
    """An app whose limit is exactly the size of BODY (two valid rows)."""
    return InferenceApp(model=artefact.load(model_dir), max_body=len(BODY))


BODY = f"{ROW}\n{ROW}\n".encode()


def test_declared_length_exactly_at_the_limit_is_served(limited):
    headers = {**CSV_H, "content-length": str(len(BODY))}
    status, _, out = call(limited, body=BODY, headers=headers)
    assert status == 200 and len(out.split()) == 2


@pytest.mark.parametrize("declared", ["{}", " {} ", "{}\t"])
def test_declared_length_one_byte_over_is_413_before_reading(limited, declared):
    over = len(BODY) + 1
    headers = {**CSV_H, "content-length": declared.format(over)}
    response = call(limited, headers=headers, chunks=[])
    assert response[0] == 413
    assert error_of(response) == {
        "error": f"body of {over} bytes exceeds the {len(BODY)}-byte limit"
    }


def test_streamed_body_exactly_at_the_limit_is_served(limited):
    half = len(BODY) // 2
    status, _, out = call(limited, headers=CSV_H, chunks=[BODY[:half], BODY[half:]])
    assert status == 200 and len(out.split()) == 2


def test_streamed_body_one_byte_over_is_413(limited):
    response = call(limited, headers=CSV_H, chunks=[BODY, b"\n"])
    assert response[0] == 413
    assert error_of(response) == {"error": f"body exceeds the {len(BODY)}-byte limit"}


def test_a_lying_content_length_does_not_lift_the_limit(limited):
    response = call(limited, headers={**CSV_H, "content-length": "3"}, chunks=[BODY, b"\n"])
    assert response[0] == 413


@pytest.mark.parametrize("declared", ["abc", "-1", "", "1e9"])
def test_a_malformed_content_length_is_ignored_and_the_body_read(limited, declared):
    assert call(limited, body=BODY, headers={**CSV_H, "content-length": declared})[0] == 200


def test_default_limit_is_sagemakers_6_mib(app, model_dir):
    from abalone_model.serve import app as app_module

    assert app_module.MAX_BODY == 6 * 1024 * 1024
    assert InferenceApp(model=app.model).max_body == app_module.MAX_BODY
    declared = call(app, headers={**CSV_H, "content-length": str(6 * 1024 * 1024 + 1)})
    assert declared[0] == 413


def test_a_client_disconnect_mid_body_is_400(app):
    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": []}
    scope["headers"] = [(b"content-type", b"text/csv")]
    messages = [
        {"type": "http.request", "body": ROW.encode(), "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {
        "error": "the client disconnected before sending the whole body"
    }


# --- 400 bodies name the row and field; media types are 415/406 ---------------------------------


def test_json_errors_name_the_record_and_field(app):
    sex, *numbers = ROW.split(",")
    good = dict(zip(NAMES, [sex, *map(float, numbers)], strict=True))
    bad = {**good, "height": None}
    body = json.dumps({"instances": [good, good, bad]}).encode()
    response = call(app, body=body, headers={"content-type": "application/json"})
    assert response[0] == 400
    error = error_of(response)
    assert (error["row"], error["field"]) == (3, "height") and "height" in error["error"]


def test_csv_errors_count_rows_after_a_header_and_name_reordered_fields(app):
    order = [NAMES[-1], *NAMES[:-1]]
    values = ROW.split(",")
    good = ",".join([values[-1], *values[:-1]])
    bad = ",".join(["oops", *values[:-1]])
    body = "\n".join([",".join(order), good, bad]).encode()
    response = call(app, body=body, headers=CSV_H)
    assert response[0] == 400
    error = error_of(response)
    assert (error["row"], error["field"]) == (2, NAMES[-1])


def test_response_headers_describe_the_body(app):
    status, headers, out = call(app, body=ROW.encode(), headers=CSV_H)
    assert status == 200
    assert headers == {
        "content-type": "text/csv",
        "content-length": str(len(out)),
        "x-out-of-range": "0",
    }
    status, headers, out = call(app, "GET", "/ping")
    assert (status, out) == (200, b"")
    assert headers == {"content-type": "text/plain", "content-length": "0"}


def test_head_ping_and_the_allow_headers(app):
    assert call(app, "HEAD", "/ping")[0] == 200
    assert call(app, "GET", "/invocations")[1]["allow"] == "POST"
    assert call(app, "POST", "/ping")[1]["allow"] == "GET, HEAD"
    not_found = call(app, "GET", "/nowhere")
    assert error_of(not_found) == {
        "error": "no such path '/nowhere': use POST /invocations or GET /ping"
    }
    put = call(app, "PUT", "/invocations")
    assert error_of(put) == {"error": "PUT not allowed on /invocations"}


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        (
            {"content-type": "text/plain"},
            415,
            "unsupported Content-Type 'text/plain': send text/csv or application/json",
        ),
        ({}, 415, "unsupported Content-Type '(none)': send text/csv or application/json"),
        (
            {**CSV_H, "accept": "text/html"},
            406,
            "unsupported Accept 'text/html': accept text/csv or application/json",
        ),
    ],
)
def test_media_type_errors_say_what_to_send(app, headers, status, message):
    response = call(app, body=ROW.encode(), headers=headers)
    assert response[0] == status and error_of(response) == {"error": message}


def test_the_last_header_of_a_name_wins(app):
    heads = [(b"content-type", b"text/plain"), (b"content-type", b"text/csv")]
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": ROW.encode(), "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": heads}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200


# --- the ASGI messages themselves, the log lines and the factory ---------------------------------
def _messages(app, scope, received: list[dict]) -> list[dict]:
    """Every message the app sends for one scope, given what ``receive`` hands it in order."""
    sent: list[dict] = []

    async def receive():
        return received.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_responses_are_a_start_message_then_a_body_message(app):
    scope = {"type": "http", "method": "GET", "path": "/ping", "headers": []}
    start, body = _messages(app, scope, [])
    assert (start["type"], start["status"]) == ("http.response.start", 200)
    assert body == {"type": "http.response.body", "body": b""}


def test_loading_answers_name_the_reason(model_dir):
    loading = InferenceApp(model_dir=model_dir)
    expected = {"error": "the model is still loading"}
    assert error_of(call(loading, "GET", "/ping")) == expected
    assert error_of(call(loading, body=ROW.encode(), headers=CSV_H)) == expected


def test_a_failed_startup_reports_and_logs_the_reason(tmp_path, caplog):
    app = InferenceApp(model_dir=tmp_path / "absent")
    with pytest.raises(ModelError) as direct:
        app.load()
    sent = _messages(app, {"type": "lifespan"}, [{"type": "lifespan.startup"}])
    assert sent == [{"type": "lifespan.startup.failed", "message": str(direct.value)}]
    assert f"cannot load the model: {direct.value}" in caplog.text


def test_an_unexpected_error_is_logged_with_method_and_path(app, caplog):
    class Broken:
        schema = SCHEMA

        def predict(self, matrix):
            raise RuntimeError("boom")

    response = call(InferenceApp(model=Broken()), body=ROW.encode(), headers=CSV_H)
    assert error_of(response) == {"error": "internal server error; see the server log"}
    assert "unexpected error serving POST /invocations" in caplog.text


def test_body_and_more_body_are_optional_in_request_messages(app):
    scope = {"type": "http", "method": "POST", "path": "/invocations"}
    scope["headers"] = [(b"content-type", b"text/csv")]
    received = [
        {"type": "http.request", "body": ROW.encode(), "more_body": True},
        {"type": "http.request"},
    ]
    start, body = _messages(app, scope, received)
    assert start["status"] == 200 and len(body["body"].split()) == 1


def test_create_app_takes_the_model_directory_from_the_environment(monkeypatch, tmp_path):
    from abalone_model.serve.app import DEFAULT_MODEL_DIR, create_app

    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path))
    made = create_app()
    assert (made.model_dir, made.model) == (str(tmp_path), None)
    monkeypatch.delenv("SM_MODEL_DIR")
    assert create_app().model_dir == DEFAULT_MODEL_DIR == "/opt/ml/model"


# --- out-of-range values are predicted and counted, malformed ones are still 400 -----------------
def _data_lines() -> list[str]:
    """The example data's feature columns, header dropped (two rows have height 0)."""
    with DATA_FILE.open(newline="") as fh:
        return [",".join(r[n] for n in NAMES) for r in csv.DictReader(fh)]


def test_out_of_range_rows_are_predicted_and_counted(model_dir):
    app = InferenceApp(model=artefact.load(model_dir))
    rows = [ROW.replace("0.095", "0"), ROW.replace("0.514", "9"), ROW]
    status, headers, out = call(app, body="\n".join(rows).encode(), headers=CSV_H)
    assert status == 200
    expected = app.model.predict(encode_rows(SCHEMA, [r.split(",") for r in rows]))
    np.testing.assert_array_equal(np.array(out.split(), dtype=np.float32), expected)
    assert headers["x-out-of-range"] == "2"
    assert headers["x-out-of-range-features"] == "height=1,whole_weight=1"
    assert (dict(app.out_of_range), app.rows_predicted) == ({"height": 1, "whole_weight": 1}, 3)
    call(app, body=rows[0].encode(), headers=CSV_H)
    assert (dict(app.out_of_range), app.rows_predicted) == ({"height": 2, "whole_weight": 1}, 4)


def test_the_example_data_as_a_10000_row_csv_is_served(app):
    lines = (_data_lines() * 3)[:10_000]
    zero_height = sum(line.split(",")[3] == "0" for line in lines)
    assert zero_height >= 2  # the data's own rows outside gt 0
    body = (",".join(NAMES) + "\n" + "\n".join(lines) + "\n").encode()
    status, headers, out = call(app, body=body, headers=CSV_H)
    assert status == 200 and len(out.splitlines()) == 10_000
    assert headers["x-out-of-range"] == str(zero_height)
    assert headers["x-out-of-range-features"] == f"height={zero_height}"


def test_out_of_range_json_is_predicted_and_counted(model_dir):
    app = InferenceApp(model=artefact.load(model_dir))
    sex, *numbers = ROW.split(",")
    record = {**dict(zip(NAMES, [sex, *map(float, numbers)], strict=True)), "length": 7.5}
    body = json.dumps({"instances": [record]}).encode()
    status, headers, out = call(app, body=body, headers={"content-type": "application/json"})
    assert status == 200 and len(json.loads(out)["predictions"]) == 1
    assert (headers["x-out-of-range"], headers["x-out-of-range-features"]) == ("1", "length=1")
    assert app.out_of_range == {"length": 1}


def test_a_refused_request_counts_nothing(model_dir):
    app = InferenceApp(model=artefact.load(model_dir))
    body = f"{ROW.replace('0.095', '0')}\nX{ROW[1:]}".encode()
    assert call(app, body=body, headers=CSV_H)[0] == 400
    assert (dict(app.out_of_range), app.rows_predicted) == ({}, 0)


def test_shutdown_logs_the_out_of_range_totals_only_when_there_are_any(model_dir, caplog):
    app = InferenceApp(model=artefact.load(model_dir))
    call(app, body=f"{ROW}\n{ROW}".encode(), headers=CSV_H)
    _lifespan(app)
    assert "outside the training ranges" not in caplog.text
    call(app, body=ROW.replace("0.095", "0").replace("0.15", "6").encode(), headers=CSV_H)
    _lifespan(app)
    assert caplog.records[-1].levelname == "WARNING"
    assert caplog.records[-1].getMessage() == (
        "values outside the training ranges in 3 rows predicted: height=1,shell_weight=1"
    )


# --- batch transform: GET /execution-parameters and full 6 MiB mini-batches ---------------------
BATCH_ENV = (
    "SAGEMAKER_MODEL_SERVER_WORKERS",
    "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",
    "SAGEMAKER_BATCH_STRATEGY",
    "SAGEMAKER_MAX_PAYLOAD_IN_MB",
)


@pytest.fixture
def batch_env(monkeypatch):
    for name in BATCH_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _parameters(app) -> dict:
    status, headers, body = call(app, "GET", "/execution-parameters")
    assert status == 200 and headers["content-type"] == "application/json"
    return json.loads(body)


def test_execution_parameters_defaults_answer_even_while_loading(batch_env, model_dir):
    loading = InferenceApp(model_dir=model_dir)
    assert _parameters(loading) == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }
    assert loading.max_body == 6 * 1024 * 1024


def test_execution_parameters_follow_the_environment(batch_env, model_dir):
    batch_env.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "3")
    batch_env.setenv("SAGEMAKER_BATCH_STRATEGY", " single_record ")
    batch_env.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "10")
    app = InferenceApp(model_dir=model_dir)
    assert _parameters(app) == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 10,
    }
    assert app.max_body == 10 * 1024 * 1024  # a payload of MaxPayloadInMB MiB must fit
    assert InferenceApp(model_dir=model_dir, max_body=100).max_body == 100
    batch_env.setenv("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "5")
    batch_env.setenv("SAGEMAKER_MAX_PAYLOAD_IN_MB", "1")
    small = InferenceApp(model_dir=model_dir)
    assert _parameters(small)["MaxConcurrentTransforms"] == 5
    assert small.max_body == 6 * 1024 * 1024  # never below the real-time limit
    batch_env.setenv("SAGEMAKER_BATCH_STRATEGY", "MultiRecord")  # the API's spelling
    assert _parameters(InferenceApp(model_dir=model_dir))["BatchStrategy"] == "MULTI_RECORD"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0", "from 1 to 100"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "101", "from 1 to 100"),
        ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "many", "from 1 to 1024"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "-2", "from 1 to 512"),
        ("SAGEMAKER_BATCH_STRATEGY", "batch", "'batch' is not one of"),
    ],
)
def test_bad_batch_settings_stop_the_app_naming_the_variable(batch_env, name, value, words):
    batch_env.setenv(name, value)
    with pytest.raises(ModelError, match=f"{name}=.*{words}"):
        InferenceApp()


def test_execution_parameters_is_get_only(app):
    response = call(app, "POST", "/execution-parameters")
    assert response[0] == 405 and response[1]["allow"] == "GET"


def test_server_main_answers_the_worker_count_as_max_concurrent_transforms(batch_env, model_dir):
    import uvicorn

    from abalone_model.serve.app import create_app

    batch_env.setenv("SM_MODEL_DIR", str(model_dir))
    batch_env.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "1")
    ran: list = []
    batch_env.setattr(uvicorn, "run", lambda app, **options: ran.append(options["workers"]))
    assert server.main(["--workers", "3", "--model-dir", str(model_dir)]) == 0
    assert ran == [3] and os.environ["SAGEMAKER_MODEL_SERVER_WORKERS"] == "3"
    assert _parameters(create_app())["MaxConcurrentTransforms"] == 3
    batch_env.setenv("SAGEMAKER_BATCH_STRATEGY", "nope")
    with pytest.raises(ModelError, match="SAGEMAKER_BATCH_STRATEGY"):
        server.main(["--workers", "3", "--model-dir", str(model_dir)])
    assert ran == [3]


def _full_payload(size: int = 6 * 1024 * 1024) -> tuple[bytes, int]:
    """A header, then data rows, exactly ``size`` bytes (the last number zero-padded to fit)."""
    head = (",".join(NAMES) + "\n").encode()
    lines, total = [], len(head)
    for line in _data_lines() * 40:
        if total + len(line) + 1 > size - 64:
            break
        lines.append(line)
        total += len(line) + 1
    lines.append(ROW + "0" * (size - total - len(ROW) - 1))
    body = head + ("\n".join(lines) + "\n").encode()
    assert len(body) == size
    return body, len(lines)


def test_a_full_6_mib_mini_batch_answers_one_line_per_row(app):
    body, rows = _full_payload()
    declared = {**CSV_H, "content-length": str(len(body))}
    status, _, out = call(app, body=body, headers=declared)
    assert status == 200 and len(out.splitlines()) == rows
    assert out.endswith(b"\n") and b"\n\n" not in out
    assert out.splitlines()[-1] == call(app, body=ROW.encode(), headers=CSV_H)[2].strip()
    over = call(app, headers=CSV_H, chunks=[body, b"\n"])
    assert over[0] == 413


def test_mini_batches_of_a_big_file_join_back_to_every_input_row(app, tmp_path):
    from abalone_model.serve import batch

    source = tmp_path / "input.csv"
    source.write_text(",".join(NAMES) + "\n" + "\n".join(_data_lines() * 4) + "\n\n\n")
    outputs = []
    for part in batch.split_lines(source, 256 * 1024):
        status, _, out = call(app, body=part, headers=CSV_H)
        assert status == 200
        outputs.append(out)
    joined = batch.join_input(source.read_bytes(), b"".join(outputs), header=True).splitlines()
    assert len(outputs) > 2 and len(joined) == 1 + 4 * len(_data_lines())
    assert joined[0].endswith(b",prediction") and joined[1].startswith(_data_lines()[0].encode())


def test_live_server_answers_execution_parameters_and_a_full_payload(live):
    url, _ = live
    with urllib.request.urlopen(f"{url}/execution-parameters", timeout=10) as resp:
        assert json.loads(resp.read())["MaxConcurrentTransforms"] == 1
    body, rows = _full_payload()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers=CSV_H)
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 200 and len(resp.read().splitlines()) == rows
        assert resp.headers["X-Out-Of-Range"].isdigit()
