"""Reading batch sources and labels: course layout, quarantine, header + id, chunking."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irisdag.core import keys
from irisdag.core.batches import (
    Batch,
    batch_from_array,
    iter_feature_csv,
    read_feature_csv,
    read_label_csv,
)
from irisdag_tests.support.data import COURSE



def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def check_totals(b: Batch):
    assert len(b.X) + len(b.quarantine) == len(b.X) + b.n_quarantined == b.rows_read
    assert len(b.row_numbers) == len(b.X) == len(b.positions)
    if b.ids is not None:
        assert len(b.ids) == len(b.X)
    assert b.X.dtype == np.float64 and b.X.shape[1] == 4


def test_course_iris_keeps_the_first_row():
    b = read_feature_csv(COURSE / "iris.csv")
    check_totals(b)
    assert b.rows_read == 1050 and len(b.X) == 1050 and b.quarantine == []
    assert b.header is None and b.ids is None
    assert b.X[0].tolist() == [5.0, 2.9, 1.1, 0.4]
    assert b.row_numbers[0] == 1 and b.row_numbers[-1] == 1050
    ks = b.keys()
    assert len(ks) == 1050
    assert ks[0] == "d8c77d145fb8bc961f190b590e08a4056a61ece47304cae94d1f6d2c9e69d7da"
    assert len(set(ks)) == 1033
    # line 374 is the row whose key the course slides print
    assert ks[373] == keys.input_key([6.5, 2.8, 4.7, 1.8]) and b.X[373].tolist() == [6.5, 2.8, 4.7, 1.8]
    # the vectorized keys equal the scalar ones
    assert ks == [keys.input_key(row) for row in b.X.tolist()]
    # negative petal widths are valid inputs
    assert (b.X[:, 3] < 0).any()


def test_course_labels():
    y = read_label_csv(COURSE / "iris_y.csv")
    assert y.dtype == np.int8 and y.shape == (1050,)
    assert np.bincount(y).tolist() == [350, 350, 350]
    assert y[0] == 0


def test_course_iris_in_small_chunks_is_the_same():
    whole = read_feature_csv(COURSE / "iris.csv")
    parts = list(iter_feature_csv(COURSE / "iris.csv", chunk_bytes=1024))
    assert len(parts) > 10
    assert sum(p.rows_read for p in parts) == 1050
    joined = read_feature_csv(COURSE / "iris.csv", chunk_bytes=1024)
    assert np.array_equal(joined.X, whole.X)
    assert np.array_equal(joined.row_numbers, whole.row_numbers)
    assert joined.keys() == whole.keys()


BAD = (
    "5.0,2.9,1.1,0.4\n"      # 1 good
    "nan,3.0,1.4,0.2\n"      # 2 NaN
    "5.1,abc,1.4,0.2\n"      # 3 text
    "4.9,3.0,1.4\n"          # 4 three columns
    "6.3,2.5,1e7,1.9\n"      # 5 out of bounds
    "6.45,0.25,0.35,-0.04\n"  # 6 good, ties
    "\n"                     # 7 blank: not a row
    "7.0,3.2,4.7,inf\n"      # 8 infinite
    "5.0,2.9,1.1,0.4,9\n"    # 9 five columns
    "5.9,3.0,,1.8\n"         # 10 empty field
    "-0.1,3.0,5.1,-1e6\n"    # 11 out of bounds (negative)
    "6.7,3.0,5.2,2.3"        # 12 good, no final newline
)


@pytest.mark.parametrize("chunk_bytes", [8 * 1024 * 1024, 1024])
def test_bad_rows_are_quarantined_with_reasons(tmp_path, chunk_bytes):
    b = read_feature_csv(write(tmp_path, "bad.csv", BAD), chunk_bytes=chunk_bytes)
    check_totals(b)
    assert b.rows_read == 11 and b.blank_lines == 1
    assert b.row_numbers.tolist() == [1, 6, 12]
    assert b.positions.tolist() == [0, 5, 10]
    assert b.X.tolist() == [[5.0, 2.9, 1.1, 0.4], [6.45, 0.25, 0.35, -0.04], [6.7, 3.0, 5.2, 2.3]]
    q = {e["row"]: e for e in b.quarantine}
    assert sorted(q) == [2, 3, 4, 5, 8, 9, 10, 11]
    expect = {
        2: ("NaN", "position 1"), 3: ("'abc'", "position 2"), 4: ("got 3", "expected 4"),
        5: ("out of bounds", "position 3"), 8: ("infinite", "position 4"), 9: ("got 5", "expected 4"),
        10: ("not a number", "position 3"), 11: ("out of bounds", "position 4"),
    }
    for row, (a, c) in expect.items():
        reason = q[row]["reason"]
        assert reason.startswith(f"row {row}")
        assert a in reason and c in reason, reason
    # The reason names the value once; the row is not stored a second time beside it.
    assert "values" not in q[3] and q[3]["kind"] == "not_a_number"
    assert "['4.9', '3.0', '1.4']" in q[4]["reason"] and q[4]["kind"] == "field_count"
    assert "'1e7'" in q[5]["reason"] and "10000000.0" in q[5]["reason"] and q[5]["kind"] == "out_of_bounds"
    assert q[2]["position"] == 1 and q[2]["kind"] == "nan"
    assert b.quarantine_counts == {"nan": 1, "not_a_number": 2, "field_count": 2, "out_of_bounds": 2, "infinite": 1}
    # the good rows' keys: the ties round half-to-even on the exact binary value
    assert b.keys()[1] == keys.key_of_canonical("6.5 0.2 0.3 0.0")


def test_no_header_when_first_row_is_a_bad_data_row(tmp_path):
    b = read_feature_csv(write(tmp_path, "x.csv", "abc,1,2,3\n5.0,2.9,1.1,0.4\n"))
    check_totals(b)
    assert b.header is None and b.rows_read == 2
    assert b.row_numbers.tolist() == [2] and b.quarantine[0]["row"] == 1


def test_text_in_many_chunks_takes_the_exact_path(tmp_path):
    rows = []
    for i in range(3000):
        rows.append("x,1,2,3" if i % 97 == 5 else f"{i % 80 / 10:.1f},3.{i % 10},1.4,0.2")
    b = read_feature_csv(write(tmp_path, "t.csv", "\n".join(rows) + "\n"), chunk_bytes=2048)
    check_totals(b)
    bad = [i + 1 for i in range(3000) if i % 97 == 5]
    assert [e["row"] for e in b.quarantine] == bad
    good_rows = [i + 1 for i in range(3000) if i % 97 != 5]
    assert b.row_numbers.tolist() == good_rows
    assert b.X[:, 0].tolist() == [float(rows[r - 1].split(",")[0]) for r in good_rows]


def test_exact_decimal_parsing(tmp_path):
    # pandas must parse exactly as Python's float() does, or keys near ties would differ
    rng = np.random.default_rng(3)
    texts = [f"{v:.3f}" for v in rng.uniform(-50, 50, 4000)] + ["0.25", "0.35", "6.45", "2.675", "0.05", "1.15"] * 4
    rows = [",".join(texts[i:i + 4]) for i in range(0, len(texts), 4)]
    b = read_feature_csv(write(tmp_path, "d.csv", "\n".join(rows) + "\n"))
    assert b.quarantine == []
    assert b.X.reshape(-1).tolist() == [float(t) for t in texts]


def test_crlf_bom_and_whitespace(tmp_path):
    b = read_feature_csv(write(tmp_path, "w.csv", b"\xef\xbb\xbf5.0,2.9,1.1,0.4\r\n 5.1 , 3.5,1.4,0.2\r\n\r\n"))
    check_totals(b)
    assert b.quarantine == [] and b.X.tolist() == [[5.0, 2.9, 1.1, 0.4], [5.1, 3.5, 1.4, 0.2]]
    assert b.rows_read == 2


def test_header_with_id(tmp_path):
    text = (
        "id,sepal_length,sepal_width,petal_length,petal_width\n"
        "u1,5.0,2.9,1.1,0.4\n"
        ",5.0,2.9,1.1,0.4\n"          # empty id
        "u3,5.0,two,1.1,0.4\n"        # text
        "u4,6.5,2.8,4.7\n"            # short
        "u 5,6.5,2.8,4.7,1.8\n"       # id with a space
        "u6,6.5,2.8,4.7,1.8\n"
    )
    b = read_feature_csv(write(tmp_path, "h.csv", text))
    check_totals(b)
    assert b.header == ["id", "sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert b.rows_read == 6
    assert b.ids.tolist() == ["u1", "u6"]
    assert b.row_numbers.tolist() == [2, 7] and b.positions.tolist() == [0, 5]
    assert b.keys() == ["id:u1", "id:u6"]
    q = {e["row"]: e["reason"] for e in b.quarantine}
    assert sorted(q) == [3, 4, 5, 6]
    assert "empty" in q[3] and "'two'" in q[4] and "sepal_width" in q[4]
    assert "expected 5 fields" in q[5] and "'u 5'" in q[6]


def test_header_variants_any_order_and_extra_columns(tmp_path):
    text = (
        "Species,Petal.Width,Petal.Length,Sepal.Width,Sepal.Length,ID\n"
        "setosa,0.4,1.1,2.9,5.0,a\n"
        "virginica,1.8,4.7,2.8,6.5,b\n"
    )
    b = read_feature_csv(write(tmp_path, "v.csv", text))
    check_totals(b)
    assert b.X.tolist() == [[5.0, 2.9, 1.1, 0.4], [6.5, 2.8, 4.7, 1.8]]
    assert b.ids.tolist() == ["a", "b"] and b.ignored_columns == ["Species"]
    text2 = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.0,2.9,1.1,0.4\n"
    b2 = read_feature_csv(write(tmp_path, "v2.csv", text2))
    assert b2.ids is None and b2.keys() == [keys.input_key([5.0, 2.9, 1.1, 0.4])]
    b3 = read_feature_csv(write(tmp_path, "v3.csv", '"Id","SepalLengthCm","SepalWidthCm","PetalLengthCm","PetalWidthCm"\n'
                                                   '"7",5.0,2.9,1.1,0.4\n'))
    assert b3.ids.tolist() == ["7"] and b3.X.tolist() == [[5.0, 2.9, 1.1, 0.4]]


def test_header_missing_a_feature_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="petal_width"):
        read_feature_csv(write(tmp_path, "m.csv", "id,sepal_length,sepal_width,petal_length\nu1,1,2,3\n"))


def test_distinct_keys_and_features():
    X = np.array([[5.04, 2.9, 1.1, 0.4], [5.0, 2.9, 1.1, 0.4], [6.5, 2.8, 4.7, 1.8]])
    b = batch_from_array(X)
    ks, Xd, inverse = b.distinct()
    assert len(ks) == 2 and Xd.shape == (2, 4)
    assert [ks[i] for i in inverse] == b.keys()
    assert b.keys()[0] == b.keys()[1] == keys.input_key([5.0, 2.9, 1.1, 0.4])
    assert Xd[inverse[0]].tolist() == [5.0, 2.9, 1.1, 0.4]


def test_batch_from_array_quarantines():
    X = np.array([[5.0, 2.9, 1.1, 0.4], [np.nan, 1, 2, 3], [1, 2, 3, 2e6]])
    b = batch_from_array(X)
    check_totals(b)
    assert len(b.X) == 1 and [q["row"] for q in b.quarantine] == [2, 3]
    assert "NaN" in b.quarantine[0]["reason"] and "out of bounds" in b.quarantine[1]["reason"]
    b2 = batch_from_array(X[:1].repeat(2, axis=0), ids=["a", ""])
    assert b2.ids.tolist() == ["a"] and "empty" in b2.quarantine[0]["reason"]


def test_labels(tmp_path):
    assert read_label_csv(write(tmp_path, "y1.csv", "0\n1\n2\n\n")).tolist() == [0, 1, 2]
    assert read_label_csv(write(tmp_path, "y2.csv", "label\n2\nsetosa\n1.0\n")).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match=r"line 3: label '3'"):
        read_label_csv(write(tmp_path, "y3.csv", "0\n1\n3\n"))
    with pytest.raises(ValueError, match=r"line 2: label ''"):
        read_label_csv(write(tmp_path, "y4.csv", "0\n\n1\n"))
    with pytest.raises(ValueError, match=r"line 2.*one column"):
        read_label_csv(write(tmp_path, "y5.csv", "0\n1,2\n"))
    with pytest.raises(ValueError, match=r"y6.csv: line 1: label 'x'"):
        read_label_csv(write(tmp_path, "y6.csv", "x\n1\n"))
