"""The `irisdag` command (DESIGN §6): demo, lookup, status, rollback, ui."""
from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_BAD_INPUT = 2


def _store():
    from irisdag.store.resource import ServingStore

    return ServingStore(redis_url=os.environ.get("REDIS_URL", ""))


def _emit(obj, as_json: bool, text: str) -> None:
    print(json.dumps(obj, default=str) if as_json else text)


def _bad_input(message: str) -> int:
    print(f"irisdag: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# ---- lookup -------------------------------------------------------------------

def cmd_lookup(args) -> int:
    from irisdag.core import keys as keyscheme
    from irisdag.core.batches import read_feature_csv

    store = _store()
    queries = []  # (key, miss entry)
    errors = []
    if args.file:
        try:
            batch = read_feature_csv(args.file)
        except (OSError, ValueError) as err:
            return _bad_input(f"cannot read {args.file}: {err}")
        prepared_keys = batch.keys()
        for i, key in enumerate(prepared_keys):
            entry = {"key": key}
            if batch.ids is not None:
                entry["id"] = str(batch.ids[i])
            else:
                entry["features"] = [float(v) for v in batch.X[i]]
            queries.append((key, entry))
        errors = batch.quarantine
    elif args.id is not None:
        try:
            key = keyscheme.id_key(args.id)
        except keyscheme.InputError as err:
            return _bad_input(str(err))
        queries.append((key, {"key": key, "id": args.id}))
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
        queries.append((key, {"key": key, "features": list(values)}))
    results = store.lookup([k for k, _ in queries]) if queries else []
    misses = [entry for (_, entry), r in zip(queries, results) if r["route"] == "miss"]
    if misses and args.fallback_model:
        try:
            answers = fallback_answers(store, args.fallback_model, misses)
        except ValueError as err:
            return _bad_input(str(err))
        results = [answers.get(r["key"], r) if r["route"] == "miss" else r for r in results]
    for r in results:
        _emit(r, args.json, f"{r['label'] if r['label'] is not None else '-'}\troute={r['route']}\t"
                            f"version={(r['version'] or '-')[:12]}\tkey={r['key']}")
    if misses:
        # The answer is out first: queueing is a hint for the pipeline's miss sensor, and a
        # full Redis (noeviction refuses XADD) must not turn an answered lookup into a crash.
        sys.stdout.flush()
        try:
            store.queue_misses(misses)
        except Exception as err:  # noqa: BLE001 - any refusal: one line, the answer stands
            print(f"irisdag: warning: {len(misses)} miss(es) not queued for scoring: "
                  f"{str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
    for q in errors:
        print(f"irisdag: row {q['row']}: {q['reason']}", file=sys.stderr)
    return EXIT_BAD_INPUT if errors else 0


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
    versions = sorted(store.versions(), key=lambda v: v.get("created_at", ""))
    return {"routing": routing.to_hash() | {"shares": dict(routing.shares)},
            "versions": versions, "decision": store.latest_decision()}


def cmd_status(args) -> int:
    store = _store()
    st = status_dict(store)
    if args.json:
        print(json.dumps(st, default=str))
        return 0
    r = st["routing"]
    print(f"champion   {r['champion'] or '(none)'}")
    print(f"previous   {r['previous'] or '(none)'}")
    print(f"challenger {r['challenger'] or '(none)'}  strategy {r['strategy'] or '-'}  epoch {r['epoch']}")
    print("versions:")
    for v in st["versions"]:
        print(f"  {v['version'][:12]}  role={v.get('role', '-'):<10} lifecycle={v.get('lifecycle', '-'):<11} "
              f"validated={v.get('validated')} complete={v.get('complete')} keys={v.get('keys')}")
    d = st["decision"]
    if d:
        print(f"decision   {d['decision']} ({d['decision_id']}): {d['reason']}")
    return 0


def cmd_rollback(args) -> int:
    from irisdag.definitions import defs
    from irisdag.instance import get_instance

    store = _store()  # the same REDIS_URL the definitions use
    before = store.routing()
    result = defs.get_job_def("rollback").execute_in_process(instance=get_instance(), raise_on_error=False)
    after = store.routing()
    out = {"ok": result.success, "champion": after.champion, "rolled_back": before.champion if result.success else "",
           "previous": after.previous, "epoch": after.epoch, "run_id": result.run_id}
    if not result.success:
        out["error"] = "rollback refused: " + (
            "there is no previous champion" if not before.previous else "see the run's logs")
    _emit(out, args.json, (f"rolled back: {before.champion[:12]} -> {after.champion[:12]} (epoch {after.epoch})"
                           if result.success else out["error"]))
    return 0 if result.success else 1


# ---- demo / ui ----------------------------------------------------------------------

def cmd_demo(args) -> int:
    from irisdag.demo import run_demo
    from irisdag.defs.settings import env
    from irisdag.instance import get_instance

    from irisdag.definitions import RESOURCES

    instance = get_instance()
    store = RESOURCES["serving_store"]
    summary = run_demo(instance, RESOURCES, batch_source=env("IRISDAG_BATCH_SOURCE"), warmup=args.warmup)
    st = status_dict(store)
    if args.json:
        print(json.dumps({"windows": summary.windows, "checks": summary.checks, "runs": summary.runs,
                          "failures": summary.failures, **st}, default=str))
    else:
        print(f"windows materialized: {', '.join(summary.windows)}")
        failed = [c for c in summary.checks if not c[2]]
        print(f"asset checks: {len(summary.checks) - len(failed)} passed, {len(failed)} failed")
        for name, part, _, sev, desc in failed:
            print(f"  FAILED [{sev}] {name} ({part}): {desc}")
        d = st["decision"] or {}
        if d:
            print(f"decision {d.get('decision_id')}: {d.get('decision')} — {d.get('reason')}")
            print(f"  n={d.get('n')} b={d.get('b')} c={d.get('c')} p={d.get('p_value')} "
                  f"mcnemar_p={d.get('mcnemar_p')} lambda={d.get('lambda')}")
        for job, key, outcome in summary.runs:
            print(f"sensor requested {job} (run key {key}): {outcome}")
        r = st["routing"]
        print(f"serving: champion {r['champion'][:12] or '(none)'}, previous {r['previous'][:12] or '(none)'}, "
              f"epoch {r['epoch']}")
    for f in summary.failures:
        print(f"irisdag demo: {f}", file=sys.stderr)
    return 1 if summary.failures else 0


def cmd_ui(args) -> int:
    from irisdag.instance import ensure_dagster_home
    from irisdag.paths import PROJECT_DIR

    ensure_dagster_home()
    cmd = ["dagster", "dev", "-w", str(PROJECT_DIR / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(args.port)]
    os.execvp(cmd[0], cmd)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="irisdag", description="Batch prediction with model deployment strategies.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="materialize the whole graph once, run the sensors, summarize")
    d.add_argument("--json", action="store_true")
    d.add_argument("--warmup", type=int, default=3, help="windows the champion serves first on a fresh store")
    d.set_defaults(func=cmd_demo)
    lk = sub.add_parser("lookup", help="the served answer for an input, an id or a CSV of inputs")
    lk.add_argument("features", nargs="*", help="SL SW PL PW")
    lk.add_argument("--id", help="an entity id")
    lk.add_argument("--file", help="a CSV of inputs (one JSON object per line with --json)")
    lk.add_argument("--json", action="store_true")
    lk.add_argument("--fallback-model", help="the champion's XGBoost JSON model: answer misses with it (route fallback)")
    lk.set_defaults(func=cmd_lookup)
    s = sub.add_parser("status", help="routing, versions and the newest decision")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    rb = sub.add_parser("rollback", help="restore the previous champion")
    rb.add_argument("--json", action="store_true")
    rb.set_defaults(func=cmd_rollback)
    ui = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on this instance")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    argv = _values_after_dashes(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", module="dagster")  # beta/preview notices are not for CLI users
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `irisdag lookup --file big.csv | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ConnectionError as err:
        print(f"irisdag: {err}", file=sys.stderr)
        return 1


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
