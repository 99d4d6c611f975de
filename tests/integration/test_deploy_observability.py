"""The compose deployment's observability: Prometheus scrapes the four services with a token it
renews, Grafana is provisioned with Prometheus and the dashboard (whose PromQL names real
metrics), and the four services send their traces to a collector that forwards them to Jaeger."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import yaml

from tests.integration import dashboard
from tests.integration.compose_file import (
    DEPLOY,
    TICKETING_SERVICES,
    bindings,
    compose_config,
    mounts,
    pinned_tag,
    secret_default,
)
from ticketing.shared.settings import Settings


def test_prometheus_scrapes_the_four_services_and_the_gateway_with_a_token_it_renews() -> None:
    services = compose_config()["services"]
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    config_file = DEPLOY / "prometheus" / "prometheus.yml"
    in_container = mounts(prometheus)[str(config_file)]
    (command,) = prometheus["command"]
    assert f"--config.file={in_container}" in command
    config = yaml.safe_load(config_file.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"inventory", "booking", "order", "gateway"}
    defaults = Settings()
    ports = {
        "inventory": defaults.inventory_port,
        "booking": defaults.booking_port,
        "order": defaults.order_port,
        "gateway": defaults.gateway_port,
    }
    for name, job in jobs.items():
        (static,) = job["static_configs"]
        assert static["targets"] == [f"{name}:{ports[name]}"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert {"backend"} <= set(prometheus["networks"]) & set(services[name]["networks"])
        if name != "gateway":
            assert not {"authorization", "oauth2", "basic_auth"} & set(job)
    # The gateway's /metrics takes any valid token: the client Prometheus uses holds no role,
    # gets the API's audience, and its secret is the file the entrypoint writes.
    oauth2 = jobs["gateway"]["oauth2"]
    realm = json.loads((DEPLOY / "keycloak" / "ticketing-realm.json").read_text())
    clients = {client["clientId"]: client for client in realm["clients"]}
    client = clients[oauth2["client_id"]]
    assert client["serviceAccountsEnabled"] is True
    roles = {u["serviceAccountClientId"]: u["realmRoles"] for u in realm["users"]}
    assert roles[oauth2["client_id"]] == []
    token_url = urlsplit(oauth2["token_url"])
    assert token_url.hostname == "keycloak"
    assert token_url.path == f"/realms/{realm['realm']}/protocol/openid-connect/token"
    secret_file = oauth2["client_secret_file"]
    assert f"> {secret_file} &&" in command
    assert any(secret_file.startswith(f"{path}/") for path in prometheus["tmpfs"])
    variable = "TICKETING_MONITORING_CLIENT_SECRET"
    assert f'"$${variable}"' in command
    assert variable in prometheus["environment"]
    keycloak = services["keycloak"]["environment"]
    assert prometheus["environment"][variable] == keycloak[variable]
    assert secret_default(client["secret"]) == keycloak[variable]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    services = compose_config()["services"]
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    mounted = mounts(grafana)
    provisioning = mounted[str(DEPLOY / "grafana" / "provisioning")]
    assert provisioning == "/etc/grafana/provisioning"
    dashboards_in_container = mounted[str(dashboard.DASHBOARD)]
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus"
    assert url.port == bindings(services["prometheus"])[0][2]
    assert set(grafana["networks"]) & set(services["prometheus"]["networks"])
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "ticketing.yml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == dashboards_in_container
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_in_container}/{dashboard.DASHBOARD_FILE.name}"

    board = dashboard.load()
    assert board["uid"]
    assert board["title"]
    ids = [panel["id"] for panel in dashboard.panels(board)]
    assert len(ids) == len(set(ids))
    for panel in dashboard.panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]
            assert dashboard.metric_names(target["expr"]), target["expr"]
    # What issue 22 asks the dashboard to show.
    assert {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "booking_outcomes_total",
        "booking_saga_duration_seconds_bucket",
        "outbox_pending_events",
        "outbox_oldest_pending_age_seconds",
        "consumer_lag_records",
        "consumer_dead_letters_total",
        "consumer_duplicates_total",
        "upstream_breaker_state",
        "gateway_breaker_state",
        "gateway_rate_limit_refusals_total",
    } <= dashboard.used_names(board)


def test_every_service_traces_to_the_collector_which_forwards_to_jaeger() -> None:
    services = compose_config()["services"]
    collector, jaeger = services["otel-collector"], services["jaeger"]
    pinned_tag(collector["image"], "otel/opentelemetry-collector-contrib")
    assert int(pinned_tag(jaeger["image"], "jaegertracing/jaeger").split(".")[0]) >= 2
    config_file = DEPLOY / "otel-collector" / "config.yaml"
    in_container = mounts(collector)[str(config_file)]
    assert collector["command"] == [f"--config={in_container}"]
    config = yaml.safe_load(config_file.read_text())

    # The OTLP receiver listens for other containers on the standard ports.
    protocols = config["receivers"]["otlp"]["protocols"]
    listening = {}
    for protocol, port in (("http", 4318), ("grpc", 4317)):
        host, _, bound = protocols[protocol]["endpoint"].rpartition(":")
        assert (host, int(bound)) == ("0.0.0.0", port), protocol
        listening[protocol] = port
    (pipeline,) = config["service"]["pipelines"].values()
    assert set(config["service"]["pipelines"]) == {"traces"}
    assert pipeline["receivers"] == ["otlp"]
    assert "batch" in pipeline["processors"]
    assert set(pipeline["processors"]) <= set(config["processors"])

    # Its exporter reaches Jaeger's OTLP receiver (gRPC 4317 for `otlp`, HTTP 4318 for
    # `otlphttp`), on a network both share.
    (exporter_name,) = pipeline["exporters"]
    kind = exporter_name.split("/")[0]
    endpoint = config["exporters"][exporter_name]["endpoint"]
    target = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    assert (kind, target.hostname, target.port) in {
        ("otlp", "jaeger", 4317),
        ("otlphttp", "jaeger", 4318),
    }, endpoint
    assert set(collector["networks"]) & set(jaeger["networks"])
    assert "jaeger" in collector["depends_on"]

    # Every ticketing service exports OTLP over HTTP to the collector, under its own name,
    # sampling at the root and following the parent's decision after it.
    for name in TICKETING_SERVICES:
        service = services[name]
        env = service["environment"]
        url = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (url.scheme, url.hostname, url.port) == (
            "http",
            "otel-collector",
            listening["http"],
        ), name
        assert url.path in ("", "/"), name
        assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in env, name
        for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
            assert env.get(variable, "http/protobuf") == "http/protobuf", (name, variable)
        assert env["OTEL_SERVICE_NAME"] == f"ticketing-{name}"
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio", name
        assert 0 < float(env["OTEL_TRACES_SAMPLER_ARG"]) <= 1, name
        assert env.get("OTEL_SDK_DISABLED", "false") != "true", name
        assert env.get("OTEL_TRACES_EXPORTER", "otlp") == "otlp", name
        assert set(service["networks"]) & set(collector["networks"]), name
        assert service["depends_on"]["otel-collector"]["condition"] == "service_started", name


def test_metric_names_are_read_out_of_promql() -> None:
    """The reading the dashboard checks rely on: functions, grouping labels, matchers, ranges,
    numbers and keywords are no metric names."""
    assert dashboard.metric_names(
        "histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket"
        '{route!~"/health/.*|/metrics", status=~"5.."}[$__rate_interval])))'
    ) == {"http_request_duration_seconds_bucket"}
    assert dashboard.metric_names(
        "sum(rate(a_sum[5m])) / sum(rate(a_count[5m])) or on (x) vector(0) > bool 1e3"
    ) == {"a_sum", "a_count"}
    assert dashboard.metric_names("max by (upstream) (gateway_breaker_state offset 5m)") == {
        "gateway_breaker_state"
    }
    assert dashboard.metric_names("sum without (instance) (up) unless ignoring (job) down") == {
        "up",
        "down",
    }
