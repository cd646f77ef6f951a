"""Quick checks of the serving benchmark's pure parts (no timing assertions).

The benchmark lives in scripts/bench (run as a script, siblings imported by name), so its
directory is put on sys.path here.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

BENCH_DIR = Path(__file__).resolve().parents[2] / "scripts" / "bench"
sys.path.insert(0, str(BENCH_DIR))

import batch_transform  # noqa: E402
import bench_model  # noqa: E402
import bench_report  # noqa: E402
import bench_servers  # noqa: E402
import bench_wrk  # noqa: E402
import reference_app  # noqa: E402
import serving  # noqa: E402

from abalone_model.model import load, save  # noqa: E402
from abalone_model.schema import Schema  # noqa: E402

ROW_M = "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"
ROW_I = "I,0.33,0.255,0.08,0.205,0.0895,0.0395,0.055"


def _result(requests=1000, seconds=2.0, p50=1000, p99=3000, errors=None) -> bench_wrk.WrkResult:
    return bench_wrk.WrkResult(
        requests=requests,
        duration_us=int(seconds * 1e6),
        p50_us=p50,
        p90_us=p50,
        p99_us=p99,
        max_us=p99,
        mean_us=float(p50),
        errors=errors or {},
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small real model in the artefact layout, trained on 400 rows of the project's data."""
    schema = Schema.load()
    header, rows = bench_model.read_data()
    rows = rows[:400]
    x = bench_model.encode(schema, header, rows)
    y = np.array([float(r[header.index("rings")]) for r in rows])
    dtrain = xgb.DMatrix(x, label=y, feature_names=list(schema.encoded_names))
    booster = xgb.train({"max_depth": 3, "eta": 0.3, "nthread": 1}, dtrain, num_boost_round=20)
    return save(tmp_path_factory.mktemp("bench-model"), booster, schema, {})


# --- wrk output --------------------------------------------------------------------------------
def test_parse_output_reads_the_result_line_and_computes_rps():
    out = textwrap.dedent(
        """\
        Running 8s test @ http://127.0.0.1:1234/invocations
          1 threads and 32 connections
        Requests/sec:  5000.00
        BENCH_RESULT {"requests": 40000, "duration_us": 8000000, "bytes": 1, "p50_us": 900, \
"p90_us": 1500, "p99_us": 4200, "max_us": 9000, "mean_us": 950.5, "errors": {"connect": 0, \
"read": 0, "write": 0, "status": 3, "timeout": 1}}
        """
    )
    res = bench_wrk.parse_output(out)
    assert res.requests == 40000
    assert res.rps == pytest.approx(5000.0)
    assert (res.p50_us, res.p99_us, res.max_us) == (900, 4200, 9000)
    assert res.error_count == 4
    assert res.as_dict()["p99_ms"] == pytest.approx(4.2)


def test_parse_output_without_result_line_names_the_problem():
    with pytest.raises(bench_wrk.BenchError, match="BENCH_RESULT"):
        bench_wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_parse_output_with_broken_json_is_a_bench_error():
    with pytest.raises(bench_wrk.BenchError, match="unreadable"):
        bench_wrk.parse_output('BENCH_RESULT {"requests": \n')


# --- ratios and report -------------------------------------------------------------------------
def test_ratios_against_targets():
    ours = {
        "one_row_max": _result(requests=8000),  # 4000 req/s
        "one_row_half": _result(p99=4500),
        "rows_1000": _result(requests=200, p50=3000),  # 100 req/s, 3 us/row
    }
    ref = {
        "one_row_max": _result(requests=2000),  # 1000 req/s
        "one_row_half": _result(p99=20000),
        "rows_1000": _result(requests=50, p50=20000),  # 25 req/s
    }
    summary = bench_report.ratios(ours, ref, raw_per_row_s=2e-6)
    assert summary["one_row_rps_ours_over_ref"]["value"] == pytest.approx(4.0)
    assert summary["one_row_rps_ours_over_ref"]["met"] is True
    assert summary["ours_p99_ms_at_half_max"]["value"] == pytest.approx(4.5)
    assert summary["ours_p99_ms_at_half_max"]["met"] is True
    assert summary["per_row_cost_over_raw_predict"]["value"] == pytest.approx(1.5)
    assert summary["per_row_cost_over_raw_predict"]["met"] is True
    assert summary["rows_1000_rps_ours_over_ref"]["value"] == pytest.approx(4.0)


def test_ratios_report_missed_targets_and_zero_reference():
    slow = {
        "one_row_max": _result(requests=2000),
        "one_row_half": _result(p99=7000),
        "rows_1000": _result(requests=20, p50=9000),
    }
    dead = {key: _result(requests=0) for key in slow}
    summary = bench_report.ratios(slow, dead, raw_per_row_s=2e-6)
    assert summary["one_row_rps_ours_over_ref"] == {"value": None, "target_min": 3.0, "met": False}
    assert summary["ours_p99_ms_at_half_max"]["met"] is False
    assert summary["per_row_cost_over_raw_predict"]["value"] == pytest.approx(4.5)
    assert summary["per_row_cost_over_raw_predict"]["met"] is False
    lines = bench_report.ratio_lines(summary, 2.0)
    assert "n/ax" in lines
    assert lines.count("MISSED") == 3


def test_table_shows_both_servers():
    ours = {k: _result(requests=8000) for k in ("one_row_max", "one_row_half", "rows_1000")}
    ref = {k: _result(requests=2000, errors={"read": 2}) for k in ours}
    text = bench_report.table(ours, ref, {"ours": 2000.0, "reference": 500.0})
    assert "4000" in text and "1000" in text
    assert text.splitlines()[-1].split()[-2:] == ["0", "6"]  # 2 read errors x 3 runs


# --- data, model and payloads ------------------------------------------------------------------
def test_encode_one_hot_and_order():
    schema = Schema.load()
    header = list(schema.raw_names)
    x = bench_model.encode(schema, header, [ROW_M.split(","), ROW_I.split(",")])
    assert x.dtype == np.float32
    assert x.shape == (2, len(schema.encoded_names))
    sex = [schema.encoded_names.index(f"sex_{c}") for c in ("M", "F", "I")]
    assert x[0, sex].tolist() == [1.0, 0.0, 0.0]
    assert x[1, sex].tolist() == [0.0, 0.0, 1.0]
    assert x[0, schema.encoded_names.index("shell_weight")] == pytest.approx(0.15)


def test_write_splits_encoded_channels(tmp_path):
    schema = Schema.load()
    train_dir, val_dir = bench_model.write_splits(tmp_path, schema)
    train_lines = (train_dir / "part-00000.csv").read_text().splitlines()
    val_lines = (val_dir / "part-00000.csv").read_text().splitlines()
    assert train_lines[0].split(",") == ["rings", *schema.encoded_names]
    assert val_lines[0] == train_lines[0]
    n_rows = len(bench_model.read_data()[1])
    assert len(train_lines) - 1 + len(val_lines) - 1 == n_rows
    assert 0.13 < (len(val_lines) - 1) / n_rows < 0.17


def test_csv_body_drops_the_target():
    body = bench_model.csv_body([[*ROW_M.split(","), "15"]], 8)
    assert body == (ROW_M + "\n").encode()


def test_raw_predict_seconds_is_positive(model_dir):
    x = bench_model.encode(Schema.load(), list(Schema.load().raw_names), [ROW_M.split(",")] * 50)
    assert 0 < bench_model.raw_predict_seconds(model_dir, x, repeats=3) < 10


# --- the reference server ----------------------------------------------------------------------
def test_reference_app_answers_like_the_model(model_dir):
    client = reference_app.create_app(model_dir).test_client()
    assert client.get("/ping").status_code == 200
    resp = client.post("/invocations", data=f"{ROW_M}\n{ROW_I}\n", content_type="text/csv")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    got = [float(v) for v in resp.get_data(as_text=True).split()]
    schema = Schema.load()
    x = bench_model.encode(schema, list(schema.raw_names), [ROW_M.split(","), ROW_I.split(",")])
    assert got == pytest.approx(load(model_dir).predict(x).tolist(), abs=1e-5)


def test_reference_wsgi_serves_the_model_named_by_sm_model_dir(model_dir, monkeypatch):
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    monkeypatch.delitem(sys.modules, "reference_wsgi", raising=False)
    wsgi = importlib.import_module("reference_wsgi")
    resp = wsgi.app.test_client().post("/invocations", data=ROW_I, content_type="text/csv")
    assert resp.status_code == 200
    assert len(resp.get_data(as_text=True).split()) == 1


def test_reference_app_rejects_other_content_types(model_dir):
    client = reference_app.create_app(model_dir).test_client()
    resp = client.post("/invocations", json={"instances": [ROW_M.split(",")]})
    assert resp.status_code == 415


# --- process handling --------------------------------------------------------------------------
PING_SERVER = textwrap.dedent(
    """\
    import http.server, os, pathlib, sys
    pathlib.Path(sys.argv[2]).write_text(str(os.getpid()))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ping" else 404)
            self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_yields_after_ping_and_kills_the_group(tmp_path):
    port = bench_servers.free_port()
    pid_file = tmp_path / "pid"
    cmd = [sys.executable, "-c", PING_SERVER, str(port), str(pid_file)]
    with bench_servers.serve("toy", cmd, {}, port, ready_timeout=20) as url:
        assert url == f"http://127.0.0.1:{port}"
        pgid = os.getpgid(int(pid_file.read_text()))
        assert pgid != os.getpgid(0)  # its own group, so killing it spares us
        assert _group_alive(pgid)
    deadline = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(pgid)


def test_serve_reports_a_server_that_dies_before_ping():
    port = bench_servers.free_port()
    cmd = [sys.executable, "-c", "import sys; print('error: no model here'); sys.exit(3)"]
    with (
        pytest.raises(bench_wrk.BenchError, match=r"exited with 3 .*no model here"),
        bench_servers.serve("broken", cmd, {}, port, ready_timeout=20),
    ):
        pass


def test_main_without_wrk_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(serving, "wrk_path", lambda: None)
    assert serving.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: wrk is not installed: run `apt-get install wrk` and retry"]


def test_prepare_reuses_a_model_dir_and_builds_the_bodies(model_dir, tmp_path):
    args = serving.parse_args(["--model-dir", str(model_dir)])
    got_dir, bodies, matrix = serving.prepare(args, tmp_path)
    assert got_dir == model_dir
    one = bodies["one"].read_text()
    many = bodies["many"].read_text().splitlines()
    assert "\n" not in one and len(one.split(",")) == 8
    assert len(many) == 1000 and many[0] == one
    assert matrix.shape == (1000, len(Schema.load().encoded_names))


def test_max_diff_between_server_and_in_process_predictions():
    assert serving.max_diff([1.0, 2.5, 3.0], np.array([1.0, 2.0, 3.25])) == pytest.approx(0.5)


def test_parse_args_rejects_nonsense_durations(capsys):
    with pytest.raises(SystemExit):
        serving.parse_args(["--seconds", "0"])
    assert "--seconds" in capsys.readouterr().err


# --- batch transform: mini-batches through the real server against raw predict ----------------
def test_write_input_fills_the_size_with_a_header_and_repeated_rows(tmp_path):
    path = tmp_path / "input.csv"
    header, rows = batch_transform.write_input(path, Schema.load(), 500_000)
    lines = path.read_bytes().splitlines()
    assert lines[0].decode().split(",") == list(Schema.load().raw_names)
    assert len(lines) == len(rows) + 1 and len(rows) > len(bench_model.read_data()[1])
    assert 500_000 - 100 < path.stat().st_size <= 500_000
    assert lines[1].decode() == ",".join(rows[0][:8]) and header[8] == "rings"


def test_summary_and_report_of_the_batch_benchmark():
    result = batch_transform.summary(batch_s=3.0, rows=1_000_000, raw_s=0.2, raw_rows=100_000)
    assert result["batch_per_row_us"] == pytest.approx(3.0)
    assert result["raw_per_row_us"] == pytest.approx(2.0)
    assert (result["ratio"], result["met"]) == (pytest.approx(1.5), True)
    assert result["batch_rows_per_s"] == pytest.approx(333_333.3, rel=1e-6)
    text = batch_transform.report(result, 1_000_000, 2, 0.5)
    assert "1.50x (target <= 2x) MET" in text and "333,333" in text
    slow = batch_transform.summary(batch_s=5.0, rows=1_000_000, raw_s=0.2, raw_rows=100_000)
    assert slow["met"] is False and "MISSED" in batch_transform.report(slow, 1, 1, 0.0)


def test_batch_benchmark_runs_end_to_end_on_a_small_input(model_dir, capsys):
    args = ["--model-dir", str(model_dir), "--input-mib", "0.5", "--rounds", "1"]
    assert batch_transform.main(args) == 0
    out = capsys.readouterr().out
    assert "batch / raw predict:" in out and "in 1 mini-batches" in out
    assert "max |server - in-process prediction|, first mini-batch: " in out


def test_batch_benchmark_rejects_nonsense_arguments(capsys):
    with pytest.raises(SystemExit):
        batch_transform.parse_args(["--rounds", "0"])
    assert "--rounds" in capsys.readouterr().err
