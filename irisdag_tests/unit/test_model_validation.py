"""The structural check of XGBoost JSON models (pure Python, no XGBoost): each rule refuses by name."""
from __future__ import annotations

import copy
import json

import pytest

from irisdag.models.validation import MAX_TREE_DEPTH, ModelFormatError, check_model_bytes
from irisdag_tests.support.data import COURSE

NAME = "crafted.json"


@pytest.fixture(scope="module")
def course_doc():
    return json.loads((COURSE / "model.json").read_bytes())


def refused(doc_or_bytes) -> ModelFormatError:
    data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else json.dumps(doc_or_bytes).encode()
    with pytest.raises(ModelFormatError) as info:
        check_model_bytes(data, NAME)
    assert str(info.value).startswith(NAME + ": "), "the refusal names the file"
    return info.value


def tree(doc, t=1):
    return doc["learner"]["gradient_booster"]["model"]["trees"][t]


def test_course_model_passes(course_doc):
    facts = check_model_bytes((COURSE / "model.json").read_bytes(), NAME)
    assert facts["num_trees"] == 30 and facts["num_class"] == 3 and facts["booster"] == "gbtree"
    assert facts["xgboost_format_version"] == "2.0.3"


def test_left_and_right_swapped_everywhere_is_still_a_tree(course_doc):
    doc = copy.deepcopy(course_doc)
    for t in doc["learner"]["gradient_booster"]["model"]["trees"]:
        t["left_children"], t["right_children"] = t["right_children"], t["left_children"]
    check_model_bytes(json.dumps(doc).encode(), NAME)


@pytest.mark.parametrize("value", [13, 99, -2, 2**31])
def test_child_index_out_of_range(course_doc, value):
    doc = copy.deepcopy(course_doc)
    tree(doc)["right_children"][2] = value
    err = refused(doc)
    assert err.rule == "child-index" and "tree 1: right_children[2]" in str(err) and str(value) in str(err)


def test_cycle_back_to_the_root(course_doc):
    doc = copy.deepcopy(course_doc)
    tree(doc)["left_children"][3] = 0
    err = refused(doc)
    assert err.rule == "not-a-tree" and "node 0 is reached twice (from node 3)" in str(err)


def test_node_shared_by_two_parents(course_doc):
    doc = copy.deepcopy(course_doc)
    t = tree(doc)
    t["left_children"][4] = t["left_children"][3]  # node 4 now also points at node 3's child
    err = refused(doc)
    assert err.rule in ("not-a-tree", "parent-index")


def test_unreachable_node(course_doc):
    doc = copy.deepcopy(course_doc)
    t = tree(doc)
    # node 2's subtree cut off: node 2 becomes a leaf, its former children are orphans
    t["left_children"][2] = t["right_children"][2] = -1
    err = refused(doc)
    assert err.rule == "not-a-tree" and "not reachable from the root" in str(err)


def test_one_child_only(course_doc):
    doc = copy.deepcopy(course_doc)
    tree(doc)["left_children"][1] = 5
    assert refused(doc).rule in ("leaf-shape", "not-a-tree", "parent-index")
    doc = copy.deepcopy(course_doc)
    tree(doc)["right_children"][0] = -1
    err = refused(doc)
    assert err.rule == "leaf-shape" and "node 0 has one child" in str(err)


def test_parent_that_lies(course_doc):
    doc = copy.deepcopy(course_doc)
    tree(doc)["parents"][3] = 4
    err = refused(doc)
    assert err.rule == "parent-index" and "node 3 is a child of node 2 but names 4" in str(err)


@pytest.mark.parametrize("value", [4, -1, 2**31 - 1])
def test_split_on_a_feature_the_model_lacks(course_doc, value):
    doc = copy.deepcopy(course_doc)
    tree(doc)["split_indices"][0] = value
    err = refused(doc)
    assert err.rule == "split-index" and "split_indices[0]" in str(err)


def test_array_lengths_must_match_num_nodes(course_doc):
    doc = copy.deepcopy(course_doc)
    tree(doc)["default_left"].pop()
    assert refused(doc).rule == "array-length"
    doc = copy.deepcopy(course_doc)
    tree(doc)["tree_param"]["num_nodes"] = "2000000000"
    assert refused(doc).rule == "param-range"


def test_trees_classes_and_rounds_must_agree(course_doc):
    doc = copy.deepcopy(course_doc)
    doc["learner"]["gradient_booster"]["model"]["tree_info"][4] = 3
    assert refused(doc).rule == "tree-info"
    doc = copy.deepcopy(course_doc)
    doc["learner"]["gradient_booster"]["model"]["tree_info"][4] = 2
    err = refused(doc)
    assert err.rule == "tree-info" and "belongs to class 1" in str(err)
    doc = copy.deepcopy(course_doc)
    tree(doc, 5)["id"] = 4
    assert refused(doc).rule == "tree-id"
    doc = copy.deepcopy(course_doc)
    doc["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"] = "29"
    assert refused(doc).rule == "array-length"
    doc = copy.deepcopy(course_doc)
    doc["learner"]["gradient_booster"]["model"]["iteration_indptr"][3] = 8
    assert refused(doc).rule == "iteration-indptr"


def test_num_feature_and_num_class_lies(course_doc):
    doc = copy.deepcopy(course_doc)
    tree(doc)["tree_param"]["num_feature"] = "40"
    assert refused(doc).rule == "num-feature"
    doc = copy.deepcopy(course_doc)
    doc["learner"]["learner_model_param"]["num_class"] = "5"
    assert refused(doc).rule == "num-class"
    doc = copy.deepcopy(course_doc)
    doc["learner"]["objective"]["softmax_multiclass_param"]["num_class"] = "5"
    assert refused(doc).rule == "num-class"


@pytest.mark.parametrize("value, rule", [("1", "type"), (1.0, "type"), (True, "type"), (None, "type"),
                                         ([1], "type")])
def test_non_integer_indices(course_doc, value, rule):
    doc = copy.deepcopy(course_doc)
    tree(doc)["left_children"][0] = value
    assert refused(doc).rule == rule


def test_non_numeric_and_non_finite_values(course_doc):
    doc = copy.deepcopy(course_doc)
    tree(doc)["split_conditions"][0] = "3.0"
    assert refused(doc).rule == "type"
    doc = copy.deepcopy(course_doc)
    tree(doc)["split_conditions"][0] = 1e39  # beyond float32
    assert refused(doc).rule == "non-finite"
    text = json.dumps(course_doc).replace('"split_conditions": [3.0', '"split_conditions": [NaN', 1)
    assert refused(text.encode()).rule == "non-finite"


def test_duplicate_keys_cannot_make_two_parsers_disagree():
    data = (COURSE / "model.json").read_bytes().replace(b'"left_children":', b'"left_children":[9,9,9],"left_children":', 1)
    err = refused(data)
    assert err.rule == "duplicate-key" and "left_children" in str(err)


def test_deep_nesting_is_refused_before_any_parser_recurses():
    data = (COURSE / "model.json").read_bytes()
    for depth in (40, 100_000):
        nested = data.replace(b'"attributes":', b'"attributes":' + b"[" * depth + b"]" * depth + b',"x":', 1)
        assert refused(nested).rule == "json-depth"


def test_deep_tree_is_refused(course_doc):
    doc = copy.deepcopy(course_doc)
    t = tree(doc, 0)  # 3 nodes: root, leaf 1, leaf 2; graft a chain under node 2
    n = MAX_TREE_DEPTH + 5
    for key in ("left_children", "right_children", "parents", "split_indices", "split_conditions", "default_left",
                "base_weights", "loss_changes", "sum_hessian", "split_type"):
        t[key] = list(t[key])
    for i in range(n):
        parent = 2 if i == 0 else len(t["left_children"]) - 2
        new = len(t["left_children"])
        t["left_children"][parent], t["right_children"][parent] = new, new + 1
        t["left_children"] += [-1, -1]
        t["right_children"] += [-1, -1]
        t["parents"] += [parent, parent]
        for key in ("split_indices", "default_left", "split_type"):
            t[key] += [0, 0]
        for key in ("split_conditions", "base_weights", "loss_changes", "sum_hessian"):
            t[key] += [0.5, 0.5]
    t["tree_param"]["num_nodes"] = str(len(t["left_children"]))
    assert refused(doc).rule == "tree-depth"


def test_unsupported_kinds_are_refused_by_name(course_doc):
    doc = copy.deepcopy(course_doc)
    tree(doc)["split_type"][0] = 1
    assert refused(doc).rule == "categorical"
    doc = copy.deepcopy(course_doc)
    tree(doc)["tree_param"]["size_leaf_vector"] = "3"
    assert refused(doc).rule == "multi-output"
    doc = copy.deepcopy(course_doc)
    doc["learner"]["gradient_booster"]["name"] = "gbmagic"
    assert refused(doc).rule == "booster"
    doc = copy.deepcopy(course_doc)
    doc["learner"]["learner_model_param"]["base_score"] = "[0.5, 0.5]"
    assert refused(doc).rule == "base-score"
