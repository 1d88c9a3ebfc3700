"""The production deployment files in cluster/deploy/ agree with the code.

Static checks only: every YAML file is parsed and compared with ``foundation.settings.Settings``, the
typer app of ``cluster.cli``, ``foundation.topics`` and Faust's own topic naming; the Dockerfile is read as
text. Nothing here talks to a Kubernetes, Kafka or Ray cluster, builds the image, or runs ``kubectl`` or
``ray up``: whether the operators accept the resources is for a real cluster to tell.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import faust
import pytest
import typer
import yaml
from pydantic import ValidationError
from ray.autoscaler._private.util import validate_config
from typer.main import get_command_name

from cluster.cli import app as cli_app
from foundation import topics
from foundation.settings import DEMO_ENCOUNTER_REF_KEY, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "cluster" / "deploy"
KUBE = DEPLOY / "kubernetes"
TOPICS_FILE = DEPLOY / "kafka" / "topics.yaml"
RAY_UP_FILE = DEPLOY / "ray" / "cluster.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SECRET_EXAMPLE = "secret.example.yaml"
TLS_SECRET_EXAMPLE = "tls-secret.example.yaml"
PLACEHOLDER = "CHANGE-ME"
ENCOUNTER_TABLE = "encounters"  # the Faust table of streams/app.py
READY_FILE = "worker.ready"  # what streams/worker.py writes in the run directory
FIELDS = {f"HCSYNC_{name.upper()}" for name in Settings.model_fields}
ENV_NAME = re.compile(r"\bHCSYNC_[A-Z0-9_]*[A-Z0-9]\b")

Doc = dict[str, Any]


def _load(path: Path) -> list[Doc]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a YAML document that is not a mapping"
    return docs


@pytest.fixture(scope="module")
def files() -> dict[Path, list[Doc]]:
    found = {path: _load(path) for path in sorted(DEPLOY.rglob("*.yaml"))}
    assert KUBE / "kustomization.yaml" in found and TOPICS_FILE in found and RAY_UP_FILE in found
    return found


@pytest.fixture(scope="module")
def manifests(files: dict[Path, list[Doc]]) -> list[Doc]:
    """Every Kubernetes object of kubernetes/ (the Secret example included, the Kustomization not)."""
    return [
        doc
        for path, docs in files.items()
        if path.parent == KUBE
        for doc in docs
        if doc.get("kind") != "Kustomization"
    ]


def _of_kind(manifests: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in manifests if doc["kind"] == kind]


def _named(manifests: list[Doc], kind: str, name: str) -> Doc:
    found = [doc for doc in _of_kind(manifests, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def config(manifests: list[Doc]) -> dict[str, str]:
    data: dict[str, str] = _named(manifests, "ConfigMap", "hcsync-config")["data"]
    return data


@pytest.fixture(scope="module")
def secret(manifests: list[Doc]) -> Doc:
    return _named(manifests, "Secret", "hcsync-secrets")


def _pod_specs(doc: Doc) -> Iterator[Doc]:
    if doc["kind"] == "Deployment":
        yield doc["spec"]["template"]["spec"]
    elif doc["kind"] == "RayCluster":
        yield doc["spec"]["headGroupSpec"]["template"]["spec"]
        for group in doc["spec"]["workerGroupSpecs"]:
            yield group["template"]["spec"]


def _containers(doc: Doc) -> Iterator[Doc]:
    for spec in _pod_specs(doc):
        yield from spec.get("initContainers", [])
        yield from spec["containers"]


def _deployment_container(manifests: list[Doc], name: str) -> Doc:
    containers = list(_containers(_named(manifests, "Deployment", name)))
    assert len(containers) == 1, f"{name}: one container expected"
    return containers[0]


def _env(container: Doc) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def _commands() -> dict[str, set[str]]:
    """Top-level command names of the typer app, each group with its subcommand names."""
    names: dict[str, set[str]] = {}
    for command in cli_app.registered_commands:
        assert command.callback is not None
        names[command.name or get_command_name(command.callback.__name__)] = set()
    for group in cli_app.registered_groups:
        sub: typer.Typer | None = group.typer_instance
        assert group.name is not None and sub is not None
        names[group.name] = {
            command.name or get_command_name(command.callback.__name__)
            for command in sub.registered_commands
            if command.callback is not None
        }
    return names


def _groups() -> set[str]:
    return {group.name for group in cli_app.registered_groups if group.name is not None}


def _check_argv(argv: list[str], where: str) -> None:
    commands = _commands()
    assert argv[:1] == ["hcsync"], f"{where}: runs {argv}, not hcsync"
    assert len(argv) >= 2 and argv[1] in commands, f"{where}: `hcsync {argv[1:]}` is not a command"
    if argv[1] in _groups():
        assert len(argv) >= 3 and argv[2] in commands[argv[1]], f"{where}: `{' '.join(argv)}` unknown"
    if argv[1] == "serve":
        assert argv[2:3] in (["billing"], ["erp"]), f"{where}: serve takes billing or erp"


def test_every_file_parses(files: dict[Path, list[Doc]]) -> None:
    for path, docs in files.items():
        assert docs, f"{path} is empty"
        for doc in docs:
            if path == RAY_UP_FILE:
                assert doc["cluster_name"]
            elif doc.get("kind") == "Kustomization":
                assert doc["apiVersion"].startswith("kustomize.config.k8s.io/")
            else:
                assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], path


def test_kubernetes_objects_share_one_namespace(manifests: list[Doc], files: dict[Path, list[Doc]]) -> None:
    (namespace,) = _of_kind(manifests, "Namespace")
    name = namespace["metadata"]["name"]
    (kustomization,) = files[KUBE / "kustomization.yaml"]
    assert kustomization["namespace"] == name
    for doc in manifests:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == name, doc["metadata"]["name"]


def test_environment_names_are_settings(
    manifests: list[Doc], config: dict[str, str], secret: Doc, files: dict[Path, list[Doc]]
) -> None:
    allowed = FIELDS | {"RAY_ADDRESS"}
    for key in [*config, *secret.get("stringData", {}), *secret.get("data", {})]:
        assert key in allowed, f"{key} (ConfigMap/Secret) is not a Settings field nor RAY_ADDRESS"
    for doc in manifests:
        for container in _containers(doc):
            for name in _env(container):
                assert not name.startswith("HCSYNC_") or name in FIELDS, f"{name} is not a Settings field"
    # Also every HCSYNC_ name written anywhere here, comments and README included: no stale names.
    for path in [*files, DOCKERFILE, DEPLOY / "README.md"]:
        for name in ENV_NAME.findall(path.read_text("utf-8")):
            assert name in FIELDS, f"{path.name}: {name} is not a Settings field"


def test_configmap_and_secret_make_valid_settings(
    config: dict[str, str], secret: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("HCSYNC_") or name == "RAY_ADDRESS":
            monkeypatch.delenv(name)
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    # As shipped, the example's placeholders are refused: a copy applied unedited never runs.
    for name, value in secret["stringData"].items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=r"HCSYNC_\w+ holds a placeholder"):
        Settings(_env_file=None)
    # Filled in, every secret by its own value: the URLs of the ConfigMap get their passwords.
    filled = {name: secrets.token_hex(32) for name in secret["stringData"]}
    for name, value in filled.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.kafka_bootstrap and settings.redis_url and settings.ray_address
    assert settings.billing_target and settings.erp_target and settings.run_dir is not None
    assert settings.encounter_ref_key.get_secret_value() == filled["HCSYNC_ENCOUNTER_REF_KEY"]
    assert filled["HCSYNC_REDIS_PASSWORD"] in settings.redis
    assert filled["HCSYNC_REDIS_PASSWORD"] not in settings.redis_location
    passwords = {
        "billing": "HCSYNC_BILLING_DATABASE_PASSWORD",
        "erp": "HCSYNC_ERP_DATABASE_PASSWORD",
        "quarantine": "HCSYNC_QUARANTINE_DATABASE_PASSWORD",
        "message_store": "HCSYNC_MESSAGE_STORE_PASSWORD",
        "audit": "HCSYNC_AUDIT_DATABASE_PASSWORD",
    }
    for store, password in passwords.items():
        url = settings.database_url(store)  # type: ignore[arg-type]  # the DatabaseStore names
        assert url is not None and f":{filled[password]}@" in url, store
    # The demo key with these systems is refused, naming the setting.
    monkeypatch.setenv("HCSYNC_ENCOUNTER_REF_KEY", DEMO_ENCOUNTER_REF_KEY)
    with pytest.raises(ValidationError, match="HCSYNC_ENCOUNTER_REF_KEY is the public demo key"):
        Settings(_env_file=None)


def test_configmap_urls_hold_no_credentials(config: dict[str, str]) -> None:
    for name, value in config.items():
        if "://" in value:
            assert urlsplit(value).password is None, f"{name}: a password belongs in hcsync-secrets"


def test_containers_run_hcsync_subcommands(manifests: list[Doc]) -> None:
    deployments = _of_kind(manifests, "Deployment")
    assert {doc["metadata"]["name"] for doc in deployments} >= {
        "hcsync-worker",
        "hcsync-billing",
        "hcsync-erp",
        "hcsync-mllp",
    }
    for doc in deployments:
        for container in _containers(doc):
            argv = [*container.get("command", []), *container.get("args", [])]
            _check_argv(argv, f"{doc['metadata']['name']}/{container['name']}")
    for doc in _of_kind(manifests, "RayCluster"):
        for container in _containers(doc):
            # KubeRay writes its own `ray start` command; one given here would be run before it.
            assert "command" not in container and "args" not in container, container["name"]


def test_commands_in_comments_and_readme_exist() -> None:
    mention = re.compile(r"(?:^|-- |`)hcsync ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", re.MULTILINE)
    paths = [*DEPLOY.rglob("*.yaml"), DOCKERFILE, DEPLOY / "README.md"]
    commands = _commands()
    seen = 0
    for path in paths:
        for first, second in mention.findall(path.read_text("utf-8")):
            seen += 1
            assert first in commands, f"{path.name}: `hcsync {first}` is not a command"
            if first in _groups() and second:
                assert second in commands[first], f"{path.name}: `hcsync {first} {second}` is not a command"
    assert seen


def _changelog_and_leader(settings_id: str) -> tuple[str, str]:
    """Faust's own names for the encounters table's changelog topic and its leader topic."""
    app = faust.App(settings_id, broker="kafka://localhost:1", store="memory://", web_enabled=False)
    table = app.Table(ENCOUNTER_TABLE, default=None)
    changelog: str = table.changelog_topic.get_topic_name()
    leader: str = cast(Any, app._leader_assignor)._leader_topic_name
    return changelog, leader


def test_every_topic_has_a_kafkatopic(files: dict[Path, list[Doc]], config: dict[str, str]) -> None:
    prefix = config.get("HCSYNC_TOPIC_PREFIX", "")
    app_id = config.get("HCSYNC_APP_ID", Settings.model_fields["app_id"].default)
    partitions = int(config["HCSYNC_TOPIC_PARTITIONS"])
    changelog, leader = _changelog_and_leader(f"{prefix}{app_id}")
    assert changelog == f"{prefix}{app_id}-{ENCOUNTER_TABLE}-changelog"
    declared: dict[str, Doc] = {}
    for doc in files[TOPICS_FILE]:
        assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2" and doc["kind"] == "KafkaTopic"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"]
        name = doc["spec"].get("topicName", doc["metadata"]["name"])
        assert name not in declared, f"{name} declared twice"
        declared[name] = doc["spec"]
    expected = {f"{prefix}{name}" for name in topics.ALL} | {changelog}
    assert set(declared) - {leader} == expected
    for name in expected:
        spec = declared[name]
        assert spec["partitions"] == partitions, f"{name}: partitions differ from HCSYNC_TOPIC_PARTITIONS"
        assert spec["replicas"] >= 3 and 2 <= spec["config"]["min.insync.replicas"] < spec["replicas"], name
        policy = "compact" if name == changelog else "delete"
        assert spec["config"]["cleanup.policy"] == policy, name
    assert declared[f"{prefix}{topics.RAW_HL7V2}"]["config"]["retention.ms"] >= 14 * 24 * 3600 * 1000
    if leader in declared:
        assert declared[leader]["partitions"] == 1  # Faust declares its leader topic with one partition
    clusters = {doc["metadata"]["labels"]["strimzi.io/cluster"] for doc in files[TOPICS_FILE]}
    assert len(clusters) == 1
    assert config["HCSYNC_KAFKA_BOOTSTRAP"].startswith(f"{clusters.pop()}-kafka-bootstrap")


def test_worker_replicas_fit_the_partitions(manifests: list[Doc], config: dict[str, str]) -> None:
    worker = _named(manifests, "Deployment", "hcsync-worker")
    assert 1 <= worker["spec"]["replicas"] <= int(config["HCSYNC_TOPIC_PARTITIONS"])
    labels = worker["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb
        for pdb in _of_kind(manifests, "PodDisruptionBudget")
        if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert budgets, "the worker has no PodDisruptionBudget"


def test_worker_readiness_reads_the_ready_file(manifests: list[Doc], config: dict[str, str]) -> None:
    worker = _named(manifests, "Deployment", "hcsync-worker")
    container = _deployment_container(manifests, "hcsync-worker")
    run_dir = config["HCSYNC_RUN_DIR"]
    assert container["readinessProbe"]["exec"]["command"] == ["test", "-f", f"{run_dir}/{READY_FILE}"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in worker["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[run_dir]], "the run directory must be a per-pod emptyDir"
    for ref in container["envFrom"]:
        assert ref.get("configMapRef", ref.get("secretRef"))["name"] in {"hcsync-config", "hcsync-secrets"}


@pytest.mark.parametrize(
    ("name", "port_field", "host_var"),
    [
        ("hcsync-billing", "billing_port", "HCSYNC_GRPC_HOST"),
        ("hcsync-erp", "erp_port", "HCSYNC_GRPC_HOST"),
        ("hcsync-mllp", "mllp_port", "HCSYNC_MLLP_HOST"),
    ],
)
def test_service_ports_are_the_settings_defaults(
    manifests: list[Doc], config: dict[str, str], name: str, port_field: str, host_var: str
) -> None:
    default = Settings.model_fields[port_field].default
    service = _named(manifests, "Service", name)
    deployment = _named(manifests, "Deployment", name)
    container = _deployment_container(manifests, name)
    (port,) = service["spec"]["ports"]
    (container_port,) = container["ports"]
    assert port["port"] == default and container_port["containerPort"] == default
    assert port["targetPort"] in (container_port["name"], default)
    assert container["readinessProbe"]["tcpSocket"]["port"] in (container_port["name"], default)
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert _env(container)[host_var] == "0.0.0.0", f"{name} must listen on the pod IP"
    target = {"billing_port": "HCSYNC_BILLING_TARGET", "erp_port": "HCSYNC_ERP_TARGET"}.get(port_field)
    if target is not None:
        assert config[target] == f"{name}:{default}"


def test_raycluster_has_head_and_bounded_worker_group(manifests: list[Doc], config: dict[str, str]) -> None:
    (cluster,) = _of_kind(manifests, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    (head,) = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert spec["workerGroupSpecs"], "no worker group for the transform actors"
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    for container in _containers(cluster):
        assert container["resources"]["requests"] and container["resources"]["limits"], container["name"]
    client_port = next(port["containerPort"] for port in head["ports"] if port["name"] == "client")
    assert config["HCSYNC_RAY_ADDRESS"] == f"ray://{cluster['metadata']['name']}-head-svc:{client_port}"


def test_ray_up_config_is_valid(files: dict[Path, list[Doc]]) -> None:
    (cluster,) = files[RAY_UP_FILE]
    validate_config(cluster)  # Ray's own schema check of a `ray up` config
    node_types = cluster["available_node_types"]
    assert cluster["head_node_type"] in node_types
    workers = {name: node for name, node in node_types.items() if name != cluster["head_node_type"]}
    assert workers, "no worker node type for the transform actors"
    for name, node in workers.items():
        assert 0 <= node["min_workers"] <= node["max_workers"] <= cluster["max_workers"], name
    assert cluster["idle_timeout_minutes"] > 0 and cluster["upscaling_speed"] > 0
    assert "/hcsync:" in cluster["docker"]["image"]


def test_one_hcsync_image_everywhere(manifests: list[Doc], files: dict[Path, list[Doc]]) -> None:
    images = {container["image"] for doc in manifests for container in _containers(doc)}
    assert len(images) == 1 and images.pop().split(":")[0].endswith("hcsync")
    (kustomization,) = files[KUBE / "kustomization.yaml"]
    assert [image["name"] for image in kustomization["images"]] == ["hcsync"]


def test_kustomization_lists_every_manifest(files: dict[Path, list[Doc]]) -> None:
    (kustomization,) = files[KUBE / "kustomization.yaml"]
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    present = {path.name for path in KUBE.glob("*.yaml")} - {"kustomization.yaml", SECRET_EXAMPLE}
    present -= {name for name in present if name.endswith(".example.yaml")}  # the gRPC Secrets' too
    assert set(listed) == present
    # Applying the example would overwrite the real Secret with placeholders.
    assert SECRET_EXAMPLE not in listed and TLS_SECRET_EXAMPLE not in listed


def test_secret_example_holds_only_placeholders(secret: Doc) -> None:
    assert "data" not in secret, "base64 data cannot be checked for placeholders: use stringData"
    values: dict[str, str] = secret["stringData"]
    assert "HCSYNC_ENCOUNTER_REF_KEY" in values
    for name, value in values.items():
        assert PLACEHOLDER in value and value != DEMO_ENCOUNTER_REF_KEY, f"{name} looks like a real value"
    # Credentials in URLs anywhere under cluster/deploy are placeholders too.
    credentials = re.compile(r"://[^\s/:@\"']+:[^\s/@\"']+@")
    for path in [*DEPLOY.rglob("*.yaml"), DOCKERFILE, DEPLOY / "README.md"]:
        for found in credentials.findall(path.read_text("utf-8")):
            assert PLACEHOLDER in found, f"{path.name}: {found} looks like a real credential"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (keyword, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text("utf-8"))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_installs_the_project_as_non_root() -> None:
    text = DOCKERFILE.read_text("utf-8")
    assert "docker build -f cluster/deploy/Dockerfile -t hcsync:VERSION ." in text
    instructions = _instructions()
    base = next(rest for keyword, rest in instructions if keyword == "FROM")
    assert base.startswith("python:3.11-slim")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert pyproject["project"]["requires-python"] == ">=3.11"
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    assert any(re.search(r"\bpip install (?:\S+ )*\.(?:\s|$)", run) for run in runs), "no `pip install .`"
    assert not any("[dev]" in rest for _, rest in instructions), "dev extras in the image"
    copied = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert re.search(rf"\b{package.rstrip('*')}\b", copied), f"{package} is not copied into the image"
    assert "pyproject.toml" in copied and pyproject["project"]["readme"] in copied
    users = [rest.split(":")[0] for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    (entrypoint,) = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["hcsync"]
    assert "hcsync" in pyproject["project"]["scripts"]


# -- gRPC: NetworkPolicies and TLS / token Secrets (docs/security.md) ----------------------------------
GRPC_SERVERS = {"hcsync-billing": "billing_port", "hcsync-erp": "erp_port"}


def _labels(manifests: list[Doc], deployment: str) -> dict[str, str]:
    labels: dict[str, str] = _named(manifests, "Deployment", deployment)["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    return bool(selector.get("matchLabels", {}).items() <= labels.items()) and not selector.get(
        "matchExpressions"
    )


def test_ingress_is_denied_by_default_and_opened_per_path(manifests: list[Doc]) -> None:
    policies = _of_kind(manifests, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny and "Ingress" in deny[0]["spec"]["policyTypes"], "no default deny of ingress"
    worker = _labels(manifests, "hcsync-worker")
    for name, port_field in GRPC_SERVERS.items():
        labels = _labels(manifests, name)
        port = Settings.model_fields[port_field].default
        admitting = [
            p for p in policies if p["spec"]["podSelector"] and _selects(p["spec"]["podSelector"], labels)
        ]
        assert admitting, f"{name}: no policy admits anything"
        for policy in admitting:
            for rule in policy["spec"]["ingress"]:
                # Only the workers' pods, only on the gRPC port.
                assert [peer.keys() for peer in rule["from"]] == [{"podSelector"}], policy["metadata"]["name"]
                assert all(_selects(peer["podSelector"], worker) for peer in rule["from"])
                assert [(p["port"], p["protocol"]) for p in rule["ports"]] == [(port, "TCP")]
    mllp = _labels(manifests, "hcsync-mllp")
    (senders,) = [
        p for p in policies if p["spec"]["podSelector"] and _selects(p["spec"]["podSelector"], mllp)
    ]
    for rule in senders["spec"]["ingress"]:
        assert all(set(peer) == {"ipBlock"} for peer in rule["from"]), (
            "MLLP admits its senders' addresses only"
        )
        assert [p["port"] for p in rule["ports"]] == [Settings.model_fields["mllp_port"].default]


def _mounted_secret(manifests: list[Doc], deployment: str, path: str) -> str:
    """The Secret mounted where ``path`` lies in the Deployment's one container."""
    container = _deployment_container(manifests, deployment)
    volumes = {
        v["name"]: v
        for v in _named(manifests, "Deployment", deployment)["spec"]["template"]["spec"]["volumes"]
    }
    for mount in container["volumeMounts"]:
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            assert mount.get("readOnly"), f"{deployment}: {mount['mountPath']} must be read-only"
            secret: str = volumes[mount["name"]]["secret"]["secretName"]
            return secret
    raise AssertionError(f"{deployment}: nothing is mounted at {path}")


def test_grpc_servers_and_workers_get_tls_and_token_files(
    manifests: list[Doc], config: dict[str, str], secret: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls_secrets = {doc["metadata"]["name"]: doc for doc in _of_kind(manifests, "Secret")}
    needs = {
        "hcsync-billing": [
            "HCSYNC_GRPC_SERVER_CERT_FILE",
            "HCSYNC_GRPC_SERVER_KEY_FILE",
            "HCSYNC_GRPC_TOKEN_PUBLIC_KEY_FILE",
        ],
        "hcsync-erp": [
            "HCSYNC_GRPC_SERVER_CERT_FILE",
            "HCSYNC_GRPC_SERVER_KEY_FILE",
            "HCSYNC_GRPC_TOKEN_PUBLIC_KEY_FILE",
        ],
        "hcsync-worker": [
            "HCSYNC_GRPC_CLIENT_CERT_FILE",
            "HCSYNC_GRPC_CLIENT_KEY_FILE",
            "HCSYNC_GRPC_TOKEN_FILE",
        ],
    }
    for deployment, names in needs.items():
        env = _env(_deployment_container(manifests, deployment))
        files = {name: env[name] for name in names} | {"HCSYNC_GRPC_CA_FILE": config["HCSYNC_GRPC_CA_FILE"]}
        for name, path in files.items():
            mounted = _mounted_secret(manifests, deployment, path)
            assert mounted in tls_secrets, f"{deployment}: {mounted} is not in {TLS_SECRET_EXAMPLE}"
            assert Path(path).name in tls_secrets[mounted]["stringData"], f"{deployment}: {name} {path}"
        # What the process reads: complete, valid settings, mutual TLS on.
        for variable in list(os.environ):
            if variable.startswith("HCSYNC_") or variable == "RAY_ADDRESS":
                monkeypatch.delenv(variable)
        # The example Secret's placeholders are refused (another test): each filled in by a value of its own.
        filled = {name: secrets.token_hex(32) for name in secret["stringData"]}
        for variable, value in {**config, **filled, **env}.items():
            monkeypatch.setenv(variable, value)
        settings = Settings(_env_file=None)
        assert settings.grpc_require_client_cert and not settings.grpc_insecure
        for name in names:
            assert getattr(settings, name.removeprefix("HCSYNC_").lower()) is not None


def test_tls_secret_example_holds_only_placeholders(files: dict[Path, list[Doc]]) -> None:
    docs = files[KUBE / TLS_SECRET_EXAMPLE]
    assert {doc["kind"] for doc in docs} == {"Secret"}
    for doc in docs:
        assert "data" not in doc, "base64 data cannot be checked for placeholders: use stringData"
        for name, value in doc["stringData"].items():
            assert PLACEHOLDER in value and "-----BEGIN" not in value, f"{doc['metadata']['name']}: {name}"
