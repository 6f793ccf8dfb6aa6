"""Structural validation of an XGBoost JSON model before XGBoost sees it.

XGBoost trusts the structure of the JSON it loads: a child index out of range,
a cycle, a node shared by two parents, a split on a feature the model does not
have or a tree assigned to a class that does not exist makes it read or write
outside its arrays, and the process dies with SIGSEGV instead of raising. So
every model irisdag loads (an imported champion, a stored version, the
lookup's fallback copy) is checked here first, in pure Python, and refused
with a ``ModelFormatError`` that names the file, the tree, the node and the
rule it breaks.

The check is a whitelist of what an iris classifier needs: a ``gbtree`` or
``dart`` booster of single-output numerical trees, 4
features, 3 classes, every array the length the tree says, every tree a proper
binary tree rooted at node 0 (each node reached once, parents consistent,
leaf iff both children are -1), finite numbers. Anything outside it (a
categorical split, a multi-output tree, deleted nodes) is refused by name even
where XGBoost might cope, because a refusal is safe and a guess is not.

The JSON is parsed with duplicate keys refused and without NaN/Infinity
literals, so that this check and XGBoost's own parser cannot read the same
bytes as two different models.
"""
from __future__ import annotations

import json
import math
import re

N_FEATURES = 4
N_CLASSES = 3
OBJECTIVES = ("multi:softprob", "multi:softmax")
BOOSTERS = ("gbtree", "dart")  # gblinear cannot predict in place, which scoring needs
FORMAT_MAJORS = (1, 2, 3)          # XGBoost JSON format versions this check knows
MAX_JSON_DEPTH = 16                # a real model nests 6 levels deep
MAX_TREES = 100_000
MAX_NODES_PER_TREE = 1 << 20
MAX_TREE_DEPTH = 128               # far beyond any iris model; bounds any recursion over a tree
ROOT_PARENT = (2147483647, -1)     # XGBoost writes the root's parent as INT32_MAX (older: -1)
INT32_MAX = 2147483647
_DECIMAL = re.compile(r"-?[0-9]{1,12}\Z")


class ModelFormatError(ValueError):
    """A file that is not an acceptable XGBoost JSON iris model (names the file and the rule broken)."""

    def __init__(self, message: str, rule: str = "format"):
        super().__init__(message)
        self.rule = rule


class _Refusal(Exception):
    """Raised inside the walk; turned into a ModelFormatError naming the file."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def _fail(rule: str, message: str):
    raise _Refusal(rule, message)


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            _fail("duplicate-key", f"key {k!r} appears twice in one JSON object")
        obj[k] = v
    return obj


def _no_constant(token):
    _fail("non-finite", f"JSON literal {token} is not a number a model may hold")


def parse_model_json(data: bytes) -> object:
    """The parsed document; duplicate keys, NaN/Infinity literals and excessive nesting refused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        _fail("not-json", f"not UTF-8 text ({err})")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        _fail("not-json", f"not JSON ({err})")
    except RecursionError:
        _fail("json-depth", "JSON nested too deeply for a model")
    _check_depth(doc)
    return doc


def _check_depth(doc) -> None:
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            _fail("json-depth", f"JSON nested {depth} levels deep; a model nests at most {MAX_JSON_DEPTH}")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


# ---- typed access -------------------------------------------------------------------------

def _obj(parent: dict, key: str, where: str) -> dict:
    value = parent.get(key)
    if not isinstance(value, dict):
        _fail("schema", f"{where}{key} is {_kind(value)}, expected a JSON object")
    return value


def _list(parent: dict, key: str, where: str, length: int | None = None) -> list:
    value = parent.get(key)
    if not isinstance(value, list):
        _fail("schema", f"{where}{key} is {_kind(value)}, expected an array")
    if length is not None and len(value) != length:
        _fail("array-length", f"{where}{key} has {len(value)} entries, expected {length}")
    return value


def _kind(value) -> str:
    if value is None:
        return "missing"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_param(parent: dict, key: str, where: str, lo: int, hi: int) -> int:
    """An integer parameter; XGBoost writes these as decimal strings ("4")."""
    value = parent.get(key)
    if isinstance(value, str) and _DECIMAL.match(value):
        n = int(value)
    elif _is_int(value):
        n = value
    else:
        _fail("schema", f"{where}{key} is {value!r}, expected an integer")
    if not lo <= n <= hi:
        _fail("param-range", f"{where}{key} is {n}, outside {lo}..{hi}")
    return n


def _ints(values: list, where: str, lo: int, hi: int, rule: str) -> None:
    for i, v in enumerate(values):
        if not _is_int(v):
            _fail("type", f"{where}[{i}] is {v!r} ({_kind(v)}), expected an integer")
        if not lo <= v <= hi:
            _fail(rule, f"{where}[{i}] is {v}, outside {lo}..{hi}")


def _finite(values: list, where: str) -> None:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            _fail("type", f"{where}[{i}] is {v!r} ({_kind(v)}), expected a number")
        if not math.isfinite(v) or abs(v) > 3.4e38:
            _fail("non-finite", f"{where}[{i}] is {v!r}, not a finite 32-bit float")


def _flags(values: list, where: str) -> None:
    for i, v in enumerate(values):
        if v not in (0, 1) or isinstance(v, float):
            _fail("type", f"{where}[{i}] is {v!r}, expected 0/1 or true/false")


# ---- the model ---------------------------------------------------------------------------

def check_model_document(doc) -> dict:
    """Check a parsed XGBoost JSON model; returns facts about it. Raises _Refusal."""
    if not isinstance(doc, dict) or not isinstance(doc.get("learner"), dict):
        found = sorted(doc)[:8] if isinstance(doc, dict) else type(doc).__name__
        _fail("not-xgboost", f"JSON but not an XGBoost model (no learner object; found {found})")
    learner = doc["learner"]
    if "gradient_booster" not in learner or "learner_model_param" not in learner:
        _fail("not-xgboost", f"JSON but not an XGBoost model (learner has {sorted(learner)[:8]})")
    version = doc.get("version")
    if not (isinstance(version, list) and len(version) == 3 and all(_is_int(v) and 0 <= v < 1000 for v in version)):
        _fail("schema", f"version is {version!r}, expected [major, minor, patch]")
    if version[0] not in FORMAT_MAJORS:
        _fail("format-version", f"XGBoost format version {version} is not one of majors {FORMAT_MAJORS}")

    lmp = _obj(learner, "learner_model_param", "learner.")
    num_feature = _int_param(lmp, "num_feature", "learner_model_param.", 0, INT32_MAX)
    if num_feature != N_FEATURES:
        _fail("num-feature", f"model takes {num_feature} features, an iris model takes {N_FEATURES} "
                             "(sepal length, sepal width, petal length, petal width)")
    objective = _obj(learner, "objective", "learner.")
    name = objective.get("name")
    if name not in OBJECTIVES:
        _fail("objective", f"objective {name!r}; an iris classifier needs one of {', '.join(OBJECTIVES)}")
    num_class = _int_param(lmp, "num_class", "learner_model_param.", 0, INT32_MAX)
    if num_class != N_CLASSES:
        _fail("num-class", f"model has {num_class} classes, an iris model has {N_CLASSES} "
                           "(setosa, versicolor, virginica)")
    if "num_target" in lmp and _int_param(lmp, "num_target", "learner_model_param.", 0, INT32_MAX) != 1:
        _fail("num-target", f"num_target is {lmp['num_target']!r}: multi-target models are not iris classifiers")
    _base_score(lmp.get("base_score", "0.5"), num_class)

    smp = objective.get("softmax_multiclass_param")
    if smp is not None:
        if not isinstance(smp, dict):
            _fail("schema", "objective.softmax_multiclass_param is not an object")
        if _int_param(smp, "num_class", "softmax_multiclass_param.", 0, INT32_MAX) != num_class:
            _fail("num-class", f"objective num_class {smp.get('num_class')!r} differs from the model's {num_class}")

    for key in ("feature_names", "feature_types"):
        values = learner.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            _fail("schema", f"learner.{key} is not an array of strings")
        if values and len(values) != num_feature:
            _fail("array-length", f"learner.{key} has {len(values)} entries for {num_feature} features")
    ftypes = learner.get("feature_types", [])
    if any(t not in ("float", "q", "int", "i") for t in ftypes):
        _fail("categorical", f"feature types {ftypes} are not all numeric")
    attributes = learner.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        _fail("schema", "learner.attributes is not an object of strings")

    booster = _obj(learner, "gradient_booster", "learner.")
    kind = booster.get("name")
    facts = {"objective": name, "num_class": num_class, "num_feature": num_feature, "booster": kind,
             "feature_names": list(learner.get("feature_names") or []),
             "xgboost_format_version": ".".join(str(v) for v in version)}
    if kind == "gbtree":
        facts.update(_check_gbtree(booster, num_feature, num_class, "gbtree."))
    elif kind == "dart":
        inner = _obj(booster, "gbtree", "dart.")
        if inner.get("name") != "gbtree":
            _fail("schema", f"dart.gbtree.name is {inner.get('name')!r}, expected 'gbtree'")
        tree_facts = _check_gbtree(inner, num_feature, num_class, "dart.gbtree.")
        _finite(_list(booster, "weight_drop", "dart.", tree_facts["num_trees"]), "dart.weight_drop")
        facts.update(tree_facts)
    else:
        _fail("booster", f"booster {kind!r} is not one of {', '.join(BOOSTERS)}")
    return facts


def _base_score(value, num_class: int) -> None:
    """base_score: "5E-1" (XGBoost 1.x/2.x) or "[0E0,0E0,0E0]" (3.x, one per class)."""
    if not isinstance(value, str):
        _fail("base-score", f"base_score is {value!r}, expected a string")
    text = value.strip()
    try:
        parsed = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, RecursionError):
        _fail("base-score", f"base_score {value!r} is not a number or an array of numbers")
    scores = parsed if isinstance(parsed, list) else [parsed]
    if len(scores) not in (1, num_class):
        _fail("base-score", f"base_score has {len(scores)} entries, expected 1 or {num_class}")
    _finite(scores, "base_score")


def _check_gbtree(booster: dict, num_feature: int, num_class: int, where: str) -> dict:
    model = _obj(booster, "model", where)
    where = where + "model."
    param = _obj(model, "gbtree_model_param", where)
    num_trees = _int_param(param, "num_trees", where + "gbtree_model_param.", 0, MAX_TREES)
    parallel = _int_param(param, "num_parallel_tree", where + "gbtree_model_param.", 1, MAX_TREES)
    trees = _list(model, "trees", where, num_trees)
    tree_info = _list(model, "tree_info", where, num_trees)
    _ints(tree_info, where + "tree_info", 0, num_class - 1, "tree-info")
    per_round = num_class * parallel
    if "iteration_indptr" in model:
        indptr = _list(model, "iteration_indptr", where)
        _ints(indptr, where + "iteration_indptr", 0, num_trees, "iteration-indptr")
        if not indptr or indptr[0] != 0 or indptr[-1] != num_trees:
            _fail("iteration-indptr", f"{where}iteration_indptr must run from 0 to {num_trees} trees")
        for i in range(1, len(indptr)):
            if indptr[i] - indptr[i - 1] != per_round:
                _fail("iteration-indptr", f"{where}iteration_indptr[{i}] = {indptr[i]}: each round adds "
                                          f"{per_round} trees, not {indptr[i] - indptr[i - 1]}")
    if num_trees % per_round:
        _fail("num-trees", f"{num_trees} trees is not a whole number of rounds of {per_round}")
    for t, tree in enumerate(trees):
        group = (t % per_round) // parallel
        if tree_info[t] != group:
            _fail("tree-info", f"{where}tree_info[{t}] is {tree_info[t]}, but tree {t} belongs to class {group}")
        _check_tree(tree, t, num_feature)
    cats = model.get("cats")
    if cats is not None:
        if not isinstance(cats, dict) or any(v != [] for v in cats.values()):
            _fail("categorical", f"{where}cats holds categorical encodings; only numerical features are supported")
    return {"num_trees": num_trees, "num_parallel_tree": parallel}


_NODE_INTS = ("left_children", "right_children", "parents", "split_indices")
_NODE_FLOATS = ("split_conditions", "base_weights", "loss_changes", "sum_hessian")


def _check_tree(tree, t: int, num_feature: int) -> None:
    where = f"tree {t}: "
    if not isinstance(tree, dict):
        _fail("schema", f"{where}is {_kind(tree)}, expected an object")
    if not _is_int(tree.get("id")) or tree["id"] != t:
        _fail("tree-id", f"{where}id is {tree.get('id')!r}, expected {t} (trees are stored in id order)")
    param = _obj(tree, "tree_param", where)
    n = _int_param(param, "num_nodes", where + "tree_param.", 1, MAX_NODES_PER_TREE)
    if _int_param(param, "num_feature", where + "tree_param.", 0, INT32_MAX) != num_feature:
        _fail("num-feature", f"{where}tree_param.num_feature is {param.get('num_feature')!r}, "
                             f"the model's is {num_feature}")
    if _int_param(param, "num_deleted", where + "tree_param.", 0, INT32_MAX) != 0:
        _fail("deleted-nodes", f"{where}has deleted nodes (num_deleted {param.get('num_deleted')!r}); "
                               "only trees without deleted nodes are supported")
    if "size_leaf_vector" in param and _int_param(param, "size_leaf_vector", where + "tree_param.", 0,
                                                  INT32_MAX) > 1:
        _fail("multi-output", f"{where}size_leaf_vector is {param['size_leaf_vector']!r}: "
                              "multi-output trees are not supported")
    arrays = {key: _list(tree, key, where, n) for key in _NODE_INTS + _NODE_FLOATS + ("default_left",)}
    _ints(arrays["left_children"], where + "left_children", -1, n - 1, "child-index")
    _ints(arrays["right_children"], where + "right_children", -1, n - 1, "child-index")
    _ints(arrays["parents"], where + "parents", -1, INT32_MAX, "parent-index")
    _ints(arrays["split_indices"], where + "split_indices", 0, num_feature - 1, "split-index")
    for key in _NODE_FLOATS:
        _finite(arrays[key], where + key)
    _flags(arrays["default_left"], where + "default_left")
    if "leaf_child_counts" in tree:
        _ints(_list(tree, "leaf_child_counts", where, n), where + "leaf_child_counts", 0, INT32_MAX, "type")
    if "split_type" in tree:
        split_type = _list(tree, "split_type", where, n)
        _ints(split_type, where + "split_type", 0, 0, "categorical")
    for key in ("categories", "categories_nodes", "categories_segments", "categories_sizes"):
        if key in tree and tree[key] != []:
            _fail("categorical", f"{where}{key} is not empty: categorical splits are not supported")
    _check_shape(arrays["left_children"], arrays["right_children"], arrays["parents"], n, where)


def _check_shape(left: list, right: list, parents: list, n: int, where: str) -> None:
    """A proper binary tree rooted at 0: every node reached exactly once, parents consistent."""
    if parents[0] not in ROOT_PARENT:
        _fail("parent-index", f"{where}the root's parent is {parents[0]}, expected {ROOT_PARENT[0]}")
    seen = [False] * n
    seen[0] = True
    stack = [(0, 1)]
    reached = 1
    while stack:
        node, depth = stack.pop()
        lc, rc = left[node], right[node]
        if lc == -1 and rc == -1:
            continue
        if lc == -1 or rc == -1:
            _fail("leaf-shape", f"{where}node {node} has one child ({lc}, {rc}): a node is a leaf "
                                "(both -1) or a split (both children)")
        if depth >= MAX_TREE_DEPTH:
            _fail("tree-depth", f"{where}deeper than {MAX_TREE_DEPTH} levels")
        for child in (lc, rc):
            if child == 0 or seen[child]:
                _fail("not-a-tree", f"{where}node {child} is reached twice (from node {node}): "
                                    "a cycle or a shared node")
            if parents[child] != node:
                _fail("parent-index", f"{where}node {child} is a child of node {node} "
                                      f"but names {parents[child]} as its parent")
            seen[child] = True
            reached += 1
            stack.append((child, depth + 1))
    if reached != n:
        orphan = seen.index(False)
        _fail("not-a-tree", f"{where}node {orphan} is not reachable from the root ({reached} of {n} nodes are)")


def check_model_bytes(data: bytes, name: str) -> dict:
    """Check the bytes are a structurally sound XGBoost JSON iris model; return facts about it.

    Raises ModelFormatError naming ``name``, the place and the rule broken.
    """
    try:
        return check_model_document(parse_model_json(data))
    except _Refusal as err:
        raise ModelFormatError(f"{name}: {err}", err.rule) from None
