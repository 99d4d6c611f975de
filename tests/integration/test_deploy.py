"""The deployment files: the compose file validates and keeps its promises, the Keycloak realm
matches the dev OIDC server, and the image runs as a non-root user with no secrets inside."""

from __future__ import annotations

import json
import re

from tests.integration.compose_file import (
    DEPLOY,
    bindings,
    compose_config,
    secret_default,
)


def test_compose_file_is_valid_and_production_shaped() -> None:
    config = compose_config()
    services = config["services"]
    assert {
        "mysql",
        "kafka",
        "keycloak",
        "kafka-ui",
        "migrate",
        "inventory",
        "booking",
        "order",
        "gateway",
        "prometheus",
        "grafana",
        "otel-collector",
        "jaeger",
    } <= set(services)
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway", "keycloak", "kafka-ui", "prometheus", "grafana", "jaeger"}
    # The monitoring UIs are for an operator on the host, not for the network.
    assert bindings(services["prometheus"]) == [("127.0.0.1", 9090, 9090)]
    assert bindings(services["grafana"]) == [("127.0.0.1", 3000, 3000)]
    assert bindings(services["jaeger"]) == [("127.0.0.1", 16686, 16686)]
    assert config["networks"]["backend"]["internal"] is True
    # The migration runs once; the collector's image has nothing to run a check with.
    for name, service in services.items():
        if name not in ("migrate", "otel-collector"):
            assert "healthcheck" in service, name
    for name in ("inventory", "booking", "order"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["command"] == ["serve", name]
    images = {services[n]["image"] for n in ("migrate", "inventory", "booking", "order", "gateway")}
    assert images == {"ticketing:latest"}
    assert services["mysql"]["image"].startswith("mysql:8.4")
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    assert services["kafka-ui"]["ports"][0]["published"] in (8084, "8084")


def test_image_runs_unprivileged_without_secrets() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")
    for line in dockerfile.splitlines():
        if line.startswith(("ENV", "ARG")) or line.startswith("    "):
            assert not re.search(r"SECRET|PASSWORD|TOKEN", line), line


def test_keycloak_realm_matches_the_dev_server() -> None:
    dev = json.loads((DEPLOY / "dev-idp" / "realm.json").read_text())
    keycloak = json.loads((DEPLOY / "keycloak" / "ticketing-realm.json").read_text())
    assert keycloak["realm"] == dev["realm"]
    assert {role["name"] for role in keycloak["roles"]["realm"]} == set(dev["permissions"])
    roles_of = {
        user["serviceAccountClientId"]: set(user["realmRoles"]) for user in keycloak["users"]
    }
    clients = {client["clientId"]: client for client in keycloak["clients"]}
    assert set(clients) == {client["client_id"] for client in dev["clients"]}
    for expected in dev["clients"]:
        client = clients[expected["client_id"]]
        assert client["serviceAccountsEnabled"] is True
        assert secret_default(client["secret"]) == expected["client_secret"]
        assert roles_of[expected["client_id"]] == set(expected["roles"])
        audiences = {
            mapper["config"]["included.custom.audience"]
            for mapper in client["protocolMappers"]
            if mapper["protocolMapper"] == "oidc-audience-mapper"
        }
        assert audiences == {dev["audience"]}
    assert keycloak["accessTokenLifespan"] == dev["access_token_ttl_seconds"]
