"""The Grafana dashboard in docs/grafana uses exactly the metric names a running gateway exports."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "mediagate-dashboard.json"
METRIC = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*")
# Sample names a family of each type exports (prometheus_client adds ``_created`` to counters and histograms).
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",), "unknown": ("",)}


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL query: panel targets and query variables."""
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            found.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return found


def referenced(dashboard: dict[str, Any]) -> set[str]:
    """The ``mediagate_`` series names the queries read (label names and values are never so prefixed)."""
    return {name for q in queries(dashboard) for name in METRIC.findall(re.sub(r'"[^"]*"', '""', q))
            if name.startswith("mediagate_")}


def exported(metrics_text: str) -> tuple[set[str], set[str]]:
    """(family names, every sample name the families export) from a ``/metrics`` body, families without samples
    (a labelled metric not observed yet, GPU gauges without a GPU) included."""
    families = list(text_string_to_metric_families(metrics_text))
    samples = {s.name for f in families for s in f.samples}
    samples |= {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}
    return {f.name for f in families}, samples


def missing_metrics(dashboard: dict[str, Any], metrics_text: str) -> set[str]:
    return referenced(dashboard) - exported(metrics_text)[1]


def load() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def exercised_metrics(gw: Any) -> str:
    """``/metrics`` after a released generation, a denied one and an async job."""
    app = gw.key()
    released = gw.client.post("/v1/generations", headers=app, json={"prompt": "a lighthouse", "size": "128x128"})
    assert released.status_code == 200 and released.json()["decision"] == "release", released.text
    denied = gw.client.post("/v1/generations", headers=app, json={"prompt": "a castle covered in gore"})
    assert denied.status_code == 403, denied.text
    gw.client.post("/v1/generations", headers=app, json={"prompt": "a boat", "size": "128x128", "async": True})
    assert gw.runtime.jobs.run_once()
    resp = gw.client.get("/metrics")
    assert resp.status_code == 200
    return resp.text


def test_every_metric_the_dashboard_reads_is_exported_by_a_running_gateway(make_gateway: Any) -> None:
    gw = make_gateway(job_workers=0)
    text = exercised_metrics(gw)
    dashboard = load()
    assert len(referenced(dashboard)) >= 25  # the extraction works: the dashboard reads that many series
    assert missing_metrics(dashboard, text) == set()

    # ...and the series behind the main panels have samples after that traffic.
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert values[("mediagate_assets_total", (("status", "released"),))] >= 1
    assert values[("mediagate_generations_total", (("decision", "deny"),))] == 1
    assert values[("mediagate_stage_duration_seconds_count", (("stage", "generate"),))] == 2
    assert values[("mediagate_image_score_count", (("field", "nsfw"), ("scorer", "nsfw")))] == 2
    assert values[("mediagate_jobs_finished_total", (("status", "completed"),))] == 1
    assert values[("mediagate_job_queue_depth", (("state", "queued"),))] == 0
    denials = [k for k in values if k[0] == "mediagate_policy_decisions_total" and ("result", "deny") in k[1]]
    assert denials and all(dict(k[1])["code"] for k in denials)


def test_a_panel_naming_a_metric_the_code_lacks_is_caught(make_gateway: Any) -> None:
    text = make_gateway().client.get("/metrics").text
    dashboard = copy.deepcopy(load())
    dashboard["panels"][1]["targets"].append(
        {"refId": "Z", "expr": 'sum(rate(mediagate_assets_released_total{status="x"}[5m]))'})
    dashboard["panels"][2]["targets"].append(
        {"refId": "Z", "expr": "histogram_quantile(0.5, rate(mediagate_assets_total_bucket[5m]))"})
    assert missing_metrics(dashboard, text) == {"mediagate_assets_released_total", "mediagate_assets_total_bucket"}


def test_the_code_exports_only_mediagate_metrics(make_gateway: Any) -> None:
    text = make_gateway().client.get("/metrics").text
    families, samples = exported(text)
    assert len(families) >= 30
    assert [n for n in families | samples if not n.startswith("mediagate_")] == []


def test_every_panel_has_a_query_on_the_datasource_variable() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert "mediagate_" in target["expr"], (panel["title"], target)
            assert target["datasource"]["uid"] == "${datasource}"
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
