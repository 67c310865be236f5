"""deploy/: the Prometheus config, alert rules, Grafana dashboard, compose and filebeat files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROMTOOL = shutil.which("promtool")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.fail(
            "promtool is not installed: install Debian's 'prometheus' package (.ci/run does)"
        )
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-compose.yml"])
def test_prometheus_configs_pass_promtool(name):
    result = _promtool("check", "config", str(DEPLOY / name))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_promtool():
    result = _promtool("check", "rules", str(DEPLOY / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {
        "TinyLLMHighErrorRate",
        "TinyLLMSlowNodes",
        "TinyLLMCardinalityFolding",
        "TinyLLMSpansDropped",
    }


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana" / "tinyllm-dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_has_the_guides_panels():
    titles = {title for title, _ in _dashboard_queries()}
    assert {
        "Request rate",
        "Error rate",
        "Request latency heatmap",
        "p95 node execution time",
        "Tokens per second",
        "Cache hit rate",
        "Queue size",
    } <= titles


def test_every_dashboard_query_parses(tmp_path):
    # promtool has no offline query parser, but it parses every expression of a rules file.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{i}", "expr": expr}
                    for i, (_title, expr) in enumerate(_dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_dashboard_queries())} rules found" in result.stdout


def test_a_broken_query_would_be_caught(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "x",
                        "rules": [{"record": "x:y", "expr": "rate(tinyllm_requests_total[5m]"}],
                    }
                ]
            }
        )
    )
    assert _promtool("check", "rules", str(path)).returncode != 0


def test_compose_file_has_the_production_stack_and_the_kit():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {
        "tinyllm-app",
        "prometheus",
        "grafana",
        "jaeger",
        "elasticsearch",
        "kibana",
        "filebeat",
    }
    assert "tinyllm-instrument run" in services["tinyllm-app"]["command"]
    assert "--metrics-port 9464" in services["tinyllm-app"]["command"]
    assert "4317:4317" in services["jaeger"]["ports"]
    assert any("prometheus.yml" in v for v in services["prometheus"]["volumes"])


def test_filebeat_reads_the_kits_json_logs():
    config = yaml.safe_load((DEPLOY / "filebeat.yml").read_text())
    (log_input,) = config["filebeat.inputs"]
    assert log_input["paths"] == ["/var/log/tinyllm/*.json"]
    assert log_input["json.keys_under_root"] is True
    assert config["output.elasticsearch"]["index"] == "tinyllm-%{+yyyy.MM.dd}"
