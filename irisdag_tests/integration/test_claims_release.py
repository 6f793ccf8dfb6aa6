"""The per-input claims of an experiment (``irisdag:judged:<experiment>:*``, made by ``claim_inputs``)
are deleted once the experiment has ended, by the scoring user (the routing user, which ends
experiments, may not delete them), against Redis 7 with the deployed ACL users."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import redis

from irisdag.store.resource import JUDGED_PREFIX, ServingStore, close_clients
from irisdag_tests.integration.test_acl_users import acl_redis  # noqa: F401  (the fixture: Redis 7, deployed ACL)


def _judged(admin: redis.Redis, experiment: str) -> int:
    return sum(1 for _ in admin.scan_iter(match=f"{JUDGED_PREFIX}{experiment}:*", count=1000))


def _running(acl_redis, admin, experiment: str):
    """An emptied store (through the scoring and routing users) running ``experiment``: champion a, challenger b."""
    admin.flushdb()
    close_clients()
    store = ServingStore(redis_url=acl_redis.url("scoring"), routing_url=acl_redis.url("routing"))
    keys = [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(20)]
    champion, challenger = (hashlib.sha256(n.encode()).hexdigest() for n in ("a", "b"))
    for v in (champion, challenger):
        store.register_version(v, v, role="champion")
        store.set_validated(v, True, "test")
        store.mark_generation(v, 1, store.write_predictions(v, keys, np.arange(20) % 3))
    ok, reason, epoch = store.set_routing(0, {"champion": champion, "challenger": challenger, "salt": experiment,
                                             "strategy": "shadow"}, action="start")
    assert ok, reason
    store.experiment_put(experiment, {"plan": {"arms": [challenger]}, "champion": champion})
    return store, champion, challenger, epoch


def test_an_ended_experiment_keeps_no_claims_and_only_the_scoring_user_deletes_them(acl_redis):
    admin = acl_redis.admin()
    try:
        store, champion, challenger, epoch = _running(acl_redis, admin, "e1")
        tokens = np.arange(1, 3001, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        assert store.claim_inputs("e1", "w1", tokens).all()
        shards = _judged(admin, "e1")
        assert shards > 500

        assert store.release_claims() == 0 and store.release_claims("e1") == 0  # still running: kept
        assert _judged(admin, "e1") == shards

        # The routing user ends the experiment (as a promotion does) and could not delete the claims.
        ok, reason, epoch = store.set_routing(epoch, {"champion": challenger, "previous": champion,
                                                      "challenger": ""}, action="promote")
        assert ok, reason
        routing_user = redis.Redis.from_url(acl_redis.url("routing"), socket_timeout=10)
        try:
            with pytest.raises(redis.exceptions.NoPermissionError):
                routing_user.unlink(f"{JUDGED_PREFIX}e1:0")
        finally:
            routing_user.close()

        assert store.release_claims() == shards   # the scoring user, at the next comparison
        assert _judged(admin, "e1") == 0
        assert store.release_claims() == 0        # marked: done once
        assert "claims_released" in store.experiment_get("e1")

        # A replaced experiment's claims go when the next one starts (the start names the old id).
        store.experiment_put("e2", {"plan": {"arms": [champion]}, "champion": challenger})
        ok, reason, epoch = store.set_routing(epoch, {"challenger": champion, "salt": "e2"}, action="start")
        assert ok, reason
        assert store.claim_inputs("e2", "w2", tokens[:50]).all()
        ok, reason, epoch = store.set_routing(epoch, {"challenger": "", "salt": "e3"}, action="start")
        assert ok, reason
        assert store.release_claims("e2") > 0 and _judged(admin, "e2") == 0
    finally:
        admin.close()


def test_deleting_an_ended_experiments_version_deletes_its_claims(acl_redis):
    admin = acl_redis.admin()
    try:
        store, champion, challenger, epoch = _running(acl_redis, admin, "x1")
        store.claim_inputs("x1", "w1", np.arange(1, 201, dtype=np.uint64))
        ok, reason, epoch = store.set_routing(epoch, {"challenger": ""}, action="abort")
        assert ok, reason
        assert _judged(admin, "x1") > 0
        store.delete_version(challenger)
        assert _judged(admin, "x1") == 0
    finally:
        admin.close()
