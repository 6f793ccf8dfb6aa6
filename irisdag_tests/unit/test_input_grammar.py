"""The input grammar and the byte stream of batch and label sources (issue 9 items 4 and 7; issue 8 item 3).

ASCII decimal or exponent notation only; CR-only / CRLF endings; gzip by its
magic bytes, other binary formats refused by name; a line-length cap naming
the line; quarantine as counts by reason plus a bounded sample; label files of
exactly one column; ids with different features quarantined.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from irisdag import serving
from irisdag.core import batches, keys
from irisdag.core.batches import BatchSourceError, read_feature_csv, read_label_csv
from irisdag.core.keys import InputError
from irisdag_tests.support.data import COURSE


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


# ---- ASCII decimal or exponent notation only ------------------------------------------------

# What Python's float() takes and DESIGN §2 does not.
LENIENT = ["5_0", "1_000", "5e1_0", "٥", "١٢", "５", "१", "5\u00a0", "\u20035", "0x10", "0X1P3", "½", "¹",
           "5.0\u2028", "\u22125"]


@pytest.mark.parametrize("text", LENIENT)
def test_python_float_leniencies_are_not_numbers(text):
    with pytest.raises(InputError) as err:
        keys.parse_features(["5.0", "2.9", text, "0.4"], row=3)
    msg = str(err.value)
    assert msg.startswith("row 3, position 3 (petal_length): ") and keys.shown(text) in msg
    assert "not a number" in msg and err.value.kind == "not_a_number"


@pytest.mark.parametrize("text,what", [("nan", "NaN"), ("-NaN", "NaN"), ("inf", "infinite"), ("+Infinity", "infinite"),
                                       ("-iNF", "infinite"), ("infinity", "infinite")])
def test_nan_and_infinity_spellings_are_named(text, what):
    with pytest.raises(InputError, match=what):
        keys.parse_features([text, "2.9", "1.1", "0.4"])


@pytest.mark.parametrize("text,value", [("5", 5.0), ("+5", 5.0), ("-0.1", -0.1), (".5", 0.5), ("5.", 5.0),
                                        ("1e-1", 0.1), ("1E+2", 100.0), (" 5.0\t", 5.0), ("00005", 5.0)])
def test_ascii_decimal_and_exponent_notation_are_numbers(text, value):
    assert keys.parse_features([text, "1", "1", "1"])[0] == value


def test_a_csv_with_lenient_numbers_quarantines_each_naming_the_value(tmp_path):
    lines = ["5.0,2.9,1.1,0.4"] + [f"5.0,{t},1.1,0.4" for t in LENIENT]
    for chunk_bytes in (1024, 1 << 20):
        b = read_feature_csv(write(tmp_path, "l.csv", "\n".join(lines) + "\n"), chunk_bytes=chunk_bytes)
        assert b.row_numbers.tolist() == [1] and b.n_quarantined == len(LENIENT)
        assert b.quarantine_counts == {"not_a_number": len(LENIENT)}
        for q, text in zip(b.quarantine, LENIENT):
            assert q["reason"].startswith(f"row {q['row']}, position 2 (sepal_width): {keys.shown(text)}"), q


# ---- line endings, gzip, binary ------------------------------------------------------------------

def test_cr_only_line_endings_read_like_lf(tmp_path):
    text = (COURSE / "iris.csv").read_bytes()
    lf = read_feature_csv(COURSE / "iris.csv")
    for name, data in (("cr.csv", text.replace(b"\n", b"\r")), ("crlf.csv", text.replace(b"\n", b"\r\n"))):
        for chunk_bytes in (1024, 1 << 20):  # a CR-LF pair split across two reads is still one line break
            b = read_feature_csv(write(tmp_path, name, data), chunk_bytes=chunk_bytes)
            assert b.rows_read == 1050 and b.n_quarantined == 0
            assert np.array_equal(b.X, lf.X) and b.row_numbers.tolist() == lf.row_numbers.tolist()
    mixed = read_feature_csv(write(tmp_path, "mixed.csv", b"5.0,2.9,1.1,0.4\r6.5,2.8,4.7,1.8\r\n\r7.7,2.6,6.9,2.3\n"))
    assert mixed.row_numbers.tolist() == [1, 2, 4] and mixed.blank_lines == 1


def test_cr_only_label_file(tmp_path):
    labels = read_label_csv(write(tmp_path, "y.csv", b"label\r0\r1\r2\r\r"))
    assert labels.tolist() == [0, 1, 2]


def test_gzip_is_detected_by_its_magic_bytes_and_read(tmp_path):
    plain = read_feature_csv(COURSE / "iris.csv")
    # No .gz suffix: the bytes decide, not the name.
    packed = write(tmp_path, "iris.csv", gzip.compress((COURSE / "iris.csv").read_bytes()))
    b = read_feature_csv(packed, chunk_bytes=4096)
    assert np.array_equal(b.X, plain.X) and b.rows_read == 1050
    labels = write(tmp_path, "iris_y.csv", gzip.compress((COURSE / "iris_y.csv").read_bytes()))
    assert read_label_csv(labels).tolist() == read_label_csv(COURSE / "iris_y.csv").tolist()
    summary = serving.prepare_source(packed, tmp_path / "prepared")
    assert summary["rows_good"] == 1050 and summary["distinct_keys"] == 1033


def test_a_truncated_gzip_is_refused_by_name(tmp_path):
    data = gzip.compress((COURSE / "iris.csv").read_bytes())
    cut = write(tmp_path, "cut.csv", data[: len(data) // 2])
    with pytest.raises(BatchSourceError, match="cut.csv cannot be read to its end"):
        read_feature_csv(cut)


@pytest.mark.parametrize("magic,named", [(b"PK\x03\x04", "zip"), (b"BZh91AY", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                                         (b"PAR1", "Parquet"), (b"\xff\xfe5\x00", "UTF-16")])
def test_other_binary_formats_are_refused_by_name(tmp_path, magic, named):
    src = write(tmp_path, "batch.csv", magic + b"\x00" * 64)
    with pytest.raises(BatchSourceError) as err:
        read_feature_csv(src)
    assert "batch.csv" in str(err.value) and named in str(err.value)
    with pytest.raises(BatchSourceError, match="label source"):
        read_label_csv(src)


def test_binary_rows_are_quarantined_never_a_csv_error(tmp_path):
    rng = np.random.default_rng(7)
    junk = bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tolist()).replace(b"\n", b"\n\x00")
    data = b"5.0,2.9,1.1,0.4\n" + junk + b'\n"a\x00b",1,2,3\n"unterminated,1,2,3\n6.5,2.8,4.7,1.8\n'
    b = read_feature_csv(write(tmp_path, "junk.csv", data), chunk_bytes=1024)
    assert b.rows_read == len(b.X) + b.n_quarantined
    assert b.X.tolist()[0] == [5.0, 2.9, 1.1, 0.4] and b.X.tolist()[-1] == [6.5, 2.8, 4.7, 1.8]
    assert b.quarantine_counts.get("not_text", 0) > 0


def test_a_line_that_is_not_utf8_is_quarantined(tmp_path):
    header = "id,sepal_length,sepal_width,petal_length,petal_width\n"
    b = read_feature_csv(write(tmp_path, "u.csv", header.encode() + b"\xff\xfe,5.0,2.9,1.1,0.4\nu\xc3\xa9,5.0,2.9,1.1,0.4\n"))
    assert b.ids.tolist() == ["u\u00e9"]  # UTF-8 ids are fine
    assert b.quarantine[0]["row"] == 2 and "not UTF-8" in b.quarantine[0]["reason"]


# ---- the line-length cap -----------------------------------------------------------------------

def test_a_line_over_the_cap_is_refused_naming_it(tmp_path):
    cap = batches.MAX_LINE_BYTES
    long_line = "5.0,2.9,1.1," + "0" * (cap + 10)
    for tail in ("\n5.0,2.9,1.1,0.4\n", ""):  # in the middle, or unterminated at the end
        src = write(tmp_path, "long.csv", "5.0,2.9,1.1,0.4\n\n" + long_line + tail)
        for chunk_bytes in (1024, 8 << 20):
            with pytest.raises(BatchSourceError) as err:
                read_feature_csv(src, chunk_bytes=chunk_bytes)
            assert "long.csv: line 3 is longer than" in str(err.value) and f"{cap:,} bytes" in str(err.value)


def test_the_longest_line_accepted_is_the_cap(tmp_path):
    cap = batches.MAX_LINE_BYTES
    row = "5.0,2.9,1.1,0.4"
    at_cap = row + " " * (cap - len(row))  # blanks around a number are allowed
    b = read_feature_csv(write(tmp_path, "cap.csv", f"{at_cap}\n{row}\n"), chunk_bytes=4096)
    assert b.X.tolist() == [[5.0, 2.9, 1.1, 0.4]] * 2
    with pytest.raises(BatchSourceError, match="line 1 is longer"):
        read_feature_csv(write(tmp_path, "over.csv", f"{at_cap} \n{row}\n"))


def test_a_label_line_over_the_cap_is_refused(tmp_path):
    with pytest.raises(BatchSourceError, match="line 2 is longer"):
        read_label_csv(write(tmp_path, "y.csv", "0\n" + "1" * (batches.MAX_LINE_BYTES + 1)))


# ---- quarantine: counts by reason and a bounded sample ---------------------------------------------

def test_quarantine_keeps_counts_and_a_bounded_sample(tmp_path):
    bad = ["nan,1,1,1", "1,2,3", "x,1,1,1", "1,1,1,1e7"] * 2500
    src = write(tmp_path, "bad.csv", "\n".join(["5.0,2.9,1.1,0.4"] + bad) + "\n")
    b = read_feature_csv(src, chunk_bytes=4096, quarantine_sample=50)
    assert b.n_quarantined == 10_000 and len(b.quarantine) == 50
    assert b.quarantine_counts == {"nan": 2500, "field_count": 2500, "not_a_number": 2500, "out_of_bounds": 2500}
    assert [q["row"] for q in b.quarantine] == list(range(2, 52))  # the first bad rows, in file order
    summary = serving.prepare_source(src, tmp_path / "out", chunk_bytes=4096)
    saved = json.loads((tmp_path / "out" / "quarantine.json").read_text())
    assert saved["rows"] == summary["rows_quarantined"] == 10_000
    assert len(saved["sample"]) == batches.QUARANTINE_SAMPLE and saved["sample_limit"] == batches.QUARANTINE_SAMPLE
    assert (tmp_path / "out" / "quarantine.json").stat().st_size < 40_000  # not every row, not written whole


def test_a_huge_bad_value_is_shown_cut_once(tmp_path):
    value = "9" * 50_000
    b = read_feature_csv(write(tmp_path, "h.csv", f"5.0,{value},1.1,0.4\n"))
    [q] = b.quarantine
    assert len(q["reason"]) < 300 and "(50002 chars)" in q["reason"] and set(q) == {"row", "position", "kind", "reason"}


# ---- label files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,line,columns", [("0,1\n1,2\n", 1, 2), ("label\n0\n1\t2\n", 3, 2), ("0\n1\n2;0;1\n", 3, 3)])
def test_a_multi_column_label_file_is_refused_by_name(tmp_path, text, line, columns):
    with pytest.raises(BatchSourceError) as err:
        read_label_csv(write(tmp_path, "two.csv", text))
    msg = str(err.value)
    assert "two.csv" in msg and f"line {line} has {columns} columns" in msg and "one column" in msg


def test_label_file_blank_lines_between_labels_and_at_the_end(tmp_path):
    assert read_label_csv(write(tmp_path, "a.csv", "0\n1\n\n\n"), chunk_bytes=1024).tolist() == [0, 1]
    rows = "\n".join(["1"] * 600)
    with pytest.raises(ValueError, match=r"line 601: label ''"):  # the blank line ends a read, a label follows
        read_label_csv(write(tmp_path, "b.csv", rows + "\n\n" + rows + "\n"), chunk_bytes=1024)
    assert read_label_csv(write(tmp_path, "c.csv", "")).tolist() == []


# ---- duplicate ids (issue 8 item 3) ---------------------------------------------------------------------

ID_HEADER = "id,sepal_length,sepal_width,petal_length,petal_width\n"


def test_ids_with_different_features_are_quarantined_repeats_are_kept(tmp_path):
    text = ID_HEADER + ("a,5.0,2.9,1.1,0.4\n"
                        "b,6.5,2.8,4.7,1.8\n"
                        "a,5.04,2.9,1.1,0.4\n"   # same rounded features: a repeat
                        "c,5.0,2.9,1.1,0.4\n"
                        "c,7.7,2.6,6.9,2.3\n"    # c: different features
                        "c,5.0,2.9,1.1,0.4\n")
    b = read_feature_csv(write(tmp_path, "ids.csv", text))
    assert b.ids.tolist() == ["a", "b", "a"] and b.row_numbers.tolist() == [2, 3, 4]
    assert b.quarantine_counts == {"duplicate_id": 3}
    assert [q["row"] for q in b.quarantine] == [5, 6, 7]
    assert all("id 'c' appears with different features on rows 5, 6, 7" in q["reason"] for q in b.quarantine)


def test_conflicting_ids_across_chunks_are_quarantined_in_the_prepared_batch(tmp_path):
    rows = [f"u{i},5.{i % 10},2.9,1.1,0.4" for i in range(400)]
    rows[350] = "u7,6.5,2.8,4.7,1.8"        # u7 seen at row 9 with other features, many chunks earlier
    rows[390] = "u12,5.2,2.9,1.1,0.4"       # u12 again, same features: a repeat
    src = write(tmp_path, "ids.csv", ID_HEADER + "\n".join(rows) + "\n")
    summary = serving.prepare_source(src, tmp_path / "out", chunk_bytes=1024)
    assert summary["rows_read"] == 400 and summary["rows_quarantined"] == 2
    assert summary["quarantined_by_reason"] == {"duplicate_id": 2}
    prepared = serving.load_prepared(tmp_path / "out")
    assert "id:u7" not in prepared.keys.tolist() and "id:u350" not in prepared.keys.tolist()
    assert prepared.n_keys == 398 - 1 and len(prepared) == 398
    positions = np.load(tmp_path / "out" / "positions.npy")
    assert 7 not in positions.tolist() and 350 not in positions.tolist() and len(positions) == 398
    assert np.load(tmp_path / "out" / "rows.npy").tolist() == [p + 2 for p in positions.tolist()]
    # Every kept row still points at its own id's features.
    reference = read_feature_csv(src)
    assert reference.ids.tolist() == [k[3:] for k in prepared.keys[np.asarray(prepared.inverse)].tolist()]
    sample = summary["quarantine"]["sample"]
    assert [q["row"] for q in sample] == [9, 352] and "rows 9, 352" in sample[0]["reason"]


# ---- empty and header-only sources ---------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "\n\n", ID_HEADER, "\n" + ID_HEADER + "\n"])
def test_empty_and_header_only_sources_read_as_no_rows(tmp_path, text):
    b = read_feature_csv(write(tmp_path, "e.csv", text))
    assert b.rows_read == 0 and len(b) == 0 and b.n_quarantined == 0
    summary = serving.prepare_source(write(tmp_path, "e2.csv", text), tmp_path / "out")
    assert summary["rows_good"] == 0 and serving.load_prepared(tmp_path / "out").n_keys == 0


# ---- property-based fuzzing of the CSV grammar (hypothesis) ---------------------------------------------
#
# 1. Field level: 800 examples x 16 fields = 12,800 text fields against an independent
#    reference of the grammar (a hand-written scanner, not the parser's expression).
# 2. File level: 300 files of up to 30 lines, mixed line endings, BOM, gzip, small chunks:
#    never a crash, every non-blank line either served (with exactly the scalar path's
#    values) or quarantined with exactly the scalar path's reason.

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZED: dict[str, int] = {}

_ASCII_DIGITS = "0123456789"
_BLANKS = " \t\r\n\x0b\x0c"


def reference_is_number(text: str) -> bool:
    """[blanks][sign](digits[.digits*] | .digits)[(e|E)[sign]digits][blanks], ASCII only, by hand."""
    s = text
    while s and s[0] in _BLANKS:
        s = s[1:]
    while s and s[-1] in _BLANKS:
        s = s[:-1]
    i, n = 0, len(s)
    if i < n and s[i] in "+-":
        i += 1
    whole = frac = 0
    while i < n and s[i] in _ASCII_DIGITS:
        i, whole = i + 1, whole + 1
    if i < n and s[i] == ".":
        i += 1
        while i < n and s[i] in _ASCII_DIGITS:
            i, frac = i + 1, frac + 1
    if whole + frac == 0:
        return False
    if i < n and s[i] in "eE":
        i += 1
        if i < n and s[i] in "+-":
            i += 1
        exp = 0
        while i < n and s[i] in _ASCII_DIGITS:
            i, exp = i + 1, exp + 1
        if exp == 0:
            return False
    return i == n


_field_alphabet = st.sampled_from(list("0123456789+-.eE_ x,") + ["\t", "\x0b", "\x0c", "\x1c", "\u00a0", "٥", "５", "१", "n", "a", "i", "f",
                                                                    "N", "I", "y", "t", "\u2212", "\x00", "\x85"])
grammar_fields = st.one_of(
    st.text(_field_alphabet, max_size=10),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-2e6, max_value=2e6).map(lambda x: f"{x:.3f}"),
    st.sampled_from(["999999.96", "999999.94", "-999999.95", "1e6", "9.9999996e5", "5_0", "nan", "-Infinity", "0x1p3"]),
    st.text(max_size=6),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(grammar_fields, min_size=16, max_size=16))
@example(["5_0", "٥", "５", "0x10", "1e5", " 5 ", "infinity", "nan", "+.5e-3", "5.", ".", "e5", "1e", "--5", "5\u00a0",
          "999999.96"])
def test_fuzz_field_grammar_against_a_reference_scanner(texts):
    FUZZED["fields"] = FUZZED.get("fields", 0) + len(texts)
    for position, text in enumerate(texts):
        pos = position % 4
        if reference_is_number(text):
            value = float(text.strip(_BLANKS))
            rounded_ok = abs(value) < 2e6 and abs(int(round(round(value, 1) * 10))) < 10**7
            if rounded_ok:
                assert keys.parse_number(text, pos, row=1) == value
                continue
            expected = "out of bounds" if np.isfinite(value) else "infinite"
        else:
            word = text.strip(_BLANKS).lstrip("+-").lower()
            expected = {"nan": "NaN", "inf": "infinite", "infinity": "infinite"}.get(word, "not a number")
        with pytest.raises(InputError) as err:
            keys.parse_number(text, pos, row=7)
        msg = str(err.value)
        assert msg.startswith(f"row 7, position {pos + 1} ({keys.FEATURES[pos]}): {keys.shown(text)}"), msg
        assert expected in msg, (text, msg)


_line_field = st.one_of(
    st.floats(min_value=-20, max_value=20).map(lambda x: f"{x:.2f}"),
    st.floats(min_value=-20, max_value=20).map(repr),
    grammar_fields.map(lambda t: t.replace(",", "").replace("\r", "").replace("\n", "").replace('"', "")),
)
_line = st.one_of(
    st.lists(st.floats(min_value=0, max_value=9).map(lambda x: f"{x:.1f}"), min_size=4, max_size=4),
    st.lists(_line_field, min_size=4, max_size=4),
    st.lists(_line_field, min_size=0, max_size=6),
    st.sampled_from([[""], [" "], ["\t"]]),
)


def _scalar_outcome(line: str, row: int):
    """The scalar path's verdict on one line: ("good", values) or ("bad", reason)."""
    if "\x00" in line:
        return "bad", f"row {row}: contains a NUL byte (binary data, not CSV text)"
    try:
        return "good", list(keys.parse_features(line.split(","), row=row))
    except InputError as err:
        return "bad", str(err)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(_line, max_size=30), st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=30, max_size=30),
       st.booleans(), st.booleans(), st.sampled_from([1024, 1 << 20]))
def test_fuzz_csv_files_every_row_served_or_quarantined_with_its_reason(tmp_path_factory, lines, endings, bom, packed,
                                                                       chunk_bytes):
    texts = [",".join(fields) for fields in lines]
    # A header-like first line would change the layout; the grammar is what is fuzzed here.
    if texts and any(c.isalpha() for c in texts[0]) and batches._role(texts[0].split(",")[0]) is not None:
        texts[0] = "x" + texts[0]
    endings = list(endings[:len(texts)])
    for i in reversed(range(1, len(texts))):  # a CR then an empty line's LF would be one CRLF break: keep them apart
        if endings[i - 1] == "\r" and texts[i] == "" and endings[i].startswith("\n"):
            endings[i - 1] = "\n"
    data = "".join(t + e for t, e in zip(texts, endings)).encode("utf-8")
    data = (b"\xef\xbb\xbf" if bom else b"") + data
    path = tmp_path_factory.mktemp("fuzz") / "batch.csv"
    path.write_bytes(gzip.compress(data) if packed else data)
    FUZZED["rows"] = FUZZED.get("rows", 0) + len(texts)

    b = read_feature_csv(path, chunk_bytes=chunk_bytes)

    good, bad, position = [], {}, 0
    for row, text in enumerate(texts, start=1):
        if all(c in " \t\x0b\x0c" for c in text):
            continue
        kind, what = _scalar_outcome(text, row)
        if kind == "good":
            good.append((row, position, what))
        else:
            bad[row] = what
        position += 1
    assert b.rows_read == position == len(b) + b.n_quarantined
    assert b.row_numbers.tolist() == [g[0] for g in good]
    assert b.positions.tolist() == [g[1] for g in good]
    assert b.X.tolist() == [g[2] for g in good]
    assert {q["row"]: q["reason"] for q in b.quarantine} == bad


def test_fuzzing_generated_at_least_ten_thousand_inputs():
    """Runs after the two property tests above: together they generated 10,000 inputs or more."""
    if "fields" not in FUZZED:
        test_fuzz_field_grammar_against_a_reference_scanner()
    assert FUZZED["fields"] >= 10_000, FUZZED
