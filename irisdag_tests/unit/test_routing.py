"""The routing bucket (DESIGN §3) on fixed vectors, and the holdout/share edges."""
import pytest

from irisdag.core.routing import Routing, bucket, route_bucket, route_key

# (salt, key, bucket): SHA-1 known answers, checked independently with
# `printf '%s' 'exp-42:id:alice' | sha1sum` -> e7fe6713... -> 0xe7fe6713 % 10000 = 9427.
BUCKET_VECTORS = [
    ("", "id:1", 657),
    ("exp-42", "id:alice", 9427),
    ("s1", "0" * 64, 3727),
    ("é€", "id:x", 5685),
]

# Keys landing exactly on the edges of EDGE_ROUTING (salt "exp-edge"): holdout
# 0..699, arm2 700..3199, arm1 3200..4699, champion 4700..9999.
EDGE_SALT = "exp-edge"
EDGE_KEYS = {
    0: "d2a71c1dac43f4fd571c02cc86886de2cc5eb8680ddb5fb4e5e6e2019e97f5fd",
    699: "9665bd3b95f3396b55263660eb5438b8aec694c2c1d863c0e63f873749a9b378",
    700: "6ffb49a3c4182a38ce4d2cbf6b1f0db2f7e95fbd29858ee94b3b4848824d1213",
    3199: "86b6ca4aa60b55a11da8e811c22633c9a2a2d163be147dc5c7fca3637e83ce1f",
    3200: "3433ad599d8e13cce7c3942857900df85edf4c5553758818ba88896109127a85",
    4699: "6877b450ee2d9cf2d62b8a53f9a8e5deef0ad910debe1749cba64c521f891995",
    4700: "fad96a72d7d57b738d671f281a7c06145c3733880a5ec444ff275fe189720bef",
    9999: "5eb1980a659d9ac4a5f6396387e67eadf2bee68a90497e5f41acf95086ccb964",
}
EDGE_ROUTES = {
    0: ("holdout", None), 699: ("holdout", None),
    700: ("challenger", "arm2"), 3199: ("challenger", "arm2"),
    3200: ("challenger", "arm1"), 4699: ("challenger", "arm1"),
    4700: ("champion", "champ"), 9999: ("champion", "champ"),
}
EDGE_ROUTING = Routing(champion="champ", challenger="arm2", strategy="bandit",
                       shares=(("arm2", 2500), ("arm1", 1500)), holdout_bp=700, salt=EDGE_SALT)


@pytest.mark.parametrize("salt,key,expected", BUCKET_VECTORS)
def test_bucket_is_sha1_of_salt_colon_key(salt, key, expected):
    assert bucket(salt, key) == expected


def test_edge_keys_land_on_their_edge_buckets():
    assert {b: bucket(EDGE_SALT, k) for b, k in EDGE_KEYS.items()} == {b: b for b in EDGE_KEYS}


def test_keys_on_holdout_and_share_edges_route_to_their_side():
    assert {b: route_key(k, EDGE_ROUTING) for b, k in EDGE_KEYS.items()} == EDGE_ROUTES
    assert {b: route_bucket(b, EDGE_ROUTING) for b in EDGE_KEYS} == EDGE_ROUTES


def test_no_holdout_and_no_shares_serves_the_champion_without_hashing():
    r = Routing(champion="champ", salt=EDGE_SALT)
    assert all(route_key(k, r) == ("champion", "champ") for k in EDGE_KEYS.values())
    assert route_key("id:x", Routing()) == ("champion", None)


def test_a_holdout_alone_or_shares_alone_still_hash_the_key():
    holdout_only = Routing(champion="champ", holdout_bp=700, salt=EDGE_SALT)
    assert route_key(EDGE_KEYS[699], holdout_only) == ("holdout", None)
    assert route_key(EDGE_KEYS[700], holdout_only) == ("champion", "champ")
    one_bp = Routing(champion="champ", holdout_bp=1, salt=EDGE_SALT)
    assert route_key(EDGE_KEYS[0], one_bp) == ("holdout", None)
    assert route_key(EDGE_KEYS[699], one_bp) == ("champion", "champ")
    shares_only = Routing(champion="champ", shares=(("arm", 2500),), salt=EDGE_SALT)
    assert route_key(EDGE_KEYS[700], shares_only) == ("challenger", "arm")
    assert route_key(EDGE_KEYS[3199], shares_only) == ("champion", "champ")


def test_roles_come_from_routing_alone():
    routing = Routing(champion="c", previous="p", challenger="ch", shares=(("ch", 500), ("arm2", 500)))
    assert [routing.role_of(v) for v in ("c", "p", "ch", "arm2", "old")] == \
        ["champion", "previous", "challenger", "challenger", "-"]
    # A version that is both champion and previous (a degenerate routing) is the champion.
    assert Routing(champion="c", previous="c").role_of("c") == "champion"


def test_routing_round_trips_through_its_redis_hash_exactly():
    from irisdag.core.routing import dump_shares, parse_shares

    r = Routing(champion="c", previous="p", challenger="a2", strategy="bandit",
                shares=(("a2", 2500), ("a1", 1500)), holdout_bp=700, salt="s", epoch=7, updated_at="t")
    h = r.to_hash()
    assert h == {"champion": "c", "previous": "p", "challenger": "a2", "strategy": "bandit",
                 "shares": '{"a2":2500,"a1":1500}', "holdout_bp": "700", "salt": "s", "epoch": "7",
                 "updated_at": "t"}
    assert Routing.from_hash(h) == r
    # Values as Redis hands them back (bytes) are decoded; the shares keep their order.
    assert Routing.from_hash({k: v.encode() for k, v in h.items()}) == r
    # Missing or empty fields are the defaults, not errors.
    assert Routing.from_hash({}) == Routing()
    assert Routing.from_hash({"holdout_bp": "", "epoch": None, "shares": ""}) == Routing()
    assert Routing().to_hash() == {"champion": "", "previous": "", "challenger": "", "strategy": "",
                                   "shares": "{}", "holdout_bp": "0", "salt": "", "epoch": "0", "updated_at": ""}
    assert parse_shares('{"b": 10000, "a": 0}') == [("b", 10000), ("a", 0)]
    assert parse_shares("") == [] and parse_shares(None) == []
    assert dump_shares({"x": 5}) == '{"x":5}' and dump_shares([("y", "7"), ("x", 5)]) == '{"y":7,"x":5}'


@pytest.mark.parametrize("text,message", [
    ('["a", 1]', "shares must be a JSON object, got '[\"a\", 1]'"),
    ('{"a": -1}', "share of a is -1 basis points; must be within 0..10000"),
    ('{"a": 10001}', "share of a is 10001 basis points; must be within 0..10000"),
])
def test_bad_shares_are_refused_naming_the_value(text, message):
    from irisdag.core.routing import parse_shares

    with pytest.raises(ValueError) as err:
        parse_shares(text)
    assert str(err.value) == message


def test_versions_lists_every_version_once_in_order():
    r = Routing(champion="c", previous="p", challenger="a", shares=(("a", 10), ("b", 20), ("c", 5)))
    assert r.versions() == ["c", "p", "a", "b"]
    assert Routing(champion="c").versions() == ["c"] and Routing().versions() == []


def test_buckets_of_digests_match_the_scalar_bucket_on_the_edges_and_random_keys():
    import numpy as np

    from irisdag.core.routing import buckets_of_digests

    rng = np.random.default_rng(7)
    keys = list(EDGE_KEYS.values()) + [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(200)]
    digests = np.frombuffer(bytes.fromhex("".join(keys)), dtype="S32")
    for salt in (EDGE_SALT, "", "é€", "s1"):
        got = buckets_of_digests(salt, digests)
        assert got.dtype == np.uint16
        assert got.tolist() == [bucket(salt, k) for k in keys]
    assert buckets_of_digests(EDGE_SALT, digests.tobytes()).tolist()[:len(EDGE_KEYS)] == list(EDGE_KEYS)
    assert buckets_of_digests("s1", bytes(32)).tolist() == [bucket("s1", "0" * 64)] == [3727]
    assert len(buckets_of_digests("s1", b"")) == 0
    with pytest.raises(ValueError, match="33 bytes"):
        buckets_of_digests("s1", bytes(33))
