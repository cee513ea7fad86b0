"""examples/prometheus/: the alert rules pass their promtool unit tests, the config is valid,
and the dashboard and rules use only names the exporter serves.

promtool comes with Debian's ``prometheus`` package; these tests skip where
it is missing, and fail instead in CI (see ``require_binary`` in conftest).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memcachier_async import AsyncAnalytics
from memcachier_async._cli.exporter import Exporter
from memcachier_async.testing import Emulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "prometheus"
# Metric names as they appear in PromQL: ours, memcached_exporter's, the process
# collector's, and Prometheus' own up. Recording rules (with a colon) are not matched.
NAME = re.compile(r"(?<![\w:])((?:memcachier|memcached|process|python)_[a-z_]+|up)(?![\w:])")


def promtool(require_binary: Callable[[str, str], str], *args: str) -> str:
    binary = require_binary("promtool", "prometheus")
    done = subprocess.run(
        [binary, *args],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_alert_rules_pass_their_promtool_unit_tests(
    require_binary: Callable[[str, str], str],
) -> None:
    """promtool test rules alerts_test.yml: every alert fires when it should and only then."""
    output = promtool(require_binary, "test", "rules", "alerts_test.yml")
    assert "SUCCESS" in output


def test_the_probe_mode_prometheus_yml_and_its_rules_are_valid(
    require_binary: Callable[[str, str], str],
) -> None:
    """promtool check config prometheus.yml (which loads alerts.yml) passes."""
    output = promtool(require_binary, "check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in output
    assert "is valid prometheus config file syntax" in output


def exported_names() -> set[str]:
    """Every sample name the exporter serves: /metrics in poll mode, and a probe."""
    emulator = Emulator(history_interval=3600)
    emulator.drive_traffic(200)

    async def scrape() -> set[str]:
        api = AsyncAnalytics(emulator.username, emulator.password, transport=emulator.transport())
        async with api:
            exporter = Exporter([("web", api)], interval=60)
            await exporter.poll()
            transport = httpx.ASGITransport(app=exporter.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as http:
                texts = [(await http.get(path)).text for path in ("/metrics", "/probe?cache=web")]
        names = set()
        for text in texts:
            for family in text_string_to_metric_families(text):
                # A family without samples yet (no errors so far) still counts.
                names.add(f"{family.name}_total" if family.type == "counter" else family.name)
                names.update(sample.name for sample in family.samples)
        return names

    try:
        return anyio.run(scrape)
    finally:
        emulator.close()


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield query["query"]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_names() | {"up"}


def test_the_dashboard_uses_only_exported_names(exported: set[str]) -> None:
    """Every metric the Grafana dashboard queries is one the exporter serves (or Prometheus' up)."""
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    queries = list(dashboard_queries(dashboard))
    used = {name for query in queries for name in NAME.findall(query)}
    assert used - exported == set()
    # The memcached_exporter-compatible panels are there.
    assert {
        "memcached_commands_total",
        "memcached_current_bytes",
        "memcached_limit_bytes",
        "memcached_current_items",
        "memcached_items_evicted_total",
        "memcached_current_connections",
        "memcached_up",
        "memcachier_up",
        "memcachier_probe_duration_seconds",
        "memcachier_exporter_build_info",
        # Capacity advice (poll mode).
        "memcachier_capacity_seconds_until_full",
        "memcachier_capacity_fill_rate_bytes_per_second",
        "memcachier_capacity_suggested_limit_bytes",
    } <= used


def test_the_dashboard_panels_are_well_formed() -> None:
    """Unique panel ids, a position each, one data source variable, a refId per query."""
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        for target in panel.get("targets", ()):
            assert target["refId"]
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    names = [variable["name"] for variable in dashboard["templating"]["list"]]
    assert names[0] == "datasource"


def test_the_alert_rules_use_only_exported_names(exported: set[str]) -> None:
    """Every metric name alerts.yml mentions is one the exporter serves (or Prometheus' up)."""
    lines = (EXAMPLES / "alerts.yml").read_text().splitlines()
    prose = ("#", "summary:", "description:")
    queries = [line.split(" #")[0] for line in lines if not line.strip().startswith(prose)]
    used = set(NAME.findall("\n".join(queries)))
    assert used - exported == set()
    assert {
        "memcachier_up",
        "memcached_up",
        "memcached_items_evicted_total",
        "memcachier_capacity_seconds_until_full",
    } <= used
