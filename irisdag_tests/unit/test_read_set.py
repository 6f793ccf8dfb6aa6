"""Which replica answers a lookup (IRISDAG_REDIS_READ_URLS, docs/replicas.md): round robin from
a random start, a replica that could not answer skipped for a while, the setting checked."""
from __future__ import annotations

import pytest

from irisdag.store import resource
from irisdag.store.resource import READ_URLS_ENV, _ReadSet, parse_read_urls

URLS = ("redis://r1:6379/0", "redis://r2:6379/0", "redis://r3:6379/0")


def test_round_robin_visits_every_replica_in_turn_from_any_start():
    reads = _ReadSet(URLS)
    firsts = [reads.order()[0] for _ in range(6)]
    assert sorted(firsts[:3]) == sorted(URLS) and firsts[3:] == firsts[:3]
    order = reads.order()
    assert len(order) == 3 and order == list(URLS[URLS.index(order[0]):] + URLS[:URLS.index(order[0])])


def test_a_replica_marked_down_is_skipped_until_its_time_is_up():
    now = [100.0]
    reads = _ReadSet(URLS, clock=lambda: now[0])
    reads.mark_down(URLS[1])
    for _ in range(3):
        assert URLS[1] not in reads.order()
    now[0] += resource.REPLICA_RETRY_AFTER + 0.01
    assert URLS[1] in reads.order()
    for url in URLS:
        reads.mark_down(url)
    assert reads.order() == []  # every replica down: the primary answers


def test_the_setting_is_parsed_and_checked():
    assert parse_read_urls("", "redis://p/0") == ()
    assert parse_read_urls(" redis://a/0 , ,rediss://b/0 ", "redis://p/0") == ("redis://a/0", "rediss://b/0")
    with pytest.raises(ValueError, match=f"^{READ_URLS_ENV} is set"):
        parse_read_urls("redis://a/0", "")
    with pytest.raises(ValueError, match=r"'http://u:\*\*\*@a/0' is not a redis:// or rediss:// URL"):
        parse_read_urls("http://u:pw@a/0", "redis://p/0")
