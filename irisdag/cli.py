"""The `irisdag` command (DESIGN §6): demo, lookup, status, rollback, ui, stop.

Every command ends with one clear line and one of the exit codes below (the
README's table), never a traceback. `lookup` and `status` import neither
Dagster nor pandas, so they answer in a fraction of a second; the commands that
run Dagster import it when they start.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import sys
import time

EXIT_DONE = 0          # the command did what was asked
EXIT_FAILED = 1        # refused (e.g. nothing to roll back to) or failed (a check, a step)
EXIT_BAD_INPUT = 2     # the input was not valid (the message names the value)
EXIT_UNREACHABLE = 3   # Redis could not be reached (or the embedded server not started)


class CommandError(Exception):
    """Ends a command with one line on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _store():
    from irisdag.store.resource import StoreClient

    return StoreClient.from_env()


def _emit(obj, as_json: bool, text: str) -> None:
    print(json.dumps(obj, default=str) if as_json else text)


def _bad_input(message: str) -> int:
    print(f"irisdag: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# ---- lookup -------------------------------------------------------------------

def _answer_text(r: dict) -> str:
    return (f"{r['label'] if r['label'] is not None else '-'}\troute={r['route']}\t"
            f"version={(r['version'] or '-')[:12]}\tkey={r['key']}")


def cmd_lookup(args) -> int:
    from irisdag.core import keys as keyscheme

    if args.file:
        return _lookup_file(args)
    if args.id is not None:
        try:
            key = keyscheme.id_key(args.id)
        except keyscheme.InputError as err:
            return _bad_input(str(err))
        entry = {"key": key, "id": args.id}
    else:
        if len(args.features) != keyscheme.N_FEATURES:
            return _bad_input(
                f"expected 4 values (sepal length, sepal width, petal length, petal width), "
                f"got {len(args.features)}: {' '.join(args.features) or '(none)'}")
        try:
            values = keyscheme.parse_features(args.features)
        except keyscheme.InputError as err:
            return _bad_input(str(err))
        key = keyscheme.input_key(values)
        entry = {"key": key, "features": list(values)}
    answered = None if args.fallback_model else _consumer_lookup(entry)
    if answered is not None:
        store, [result], misses = answered
    else:
        store = _store()
        [result], misses = _answer(store, [entry], args.fallback_model)
    _emit(result, args.json, _answer_text(result))
    _queue_misses(store, misses)
    return EXIT_DONE


def _consumer_lookup(entry: dict):
    """(store, [answer], misses) from the plain-socket client (no redis-py import: a lookup
    then takes a fraction of the interpreter's start-up), or None when `StoreClient` must
    answer (a cluster, an embedded server not started yet, an unexpected reply: see
    `irisdag.store.consumer`)."""
    from irisdag.store.consumer import ConsumerStore, Fallback

    try:
        store = ConsumerStore.connect(os.environ.get("REDIS_URL", ""))
    except Fallback:
        return None
    try:
        results = store.lookup([entry["key"]])
    except Fallback:
        store.close()
        return None
    return store, results, [entry] if results[0]["route"] == "miss" else []


def _answer(store, entries: list[dict], fallback_model: str | None) -> tuple[list[dict], list[dict]]:
    """The served answers for entries ({"key", "features" or "id"}), and the missed entries;
    with a fallback model, misses are answered by it."""
    results = store.lookup([e["key"] for e in entries])
    misses = [e for e, r in zip(entries, results) if r["route"] == "miss"]
    if misses and fallback_model:
        try:
            answers = fallback_answers(store, fallback_model, misses)
        except ValueError as err:
            raise CommandError(str(err), EXIT_BAD_INPUT) from None
        results = [answers.get(r["key"], r) if r["route"] == "miss" else r for r in results]
    return results, misses


def _queue_misses(store, misses: list[dict]) -> None:
    """Queue missed inputs for the pipeline's miss sensor, after the answers are out."""
    if not misses:
        return
    # The answer is out first: queueing is a hint for the pipeline's miss sensor, and a
    # full Redis (noeviction refuses XADD) must not turn an answered lookup into a crash.
    sys.stdout.flush()
    try:
        store.queue_misses(misses)
    except Exception as err:  # noqa: BLE001 - any refusal: one line, the answer stands
        print(f"irisdag: warning: {len(misses)} miss(es) not queued for scoring: "
              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)


FILE_CHUNK_BYTES = 1 << 20  # CSV read a MiB at a time: Redis answers one chunk while the next is read and keyed
CHUNKS_AHEAD = 4  # chunks' lookups sent before their answers are read (~37,000 keys, 1.2 MB each)
_FILE_ROW, _FILE_KEY, _FILE_ANSWER = object(), object(), object()  # the variable parts of an answer line
# An answer line of --file: fixed text, the row number, the key (hex), the text its answer code stands for.
_FILE_LINE = {False: (b"row ", _FILE_ROW, _FILE_ANSWER, _FILE_KEY, b"\n"),
              True: (b'{"row": ', _FILE_ROW, b', "key": "', _FILE_KEY, b'"', _FILE_ANSWER, b"\n")}


class _UnreadableFile(Exception):
    """The file was refused by the batch reader (at its start or part way through)."""


def _lookup_file(args) -> int:
    """One line per data row of the file, in file order, each carrying the row's 1-based
    line number; a row that cannot be keyed is an error line in the same place.

    Rows of features stream a chunk at a time (`_stream_file`); a file with an id
    column (rows of one id are checked against each other) or a lookup with a
    fallback model is read whole first (`_whole_file`). Nothing is printed before the
    file has been read to its end: a file that cannot be read prints no answers.
    """
    chunks = _file_chunks(args.file)
    try:
        head = []  # the first chunks, until one shows the layout (blank lines come first)
        for batch in chunks:
            head.append(batch)
            if len(batch) or batch.n_quarantined or batch.header is not None:
                break
        if args.fallback_model or any(b.ids is not None for b in head):
            store, misses, n_answered, rows_read, shown = _whole_file(args, [*head, *chunks])
        else:
            store, misses, n_answered, rows_read, shown = _stream_file(args, head, chunks)
    except _UnreadableFile as err:
        return _bad_input(f"cannot read {args.file}: {err}")
    _queue_misses(store, misses)
    bad = rows_read - n_answered
    if bad:
        more = f" ({bad - shown:,} not listed)" if bad > shown else ""
        print(f"irisdag: {bad:,} of {rows_read:,} rows of {args.file} could not be keyed{more}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_DONE


def _file_chunks(path):
    """The file's `Batch` chunks, in order; `_UnreadableFile` when the reader refuses it."""
    from irisdag.core.batches import READ_QUARANTINE_SAMPLE, iter_feature_csv

    parts = iter_feature_csv(path, chunk_bytes=FILE_CHUNK_BYTES, quarantine_sample=READ_QUARANTINE_SAMPLE)
    while True:
        try:
            batch = next(parts)
        except StopIteration:
            return
        except (OSError, ValueError) as err:
            raise _UnreadableFile(str(err)) from None
        yield batch


def _whole_file(args, batches):
    """`_lookup_file` on the whole batch: (store, misses, rows answered, rows read, error lines shown)."""
    from irisdag.core.batches import READ_QUARANTINE_SAMPLE, concat_batches, quarantine_conflicting_ids

    batch = quarantine_conflicting_ids(concat_batches(list(batches), quarantine_sample=READ_QUARANTINE_SAMPLE),
                                       READ_QUARANTINE_SAMPLE)
    store = _store()
    entries = []
    for i, key in enumerate(batch.keys()):
        entry = {"key": key}
        if batch.ids is not None:
            entry["id"] = str(batch.ids[i])
        else:
            entry["features"] = [float(v) for v in batch.X[i]]
        entries.append(entry)
    results, misses = _answer(store, entries, args.fallback_model) if entries else ([], [])
    lines = [_file_line(row, r, args.json) for row, r in zip(batch.row_numbers.tolist(), results)]
    if batch.quarantine:
        lines = _with_error_lines(lines, batch.row_numbers, batch.quarantine, args.json)
    for i in range(0, len(lines), 65_536):  # one write a block, not one print a line
        sys.stdout.write("\n".join(lines[i:i + 65_536]) + "\n")
    return store, misses, len(results), batch.rows_read, len(batch.quarantine)


def _stream_file(args, head: list, rest):
    """`_lookup_file` on rows of features, a chunk at a time: (store, misses, rows answered,
    rows read, error lines shown).

    Each chunk is keyed here (its distinct rows hashed once) and looked up as raw keys
    (`lookup_digests`, one byte a key back) by `_ChunkLookups`' thread, so Redis answers
    one chunk while this thread reads and keys the next and prints the answered ones.
    Lines are held until the file has been read to its end, then written as answered.
    """
    from irisdag.core.batches import READ_QUARANTINE_SAMPLE

    out = _HeldOutput()
    lookups = None
    waiting: collections.deque = collections.deque()  # keyed chunks not printed yet, in file order
    misses: list[dict] = []
    n_answered = rows_read = shown = 0
    try:
        for batch in itertools.chain(head, rest):
            rows_read += batch.rows_read
            n_answered += len(batch)
            errors = batch.quarantine[:READ_QUARANTINE_SAMPLE - shown]  # the first bad rows of the file
            shown += len(errors)
            chunk = _KeyedChunk(batch, errors)
            if len(batch):
                if lookups is None:
                    lookups = _ChunkLookups()
                lookups.submit(chunk.digests)
            waiting.append(chunk)
            _print_answered(waiting, lookups, out, args.json, misses, wait=False)
        out.release()
        _print_answered(waiting, lookups, out, args.json, misses, wait=True)
    finally:
        if lookups is not None:
            lookups.close()
    return lookups and lookups.store, misses, n_answered, rows_read, shown


def _print_answered(waiting, lookups, out, as_json: bool, misses: list, *, wait: bool) -> None:
    """Print the waiting chunks, in order, as far as their answers are in (all of them with ``wait``)."""
    while waiting:
        chunk = waiting[0]
        if len(chunk.rows) and chunk.answers is None:
            chunk.answers = lookups.answer(wait)
            if chunk.answers is None:
                return
        out.write(chunk.text(as_json))
        misses += chunk.misses()
        waiting.popleft()


class _KeyedChunk:
    """One chunk of a feature file, keyed: its rows' line numbers, their distinct rows'
    digests (what is looked up) and, per row, the index of its distinct row."""

    def __init__(self, batch, errors: list[dict]):
        import numpy as np

        from irisdag.core import keys as keyscheme

        self.X = batch.X
        self.rows = batch.row_numbers
        self.errors = errors
        self.answers = None
        uniq, self.inverse = keyscheme.unique_quantized(keyscheme.quantize_array(batch.X))
        self.digests = keyscheme.digests_of_quantized(uniq)
        self.codes = np.zeros(0, np.uint8)

    def text(self, as_json: bool) -> bytes:
        """The chunk's lines: an answer line a good row, an error line for each listed bad row, in row order."""
        encoding, errors = _stdout_encoding()
        body, ends = b"", None
        if len(self.rows):
            self.codes = self.answers.codes[self.inverse]
            table = self.answers.route_table()
            if as_json:
                heads = {c: ", " + ", ".join(f"{json.dumps(name)}: {json.dumps(value)}"
                                             for name, value in zip(("label", "version", "route"), table[c])) + "}"
                         for c in set(self.codes.tolist())}
            else:
                heads = {c: "\t" + _answer_text({"label": table[c][0], "route": table[c][2], "version": table[c][1],
                                                 "key": ""}) for c in set(self.codes.tolist())}
            raw = self.digests.view("u1").reshape(-1, 32)[self.inverse]
            body, ends = _answer_lines(_FILE_LINE[as_json], self.rows, raw, self.codes,
                                       {c: h.encode(encoding, errors) for c, h in heads.items()})
        if not self.errors:
            return body
        import numpy as np

        at = np.searchsorted(self.rows, [q["row"] for q in self.errors]).tolist()
        pieces, start = [], 0
        for i, q in zip(at, self.errors):
            cut = int(ends[i - 1]) if i else 0
            pieces += [body[start:cut], (_file_line(q["row"], {"error": q["reason"]}, as_json) + "\n").encode(
                encoding, errors)]
            start = cut
        pieces.append(body[start:])
        return b"".join(pieces)

    def misses(self) -> list[dict]:
        """Entries of the rows no version answered (for the miss queue), once the chunk is printed."""
        import numpy as np

        missed = np.flatnonzero(self.codes == 0).tolist() if len(self.codes) else []
        raw = self.digests.view("u1").reshape(-1, 32)
        return [{"key": raw[self.inverse[i]].tobytes().hex(), "features": [float(v) for v in self.X[i]]}
                for i in missed]


def _answer_lines(parts: tuple, rows, digests, codes, heads: dict) -> tuple[bytes, "np.ndarray"]:
    """Answer lines as one bytes (and the offset where each line ends), built by numpy a
    column at a time, not a Python string a row: each row's line is ``parts``, fixed bytes
    and `_FILE_ROW` (the row number), `_FILE_KEY` (hex of the row of ``digests``, uint8
    (n, 32)) or `_FILE_ANSWER` (``heads[code]``). The row number is written right-aligned
    and the answer left-aligned in the widest one's width; the padding is dropped at the end."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    digits = len(str(int(rows.max())))
    row_digits = np.ones(n, np.int64)
    for k in range(1, digits):
        row_digits += rows >= 10 ** k
    width_answer = max(len(h) for h in heads.values())
    answer_bytes = np.zeros((256, width_answer), np.uint8)
    answer_len = np.zeros(256, np.int64)
    for code, head in heads.items():
        answer_bytes[code, :len(head)] = np.frombuffer(head, np.uint8)
        answer_len[code] = len(head)
    lengths = row_digits + answer_len[codes]
    widths = {_FILE_ROW: digits, _FILE_KEY: 64, _FILE_ANSWER: width_answer}
    for p in parts:
        lengths += len(p) if isinstance(p, bytes) else widths[p] if p is _FILE_KEY else 0
    buf = np.empty((n, sum(len(p) if isinstance(p, bytes) else widths[p] for p in parts)), np.uint8)
    keep = None  # which bytes are not padding (None: all; every line is as wide as the widest)
    if row_digits[0] != digits or (len(heads) > 1 and len({len(h) for h in heads.values()}) > 1):
        keep = np.ones(buf.shape, bool)
    col = 0
    for part in parts:
        if part is _FILE_ROW:
            rest = rows.astype(np.int32) if digits < 10 else rows  # int32 division is several times faster
            for k in range(digits - 1, -1, -1):
                rest, digit = np.divmod(rest, 10)
                buf[:, col + k] = digit + ord("0")
            if keep is not None and row_digits[0] != digits:  # rows are in order: the first is the shortest
                keep[:, col:col + digits] = np.arange(digits) >= (digits - row_digits)[:, None]
        elif part is _FILE_KEY:
            buf[:, col:col + 64] = np.frombuffer(digests.tobytes().hex().encode("ascii"), np.uint8).reshape(n, 64)
        elif part is _FILE_ANSWER:
            buf[:, col:col + width_answer] = np.take(answer_bytes, codes, axis=0)
            if keep is not None:
                keep[:, col:col + width_answer] = np.arange(width_answer) < answer_len[codes][:, None]
        else:
            buf[:, col:col + len(part)] = np.frombuffer(part, np.uint8)
        col += len(part) if isinstance(part, bytes) else widths[part]
    return (buf.tobytes() if keep is None else buf[keep].tobytes()), np.cumsum(lengths)


class _ChunkLookups:
    """`lookup_digests` of submitted chunks on a helper thread, answers handed back in order.

    Socket waits release the GIL, and Redis runs in its own process: it answers while
    the caller reads and keys the next chunk. The plain-socket client (`ConsumerStore`:
    no redis-py to import) sends a chunk's calls as soon as it comes and reads answers
    back while no chunk waits to be sent, so Redis has the next calls queued and never
    waits for this process; should it fall back, `StoreClient` answers the rest, a chunk
    a call.
    """

    def __init__(self):
        import queue
        import threading

        from irisdag.store.consumer import ConsumerStore, Fallback

        try:
            self.store = ConsumerStore.connect(os.environ.get("REDIS_URL", ""))
        except Fallback:
            self.store = _store()
        self.todo: queue.Queue = queue.Queue()
        self.done: queue.Queue = queue.Queue()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="irisdag-lookup", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._answer_chunks()
        except BaseException as err:  # noqa: BLE001 - raised again by the caller
            self.done.put(err)

    def _answer_chunks(self) -> None:
        import queue

        from irisdag.store.consumer import ConsumerStore

        sent: collections.deque = collections.deque()  # (digests, calls) sent, answers not read yet
        settled = False  # a first lookup answered here: the plain client knows the command's form
        while not self.stopping:
            if len(sent) >= CHUNKS_AHEAD:  # Redis holds what is sent in its query buffer: keep it bounded
                self._read_oldest(sent)
                continue
            try:
                digests = self.todo.get(block=not sent)
            except queue.Empty:  # nothing to send: read the oldest answers
                self._read_oldest(sent)
                continue
            if digests is None:  # the caller is done (it had every answer) or gave up
                return
            if settled and isinstance(self.store, ConsumerStore):
                sent.append((digests, self.store.send_digests(digests)))
                continue
            self.done.put(self._look_up(digests))
            settled = True

    def _read_oldest(self, sent) -> None:
        from irisdag.store.consumer import Fallback

        digests, calls = sent.popleft()
        try:
            self.done.put(self.store.read_digests(calls))
        except Fallback:  # e.g. the script cache lost part way: StoreClient answers from here on
            self._fall_back()
            self.done.put(self.store.lookup_digests(digests))
            while sent:
                self.done.put(self.store.lookup_digests(sent.popleft()[0]))

    def _look_up(self, digests):
        from irisdag.store.consumer import ConsumerStore, Fallback

        if isinstance(self.store, ConsumerStore):
            try:
                return self.store.lookup_digests(digests)
            except Fallback:
                self._fall_back()
        return self.store.lookup_digests(digests)

    def _fall_back(self) -> None:
        self.store.close()
        self.store = _store()

    def submit(self, digests) -> None:
        self.todo.put(digests)

    def answer(self, wait: bool):
        """The next chunk's `BatchAnswers` (None if not in yet and not ``wait``); a lookup's error is raised here."""
        import queue

        try:
            got = self.done.get(block=wait)
        except queue.Empty:
            return None
        if isinstance(got, BaseException):
            raise got
        return got

    def close(self) -> None:
        """Let the thread end (after the call under way, if any: not waited for)."""
        self.stopping = True
        self.todo.put(None)


class _HeldOutput:
    """Bytes for stdout, held until `release` (the whole file read), then written as they come."""

    def __init__(self):
        self.held: list[bytes] | None = []

    def write(self, data: bytes) -> None:
        if self.held is None:
            _write_stdout(data)
        else:
            self.held.append(data)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for data in held:
            _write_stdout(data)


def _stdout_encoding() -> tuple[str, str]:
    return getattr(sys.stdout, "encoding", None) or "utf-8", getattr(sys.stdout, "errors", None) or "strict"


def _write_stdout(data: bytes) -> None:
    """Bytes to stdout (through its text layer when it has no byte buffer, as under some test captures)."""
    if not data:
        return
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(data.decode(*_stdout_encoding()))
        return
    sys.stdout.flush()
    buffer.write(data)


def _file_line(row: int, r: dict, as_json: bool) -> str:
    """The output line of one row of ``--file``: its answer, or its error."""
    if "error" in r:
        r = {"error": _row_error(row, r["error"])}
        return json.dumps({"row": row, **r}, default=str) if as_json else r["error"]
    return json.dumps({"row": row, **r}, default=str) if as_json else f"row {row}\t{_answer_text(r)}"


def _with_error_lines(lines: list[str], row_numbers, quarantine: list[dict], as_json: bool) -> list[str]:
    """``lines`` (one a good row, in row order) with each quarantined row's error line in its place."""
    import numpy as np

    errors = sorted((int(q["row"]), q["reason"]) for q in quarantine)
    row_numbers = np.asarray(row_numbers)
    if len(row_numbers) > 1 and not (np.diff(row_numbers) > 0).all():  # never expected: rows come in file order
        order = np.argsort(row_numbers, kind="stable")
        lines, row_numbers = [lines[i] for i in order.tolist()], row_numbers[order]
    at = np.searchsorted(row_numbers, [row for row, _ in errors]).tolist()
    out: list[str] = []
    start = 0
    for i, (row, reason) in zip(at, errors):
        out += lines[start:i]
        out.append(_file_line(row, {"error": reason}, as_json))
        start = i
    out += lines[start:]
    return out


def _row_error(row: int, message: str) -> str:
    """The error line of a bad row: its row named once (the reason usually starts with it)."""
    return message if message.startswith(f"row {row},") or message.startswith(f"row {row}:") \
        else f"row {row}: {message}"


def fallback_answers(store, model_path: str, misses: list[dict]) -> dict:
    """The champion model's own answers for missed inputs (route `fallback`).

    The caller's copy must be the served champion's model (same SHA-256), and the
    inputs go through the batch's validation and key code, so a fallback answer
    is the answer the store will hold once the miss is scored.
    """
    import numpy as np

    from irisdag import serving
    from irisdag.models.artifacts import CLASSES, load_model, predict_labels

    champion, digest = store.served_champion()
    if not champion:
        raise ValueError("no champion is served yet, so there is no model to fall back to")
    booster = load_model(model_path, expected_digest=digest)  # DigestMismatch names both digests
    with_features = [m for m in misses if m.get("features") is not None]
    if not with_features:
        return {}
    prepared = serving.prepare(np.array([m["features"] for m in with_features], dtype=np.float64))
    labels = predict_labels(booster, prepared.Xq)
    by_key = {str(k): CLASSES[int(l)] for k, l in zip(prepared.keys, labels)}
    return {k: {"key": k, "label": by_key[k], "version": champion, "route": "fallback"} for k in by_key}


# ---- status / rollback ------------------------------------------------------------

def status_dict(store) -> dict:
    routing = store.routing()
    versions = [{**v, "role": routing.role_of(v["version"])}
                for v in sorted(store.versions(), key=lambda v: v.get("created_at", ""))]
    return {"routing": routing.to_hash() | {"shares": dict(routing.shares)},
            "versions": versions, "decision": store.latest_decision()}


def cmd_status(args) -> int:
    store = _store()
    st = status_dict(store)
    if args.json:
        print(json.dumps(st, default=str))
        return EXIT_DONE
    r = st["routing"]
    print(f"champion   {r['champion'] or '(none)'}")
    print(f"previous   {r['previous'] or '(none)'}")
    print(f"challenger {r['challenger'] or '(none)'}  strategy {r['strategy'] or '-'}  epoch {r['epoch']}")
    print("versions:")
    for v in st["versions"]:
        print(f"  {v['version'][:12]}  role={v['role']:<10} lifecycle={v.get('lifecycle', '-'):<11} "
              f"validated={v.get('validated')} complete={v.get('complete')} keys={v.get('keys')}")
    d = st["decision"]
    if d:
        print(f"decision   {d['decision']} ({d['decision_id']}): {d['reason']}")
    print(f"serving: champion {r['champion'][:12] or '(none)'}, epoch {r['epoch']}, {len(st['versions'])} versions")
    return EXIT_DONE


def _run_config(verbose: bool) -> dict:
    """Dagster's console log only with -v; every event is still in the instance (and the UI)."""
    return {"loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "CRITICAL"}}}}


def cmd_rollback(args) -> int:
    from irisdag.definitions import defs
    from irisdag.demo import run_error
    from irisdag.instance import get_instance

    store = _store()  # the same REDIS_URL the definitions use
    store.ping()
    before = store.routing()
    result = defs.get_job_def("rollback").execute_in_process(
        instance=get_instance(), raise_on_error=False, run_config=_run_config(args.verbose))
    # Report what Redis holds, not what the run says: the rollback applied iff the routing
    # function recorded this run's operation (a step that failed after it still rolled back).
    applied = store.applied_operation(f"rollback:{result.run_id}") is not None
    after = store.routing()
    out = {"ok": applied, "champion": after.champion, "rolled_back": before.champion if applied else "",
           "previous": after.previous, "epoch": after.epoch, "run_id": result.run_id}
    if applied:
        text = f"rolled back: {before.champion[:12]} -> {after.champion[:12]} (epoch {after.epoch})"
    else:
        out["error"] = "rollback refused: " + run_error(result)
        if args.json:
            print(json.dumps(out, default=str))
        else:
            print(f"irisdag: {out['error']} (run {result.run_id[:8]})", file=sys.stderr)
        return EXIT_FAILED
    _emit(out, args.json, text)
    return EXIT_DONE


# ---- demo / ui / stop -----------------------------------------------------------------

def cmd_demo(args) -> int:
    started = time.monotonic()
    store = _store()
    store.ping()  # Redis unreachable: exit 3 before any run starts
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else \
        (lambda line: print(line, flush=True))
    say("irisdag demo: loading the pipeline (Dagster)...")
    from irisdag.definitions import RESOURCES
    from irisdag.defs.settings import env
    from irisdag.demo import run_demo
    from irisdag.instance import get_instance

    instance = get_instance()
    summary = run_demo(instance, RESOURCES, batch_source=env("IRISDAG_BATCH_SOURCE"), warmup=args.warmup,
                       run_config=_run_config(args.verbose), progress=say)
    st = status_dict(store)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"windows": summary.windows, "checks": summary.checks, "runs": summary.runs,
                          "failures": summary.failures, "seconds": round(elapsed, 2), **st}, default=str))
    else:
        print(f"windows materialized: {', '.join(summary.windows)}")
        failed = [c for c in summary.checks if not c[2]]
        print(f"asset checks: {len(summary.checks) - len(failed)} passed, {len(failed)} failed")
        for name, part, _, sev, desc in failed:
            print(f"  FAILED [{sev}] {name} ({part}): {desc}")
        d = st["decision"] or {}
        if d:
            print(f"decision {d.get('decision_id')}: {d.get('decision')} — {d.get('reason')}")
            excluded = int(d.get("n_excluded") or 0)
            note = f" (rows left out because a compared model trained on them: {excluded:,})" if excluded else ""
            print(f"  n={d.get('n')} b={d.get('b')} c={d.get('c')} p={d.get('p_value')} "
                  f"mcnemar_p={d.get('mcnemar_p')} lambda={d.get('lambda')}{note}")
        for job, key, outcome in summary.runs:
            print(f"sensor requested {job} (run key {key}): {outcome}")
        r = st["routing"]
        print(f"serving: champion {r['champion'][:12] or '(none)'}, previous {r['previous'][:12] or '(none)'}, "
              f"epoch {r['epoch']}")
    for f in summary.failures:
        print(f"irisdag demo: {f}", file=sys.stderr)
    if summary.failures:
        print(f"irisdag demo: failed after {elapsed:.1f} s ({len(summary.failures)} failure"
              f"{'s' if len(summary.failures) > 1 else ''} above)", file=sys.stderr)
        return EXIT_FAILED
    say(f"irisdag demo: done in {elapsed:.1f} s; try `irisdag status` or `irisdag lookup 5.0 2.9 1.1 0.4`")
    return EXIT_DONE


def dagster_tool(name: str) -> str:
    """A console script installed beside the interpreter running irisdag (the venv's
    bin/), so `irisdag ui` works without activating the venv."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(beside, os.X_OK):
        return beside
    import shutil

    found = shutil.which(name)
    if not found:
        raise CommandError(f"{name} is not installed beside {sys.executable} nor on PATH "
                           f"(pip install -e . installs it)")
    return found


def cmd_ui(args) -> int:
    """`dg dev` on this project's instance, in its own process group, so Ctrl-C or
    SIGTERM here stops the webserver, the daemon and the code server it started."""
    import signal
    import subprocess

    from irisdag.instance import ensure_dagster_home
    from irisdag.paths import PROJECT_DIR

    home = ensure_dagster_home()
    # Dagster 1.13's `dg dev` (dagster-dg-cli) with the project's workspace.yaml; run from
    # DAGSTER_HOME, so the repository's own dagster.yaml (the template copied there) is
    # not mistaken for a second, ignored instance config.
    cmd = [dagster_tool("dg"), "dev", "-w", str(PROJECT_DIR / "workspace.yaml"),
           "-h", args.host, "-p", str(args.port)]
    env = dict(os.environ, DAGSTER_DISABLE_TELEMETRY="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    print(f"irisdag ui: serving http://{args.host}:{args.port} (DAGSTER_HOME={home}); Ctrl-C stops it",
          flush=True)
    proc = subprocess.Popen(cmd, cwd=str(home), env=env, start_new_session=True)
    stopping = []

    def stop(signum, _frame):
        stopping.append(signum)
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # dg dev shuts its children down on SIGTERM
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        code = proc.wait()
    finally:
        _reap_group(proc.pid)
    if stopping:
        print("irisdag ui: stopped", flush=True)
        return EXIT_DONE
    raise CommandError(f"dg dev exited with code {code}")


def _reap_group(pgid: int, grace: float = 10.0) -> None:
    """Stop what is left of the UI's process group (code servers outlive `dg dev` by up
    to their heartbeat timeout): SIGTERM, then SIGKILL after the grace period."""
    import signal

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.1)


def group_alive(pgid: int) -> list[int]:
    """The running (not zombie) processes of a process group."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):  # state, ppid, pgrp
            alive.append(int(entry))
    return alive


def cmd_stop(args) -> int:
    from irisdag.store import embedded

    if os.environ.get("REDIS_URL"):
        print(f"irisdag stop: REDIS_URL is set; irisdag stops only its embedded server "
              f"({embedded.server_dir()}), which is not in use")
    stopped = embedded.stop()
    print(f"irisdag stop: {'stopped' if stopped else 'no'} embedded Redis server in {embedded.server_dir()}"
          f"{'' if stopped else ' was running'}")
    return EXIT_DONE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="irisdag", description="Batch prediction with model deployment strategies.",
        epilog="exit codes: 0 done, 1 refused or failed, 2 bad input, 3 Redis unreachable")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="materialize the whole graph once, run the sensors, summarize")
    d.add_argument("--json", action="store_true")
    d.add_argument("--warmup", type=int, default=3, help="windows the champion serves first on a fresh store")
    d.add_argument("-v", "--verbose", action="store_true", help="show Dagster's own log")
    d.set_defaults(func=cmd_demo)
    lk = sub.add_parser("lookup", help="the served answer for an input, an id or a CSV of inputs")
    lk.add_argument("features", nargs="*", help="SL SW PL PW")
    lk.add_argument("--id", help="an entity id")
    lk.add_argument("--file", help="a CSV of inputs (one line per row, each with its row number)")
    lk.add_argument("--json", action="store_true")
    lk.add_argument("--fallback-model", help="the champion's XGBoost JSON model: answer misses with it (route fallback)")
    lk.set_defaults(func=cmd_lookup)
    s = sub.add_parser("status", help="routing, versions and the newest decision")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    rb = sub.add_parser("rollback", help="restore the previous champion")
    rb.add_argument("--json", action="store_true")
    rb.add_argument("-v", "--verbose", action="store_true", help="show Dagster's own log")
    rb.set_defaults(func=cmd_rollback)
    ui = sub.add_parser("ui", help="serve the Dagster UI (dg dev) on this instance, on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(func=cmd_ui)
    st = sub.add_parser("stop", help="stop this state folder's embedded Redis server")
    st.set_defaults(func=cmd_stop)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    argv = _values_after_dashes(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `irisdag lookup --file big.csv | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_DONE
    except KeyboardInterrupt:
        print(f"irisdag {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - one line and an exit code, never a traceback
        code, message = classify(err)
        print(f"irisdag {args.command}: {message}", file=sys.stderr)
        return code


def classify(err: BaseException) -> tuple[int, str]:
    """The exit code and one-line message for an error that ended a command."""
    if isinstance(err, CommandError):
        return err.code, str(err)
    from irisdag.store.common import StoreUnavailable

    if isinstance(err, StoreUnavailable):
        return EXIT_UNREACHABLE, str(err)
    redis = sys.modules.get("redis")
    unreachable = (ConnectionError, TimeoutError)
    if redis is not None:
        unreachable += (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    if isinstance(err, unreachable):
        where = os.environ.get("REDIS_URL") or "the embedded server"
        if os.environ.get("REDIS_URL"):
            from irisdag.store.common import redact_url
            where = redact_url(where)
        return EXIT_UNREACHABLE, f"cannot reach Redis at {where}: {err}"
    text = str(err).strip().splitlines()
    return EXIT_FAILED, f"{type(err).__name__}: {text[-1] if text else 'failed'}"


LOOKUP_OPTIONS_WITH_VALUE = {"--id", "--file", "--fallback-model"}


def _values_after_dashes(argv: list[str]) -> list[str]:
    """`irisdag lookup -1e-05 3.0 1.4 0.2`: values that look like options (-1e-05, -inf, -5.)
    are values here. Put every lookup value after `--`, in the order given, so argparse
    neither mistakes them for options nor reorders them."""
    if not argv or argv[0] != "lookup" or "--" in argv:
        return argv
    options, values, i = [], [], 1
    while i < len(argv):
        token = argv[i]
        if token in LOOKUP_OPTIONS_WITH_VALUE and i + 1 < len(argv):
            options += [token, argv[i + 1]]
            i += 2
            continue
        if token.startswith("--") or (token.startswith("-") and not _looks_numeric(token) and len(token) == 2):
            options.append(token)
        else:
            values.append(token)
        i += 1
    return ["lookup", *options, "--", *values]


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
