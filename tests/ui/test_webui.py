"""The Dagster web UI end to end, as operators use it, in headless Chromium.

A tiny demo is seeded on the embedded default in a temporary data dir; then a code server,
`dagster-webserver` and `dagster-daemon run` start on free loopback ports with DAGSTER_HOME in
that data dir (the processes `make ui` runs through `dagster dev`). The browser is Debian's
chromium driven by Playwright: `scripts/install-chromium` installs it, nothing downloads one.
Screenshots are kept under a directory the tests print, and copied to $ENCAPTIO_TEST_ARTIFACTS
(a directory) when that is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCATION = "encaptio_data"
CODE_LOCATION_MODULE = "encaptio_data.definitions"
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
# The demo's smallest useful size: two organizations (tenant isolation), one capsule each.
TINY_DEMO = ["--organizations", "2", "--capsules", "1", "--files", "4", "--events", "20"]
# Generous: the runs start a Python process that imports the whole code location, on a
# machine whose two cores are shared.
STARTUP_SECONDS = 300
RUN_SECONDS = 900
UI_MS = 60_000

pytestmark = [
    pytest.mark.xdist_group("webui"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium "
                                                     "missing): run scripts/install-chromium"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(what: str, condition: Callable[[], Any], timeout: float, on_timeout: Callable[[], str] = str,
          interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s{on_timeout()}")


@dataclass
class DagsterUI:
    url: str
    data_dir: Path
    screenshots: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # what the alert webhook received

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/graphql", method="POST",
                                         data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def logs(self, lines: int = 40) -> str:
        tails = []
        for name in self.processes:
            path = self.data_dir / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            tails.append(f"\n--- {name}.log (last {lines} lines) ---\n" + "\n".join(text))
        return "".join(tails)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}{self.logs()}")

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.data_dir / f"{name}.log").open("wb")
        # A session of its own, so that teardown stops the process and what it spawned (the
        # code server's worker, run processes) and nothing else.
        self.processes[name] = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[2], env=env,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes.values()):
            try:
                # The code server does not act on SIGTERM while its worker lives: give up on it soon.
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    # --- what the tests ask Dagster --------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        return self.graphql("""query($id: ID!) { runOrError(runId: $id) { __typename
            ... on Run { runId jobName status assetSelection { path } tags { key value } } } }""", {"id": run_id})["runOrError"]

    def run_events(self, run_id: str) -> list[str]:
        data = self.graphql("""query($id: ID!) { logsForRun(runId: $id) { __typename
            ... on EventConnection { events { __typename } } } }""", {"id": run_id})["logsForRun"]
        return [event["__typename"] for event in data.get("events", [])]

    def wait_for_run(self, run_id: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            self.check_alive()
            run = self.run(run_id)
            return run if run.get("status") in {"SUCCESS", "FAILURE", "CANCELED"} else None

        return _wait(f"run {run_id} finishing", finished, RUN_SECONDS, lambda: f"{self.logs()}", interval=3)


def _subprocess_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCAPTIO_") or k.startswith("ENCAPTIO_TEST_")}
    return env | {"ENCAPTIO_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(data_dir / "dagster"),
                  "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def _seed_demo(data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / "encaptio"), "demo", *TINY_DEMO, "--json"], env=env, capture_output=True,
                          text=True, cwd=data_dir.parent, timeout=1800)
    assert done.returncode == 0, f"encaptio demo failed: {done.stderr[-3000:]}"
    summary = json.loads(done.stdout)
    assert summary["run"]["success"], summary["run"]["failures"]
    return summary


def _stop_automation(ui: DagsterUI) -> list[str]:
    """Stop every schedule and standard sensor; keep run-status sensors (alerting) running.

    The demo ran outside the daemon, so the uploads sensor has no cursor and would start a
    pipeline run per capsule on its first tick, and an hourly schedule may tick mid-test: the
    tests want to see exactly the runs they launch. An operator does the same from the
    Automation page.
    """
    stopped = []
    sensors = ui.graphql("""query($r: RepositorySelector!) { sensorsOrError(repositorySelector: $r) {
        ... on Sensors { results { name sensorType sensorState { id status } } } } }""", {"r": REPOSITORY})
    for sensor in sensors["sensorsOrError"]["results"]:
        if sensor["sensorType"] == "STANDARD" and sensor["sensorState"]["status"] == "RUNNING":
            answer = ui.graphql("""mutation($id: String!) { stopSensor(id: $id) { __typename
                ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }""",
                                {"id": sensor["sensorState"]["id"]})["stopSensor"]
            assert answer.get("instigationState", {}).get("status") == "STOPPED", answer
            stopped.append(sensor["name"])
    schedules = ui.graphql("""query($r: RepositorySelector!) { schedulesOrError(repositorySelector: $r) {
        ... on Schedules { results { name scheduleState { id status } } } } }""", {"r": REPOSITORY})
    for schedule in schedules["schedulesOrError"]["results"]:
        if schedule["scheduleState"]["status"] == "RUNNING":
            answer = ui.graphql("""mutation($id: String!) { stopRunningSchedule(id: $id) { __typename
                ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }""",
                                {"id": schedule["scheduleState"]["id"]})["stopRunningSchedule"]
            assert answer.get("scheduleState", {}).get("status") == "STOPPED", answer
            stopped.append(schedule["name"])
    return stopped


@contextmanager
def _alert_receiver(received: list[dict[str, Any]]) -> Iterator[str]:
    """A webhook receiver on loopback for the alerts the daemon's run-failure sensor posts."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    alerts: list[dict[str, Any]] = []
    with _alert_receiver(alerts) as webhook_url:
        yield from _dagster_ui(tmp_path_factory, webhook_url, alerts)


def _dagster_ui(tmp_path_factory: pytest.TempPathFactory, webhook_url: str,
                alerts: list[dict[str, Any]]) -> Iterator[DagsterUI]:
    root = tmp_path_factory.mktemp("webui")
    data_dir = root / "data"
    env = _subprocess_env(data_dir) | {"ENCAPTIO_ALERT_WEBHOOK_URL": webhook_url}
    _seed_demo(data_dir, env)
    screenshots = root / "screenshots"
    screenshots.mkdir()
    print(f"\nweb UI screenshots: {screenshots}")

    grpc_port, web_port = _free_port(), _free_port()
    workspace = root / "workspace.yaml"
    # One code server that the webserver and the daemon share, as `dagster dev` does: the code
    # location is imported once instead of twice.
    workspace.write_text(f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n"
                         f"      location_name: {LOCATION}\n")
    bin_dir = Path(sys.executable).parent
    ui = DagsterUI(url=f"http://127.0.0.1:{web_port}", data_dir=data_dir, screenshots=screenshots, alerts=alerts)
    try:
        ui.start("code-server", [str(bin_dir / "dagster"), "code-server", "start", "-m", CODE_LOCATION_MODULE,
                                 "-a", "defs", "-h", "127.0.0.1", "-p", str(grpc_port), "--location-name", LOCATION],
                 env)
        ui.start("webserver", [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1",
                               "-p", str(web_port)], env)

        last_state: dict[str, Any] = {}

        def location_loaded() -> bool:
            ui.check_alive()
            try:
                data = ui.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                                  "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
            except (urllib.error.URLError, ConnectionError):
                return False
            entries = {e["name"]: e for e in data["workspaceOrError"]["locationEntries"]}
            # Until the code server answers, the webserver reports the location as an error; it
            # reloads by itself once the server is up, so an error is only final at the deadline.
            last_state.update(entries.get(LOCATION) or {})
            return (last_state.get("locationOrLoadError") or {}).get("__typename") == "RepositoryLocation"

        _wait("the code location loading in the webserver", location_loaded, STARTUP_SECONDS,
              lambda: f"\nlast state: {json.dumps(last_state)[:2000]}{ui.logs()}")
        # The first visit would otherwise open Dagster's newsletter dialog over the page.
        assert ui.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
        _stop_automation(ui)
        ui.start("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)], env)

        def daemons_healthy() -> bool:
            ui.check_alive()
            statuses = ui.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }")
            required = [d for d in statuses["instance"]["daemonHealth"]["allDaemonStatuses"] if d["required"]]
            return bool(required) and all(d["healthy"] for d in required)

        _wait("every required daemon reporting healthy", daemons_healthy, STARTUP_SECONDS, ui.logs, interval=2)
        yield ui
    finally:
        ui.stop()
        target = os.environ.get("ENCAPTIO_TEST_ARTIFACTS")
        if target and any(screenshots.iterdir()):
            destination = Path(target) / "webui"
            destination.mkdir(parents=True, exist_ok=True)
            for shot in screenshots.iterdir():
                shutil.copy2(shot, destination / shot.name)
            print(f"web UI screenshots copied to {destination}")


@pytest.fixture(scope="module")
def browser(dagster_ui: DagsterUI) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, dagster_ui: DagsterUI, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=dagster_ui.url)
    context.set_default_timeout(UI_MS)
    page = context.new_page()
    yield page
    # A last picture of whatever the page showed, pass or fail: on a failure it is the first thing to look at.
    page.screenshot(path=dagster_ui.screenshots / f"{request.node.name}-last.png", full_page=True)
    context.close()


def _shot(ui: DagsterUI, page: Any, name: str) -> None:
    page.screenshot(path=ui.screenshots / f"{name}.png", full_page=True)


def _asset_nodes(ui: DagsterUI) -> list[dict[str, Any]]:
    return ui.graphql("""{ assetNodes { assetKey { path } groupName description isMaterializable
        owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
        assetChecksOrError { __typename ... on AssetChecks { checks { name description blocking
            executionForLatestMaterialization { status } } } } } }""")["assetNodes"]


def _code_location_graph() -> dict[str, dict[str, Any]]:
    from encaptio_data.definitions import defs

    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): {"group": graph.get(key).group_name,
                                   "checks": sorted(check.name for check in graph.get(key).check_keys)}
            for key in graph.get_all_asset_keys()}


# --- GraphQL --------------------------------------------------------------------------------------

def test_graphql_every_asset_is_documented_owned_and_checked(dagster_ui: DagsterUI) -> None:
    expected = _code_location_graph()
    nodes = {"/".join(n["assetKey"]["path"]): n for n in _asset_nodes(dagster_ui)}
    assert set(nodes) == set(expected), "the UI serves exactly the code location's assets"
    for name, node in nodes.items():
        assert node["description"] and len(node["description"]) > 40, f"{name} has no description in the UI"
        assert node["owners"], f"{name} has no owner in the UI"
        assert node["groupName"] == expected[name]["group"]
        assert node["assetChecksOrError"]["__typename"] == "AssetChecks"
        checks = node["assetChecksOrError"]["checks"]
        assert sorted(c["name"] for c in checks) == expected[name]["checks"], name
        for check in checks:
            assert check["description"], f"{name}.{check['name']} has no description"
            # The demo materialized everything: each check ran on its asset's latest materialization.
            execution = check["executionForLatestMaterialization"]
            assert execution and execution["status"] == "SUCCEEDED", f"{name}.{check['name']}: {execution}"
    assert sum(len(e["checks"]) for e in expected.values()) >= 10
    assert len({e["group"] for e in expected.values()}) >= 4


# --- the browser ----------------------------------------------------------------------------------

def test_the_asset_graph_shows_every_group_its_assets_and_their_checks(dagster_ui: DagsterUI, page: Any) -> None:
    from playwright.sync_api import expect

    expected = _code_location_graph()
    groups = sorted({e["group"] for e in expected.values()})
    page.goto("/asset-groups")
    for group in groups:
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    _shot(dagster_ui, page, "01-global-asset-lineage")

    for group in groups:
        page.goto(f"/locations/{LOCATION}/asset-groups/{group}")
        for asset in sorted(name for name, e in expected.items() if e["group"] == group):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        _shot(dagster_ui, page, f"02-group-{group}")

    for asset, entry in sorted(expected.items()):
        if not entry["checks"]:
            continue
        page.goto(f"/assets/{asset}?view=checks")
        expect(page.get_by_text(f"Checks ({len(entry['checks'])})")).to_be_visible()
        for check in entry["checks"]:
            # The list truncates long names in the middle and keeps the whole name as the title.
            item = page.get_by_title(check, exact=True)
            expect(item).to_be_visible()
            # Every check passed in the demo; the list shows each one's latest status beside it.
            expect(item.locator("xpath=..")).to_contain_text("Succeeded")
        _shot(dagster_ui, page, f"03-checks-{asset}")


def _demo_subject(data_dir: Path) -> str:
    import sqlalchemy as sa

    from encaptio_data.db.enums import UserRole
    from encaptio_data.db.models import User
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    platform = Platform(get_settings(data_dir=data_dir))
    try:
        with platform.db.session() as session:
            return session.scalar(sa.select(User.email).where(User.role == UserRole.VIEWER).order_by(User.email).limit(1))
    finally:
        platform.close()


def _submit_access_request(data_dir: Path, email: str) -> str:
    from encaptio_data.platform import Platform
    from encaptio_data.privacy.requests import Requests
    from encaptio_data.settings import get_settings

    platform = Platform(get_settings(data_dir=data_dir))
    try:
        # Submitted by an operator (source cli): identity verified, and access needs no approval.
        request = Requests(platform).submit(type="access", email=email, source="cli", actor="webui-test").request
    finally:
        platform.close()
    assert request["status"] == "approved", request
    return request["id"]


def _request_status(data_dir: Path, request_id: str) -> str:
    from encaptio_data.platform import Platform
    from encaptio_data.privacy.requests import Requests
    from encaptio_data.settings import get_settings

    platform = Platform(get_settings(data_dir=data_dir))
    try:
        with platform.db.session() as session:
            return Requests(platform).get(session, request_id).status.value
    finally:
        platform.close()


@contextmanager
def _launch_response(page: Any) -> Iterator[Any]:
    with page.expect_response(lambda r: "op=LaunchPipelineExecution" in r.url, timeout=UI_MS) as response:
        yield response


def test_a_materialization_and_an_access_request_launched_from_the_ui_succeed(dagster_ui: DagsterUI,
                                                                                 page: Any) -> None:
    from playwright.sync_api import expect

    # 1. Materialize one asset from its page.
    page.goto("/assets/uploads")
    materialize = page.get_by_role("button", name=re.compile(r"^(materialization )?Materialize$"))
    expect(materialize).to_be_enabled()
    _shot(dagster_ui, page, "10-asset-uploads-before")
    with _launch_response(page) as launched:
        materialize.click()
    answer = launched.value.json()["data"]["launchPipelineExecution"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    materialization_run = answer["run"]["id"]

    # 2. An access request, launched from its job's launchpad with the request id as config.
    request_id = _submit_access_request(dagster_ui.data_dir, _demo_subject(dagster_ui.data_dir))
    page.goto(f"/locations/{LOCATION}/jobs/dsar_access_job/playground")
    editor = page.locator(".CodeMirror").first
    expect(editor).to_be_visible()
    editor.click()
    page.keyboard.press("Control+A")
    # insert_text types no keys, so the editor's auto-indent cannot reshape the YAML.
    page.keyboard.insert_text(f"ops:\n  process_access_request:\n    config:\n      request_id: {request_id}\n")
    expect(page.get_by_text("No errors")).to_be_visible()
    expect(page.get_by_text("No missing config")).to_be_visible()
    _shot(dagster_ui, page, "11-launchpad-dsar-access")
    page.get_by_role("button", name=re.compile(r"Launch Run$")).click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    dsar_run = page.url.split("/runs/")[1].split("?")[0]
    _shot(dagster_ui, page, "12-run-dsar-access-launched")

    # 3. Both succeed; the run pages say so.
    for run_id, name in ((materialization_run, "materialize-uploads"), (dsar_run, "dsar-access")):
        run = dagster_ui.wait_for_run(run_id)
        assert run["status"] == "SUCCESS", f"{name} run {run_id}: {run['status']}{dagster_ui.logs()}"
        page.goto(f"/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        _shot(dagster_ui, page, f"13-run-{name}-succeeded")

    # 4. What GraphQL says about them.
    materialization = dagster_ui.run(materialization_run)
    assert materialization["assetSelection"] == [{"path": ["uploads"]}]
    assert {"key": "dagster/from_ui", "value": "true"} in materialization["tags"]
    dsar = dagster_ui.run(dsar_run)
    assert dsar["jobName"] == "dsar_access_job"
    latest = dagster_ui.graphql("""{ assetOrError(assetKey: {path: ["uploads"]}) { ... on Asset {
        assetMaterializations(limit: 1) { runId } } } }""")["assetOrError"]["assetMaterializations"]
    assert latest == [{"runId": materialization_run}]
    if dagster_ui.graphql("{ instance { runQueuingSupported } }")["instance"]["runQueuingSupported"]:
        # The runs were queued and the daemon (nothing else) launched them.
        for run_id in (materialization_run, dsar_run):
            assert "RunEnqueuedEvent" in dagster_ui.run_events(run_id)
    # And the job did its work in the stores: the request is completed with a receipt.
    assert _request_status(dagster_ui.data_dir, request_id) == "completed"

    page.goto("/assets/uploads?view=events")
    expect(page.get_by_text(f"Materialized in run {materialization_run[:8]}").first).to_be_visible()
    _shot(dagster_ui, page, "14-asset-uploads-events")


def _alert_audit_entries(data_dir: Path, run_id: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from encaptio_data.db.models import AuditEntry
    from encaptio_data.platform import Platform
    from encaptio_data.settings import get_settings

    platform = Platform(get_settings(data_dir=data_dir))
    try:
        with platform.db.session() as session:
            return [{"action": e.action, "actor": e.actor, "details": e.details} for e in session.scalars(
                sa.select(AuditEntry).where(AuditEntry.action == "alert.run_failed", AuditEntry.target == run_id))]
    finally:
        platform.close()


def test_a_failed_run_raises_an_alert_and_key_assets_carry_freshness(dagster_ui: DagsterUI) -> None:
    """Needs encaptio_data/definitions.py to register run_failure_alert_sensor and apply with_freshness_policies."""
    from encaptio_data.assets.freshness import KEY_ASSET_CADENCES

    sensors = dagster_ui.graphql("""query($r: RepositorySelector!) { sensorsOrError(repositorySelector: $r) {
        ... on Sensors { results { name sensorType sensorState { status } } } } }""", {"r": REPOSITORY})
    by_name = {s["name"]: s for s in sensors["sensorsOrError"]["results"]}
    alert_sensor = by_name.get("run_failure_alert_sensor")
    assert alert_sensor, "encaptio_data/definitions.py does not register run_failure_alert_sensor"
    assert alert_sensor["sensorType"] == "RUN_STATUS" and alert_sensor["sensorState"]["status"] == "RUNNING"

    policies = {"/".join(n["assetKey"]["path"]): n["internalFreshnessPolicy"] for n in dagster_ui.graphql(
        """{ assetNodes { assetKey { path } internalFreshnessPolicy { __typename
            ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds } } } }""")["assetNodes"]}
    for name, cadence in KEY_ASSET_CADENCES.items():
        assert policies.get(name) == {"__typename": "TimeWindowFreshnessPolicy",
                                      "failWindowSeconds": int(cadence.fail_window.total_seconds()),
                                      "warnWindowSeconds": int(cadence.warn_window.total_seconds())}, (
            f"{name} has no freshness policy in the UI: definitions.py does not apply with_freshness_policies")

    # A request id that does not exist makes the access job fail: the daemon's sensor must alert.
    launched = dagster_ui.graphql("""mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""", {"p": {
        "selector": {**REPOSITORY, "jobName": "dsar_access_job"},
        "runConfigData": {"ops": {"process_access_request": {"config": {"request_id": str(uuid.uuid4())}}}}}})
    launch = launched["launchPipelineExecution"]
    assert launch["__typename"] == "LaunchRunSuccess", launch
    run_id = launch["run"]["runId"]
    assert dagster_ui.wait_for_run(run_id)["status"] == "FAILURE"

    def alerted() -> list[dict[str, Any]]:
        dagster_ui.check_alive()
        return [a for a in dagster_ui.alerts if a["key"] == run_id]

    (posted,) = _wait(f"an alert for failed run {run_id}", alerted, RUN_SECONDS, dagster_ui.logs, interval=2)
    assert posted["kind"] == "run_failed" and posted["details"]["job_name"] == "dsar_access_job"
    assert posted["details"]["failed_steps"] == ["process_access_request"]
    (entry,) = _alert_audit_entries(dagster_ui.data_dir, run_id)
    assert entry["actor"] == "run_failure_sensor" and entry["details"]["job_name"] == "dsar_access_job"
