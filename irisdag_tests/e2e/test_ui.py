"""The UI as a person sees it (issue item 7): headless Chromium against the
running webserver of the loopback production stack (test_stack.py), after the
lifecycle: the asset graph with its checks shown passed, and the comparison's
decision table (the asset's metadata). The pages' DOM must name the assets;
the screenshots go to a temporary folder (`make screenshots` puts them in docs/).
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from irisdag_tests.support.stack import module_stack

CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
ASSETS = ["raw_iris", "trusted_test_set", "champion_model", "challenger_model", "incoming_batch", "feedback",
          "champion_predictions", "challenger_predictions", "comparison"]
GROUPS = ["data", "models", "batches", "predictions", "decision"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--virtual-time-budget=30000"]

# CI installs chromium (.ci/run); elsewhere a missing browser skips these tests.
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def loopback_stack(request):
    yield from module_stack(request)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    """A temporary folder: tests never rewrite tracked files. `make screenshots` sets
    IRISDAG_SCREENSHOTS_DIR=docs to refresh the README's pictures."""
    if os.environ.get("IRISDAG_SCREENSHOTS_DIR"):
        path = Path(os.environ["IRISDAG_SCREENSHOTS_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


def chromium(url: str, *args: str, profile: Path) -> str:
    assert CHROMIUM, "chromium is not installed (apt-get install -y chromium)"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def shoot(stack, page: str, name: str, out_dir: Path, tmp_path: Path, size=(1900, 1500)) -> tuple[str, Path]:
    url = stack.url + page
    dom = chromium(url, "--dump-dom", f"--window-size={size[0]},{size[1]}", profile=tmp_path / "dom")
    target = out_dir / name
    chromium(url, f"--screenshot={target}", f"--window-size={size[0]},{size[1]}", profile=tmp_path / "shot")
    assert target.exists() and target.stat().st_size > 20_000, f"{target}: missing or blank"
    assert png_size(target) == size
    return dom, target


def test_asset_graph_shows_every_asset_with_checks_passed(loopback_stack, out_dir, tmp_path):
    stack = loopback_stack
    stack.run_lifecycle()
    expanded = quote(",".join(f"global@global:{g}" for g in GROUPS), safe="")
    dom, shot = shoot(stack, f"/asset-groups?expanded={expanded}", "asset-graph.png", out_dir, tmp_path)
    for asset in ASSETS:
        assert asset in dom, f"the asset graph does not show {asset}"
    assert "Passed" in dom and "Failed" not in dom
    # champion_model's five checks (validity, the three serving-store checks, the misses'
    # dead letters) all passed.
    assert "5 / 5 Passed" in dom


def test_comparison_page_shows_the_decision_table(loopback_stack, out_dir, tmp_path):
    stack = loopback_stack
    life = stack.run_lifecycle()
    decision = life.decision
    dom, shot = shoot(stack, f"/assets/comparison?partition={quote(life.comparison_partition)}",
                      "comparison-decision.png", out_dir, tmp_path, size=(1600, 1300))
    assert "comparison" in dom
    for field in ("decision", "decision_id", "strategy", "reason", "p_value", "decision_record"):
        assert field in dom, f"the comparison page does not show {field}"
    assert decision["decision_id"] in dom and "promote" in dom
    # The accuracy plot is a picture on the page (an inline SVG image), not a file path.
    assert "data:image/svg+xml;base64," in dom and "accuracy per window" in dom
