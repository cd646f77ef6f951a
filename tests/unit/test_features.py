"""Raw rows/records -> encoded matrix: values, one-hot, validation errors with row and field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abalone_model.errors import ModelError
from abalone_model.features import FeatureError, encode_records, encode_rows, encoder_for
from abalone_model.schema import Schema

SCHEMA = Schema.load()
ROW = ["M", "0.455", "0.365", "0.095", "0.514", "0.2245", "0.101", "0.15"]
RECORD = {
    "sex": "M",
    "length": 0.455,
    "diameter": 0.365,
    "height": 0.095,
    "whole_weight": 0.514,
    "shucked_weight": 0.2245,
    "viscera_weight": 0.101,
    "shell_weight": 0.15,
}


def test_encodes_in_schema_encoded_order():
    x = encode_rows(SCHEMA, [ROW, ["I", *ROW[1:]]])
    assert x.dtype == np.float32 and x.shape == (2, len(SCHEMA.encoded_names))
    names = SCHEMA.encoded_names
    assert x[0, names.index("sex_M")] == 1 and x[0, names.index("sex_I")] == 0
    assert x[1, names.index("sex_I")] == 1 and x[1, names.index("sex_M")] == 0
    assert x[0, names.index("shell_weight")] == np.float32(0.15)
    assert x[0, names.index("length")] == np.float32(0.455)


def test_records_lists_rows_and_reordered_columns_agree():
    reference = encode_rows(SCHEMA, [ROW])
    order = list(reversed(SCHEMA.raw_names))
    reordered = [[ROW[SCHEMA.raw_names.index(n)] for n in order]]
    np.testing.assert_array_equal(encode_rows(SCHEMA, reordered, order), reference)
    np.testing.assert_array_equal(encode_records(SCHEMA, [RECORD]), reference)
    as_list = [RECORD[n] for n in SCHEMA.raw_names]
    np.testing.assert_array_equal(encode_records(SCHEMA, [as_list]), reference)
    shuffled = {k: RECORD[k] for k in order}
    np.testing.assert_array_equal(encode_records(SCHEMA, [shuffled]), reference)


def test_whitespace_around_cells_is_tolerated():
    padded = [f" {c}\t" for c in ROW]
    np.testing.assert_array_equal(encode_rows(SCHEMA, [padded]), encode_rows(SCHEMA, [ROW]))


@pytest.mark.parametrize(
    ("index", "value", "field", "words"),
    [
        (0, "X", "sex", "unknown sex"),
        (0, "m", "sex", "expected one of M, F, I"),
        (1, "abc", "length", "not a number"),
        (1, "", "length", "not a number"),
        (1, "1_0", "length", "not a number"),
        (2, "nan", "diameter", "finite"),
        (3, "inf", "height", "finite"),
        (4, "1e39", "whole_weight", "at most 3.403e+38 in size (float32)"),
        (7, "-1e300", "shell_weight", "float32"),
    ],
)
def test_bad_cell_names_row_and_field(index, value, field, words):
    rows = [ROW, [*ROW[:index], value, *ROW[index + 1 :]]]
    with pytest.raises(FeatureError) as info:
        encode_rows(SCHEMA, rows)
    err = info.value
    assert (err.row, err.field) == (2, field)
    assert words in err.message and err.message.startswith("row 2:")
    assert err.to_dict() == {"error": err.message, "row": 2, "field": field}
    assert isinstance(err, ModelError)


@pytest.mark.parametrize("cells", [ROW[:-1], [*ROW, "1"], []])
def test_wrong_column_count(cells):
    with pytest.raises(FeatureError, match=r"expected 8 columns .* got \d") as info:
        encode_rows(SCHEMA, [cells])
    assert info.value.row == 1 and info.value.field is None


@pytest.mark.parametrize(
    ("header", "field", "words"),
    [
        (["sex", *SCHEMA.raw_names[1:-1], "rings"], "rings", "unknown column"),
        ([*SCHEMA.raw_names[:-1], "sex"], "sex", "appears twice"),
    ],
)
def test_bad_header(header, field, words):
    with pytest.raises(FeatureError, match=words) as info:
        encode_rows(SCHEMA, [ROW], header)
    assert info.value.field == field and info.value.row is None


def test_header_missing_column():
    with pytest.raises(FeatureError, match="missing column 'shell_weight'"):
        encode_rows(SCHEMA, [ROW[:-1]], SCHEMA.raw_names[:-1])


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"length": "0.4"}, "length", "JSON number"),
        ({"length": True}, "length", "JSON number"),
        ({"length": None}, "length", "JSON number"),
        ({"length": math.nan}, "length", "finite"),
        ({"length": 10**400}, "length", "finite"),
        ({"sex": 1}, "sex", "unknown sex"),
        ({"rings": 3}, "rings", "unknown field"),
    ],
)
def test_bad_record(change, field, words):
    with pytest.raises(FeatureError, match=words) as info:
        encode_records(SCHEMA, [RECORD, {**RECORD, **change}])
    assert (info.value.row, info.value.field) == (2, field)


def test_record_missing_field_and_bad_instance():
    partial = {k: v for k, v in RECORD.items() if k != "height"}
    with pytest.raises(FeatureError, match="row 1: missing field 'height'"):
        encode_records(SCHEMA, [partial])
    with pytest.raises(FeatureError, match="object or a list") as info:
        encode_records(SCHEMA, [RECORD, "M,1,2"])
    assert info.value.row == 2


def test_no_rows_is_an_error():
    with pytest.raises(FeatureError, match="no data rows"):
        encode_rows(SCHEMA, [])
    with pytest.raises(FeatureError, match="no data rows"):
        encode_records(SCHEMA, [])


def test_int_columns_and_other_schemas_are_driven_by_the_schema():
    schema = Schema.from_dict(
        {
            "name": "toy",
            "target": {"name": "y", "type": "float"},
            "features": [
                {"name": "n", "type": "int", "ge": 0, "lt": 10},
                {"name": "colour", "type": "category", "categories": ["red", "blue"]},
            ],
        }
    )
    x = encode_rows(schema, [["3", "blue"], ["0", "red"]])
    np.testing.assert_array_equal(x, [[3, 0, 1], [0, 1, 0]])
    with pytest.raises(FeatureError, match="whole number"):
        encode_rows(schema, [["3.5", "red"]])
    enc = encoder_for(schema)
    assert enc.out_of_range(encode_rows(schema, [["10", "red"], ["-1", "red"]])) == {"n": 2}
    assert enc.out_of_range(encode_rows(schema, [["0", "red"], ["9", "red"]])) == {}
    lines = [b"3,blue", b"0,red"]
    np.testing.assert_array_equal(enc.encode_lines(lines, [0, 1]), x)
    assert enc.encode_lines([b"3.5,red"], [0, 1]) is None
    np.testing.assert_array_equal(enc.encode_lines([b"10,red"], [0, 1]), [[10, 1, 0]])


def test_vector_route_matches_and_declines():
    enc = encoder_for(SCHEMA)
    lines = [",".join(ROW).encode(), ",".join(["F", *ROW[1:]]).encode()]
    order = list(range(8))
    np.testing.assert_array_equal(
        enc.encode_lines(lines, order), enc.encode_rows([r.decode().split(",") for r in lines])
    )
    for bad in (
        b"M,1,2",
        b"Mx,0.4,0.3,0.1,0.5,0.2,0.1,0.1",
        b"M,0.4,0.3,0.1,0.5,0.2,0.1,nan",
        b"M,0.4,0.3,0.1,0.5,0.2,0.1,-inf",
        b"M,0.4,0.3,0.1,0.5,0.2,0.1,1e39",
        b"M,0.4,0.3,0.1,0.5,0.2,,0.1",
        b"",
    ):
        assert enc.encode_lines([lines[0], bad], order) is None


# --- out-of-range values are encoded as given, and counted per feature -------------------------
OUTSIDE = [
    (1, "0", "length"),  # gt 0: the bound itself is outside
    (3, "-0.1", "height"),
    (4, "5.01", "whole_weight"),  # le 5
    (7, "1e30", "shell_weight"),
]


@pytest.mark.parametrize(("index", "value", "field"), OUTSIDE)
def test_out_of_range_values_are_encoded_and_counted(index, value, field):
    row = [*ROW[:index], value, *ROW[index + 1 :]]
    enc = encoder_for(SCHEMA)
    x = encode_rows(SCHEMA, [ROW, row, row])
    assert x[1, SCHEMA.encoded_names.index(field)] == np.float32(float(value))
    assert enc.out_of_range(x) == {field: 2}
    lines = [",".join(r).encode() for r in (ROW, row, row)]
    np.testing.assert_array_equal(enc.encode_lines(lines, list(range(8))), x)
    record = {**RECORD, field: float(value)}
    assert enc.out_of_range(encode_records(SCHEMA, [record])) == {field: 1}


def test_out_of_range_counts_each_feature_and_the_bounds_themselves():
    enc = encoder_for(SCHEMA)
    edge = ["I", "2.0", "2.0", "2.0", "5.0", "5.0", "5.0", "5.0"]  # le: the bound is inside
    assert enc.out_of_range(encode_rows(SCHEMA, [ROW, edge])) == {}
    both = ["F", "0", "0.3", "0", "5.5", "0.2", "0.1", "0.1"]
    counts = enc.out_of_range(encode_rows(SCHEMA, [both, both, edge]))
    assert counts == {"length": 2, "height": 2, "whole_weight": 2}
    assert list(counts) == ["length", "height", "whole_weight"]  # schema order


def test_out_of_range_judges_the_float32_values_the_model_sees():
    schema = Schema.from_dict(
        {
            "name": "toy",
            "target": {"name": "y", "type": "float"},
            "features": [{"name": "p", "type": "float", "ge": 0.1, "le": 0.3}],
        }
    )
    enc = encoder_for(schema)
    at_bounds = encode_rows(schema, [["0.1"], ["0.3"]])  # float32(0.1) > 0.1 as float64
    assert enc.out_of_range(at_bounds) == {}
    assert enc.out_of_range(encode_rows(schema, [["0.0999999"], ["0.3000001"]])) == {"p": 2}
