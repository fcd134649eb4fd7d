"""The Helm chart (deploy/helm/kami), rendered with `helm template`:

- every manifest valid against the Kubernetes schemas (kubernetes-validate,
  strict: an unknown or misspelt field fails), on the oldest supported and
  the newest Kubernetes;
- each service wired as the code expects: its port, its probes, the settings
  its Settings class requires (constructed from the rendered environment),
  and only the secrets it reads;
- the topic Job, the autoscaler, the disruption budget and the monitoring
  resources pointing at what they must.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
from pydantic_settings import BaseSettings

from kami_cli.config import package_of
from kami_events.settings import ServiceSettings
from kami_local import SERVICES, generate_secrets
from kami_web.auth import AuthSettings
from tests.deploy.chart import (
    CHART,
    OLDEST_KUBERNETES,
    PRODUCTION_VALUES,
    REPO,
    Manifest,
    Rendered,
    RenderError,
    helm_template,
    load_values,
)

PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
SECRETS = generate_secrets()
# What the MongoDB operator's Secret holds in the production example.
PRODUCTION_MONGODB_URI = (
    "mongodb://kami:pw@kami-mongodb-0.kami-mongodb-svc.mongodb.svc:27017,"
    "kami-mongodb-1.kami-mongodb-svc.mongodb.svc:27017/?replicaSet=kami-mongodb&authSource=admin"
)
EXISTING_SECRETS = {**SECRETS, "connectionString.standard": PRODUCTION_MONGODB_URI}
# The web pages verify no token themselves: they forward the one sealed in the
# buyer's cookie to the services that do.
VERIFIES_TOKENS = set(SERVICES) - {"web"}


def _auth_env(service: str) -> set[str]:
    return _required_env(AuthSettings) if service in VERIFIES_TOKENS else set()


def _settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"{package_of(service)}.settings")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"kami_{service}.settings: expected one settings class, got {found}"
    return found[0]


def _env_names(settings: type[BaseSettings]) -> set[str]:
    return {f"KAMI_{name.upper()}" for name in settings.model_fields}


def _required_env(settings: type[BaseSettings]) -> set[str]:
    return {f"KAMI_{name.upper()}" for name, f in settings.model_fields.items() if f.is_required()}


@pytest.fixture(scope="module")
def chart_managed_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Values that make the chart create its own Secrets (no existing Secret)."""
    path = tmp_path_factory.mktemp("values") / "chart-managed-secrets.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "secrets": {"existingSecret": "", "values": SECRETS},
                "mongodb": {
                    "uri": "mongodb://mongo-0.mongo:27017,mongo-1.mongo:27017/?replicaSet=rs0"
                },
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "grafanaDashboards": {"enabled": True},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def renderings(helm: Path, chart_managed_values: Path) -> dict[str, Rendered]:
    return {
        "default": Rendered("default", helm_template(helm)),
        "production": Rendered("production", helm_template(helm, [PRODUCTION_VALUES])),
        "chart-managed-secrets": Rendered(
            "chart-managed-secrets", helm_template(helm, [chart_managed_values])
        ),
    }


def test_the_chart_supports_the_oldest_kubernetes_the_manifests_are_checked_on() -> None:
    chart = load_values(CHART / "Chart.yaml")
    assert chart["kubeVersion"] == f">={OLDEST_KUBERNETES}-0"


@pytest.mark.parametrize(
    "kube_version",
    [OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version()],
)
def test_every_rendered_manifest_is_valid_against_the_kubernetes_schemas(
    renderings: dict[str, Rendered], kube_version: str
) -> None:
    problems = []
    checked = 0
    for rendering in renderings.values():
        for manifest in rendering.manifests:
            if manifest["kind"] in PROMETHEUS_OPERATOR_KINDS:
                continue  # custom resources: no Kubernetes schema; checked below
            where = f"{rendering.name}: {manifest['kind']} {manifest['metadata']['name']}"
            try:
                kubernetes_validate.validate(manifest, kube_version, strict=True)
            except ValidationError as error:
                path = "/".join(str(p) for p in error.absolute_path)
                problems.append(f"{where}: {path}: {error.message}")
            except SchemaNotFoundError as error:
                problems.append(f"{where}: {error.message}")
            checked += 1
    assert not problems, "\n".join(problems)
    # default and production each render 7 services x (Deployment, Service, HPA, PDB, ConfigMap).
    assert checked >= 3 * 7 * 5


def test_each_service_runs_from_the_image_with_its_port_probes_and_resources(
    renderings: dict[str, Rendered],
) -> None:
    for rendering in renderings.values():
        for service, port in SERVICES.items():
            deployment = rendering.get("Deployment", f"kami-{service}")
            pod = deployment["spec"]["template"]
            (container,) = pod["spec"]["containers"]
            assert container["args"] == [service]  # ENTRYPOINT is `kami serve`
            assert container["ports"] == [
                {"name": "http", "containerPort": port, "protocol": "TCP"}
            ]
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert container["resources"]["requests"]["cpu"]
            assert container["resources"]["limits"]["memory"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
            # The selector picks exactly this service's pods.
            selector = deployment["spec"]["selector"]["matchLabels"]
            assert selector["app.kubernetes.io/component"] == service
            assert selector.items() <= pod["metadata"]["labels"].items()

            svc = rendering.get("Service", f"kami-{service}")
            assert svc["spec"]["selector"] == selector
            assert svc["spec"]["ports"] == [
                {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
            ]
            pdb = rendering.get("PodDisruptionBudget", f"kami-{service}")
            assert pdb["spec"]["selector"]["matchLabels"] == selector
            hpa = rendering.get("HorizontalPodAutoscaler", f"kami-{service}")
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"kami-{service}",
            }
            (metric,) = hpa["spec"]["metrics"]
            assert metric["resource"]["name"] == "cpu"
            # With an autoscaler the Deployment leaves the replica count to it.
            assert "replicas" not in deployment["spec"]


def test_each_service_starts_with_the_settings_its_code_requires(
    renderings: dict[str, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    production = load_values(PRODUCTION_VALUES)
    for rendering in renderings.values():
        for service, port in SERVICES.items():
            deployment = rendering.get("Deployment", f"kami-{service}")
            env = rendering.container_env(deployment, EXISTING_SECRETS)
            settings_class = _settings_class(service)
            missing = (_required_env(settings_class) | _auth_env(service)) - env.keys()
            assert not missing, f"{rendering.name}: {service} lacks {sorted(missing)}"

            # The service's own settings, built from exactly that environment.
            for name in [n for n in os.environ if n.upper().startswith("KAMI_")]:
                monkeypatch.delenv(name)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            settings: Any = settings_class()
            if service in VERIFIES_TOKENS:
                AuthSettings()  # from the environment: raises if a value is missing or invalid
            assert settings.service_name == service
            assert settings.http_port == port
            assert settings.http_host == "0.0.0.0"
            assert settings.database_name == f"kami_{service}"
            if rendering.name == "production":
                assert settings.kafka_bootstrap == production["kafka"]["bootstrap"]
                assert settings.mongodb_uri == PRODUCTION_MONGODB_URI
            if service == "payment":
                assert settings.payment_simulator_enabled is False
                if rendering.name == "production":
                    assert settings.payment_settle_on == "completed"
            if service == "delivery":
                assert settings.delivery_inventory_url == "http://kami-inventory:8103"


def test_a_service_receives_only_the_secrets_it_reads(renderings: dict[str, Rendered]) -> None:
    for rendering in renderings.values():
        for service in SERVICES:
            deployment = rendering.get("Deployment", f"kami-{service}")
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            secret_env = {
                e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
            }
            reads = _env_names(_settings_class(service))
            if service in VERIFIES_TOKENS:
                reads |= _env_names(AuthSettings)
            assert secret_env - reads == set(), (
                f"{rendering.name}: {service} gets secrets it never reads"
            )


def test_the_chart_makes_its_own_secrets_only_when_given_every_value(
    renderings: dict[str, Rendered], helm: Path
) -> None:
    assert renderings["default"].names("Secret") == {"kami-mongodb"}
    assert renderings["production"].names("Secret") == set()
    assert renderings["chart-managed-secrets"].names("Secret") == {"kami-secrets", "kami-mongodb"}

    with pytest.raises(
        RenderError, match=r"secrets\.values\.KAMI_INVENTORY_MASTER_KEY is required"
    ):
        helm_template(
            helm,
            set_values=[
                "secrets.existingSecret=",
                *(f"secrets.values.{k}=x" for k in SECRETS if k != "KAMI_INVENTORY_MASTER_KEY"),
            ],
        )


def test_a_false_in_a_service_overrides_the_defaults(helm: Path) -> None:
    # Sprig's mergeOverwrite would keep the default `true`; the chart's own merge must not.
    rendering = Rendered(
        "payment-without-autoscaler",
        helm_template(
            helm,
            set_values=[
                "services.payment.autoscaling.enabled=false",
                "services.payment.replicas=3",
                "services.catalog.podDisruptionBudget.enabled=false",
            ],
        ),
    )
    assert "kami-payment" not in rendering.names("HorizontalPodAutoscaler")
    assert rendering.get("Deployment", "kami-payment")["spec"]["replicas"] == 3
    assert "kami-ordering" in rendering.names("HorizontalPodAutoscaler")
    assert "kami-catalog" not in rendering.names("PodDisruptionBudget")
    assert "kami-identity" in rendering.names("PodDisruptionBudget")


def test_a_disabled_service_leaves_nothing_behind(helm: Path) -> None:
    rendering = Rendered(
        "without-aftersales", helm_template(helm, set_values=["services.aftersales.enabled=false"])
    )
    names = {m["metadata"]["name"] for m in rendering.manifests}
    assert "kami-aftersales" not in names
    for config_map in rendering.of_kind("ConfigMap"):
        assert not [k for k in config_map["data"] if k.endswith("_AFTERSALES_URL")]


def _topic_job(rendering: Rendered) -> Manifest:
    (job,) = rendering.of_kind("Job")
    return job


def test_topics_are_created_by_a_hook_job_before_the_services_start(
    renderings: dict[str, Rendered],
) -> None:
    defaults = load_values(CHART / "values.yaml")["kafka"]
    production = load_values(PRODUCTION_VALUES)["kafka"]
    for name, kafka in [("default", defaults), ("production", production)]:
        job = _topic_job(renderings[name])
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        command = container["command"] + container["args"]
        assert command == [
            "kami",
            "topics",
            "create",
            "--partitions",
            str(kafka["topics"]["partitions"]),
            "--replication-factor",
            str(kafka["topics"]["replicationFactor"]),
        ]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["KAMI_KAFKA_BOOTSTRAP"] == kafka["bootstrap"]
    assert production["topics"]["partitions"] != defaults["topics"]["partitions"]


def test_the_service_monitor_scrapes_every_service_and_keeps_their_service_label(
    renderings: dict[str, Rendered],
) -> None:
    assert renderings["default"].of_kind("ServiceMonitor") == []
    for name in ("production", "chart-managed-secrets"):
        rendering = renderings[name]
        (monitor,) = rendering.of_kind("ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selector = monitor["spec"]["selector"]["matchLabels"]
        scraped = {
            s["metadata"]["name"]
            for s in rendering.of_kind("Service")
            if selector.items() <= s["metadata"]["labels"].items()
        }
        assert scraped == {f"kami-{s}" for s in SERVICES}
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "http"
        assert endpoint["path"] == "/metrics"
        assert endpoint["honorLabels"] is True
    (production_monitor,) = renderings["production"].of_kind("ServiceMonitor")
    assert production_monitor["metadata"]["labels"]["release"] == "prometheus"


def test_the_prometheus_rule_carries_the_alert_rules_file(renderings: dict[str, Rendered]) -> None:
    alerts = load_values(REPO / "deploy" / "prometheus" / "alerts.yaml")
    (rule,) = renderings["production"].of_kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == alerts["groups"]


def test_the_dashboards_ship_as_configmaps_for_the_grafana_sidecar(
    renderings: dict[str, Rendered],
) -> None:
    dashboards = sorted((REPO / "deploy" / "grafana").glob("*.json"))
    config_maps = [
        m
        for m in renderings["production"].of_kind("ConfigMap")
        if m["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    shipped = {key: text for m in config_maps for key, text in m["data"].items()}
    assert shipped.keys() == {d.name for d in dashboards}
    for dashboard in dashboards:
        assert shipped[dashboard.name] == dashboard.read_text().rstrip("\n")


def test_a_topic_prefix_reaches_the_services_and_the_topic_job(helm: Path) -> None:
    rendering = Rendered(
        "staging-prefix", helm_template(helm, set_values=["kafka.topicPrefix=staging"])
    )
    assert rendering.get("ConfigMap", "kami-config")["data"]["KAMI_TOPIC_PREFIX"] == "staging"
    (container,) = _topic_job(rendering)["spec"]["template"]["spec"]["containers"]
    assert {"name": "KAMI_TOPIC_PREFIX", "value": "staging"} in container["env"]
