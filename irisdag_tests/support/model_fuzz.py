"""Mutated XGBoost JSON models, a reference evaluator, and a worker that loads them.

``mutants`` derives crafted model files from a sound one: child, parent and
split indices set to out-of-range, negative or colliding values, arrays
swapped, truncated or grown, parameters that lie (num_nodes, num_feature,
num_class, num_trees, tree ids, tree_info), values of the wrong type,
NaN/Infinity literals, deep nesting, duplicate keys, truncated bytes.

The worker (``python -m irisdag_tests.support.model_fuzz MANIFEST RESULTS``)
loads each file through irisdag's own entry (``load_model``: structural check,
digest, XGBoost) and, when it is served, predicts the check rows and compares
XGBoost's answer with ``reference_margins``, a plain-Python walk of the trees
as the validator understands them. It writes ``BEGIN i`` before each file and
one result line after, so a parent that sees the worker die by a signal knows
which file killed it.
"""
from __future__ import annotations

import copy
import json
import random
import sys

import numpy as np

INTERESTING_INTS = (-2147483648, -65536, -2, -1, 0, 1, 2, 3, 4, 5, 2147483647, 2147483648, 4294967295, 2**40)
INDEX_ARRAYS = ("left_children", "right_children", "parents", "split_indices")
FLOAT_ARRAYS = ("split_conditions", "base_weights", "loss_changes", "sum_hessian")
TREE_ARRAYS = INDEX_ARRAYS + FLOAT_ARRAYS + ("default_left",)


# ---- the reference: what a validated model answers ------------------------------------------

def _gbtree_model(doc: dict) -> tuple[dict, list | None]:
    gb = doc["learner"]["gradient_booster"]
    if gb["name"] == "dart":
        return gb["gbtree"]["model"], gb["weight_drop"]
    return gb["model"], None


def reference_margins(doc: dict, X: np.ndarray) -> np.ndarray:
    """Per-class margins of a (validated) tree model, walking each tree in float32 as XGBoost does."""
    learner = doc["learner"]
    num_class = int(learner["learner_model_param"]["num_class"])
    base = json.loads(learner["learner_model_param"].get("base_score", "0.5"))
    base = np.broadcast_to(np.asarray(base if isinstance(base, list) else [base], dtype=np.float32), (num_class,))
    model, weight_drop = _gbtree_model(doc)
    X32 = np.asarray(X, dtype=np.float32)
    out = np.tile(base.astype(np.float64), (len(X32), 1))
    for t, tree in enumerate(model["trees"]):
        left, right = tree["left_children"], tree["right_children"]
        index, cond = tree["split_indices"], np.asarray(tree["split_conditions"], dtype=np.float32)
        weight = 1.0 if weight_drop is None else float(np.float32(weight_drop[t]))
        k = model["tree_info"][t]
        for r, x in enumerate(X32):
            node = 0
            while left[node] != -1:
                node = left[node] if x[index[node]] < cond[node] else right[node]
            out[r, k] += weight * float(cond[node])
    return out


def softmax(margins: np.ndarray) -> np.ndarray:
    z = margins - margins.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---- mutations -----------------------------------------------------------------------------

def _trees(doc: dict) -> list:
    return _gbtree_model(doc)[0]["trees"]


def _random_int(rng: random.Random, n: int) -> int:
    if rng.random() < 0.5:
        return rng.choice(INTERESTING_INTS + (n - 1, n, n + 1))
    return rng.randint(-3, n + 3)


def _wrong_type(rng: random.Random):
    return rng.choice(["1", "x", "", 1.5, 1.0, True, False, None, [], [1], {}, {"a": 1}, -0.0, 1e39])


def _mutate_index(doc, rng):
    tree = rng.choice(_trees(doc))
    key = rng.choice(INDEX_ARRAYS)
    arr = tree[key]
    arr[rng.randrange(len(arr))] = _random_int(rng, len(arr))
    return f"index {key}"


def _mutate_float(doc, rng):
    tree = rng.choice(_trees(doc))
    key = rng.choice(FLOAT_ARRAYS)
    arr = tree[key]
    value = rng.choice([float(np.float32(rng.uniform(-8, 8))), 0.0, -0.0, 1e-45, 3.4e38, 1e39, -1e39,
                        float("nan"), float("inf"), float("-inf")])
    arr[rng.randrange(len(arr))] = value
    return f"float {key}"


def _mutate_swap(doc, rng):
    trees = _trees(doc)
    choice = rng.randrange(5)
    tree = rng.choice(trees)
    if choice == 0:    # left and right children swapped wholesale: still a sound tree
        tree["left_children"], tree["right_children"] = tree["right_children"], tree["left_children"]
    elif choice == 1:  # two entries of one array
        arr = tree[rng.choice(TREE_ARRAYS)]
        i, j = rng.randrange(len(arr)), rng.randrange(len(arr))
        arr[i], arr[j] = arr[j], arr[i]
    elif choice == 2:  # two arrays of one tree
        a, b = rng.sample(INDEX_ARRAYS, 2)
        tree[a], tree[b] = tree[b], tree[a]
    elif choice == 3:  # two trees (ids then disagree with positions)
        i, j = rng.randrange(len(trees)), rng.randrange(len(trees))
        trees[i], trees[j] = trees[j], trees[i]
    else:              # two trees' arrays
        other = rng.choice(trees)
        key = rng.choice(TREE_ARRAYS)
        tree[key], other[key] = other[key], tree[key]
    return f"swap {choice}"


def _mutate_truncate(doc, rng):
    choice = rng.randrange(4)
    trees = _trees(doc)
    if choice == 0:
        tree = rng.choice(trees)
        arr = tree[rng.choice(TREE_ARRAYS)]
        del arr[rng.randrange(len(arr)):]
    elif choice == 1:
        model = _gbtree_model(doc)[0]
        key = rng.choice(["tree_info", "iteration_indptr", "trees"])
        if key in model and model[key]:
            del model[key][rng.randrange(len(model[key])):]
    elif choice == 2:
        tree = rng.choice(trees)
        del tree[rng.choice(list(tree))]
    else:
        section = rng.choice([doc["learner"], doc["learner"]["learner_model_param"], _gbtree_model(doc)[0]])
        if section:
            del section[rng.choice(list(section))]
    return f"truncate {choice}"


def _mutate_type(doc, rng):
    choice = rng.randrange(3)
    if choice == 0:
        tree = rng.choice(_trees(doc))
        arr = tree[rng.choice(TREE_ARRAYS)]
        arr[rng.randrange(len(arr))] = _wrong_type(rng)
    elif choice == 1:
        tree = rng.choice(_trees(doc))
        tree[rng.choice(TREE_ARRAYS + ("tree_param", "id"))] = _wrong_type(rng)
    else:
        section = rng.choice([doc["learner"], doc["learner"]["learner_model_param"], doc["learner"]["objective"],
                              _gbtree_model(doc)[0]["gbtree_model_param"]])
        section[rng.choice(list(section))] = _wrong_type(rng)
    return f"type {choice}"


def _mutate_param(doc, rng):
    """Parameters that lie about the arrays they describe."""
    choice = rng.randrange(7)
    model = _gbtree_model(doc)[0]
    lmp = doc["learner"]["learner_model_param"]
    value = lambda n: str(_random_int(rng, n))  # noqa: E731
    if choice == 0:
        tree = rng.choice(model["trees"])
        tree["tree_param"]["num_nodes"] = value(int(tree["tree_param"]["num_nodes"]))
    elif choice == 1:
        rng.choice(model["trees"])["tree_param"]["num_feature"] = value(4)
    elif choice == 2:
        lmp["num_feature"] = value(4)
    elif choice == 3:
        lmp["num_class"] = value(3)
        if rng.random() < 0.5:
            doc["learner"]["objective"].setdefault("softmax_multiclass_param", {})["num_class"] = lmp["num_class"]
    elif choice == 4:
        model["gbtree_model_param"]["num_trees"] = value(len(model["trees"]))
    elif choice == 5:
        rng.choice(model["trees"])["id"] = _random_int(rng, len(model["trees"]))
    else:
        info = model["tree_info"]
        info[rng.randrange(len(info))] = _random_int(rng, 3)
    return f"param {choice}"


def _mutate_huge(doc, rng):
    tree = rng.choice(_trees(doc))
    n = rng.choice([1000, 5000])
    if rng.random() < 0.5:  # every array grown to match a bigger num_nodes: orphan leaves
        for key in TREE_ARRAYS:
            tree[key] = tree[key] + [-1 if key in ("left_children", "right_children") else 0] * n
        tree["tree_param"]["num_nodes"] = str(int(tree["tree_param"]["num_nodes"]) + n)
    else:                   # a deep chain grafted onto the root
        base = len(tree["left_children"])
        for key in TREE_ARRAYS:
            tree[key] = list(tree[key])
        for i in range(n):
            node = base + 2 * i
            tree["left_children"] += [node + 2 if i < n - 1 else -1, -1]
            tree["right_children"] += [node + 1 if i < n - 1 else -1, -1]
            tree["parents"] += [node - 2 if i else 0, node]
            for key in ("split_indices", "default_left"):
                tree[key] += [0, 0]
            for key in FLOAT_ARRAYS:
                tree[key] += [0.5, 0.25]
        tree["right_children"][0] = base
        tree["tree_param"]["num_nodes"] = str(len(tree["left_children"]))
    return "huge"


def _mutate_structure(doc, rng):
    """Cycles and shared nodes that keep every index in range."""
    tree = rng.choice(_trees(doc))
    n = len(tree["left_children"])
    splits = [i for i in range(n) if tree["left_children"][i] != -1]
    if not splits:
        return "structure none"
    node = rng.choice(splits)
    side = rng.choice(["left_children", "right_children"])
    target = rng.choice([0, node, rng.randrange(n)])
    tree[side][node] = target
    if rng.random() < 0.5 and target:
        tree["parents"][target] = node  # make the lie consistent where it can be
    return "structure"


MUTATIONS = (_mutate_index, _mutate_float, _mutate_swap, _mutate_truncate, _mutate_type, _mutate_param,
             _mutate_huge, _mutate_structure)


def _text_mutation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    choice = rng.randrange(4)
    if choice == 0:
        return data[: rng.randrange(len(data))], "text truncated"
    if choice == 1:  # a duplicate key: the two parsers must not read different models
        return data.replace(b'"left_children":', b'"left_children":[0,0,0],"left_children":', 1), "text duplicate"
    if choice == 2:
        depth = rng.choice([50, 5000, 200000])
        return data.replace(b'"attributes":', b'"attributes":' + b"[" * depth + b"]" * depth + b',"x":', 1), \
            "text nesting"
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:], "text byte"


def mutants(base: bytes, count: int, seed: int):
    """``count`` (bytes, description) mutants of the model ``base``, reproducible from ``seed``."""
    rng = random.Random(seed)
    doc = json.loads(base)
    for _ in range(count):
        if rng.random() < 0.1:
            yield _text_mutation(base, rng)
            continue
        mutant = copy.deepcopy(doc)
        done = []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            try:
                done.append(rng.choice(MUTATIONS)(mutant, rng))
            except (KeyError, TypeError, IndexError, ValueError, AttributeError):
                break  # an earlier mutation removed what this one changes: the mutant stands as it is
        yield json.dumps(mutant, separators=(",", ":")).encode("utf-8"), "+".join(done)


# ---- the worker ----------------------------------------------------------------------------

def check_rows() -> np.ndarray:
    """The rows every served mutant answers: the iris table plus spread-out points."""
    from irisdag.models.training import iris_table

    X, _ = iris_table()
    grid = np.random.default_rng(0).uniform(-1, 9, size=(30, 4)).round(1)
    return np.vstack([X, grid])


def judge(path: str, X: np.ndarray) -> str:
    """One mutant through irisdag's load: ``served``, ``refused <rule>`` or what went wrong."""
    import hashlib

    import xgboost as xgb

    from irisdag.models.artifacts import ModelFormatError, load_model, predict_labels

    data = open(path, "rb").read()
    try:
        booster = load_model(path, expected_digest=hashlib.sha256(data).hexdigest())
        labels = predict_labels(booster, X)
    except ModelFormatError as err:
        if not str(err).startswith(path):
            return f"unnamed {err.rule}: {err}"
        return f"refused {err.rule}"
    except (ValueError, xgb.core.XGBoostError) as err:
        return f"error {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    doc = json.loads(data)
    margins = reference_margins(doc, X)
    objective = doc["learner"]["objective"]["name"]
    if objective == "multi:softprob":
        got = np.asarray(booster.inplace_predict(X, validate_features=False), dtype=np.float64)
        want = softmax(margins)
        if not np.allclose(got, want, atol=1e-4):
            return f"wrong probabilities: max difference {np.abs(got - want).max():.3g}"
    ordered = np.sort(margins, axis=1)
    clear = (ordered[:, -1] - ordered[:, -2]) > 1e-3  # the reference's own argmax is not a near tie
    if not np.array_equal(labels[clear], margins.argmax(axis=1)[clear]):
        return "wrong labels"
    return "served"


def main(manifest: str, results: str) -> int:
    paths = [line.rstrip("\n") for line in open(manifest) if line.strip()]
    done = 0
    try:
        with open(results) as f:
            done = sum(1 for line in f if not line.startswith("BEGIN"))
    except FileNotFoundError:
        pass
    X = check_rows()
    with open(results, "a", buffering=1) as out:
        for i in range(done, len(paths)):
            out.write(f"BEGIN {i}\n")
            out.flush()
            out.write(f"{i}\t{judge(paths[i], X)}\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
