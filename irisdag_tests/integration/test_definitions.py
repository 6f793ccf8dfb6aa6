"""The code location as the UI loads it: every job, asset and check runs with no
hand-written run config, and every asset says what it is."""
from dagster import AssetKey, Definitions, validate_run_config

from irisdag.definitions import all_assets, defs


def test_definitions_load():
    Definitions.validate_loadable(defs)


def test_every_job_runs_with_empty_run_config():
    repo = defs.get_repository_def()
    jobs = repo.get_all_jobs()
    assert {"promote", "rollback", "abort", "score_batch", "retrain_challenger", "__ASSET_JOB"} <= {j.name for j in jobs}
    for job in jobs:
        validate_run_config(job, {})  # raises DagsterInvalidConfigError naming the missing field


def test_every_asset_has_a_description_and_a_group():
    graph = defs.get_repository_def().asset_graph
    keys = {k for a in all_assets for k in a.keys}
    assert AssetKey("comparison") in keys and len(keys) == 9
    for key in keys:
        node = graph.get(key)
        assert node.description and len(node.description) > 40, key
        assert node.group_name and node.group_name != "default", key


def test_blocking_validity_checks_exist():
    graph = defs.get_repository_def().asset_graph
    specs = {(k.asset_key.to_user_string(), k.name): graph.get(k) for k in graph.asset_check_keys}
    for asset in ("champion_model", "challenger_model"):
        check = specs[(asset, f"{asset}_validity")]
        assert check.blocking and check.description
    assert ("champion_predictions", "served_answers_consistent") in specs
    assert ("incoming_batch", "incoming_batch_quality") in specs
