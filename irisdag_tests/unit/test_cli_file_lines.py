"""The answer lines of `irisdag lookup --file`, built by numpy a column at a time
(`cli._answer_lines`), equal the lines written a row at a time: row numbers that gain a
digit inside a chunk, repeated rows, answers of different lengths, a non-ASCII version,
text and JSON; error lines go between the answers of the rows around them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from irisdag import cli
from irisdag.core import keys as keyscheme
from irisdag.core.batches import Batch
from irisdag.store.resource import BatchAnswers


def _answered(X, rows, codes, versions, errors=()) -> cli._KeyedChunk:
    """A keyed chunk of rows X (line numbers ``rows``) and its answers, one code a distinct row."""
    chunk = cli._KeyedChunk(Batch(X=X, row_numbers=rows), list(errors))
    chunk.answers = BatchAnswers(np.asarray(codes, np.uint8)[:len(chunk.digests)], versions)
    return chunk


def _reference(chunk, X, as_json: bool) -> list[str]:
    """The same lines a row at a time (`_file_line`, as for one key)."""
    by_key = dict(zip(keyscheme.hex_of_digests(chunk.digests), chunk.answers.records(
        keyscheme.hex_of_digests(chunk.digests))))
    return [cli._file_line(row, by_key[keyscheme.input_key(x)], as_json)
            for row, x in zip(chunk.rows.tolist(), X.tolist())]


@pytest.mark.parametrize("first_row", [1, 95, 99_990, 9_999_999])
@pytest.mark.parametrize("as_json", [False, True])
def test_lines_built_by_column_equal_lines_built_by_row(first_row, as_json):
    rng = np.random.default_rng(first_row)
    n = 40
    rows = first_row + np.cumsum(rng.integers(1, 3, n)) - 1  # in order, with gaps (blank or bad lines)
    X = rng.integers(-500, 500, (n, 4)) / 10
    X[30:] = X[:10]  # repeats: one key, one answer
    chunk = _answered(X, rows, rng.choice(np.array([0, 1, 4, 5, 6, 9], np.uint8), n), ("v" * 64, "versión-b"))
    text = chunk.text(as_json).decode("utf-8")
    assert text.endswith("\n") and len(chunk.digests) == 30
    assert text.splitlines() == _reference(chunk, X, as_json)
    if as_json:
        assert [json.loads(line)["row"] for line in text.splitlines()] == rows.tolist()


def test_error_lines_go_between_the_answer_lines_of_their_rows():
    X = np.arange(20).reshape(5, 4) / 10
    errors = [{"row": 1, "reason": "row 1, position 1 (sepal_length): 'a' is not a number"},
              {"row": 5, "reason": "'b' is NaN"}, {"row": 12, "reason": "row 12: expected 4 values"}]
    chunk = _answered(X, np.array([2, 3, 9, 10, 11]), [4, 5, 6, 0, 4], ("c" * 64,), errors)
    lines = chunk.text(False).decode().splitlines()
    assert [line.split("\t")[0].split(",")[0].split(":")[0] for line in lines] == \
        ["row 1", "row 2", "row 3", "row 5", "row 9", "row 10", "row 11", "row 12"]
    assert lines[0].startswith("row 1, position 1") and lines[3] == "row 5: 'b' is NaN"
    assert [line for i, line in enumerate(lines) if i not in (0, 3, 7)] == _reference(chunk, X, False)
    [miss] = chunk.misses()
    assert miss == {"key": keyscheme.input_key(X[3]), "features": X[3].tolist()}


def test_a_chunk_of_bad_rows_only_is_its_error_lines():
    chunk = cli._KeyedChunk(Batch(X=np.zeros((0, 4)), row_numbers=np.zeros(0, int)),
                            [{"row": 7, "reason": "row 7: x"}])
    assert chunk.text(True) == (json.dumps({"row": 7, "error": "row 7: x"}) + "\n").encode()
    assert chunk.misses() == []
