"""The production stack without Docker: the processes of docker-compose.yml,
started directly on loopback (DESIGN §5; the issue's item 5).

Postgres (Dagster's storage, ``deploy/dagster.yaml``), moto's S3 server (the
bucket with the course's files, as ``minio-init`` loads MinIO), Redis 7 with the
ACL users and the Lua library loaded by the admin (as ``redis-init``), the gRPC
code server (``dagster api grpc -m irisdag.definitions``), the webserver and
the daemon (a workspace.yaml that targets the gRPC server, a DAGSTER_HOME with
the Postgres ``dagster.yaml``). Everything is driven through the webserver's
GraphQL API, as the UI drives it.

One stack per test session (``shared_stack``): test_stack.py proves the
lifecycle on it, test_ui.py screenshots the same webserver. Every process is
stopped by its process group at the end (``stop``), and anything they spawned
elsewhere is found by this run's environment marker and stopped by pid.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from irisdag_tests.support.processes import Proc, free_port, kill_marked, marked_pids
from irisdag_tests.support.services import COURSE, DEPLOY, PROJECT, AclRedis, MotoS3, Postgres, venv_tool

LOCATION = "irisdag"
REPOSITORY = "__repository__"
BUCKET = "irisdag-e2e"
PREFIX = "irisdag"
# A drifting stream where the iris-trained champion clearly loses accuracy and a
# challenger retrained on the feedback regains it (test_lifecycle.py, demo).
DRIFTING = {"ops": {"incoming_batch": {"config": {"rows": 1500, "drift": 1.0, "drift_windows": 1}}}}
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
WARMUP_ASSETS = ["raw_iris", "trusted_test_set", "champion_model", "incoming_batch", "feedback", "champion_predictions"]
ALL_ASSETS = WARMUP_ASSETS[:3] + ["challenger_model"] + WARMUP_ASSETS[3:] + ["challenger_predictions", "comparison"]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

Q_LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } ... on PythonError { message } } }"""
Q_DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
M_LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on PythonError { message stack }
  ... on Error { message } } }"""
Q_RUN = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId jobName status
  tags { key value } } ... on Error { message } } }"""
Q_RUNS = """query($f: RunsFilter) { runsOrError(filter: $f) { __typename ... on Runs { results { runId jobName
  status tags { key value } } } ... on Error { message } } }"""
M_START_SENSOR = """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
  ... on Sensor { name sensorState { status } } ... on PythonError { message } ... on Error { message } } }"""
M_START_SCHEDULE = """mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) { __typename
  ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } ... on Error { message } } }"""
Q_SENSOR = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename ... on Sensor { name
  sensorState { status ticks(limit: 20) { status runIds timestamp skipReason } } } ... on Error { message } } }"""
Q_SCHEDULE = """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { __typename ... on Schedule {
  name scheduleState { status } futureTicks(limit: 1) { results { timestamp } } } ... on Error { message } } }"""
Q_RUN_CHECKS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { eventConnection(afterCursor: null) { events {
  __typename ... on AssetCheckEvaluationEvent { evaluation { checkName success } } } } } } }"""


class GraphQLError(RuntimeError):
    pass


@dataclass
class Lifecycle:
    """What the lifecycle run on the stack produced (for the tests to assert on)."""

    runs: dict = field(default_factory=dict)         # label -> (run id, status)
    checks: dict = field(default_factory=dict)       # run label -> {check name: passed}
    champion_before: str = ""
    decision: dict = field(default_factory=dict)
    promote_run: dict = field(default_factory=dict)  # the run the sensor's tick requested
    sensor_ticks: list = field(default_factory=list)
    durations: dict = field(default_factory=dict)
    comparison_partition: str = ""
    sensor_status: str = ""
    startup_checks: list = field(default_factory=list)  # validate_serving_store runs of the start-up sensor
    schedule_status: str = ""
    schedule: dict = field(default_factory=dict)


class LoopbackStack:
    def __init__(self):
        self.marker = f"irisdag-stack-{uuid.uuid4().hex[:12]}"
        self.base = Path(tempfile.mkdtemp(prefix="irisdag-stack-"))
        self.procs: list[Proc] = []
        self.durations: dict[str, float] = {}
        self.lifecycle: Lifecycle | None = None
        self.postgres: Postgres | None = None
        self.moto: MotoS3 | None = None
        self.redis: AclRedis | None = None
        self.code = self.webserver = self.daemon = None
        self.web_port = self.grpc_port = 0
        self.dagster_home = self.base / "dagster_home"
        self.stopped = False

    # ---- start / stop ------------------------------------------------------------------

    def start(self) -> "LoopbackStack":
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.durations["start"] = time.monotonic() - t0
        return self

    def _timed(self, name: str, fn):
        t = time.monotonic()
        out = fn()
        self.durations[f"start_{name}"] = round(time.monotonic() - t, 2)
        return out

    def _start(self) -> None:
        self.postgres = self._timed("postgres", lambda: Postgres(marker=self.marker).start())
        self.procs.append(self.postgres.proc)
        self.moto = self._timed("moto", lambda: MotoS3(self.base / "moto", marker=self.marker).start())
        self.procs.append(self.moto.proc)
        from irisdag.defs.production import bootstrap_bucket

        self.course_keys = bootstrap_bucket(self.moto.client(), BUCKET, COURSE)
        self.redis = self._timed("redis", lambda: AclRedis(self.base / "redis", marker=self.marker).start())
        self.procs.append(self.redis.proc)

        self.dagster_home.mkdir(parents=True)
        shutil.copyfile(DEPLOY / "dagster.yaml", self.dagster_home / "dagster.yaml")
        self.grpc_port, self.web_port = free_port(), free_port()
        workspace = self.base / "workspace.yaml"
        workspace.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {self.grpc_port}\n      location_name: {LOCATION}\n")
        env = self.env()
        logs = self.base / "logs"
        logs.mkdir()

        self.code = Proc("code-server", [venv_tool("dagster"), "api", "grpc", "--module-name", "irisdag.definitions",
                                         "--host", "127.0.0.1", "--port", str(self.grpc_port)],
                         logs / "code.log", env=env, cwd=self.base, marker=self.marker)
        self.procs.append(self.code)
        self._timed("code_server", lambda: self.code.wait_until(self._grpc_healthy, 120, "serving gRPC"))

        # As in docker-compose.yml: the webserver and the daemon never load the code, so they get
        # Dagster's storage and the step-log bucket but no Redis credential.
        dagster_env = {k: v for k, v in env.items()
                       if k not in ("REDIS_URL", "IRISDAG_ROUTING_REDIS_URL", "IRISDAG_DEPLOYMENT",
                                    "IRISDAG_S3_PREFIX", "IRISDAG_HOME")}
        self.webserver = Proc("webserver", [venv_tool("dagster-webserver"), "--host", "127.0.0.1",
                                            "--port", str(self.web_port), "--workspace", str(workspace)],
                              logs / "webserver.log", env=dagster_env, cwd=self.base, marker=self.marker)
        self.procs.append(self.webserver)
        self._timed("webserver", lambda: self.webserver.wait_until(self._location_loaded, 120, "serving the location"))

        self.daemon = Proc("daemon", [venv_tool("dagster-daemon"), "run", "--workspace", str(workspace)],
                           logs / "daemon.log", env=dagster_env, cwd=self.base, marker=self.marker)
        self.procs.append(self.daemon)
        self._timed("daemon", lambda: self.daemon.wait_until(self._daemons_healthy, 120, "healthy"))

    def env(self) -> dict:
        """The environment of the code server, the webserver and the daemon (as docker-compose.yml's)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("IRISDAG_", "AWS_", "DAGSTER_")) and k != "REDIS_URL"}
        env.update(self.moto.env())
        env.update({
            "IRISDAG_DEPLOYMENT": "production",
            "IRISDAG_HOME": str(self.base / "state"),
            "IRISDAG_S3_BUCKET": BUCKET,
            "IRISDAG_S3_PREFIX": PREFIX,
            "REDIS_URL": self.redis.url("scoring"),
            "IRISDAG_ROUTING_REDIS_URL": self.redis.url("routing"),
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_POSTGRES_URL": self.postgres.url,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def _grpc_healthy(self) -> bool:
        import subprocess

        return subprocess.run([venv_tool("dagster"), "api", "grpc-health-check", "--port", str(self.grpc_port)],
                              capture_output=True, timeout=30).returncode == 0

    def _location_loaded(self) -> bool:
        data = self.graphql(Q_LOCATIONS)["workspaceOrError"]
        for entry in data.get("locationEntries", []):
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
                error = entry.get("locationOrLoadError") or {}
                if error.get("__typename") == "PythonError":
                    raise RuntimeError(f"the code location failed to load: {error.get('message')}")
                return True
        return False

    def _daemons_healthy(self) -> bool:
        statuses = self.graphql(Q_DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        required = {s["daemonType"]: s["healthy"] for s in statuses if s["required"]}
        return bool(required) and all(required.values())

    def stop(self) -> dict[str, float]:
        """Stop every process this stack started (daemon first, Postgres last); returns seconds per process."""
        if self.stopped:
            return self.durations.get("stop_each", {})
        self.stopped = True
        taken = {}
        order = [p for p in (self.daemon, self.webserver, self.code) if p is not None]
        order += [p for p in reversed(self.procs) if p not in order]
        for proc in order:
            taken[proc.name] = round(proc.stop(grace=10.0), 2)
        leftovers = kill_marked(self.marker)
        self.durations["stop_each"] = taken
        self.durations["stop_leftovers_killed"] = len(leftovers)
        if self.postgres is not None:
            shutil.rmtree(self.postgres.dir, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        return taken

    def leftover_pids(self) -> list[int]:
        return marked_pids(self.marker)

    # ---- GraphQL ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}},
                                 timeout=timeout)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(json.dumps(body["errors"])[:2000])
        return body["data"]

    def selector(self, **extra) -> dict:
        return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, **extra}

    def launch(self, job: str = "__ASSET_JOB", assets: list[str] | None = None, run_config: dict | None = None,
               tags: dict | None = None) -> str:
        selector = self.selector(jobName=job)
        if assets is not None:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        params = {"selector": selector, "runConfigData": run_config or {},
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}
        out = self.graphql(M_LAUNCH, {"p": params})["launchRun"]
        if out["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchRun: {json.dumps(out)[:2000]}")
        return out["run"]["runId"]

    def run(self, run_id: str) -> dict:
        return self.graphql(Q_RUN, {"id": run_id})["runOrError"]

    def wait_run(self, run_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run.get("status") in TERMINAL:
                return run
            self._alive_or_raise()
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} not finished after {timeout}s: {self.run(run_id)}")

    def runs(self, job: str | None = None, tags: dict | None = None) -> list[dict]:
        flt = {}
        if job:
            flt["pipelineName"] = job
        if tags:
            flt["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        return self.graphql(Q_RUNS, {"f": flt})["runsOrError"]["results"]

    def run_check_results(self, run_id: str) -> dict[str, bool]:
        events = self.graphql(Q_RUN_CHECKS, {"id": run_id})["runOrError"]["eventConnection"]["events"]
        return {e["evaluation"]["checkName"]: e["evaluation"]["success"]
                for e in events if e["__typename"] == "AssetCheckEvaluationEvent"}

    def start_sensor(self, name: str) -> str:
        out = self.graphql(M_START_SENSOR, {"s": self.selector(sensorName=name)})["startSensor"]
        if out["__typename"] != "Sensor":
            raise GraphQLError(f"startSensor {name}: {out}")
        return out["sensorState"]["status"]

    def start_schedule(self, name: str) -> str:
        out = self.graphql(M_START_SCHEDULE, {"s": self.selector(scheduleName=name)})["startSchedule"]
        if out["__typename"] != "ScheduleStateResult":
            raise GraphQLError(f"startSchedule {name}: {out}")
        return out["scheduleState"]["status"]

    def sensor(self, name: str) -> dict:
        return self.graphql(Q_SENSOR, {"s": self.selector(sensorName=name)})["sensorOrError"]

    def schedule(self, name: str) -> dict:
        return self.graphql(Q_SCHEDULE, {"s": self.selector(scheduleName=name)})["scheduleOrError"]

    def _alive_or_raise(self) -> None:
        for proc in (self.code, self.webserver, self.daemon):
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{proc.name} died:\n{proc.log_tail()}")

    # ---- the lifecycle (idempotent: test_stack runs it, test_ui reuses it) ---------------------------

    def run_lifecycle(self) -> Lifecycle:
        if self.lifecycle is not None:
            return self.lifecycle
        from irisdag.defs.partitions import window_key
        from irisdag.store.resource import ServingStore

        life = Lifecycle()
        store = ServingStore(redis_url=self.redis.url("scoring"))
        t0 = time.monotonic()
        life.sensor_status = self.start_sensor("promotion_sensor")
        run_config = {**DRIFTING, **IN_PROCESS}
        # The champion serves three windows (their feedback becomes training data) ...
        for i in range(3):
            t = time.monotonic()
            run_id = self.launch(assets=WARMUP_ASSETS, run_config=run_config,
                                 tags={"dagster/partition": window_key(i)})
            run = self.wait_run(run_id)
            life.runs[f"warmup-{i}"] = (run_id, run["status"])
            life.durations[f"warmup-{i}"] = round(time.monotonic() - t, 1)
            if run["status"] != "SUCCESS":
                raise RuntimeError(f"warm-up run {i} ended {run['status']}:\n{self.code.log_tail(80)}")
        life.checks["warmup-0"] = self.run_check_results(life.runs["warmup-0"][0])
        life.champion_before = store.routing().champion
        # ... then the whole graph for the next window: challenger, comparison, decision.
        t = time.monotonic()
        life.comparison_partition = window_key(3)
        run_id = self.launch(assets=ALL_ASSETS, run_config=run_config, tags={"dagster/partition": window_key(3)})
        run = self.wait_run(run_id)
        life.runs["graph"] = (run_id, run["status"])
        life.durations["graph"] = round(time.monotonic() - t, 1)
        life.checks["graph"] = self.run_check_results(run_id)
        life.decision = store.latest_decision() or {}
        # The daemon's sensor tick (not this test) requests `promote`.
        t = time.monotonic()
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            found = [r for r in self.runs("promote", {"dagster/sensor_name": "promotion_sensor"})]
            if found and found[0]["status"] in TERMINAL:
                life.promote_run = found[0]
                break
            self._alive_or_raise()
            time.sleep(1)
        life.durations["sensor_to_promoted"] = round(time.monotonic() - t, 1)
        life.sensor_ticks = self.sensor("promotion_sensor")["sensorState"]["ticks"]
        if life.promote_run.get("status") == "SUCCESS":
            # The served champion's asset, checked again after the promotion (validity and
            # serving-store checks), then the store-check job on its own, both through GraphQL.
            t = time.monotonic()
            run_id = self.launch(assets=["champion_model"], run_config=IN_PROCESS)
            life.runs["champion-after-promotion"] = (run_id, self.wait_run(run_id)["status"])
            life.checks["champion-after-promotion"] = self.run_check_results(run_id)
            run_id = self.launch(job="validate_serving_store")
            life.runs["validate_serving_store"] = (run_id, self.wait_run(run_id)["status"])
            life.checks["validate_serving_store"] = self.run_check_results(run_id)
            life.durations["after_promotion"] = round(time.monotonic() - t, 1)
        life.startup_checks = self.runs("validate_serving_store", {"irisdag/trigger": "code-location-load"})
        # The four-hourly scoring schedule, turned on last so that no tick lands mid-test.
        life.schedule_status = self.start_schedule("score_batch_schedule")
        life.schedule = self.schedule("score_batch_schedule")
        life.durations["lifecycle"] = round(time.monotonic() - t0, 1)
        store_close()
        self.lifecycle = life
        return life


def store_close() -> None:
    from irisdag.store.resource import close_clients

    close_clients()


_SHARED: LoopbackStack | None = None


def shared_stack() -> LoopbackStack:
    """The session's one stack, started on first use and stopped at exit (or by ``stop_shared``)."""
    global _SHARED
    if _SHARED is None or _SHARED.stopped:
        _SHARED = LoopbackStack().start()
        atexit.register(_SHARED.stop)
    return _SHARED


def stop_shared() -> dict:
    return _SHARED.stop() if _SHARED is not None else {}


FIXTURE = "loopback_stack"


def _active_users(session) -> list:
    """Collected test items that use the stack and are not skipped by a true skipif."""
    out = []
    for item in session.items:
        if FIXTURE not in getattr(item, "fixturenames", ()):
            continue
        if any(m.args and m.args[0] is True for m in item.iter_markers("skipif")):
            continue
        out.append(item)
    return out


def module_stack(request):
    """The body of the module-scoped ``loopback_stack`` fixture of test_stack.py and test_ui.py.

    Both modules share the session's one stack; the last module that uses it
    stops every process at its end (so the stack does not outlive the e2e
    tests) and fails, in teardown, if any process was left running.
    """
    stack = shared_stack()
    yield stack
    users = _active_users(request.session)
    if not users or users[-1].module is request.module:
        taken = stop_shared()
        leftovers = stack.leftover_pids()
        print(f"\nloopback stack: started in {stack.durations.get('start', 0):.1f}s "
              f"({', '.join(f'{k[6:]} {v}s' for k, v in stack.durations.items() if k.startswith('start_'))}); "
              f"stopped: {taken}")
        assert not leftovers, f"processes of the stack still running after stop: {leftovers}"


__all__ = ["LoopbackStack", "Lifecycle", "shared_stack", "stop_shared", "PROJECT", "BUCKET", "PREFIX"]
