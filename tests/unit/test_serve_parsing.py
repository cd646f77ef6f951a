"""Property tests on the request parser: no crash on any input, one meaning for every valid form."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abalone_model.features import F32_MAX, FeatureError, encoder_for
from abalone_model.schema import DATA_FILE, Schema
from abalone_model.serve import batch, parsing
from abalone_model.serve.parsing import CSV, JSON, ClientError

SCHEMA = Schema.load()
ENC = encoder_for(SCHEMA)
NAMES = SCHEMA.raw_names
ROW = "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _value(col):
    """Valid values: in the training range mostly, anywhere float32 can hold sometimes."""
    if col.is_category:
        return st.sampled_from(col.categories)
    inside = st.floats(min_value=col.gt, max_value=col.le, exclude_min=True, allow_nan=False)
    return st.one_of(inside, st.floats(min_value=-F32_MAX, max_value=F32_MAX))


records = st.lists(
    st.fixed_dictionaries({c.name: _value(c) for c in SCHEMA.features}), min_size=1, max_size=30
)


def _csv(recs, order=NAMES, header=False, eol="\n", final=True) -> bytes:
    lines = [",".join(order)] if header else []
    lines += [",".join(str(r[n]) for n in order) for r in recs]
    return (eol.join(lines) + (eol if final else "")).encode()


def _outcome(fn, *args):
    """('ok', matrix) or ('error', body dict); any other exception fails the test."""
    try:
        result = fn(*args)
    except (FeatureError, ClientError) as exc:
        return "error", exc.to_dict()
    return "ok", result


def _assert_same(vector, exact):
    """The vectorised route may decline (None), otherwise it must agree with the exact route."""
    if vector[0] == "ok" and vector[1] is None:
        return
    assert vector[0] == exact[0]
    if vector[0] == "ok":
        np.testing.assert_array_equal(vector[1], exact[1])
    else:
        assert vector[1] == exact[1]


@FAST
@given(records, st.permutations(NAMES), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_every_valid_form_gives_the_same_matrix(recs, order, eol, final):
    reference = parsing.parse_body(ENC, CSV, _csv(recs))
    forms = [
        (CSV, _csv(recs, eol=eol, final=final)),
        (CSV, _csv(recs, header=True, eol=eol, final=final)),
        (CSV, _csv(recs, order=order, header=True, eol=eol, final=final)),
        (JSON, json.dumps({"instances": recs}).encode()),
        (JSON, json.dumps({"instances": [{n: r[n] for n in order} for r in recs]}).encode()),
        (JSON, json.dumps({"instances": [[r[n] for n in NAMES] for r in recs]}).encode()),
    ]
    for family, body in forms:
        np.testing.assert_array_equal(parsing.parse_body(ENC, family, body), reference)
    for _, body in forms[:3]:
        np.testing.assert_array_equal(parsing.parse_csv_vector(ENC, body), reference)


@FAST
@given(st.binary(max_size=300), st.sampled_from([CSV, JSON]))
def test_arbitrary_bytes_only_raise_client_errors(body, family):
    kind, _ = _outcome(parsing.parse_body, ENC, family, body)
    assert kind in ("ok", "error")
    _assert_same(
        _outcome(parsing.parse_csv_vector, ENC, body), _outcome(parsing.parse_csv_exact, ENC, body)
    )


TRICKY = ["", " ", "\t", "_", "\r", "\x00", "\x1c", "é", '"', ",", "\n", "nan", "inf", "1e999",
          "-", "+", ".", "e", "M", "m", "F ", "sex", "1_0", "0.5", "5.5", "0x1"]  # fmt: skip


@FAST
@given(records, st.data())
def test_corrupted_bodies_get_the_same_answer_from_both_routes(recs, data):
    body = _csv(recs, header=data.draw(st.booleans()))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        cut = data.draw(st.integers(0, 4))
        body = body[:at] + data.draw(st.sampled_from(TRICKY)).encode() + body[at + cut :]
    exact = _outcome(parsing.parse_csv_exact, ENC, body)
    _assert_same(_outcome(parsing.parse_csv_vector, ENC, body), exact)
    assert _outcome(parsing.parse_body, ENC, CSV, body)[0] == exact[0]


@FAST
@given(st.text(max_size=60), st.text(max_size=60))
def test_media_types_never_crash(content_type, accept):
    try:
        family = parsing.request_family(content_type)
        assert parsing.response_family(accept, family) in (CSV, JSON)
    except ClientError as exc:
        assert exc.status in (406, 415)


@pytest.mark.parametrize(
    ("content_type", "family"),
    [("text/csv", CSV), ("text/csv; charset=utf-8", CSV), ("Application/JSON", JSON)],
)
def test_request_family(content_type, family):
    assert parsing.request_family(content_type) == family


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/x-npy", "csv"])
def test_unsupported_content_type_is_415(content_type):
    with pytest.raises(ClientError) as info:
        parsing.request_family(content_type)
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("accept", "family", "expected"),
    [
        (None, CSV, CSV),
        ("*/*", JSON, JSON),
        ("application/json", CSV, JSON),
        ("text/*", JSON, CSV),
        ("text/html, application/json;q=0.5", CSV, JSON),
        ("text/csv;q=0.2, application/json;q=0.9", CSV, JSON),
    ],
)
def test_response_family(accept, family, expected):
    assert parsing.response_family(accept, family) == expected


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "text/csv;q=0"])
def test_unsupported_accept_is_406(accept):
    with pytest.raises(ClientError) as info:
        parsing.response_family(accept, CSV)
    assert info.value.status == 406


@pytest.mark.parametrize(
    ("family", "body", "words"),
    [
        (CSV, b"", "empty body"),
        (CSV, b" \r\n\n", "empty body"),
        (CSV, b"\xff\xfe", "not UTF-8"),
        (CSV, b'"M,0.4', "malformed CSV"),
        (CSV, b",".join(n.encode() for n in NAMES) + b"\n", "no data rows"),
        (JSON, b"{", "malformed JSON"),
        (JSON, b"[1, 2]", "instances"),
        (JSON, b'{"instances": {}}', "instances"),
    ],
)
def test_malformed_bodies(family, body, words):
    with pytest.raises(FeatureError, match=words):
        parsing.parse_body(ENC, family, body)


def test_large_body_takes_the_vector_route_and_matches(monkeypatch):
    row = "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15\r\n"
    body = (",".join(NAMES) + "\r\n" + row * 200).encode()
    assert len(body) > parsing.VECTOR_MIN_BYTES
    expected = parsing.parse_csv_exact(ENC, body)
    monkeypatch.setattr(parsing, "parse_csv_exact", lambda *_: pytest.fail("exact route used"))
    np.testing.assert_array_equal(parsing.parse_csv(ENC, body), expected)
    assert expected.shape == (200, len(SCHEMA.encoded_names))


def test_large_bad_body_reports_the_exact_row():
    row = b"M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15\n"
    body = row * 100 + b"M,0.455,0.365,0.095,0.514,0.2245,0.101,nan\n" + row * 10
    with pytest.raises(FeatureError) as info:
        parsing.parse_csv(ENC, body)
    assert (info.value.row, info.value.field) == (101, "shell_weight")


def test_quoted_csv_is_understood():
    plain = parsing.parse_csv(ENC, b"M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15")
    quoted = parsing.parse_csv(ENC, b'"M","0.455",0.365,0.095,0.514,0.2245,0.101,0.15')
    np.testing.assert_array_equal(plain, quoted)


@pytest.mark.parametrize("family", [CSV, JSON])
def test_format_predictions_round_trips_float32(family):
    preds = np.array([9.859756469726562, 1e-5, 27.0], dtype=np.float32).astype(np.float64)
    body = parsing.format_predictions(preds, family).decode()
    values = body.split() if family == CSV else json.loads(body)["predictions"]
    np.testing.assert_array_equal(np.array(values, dtype=np.float64).astype(np.float32), preds)
    assert family != CSV or body.endswith("\n")


@pytest.mark.parametrize(
    ("accept", "family", "expected"),
    [
        ("", JSON, JSON),
        ("   ", CSV, CSV),
        ("*", JSON, JSON),
        ("application/*", CSV, JSON),
        ("application/*", JSON, JSON),
        ("text/*", CSV, CSV),
        ("TEXT/CSV", JSON, CSV),
        ('application/json; q="0.5", text/csv; Q=0.9', JSON, CSV),
        ("text/csv;q=0.5, application/json;q=0.5", JSON, CSV),
        ("text/csv;q=abc, application/json;q=0.1", CSV, JSON),
        ("*/*;q=0.1, application/json", CSV, JSON),
        ("image/png, */*;q=0.2", JSON, JSON),
    ],
)
def test_accept_negotiation_details(accept, family, expected):
    assert parsing.response_family(accept, family) == expected


@pytest.mark.parametrize("accept", ["image/*", "*/*;q=0", "text/csv;q=abc", "text/plain"])
def test_accept_without_an_acceptable_type_is_406_naming_it(accept):
    with pytest.raises(ClientError) as info:
        parsing.response_family(accept, CSV)
    assert (info.value.status, info.value.message) == (
        406,
        f"unsupported Accept {accept!r}: accept text/csv or application/json",
    )
    assert info.value.to_dict() == {"error": info.value.message}


def test_content_type_errors_quote_the_header_briefly():
    with pytest.raises(ClientError) as info:
        parsing.request_family("x" * 200)
    assert info.value.status == 415
    quoted = "'" + "x" * 59  # the header's repr, cut at 60 characters
    assert info.value.message == (
        f"unsupported Content-Type {quoted}: send text/csv or application/json"
    )


@pytest.mark.parametrize("content_type", [" text/csv ; charset=utf-8", "TEXT/CSV;x", "text/csv;"])
def test_content_type_parameters_and_case_are_ignored(content_type):
    assert parsing.request_family(content_type) == CSV


@pytest.mark.parametrize(
    ("body", "row", "field"),
    [
        (f"{ROW}\n\nX{ROW[1:]}".encode(), 2, "sex"),
        (b'"M",0.455,0.365,0.095,0.514,0.2245,0.101,"x"', 1, "shell_weight"),
    ],
)
def test_exact_route_skips_blank_lines_and_names_row_and_field(body, row, field):
    with pytest.raises(FeatureError) as info:
        parsing.parse_body(ENC, CSV, body)
    assert (info.value.row, info.value.field) == (row, field)


def test_json_body_errors_are_one_short_line():
    with pytest.raises(FeatureError) as info:
        parsing.parse_body(ENC, JSON, b"{" + b" " * 200)
    assert info.value.message.startswith("malformed JSON: ")
    assert len(info.value.message) <= len("malformed JSON: ") + 80
    with pytest.raises(FeatureError, match=r'^JSON must be an object \{"instances": \[\.\.\.\]\}'):
        parsing.parse_body(ENC, JSON, b'{"instances": "M,1"}')
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(FeatureError, match=r"^malformed JSON: "):
        parsing.parse_body(ENC, JSON, deep)


def test_empty_body_hint_names_the_family_and_the_columns():
    with pytest.raises(FeatureError) as info:
        parsing.parse_body(ENC, JSON, b"  \n")
    assert info.value.message == f"empty body: send application/json rows of {ENC.expected}"


def test_format_predictions_exact_bodies():
    preds = np.array([1.5, 10.25])
    assert parsing.format_predictions(preds, CSV) == b"1.5\n10.25\n"
    assert parsing.format_predictions(preds, JSON) == b'{"predictions": [1.5, 10.25]}'
    odd = parsing.format_predictions(np.array([1.0, np.nan, np.inf]), JSON)
    assert json.loads(odd) == {"predictions": [1.0, None, None]}


# --- details the tests above leave open (each pins one line of parsing.py) -----------------------
def test_client_error_reads_as_its_message():
    error = ClientError(415, "unsupported Content-Type 'x'")
    assert str(error) == "unsupported Content-Type 'x'"
    assert (error.status, error.message) == (415, "unsupported Content-Type 'x'")


def test_quoted_q_values_are_weighed_like_bare_ones():
    accept = 'text/csv; q="0.2", application/json; q="0.9"'
    assert parsing.response_family(accept, CSV) == JSON


@pytest.mark.parametrize("accept", ["tex/*", "t/*", "applicatio/*"])
def test_a_wildcard_needs_the_whole_type_before_the_slash(accept):
    with pytest.raises(ClientError) as info:
        parsing.response_family(accept, CSV)
    assert info.value.status == 406


def test_cells_padded_with_spaces_parse_like_bare_cells():
    padded = b"M, 0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15\n"
    bare = parsing.parse_csv_exact(ENC, ROW.encode())
    np.testing.assert_array_equal(parsing.parse_csv_exact(ENC, padded), bare)


def test_exact_route_honours_a_reordered_header():
    order = [*NAMES[1:], NAMES[0]]
    values = ROW.split(",")
    body = (",".join(order) + "\n" + ",".join([*values[1:], values[0]]) + "\n").encode()
    expected = parsing.parse_csv_exact(ENC, ROW.encode())
    np.testing.assert_array_equal(parsing.parse_csv_exact(ENC, body), expected)


def test_a_large_body_with_a_blank_line_is_left_to_the_exact_route():
    row = ROW.encode() + b"\n"
    body = row * 30 + b"\n" + row * 30
    assert len(body) >= parsing.VECTOR_MIN_BYTES
    assert parsing.parse_csv_vector(ENC, body) is None
    matrix = parsing.parse_csv(ENC, body)
    np.testing.assert_array_equal(matrix, parsing.parse_csv_exact(ENC, row * 60))


def test_malformed_json_quotes_the_decoder_error_cut_at_80_characters():
    body = b"{" + b" " * 100_000 + b"1}"
    with pytest.raises(json.JSONDecodeError) as decoder:
        json.loads(body)
    assert len(str(decoder.value)) > 80
    with pytest.raises(FeatureError) as info:
        parsing.parse_body(ENC, JSON, body)
    assert info.value.message == f"malformed JSON: {str(decoder.value)[:80]}"


def test_csv_predictions_in_exponent_form_are_lower_case():
    body = parsing.format_predictions(np.array([1e-05, 1.5e10]), CSV)
    assert body == b"1e-05\n1.5e+10\n"


# --- out-of-range values take the fast route; trailing newlines end a body -----------------------
def _data_lines() -> list[bytes]:
    """The example data's feature columns (it has rows with height 0, outside gt 0)."""
    lines = DATA_FILE.read_bytes().splitlines()[1:]
    return [line.rsplit(b",", 1)[0] for line in lines if line.strip()]


def test_the_example_data_with_out_of_range_rows_takes_the_vector_route(monkeypatch):
    lines = _data_lines()
    body = b"\n".join(lines) + b"\n"
    expected = parsing.parse_csv_exact(ENC, body)
    assert ENC.out_of_range(expected) == {"height": 2}
    monkeypatch.setattr(parsing, "parse_csv_exact", lambda *_: pytest.fail("exact route used"))
    np.testing.assert_array_equal(parsing.parse_csv(ENC, body), expected)


@pytest.mark.parametrize("ending", [b"\n\n", b"\n\n\n\n", b"\r\n\r\n\r\n"])
def test_trailing_blank_lines_stay_on_the_vector_route_and_add_no_rows(monkeypatch, ending):
    body = b"\n".join([ROW.encode()] * 100) + ending
    expected = parsing.parse_csv_exact(ENC, body)
    monkeypatch.setattr(parsing, "parse_csv_exact", lambda *_: pytest.fail("exact route used"))
    assert parsing.parse_csv(ENC, body).shape == expected.shape == (100, ENC.width)


def test_a_header_with_only_blank_lines_after_it_has_no_data_rows():
    body = (",".join(NAMES) + "\n" + "\n" * 3000).encode()
    assert parsing.parse_csv_vector(ENC, body) is None
    with pytest.raises(FeatureError, match="no data rows"):
        parsing.parse_body(ENC, CSV, body)


@pytest.mark.parametrize(
    ("cell", "field", "words"),
    [("1e39", "height", "float32"), ("", "height", "not a number"), ("x", "height", "number")],
)
def test_malformed_values_in_a_large_body_are_still_400(cell, field, words):
    bad = ROW.replace("0.095", cell).encode()
    body = b"\n".join([ROW.encode()] * 100 + [bad])
    with pytest.raises(FeatureError, match=words) as info:
        parsing.parse_body(ENC, CSV, body)
    assert (info.value.row, info.value.field) == (101, field)


@pytest.mark.parametrize("ending", [b"X", b"X\n", b"X\n\n"])
def test_a_bad_last_cell_before_trailing_newlines_is_still_400(ending):
    body = b"\n".join([ROW.encode()] * 100) + ending
    with pytest.raises(FeatureError, match=r"not a number: '0\.15X'") as info:
        parsing.parse_body(ENC, CSV, body)
    assert (info.value.row, info.value.field) == (100, "shell_weight")


# --- batch transform: split like SageMaker, parse each mini-batch, join with the input -----------
@FAST
@given(records, st.booleans(), st.integers(0, 900), st.sampled_from(["\n", "\r\n"]))
def test_split_parse_join_gives_one_prediction_per_input_row(recs, header, extra, eol):
    body = _csv(recs, header=header, eol=eol)
    # room for two lines: a header alone in a mini-batch would be a body without data rows
    limit = 2 * max(len(line) for line in body.splitlines(keepends=True)) + extra
    batches = list(batch.split_lines(body, limit))
    assert b"".join(batches) == body and all(len(b) <= limit for b in batches)
    assert all(b.endswith(eol.encode()) for b in batches)
    names = ",".join(NAMES).encode()
    assert [b.startswith(names) for b in batches] == [header] + [False] * (len(batches) - 1)
    rows = [len(parsing.parse_body(ENC, CSV, b)) for b in batches]
    assert sum(rows) == len(recs)
    outputs = b"".join(parsing.format_predictions(np.arange(n, dtype=float), CSV) for n in rows)
    joined = batch.join_input(body, outputs, header=header).split(b"\n")
    assert joined.pop() == b"" and len(joined) == len(recs) + header
    assert not header or joined.pop(0) == names + b",prediction"
    assert [j.rsplit(b",", 1)[0] for j in joined] == _csv(recs).split(b"\n")[:-1]


def test_split_lines_fills_each_payload_to_the_byte_and_reads_files(tmp_path):
    line = ROW.encode() + b"\n"  # 44 bytes
    body = line * 10
    assert [len(b) for b in batch.split_lines(body, 3 * 44)] == [132, 132, 132, 44]
    assert [len(b) for b in batch.split_lines(body, 3 * 44 - 1)] == [88] * 5
    path = tmp_path / "input.csv"
    path.write_bytes(body)
    assert list(batch.split_lines(path, 200)) == list(batch.split_lines(str(path), 200))
    assert b"".join(batch.split_lines(path)) == body  # 6 MiB by default: one mini-batch
    assert len(list(batch.split_lines(path))) == 1


def test_split_lines_keeps_a_last_line_without_newline_and_skips_blank_batches():
    line = ROW.encode() + b"\n"
    assert list(batch.split_lines(line + ROW.encode(), 50)) == [line, ROW.encode()]
    blanks = list(batch.split_lines(line + b"\n" * 60 + line, 50))  # 50 blank bytes: not sent
    assert blanks == [line + b"\n" * 6, b"\n" * 4 + line]
    assert list(batch.split_lines(b" \n\n", 50)) == []
    assert list(batch.split_lines(b"", 50)) == []


def test_split_lines_refuses_a_line_longer_than_the_payload():
    line = ROW.encode() + b"\n"
    with pytest.raises(ValueError, match="the line at byte 44 is longer than 43 bytes"):
        list(batch.split_lines(b"M,1\n" * 11 + line, 43))
    with pytest.raises(ValueError, match="must be positive, got 0"):
        list(batch.split_lines(line, 0))
    assert list(batch.split_lines(line, len(line))) == [line]  # exactly at the limit fits


def test_join_input_appends_each_prediction_to_its_row():
    inputs = b"M,0.4\r\nF,0.5\n\n  \nI,0.6"
    assert batch.join_input(inputs, b"9.5\n10\n11\n\n") == b"M,0.4,9.5\nF,0.5,10\nI,0.6,11\n"
    as_lists = batch.join_input([b"M,0.4\n", b"\n", b"F,0.5\n"], [b"1\n", b"2"])
    assert as_lists == b"M,0.4,1\nF,0.5,2\n"
    with_header = batch.join_input(b"sex,length\nM,0.4\n", b"7\n", header=True)
    assert with_header == b"sex,length,prediction\nM,0.4,7\n"
    assert batch.join_input(b"\n", b"", header=True) == b""


@pytest.mark.parametrize(
    ("inputs", "outputs", "header", "message"),
    [
        (b"M,0.4\nF,0.5\n", b"1\n", False, "2 input rows but 1 predictions"),
        (b"sex\nM,0.4\n", b"1\n2\n", True, "1 input rows but 2 predictions"),
        (b"sex\nM,0.4\n", b"1\n", False, "2 input rows but 1 predictions"),
    ],
)
def test_join_input_refuses_mismatched_rows(inputs, outputs, header, message):
    with pytest.raises(ValueError, match=message):
        batch.join_input(inputs, outputs, header=header)


# --- survivors of the mutation run (media-type parameters, quoted headers) -----------------------
@pytest.mark.parametrize("accept", ["text/csv;q=0=1", "text/csv;q=1X"])
def test_a_malformed_q_value_weighs_zero(accept):
    with pytest.raises(ClientError) as info:
        parsing.response_family(accept, JSON)
    assert (info.value.status, info.value.message) == (
        406,
        f"unsupported Accept {accept!r}: accept text/csv or application/json",
    )


@pytest.mark.parametrize(
    ("accept", "family"), [("image/png, ", CSV), (";q=0.5", JSON), ("text/html,,", JSON)]
)
def test_an_empty_accept_item_means_the_request_family(accept, family):
    assert parsing.response_family(accept, family) == family


def test_a_large_body_with_a_quoted_header_is_left_to_the_exact_route():
    row = ROW.encode() + b"\n"
    body = b'"sex",' + ",".join(NAMES[1:]).encode() + b"\n" + row * 60
    assert len(body) >= parsing.VECTOR_MIN_BYTES
    assert parsing.parse_csv_vector(ENC, body) is None
    np.testing.assert_array_equal(
        parsing.parse_csv(ENC, body), parsing.parse_csv_exact(ENC, row * 60)
    )


# --- survivors of the mutation run (line ends: CRLF, lone CR, breaks inside quoted cells) --------
@pytest.mark.parametrize("copies", [1, 100])  # the exact route, and a large body it falls back to
def test_a_crlf_line_end_is_not_part_of_a_bad_last_cell(copies):
    body = (ROW + "\r\n") * copies + ROW + "X\r\n" + ROW + "\r\n"
    with pytest.raises(FeatureError) as info:
        parsing.parse_body(ENC, CSV, body.encode())
    assert info.value.message == f"row {copies + 1}: shell_weight is not a number: '0.15X'"


def test_a_quoted_body_with_lone_cr_line_ends_is_read_row_by_row():
    rows = [f'"M"{ROW[1:]}', f'"F"{ROW[1:]}', f'"I"{ROW[1:]}']
    expected = parsing.parse_body(ENC, CSV, "\n".join(rows).encode())
    matrix = parsing.parse_body(ENC, CSV, "\r".join(rows).encode())
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.shape == (3, ENC.width)


@pytest.mark.parametrize("inside", ["\r", "\r\n"])
def test_a_line_break_inside_a_quoted_cell_is_quoted_as_sent(inside):
    cell = f"0.{inside}1x"
    with pytest.raises(FeatureError) as info:
        parsing.parse_body(ENC, CSV, f'{ROW[:-4]}"{cell}"'.encode())
    assert info.value.message == f"row 1: shell_weight is not a number: {cell!r}"
