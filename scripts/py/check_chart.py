"""Renders the Helm chart with real Helm and checks every object it makes.

Usage: $CLS_CACHE/venv-deploy/bin/python scripts/py/check_chart.py
(scripts/setup.sh makes that venv from scripts/requirements-deploy.txt)

Helm is helm-python-sdk: Helm's own Go SDK as a shared library, so neither a
helm binary nor a cluster is needed. For the chart's default values and for
ci/all-options-values.yaml (every option on) this

1. lints the chart as `helm lint --strict` does, for each Kubernetes version
   below (deprecated and removed APIs are reported per version);
2. renders it and validates every object against that version's OpenAPI
   schemas with kubernetes-validate, in strict mode (an unknown or misplaced
   field is an error, not silently dropped as the API server would);
3. checks what the chart promises: rollouts never lower capacity, the probes
   hit /readyz and /livez, secrets are only ever referenced, each replica is
   named after its pod, the pods run locked down, the values reach the pod.

It also renders values the chart must refuse, and expects each refusal.

Prints one summary line and exits 0, or one line per problem and exits 1.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

try:
    import helm_python as helm
    import kubernetes_validate
    import yaml
except ImportError as missing:
    sys.exit(
        f"check_chart: {missing}: run this with $CLS_CACHE/venv-deploy/bin/python "
        "(scripts/setup.sh makes it)"
    )

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/configurable-ls-backend"
CI_VALUES = CHART / "ci/all-options-values.yaml"

# The oldest Kubernetes the chart supports (its Chart.yaml kubeVersion) and
# the newest kubernetes-validate has schemas for.
KUBERNETES_VERSIONS = ("1.25", "1.37")

RELEASE = "cls"
NAMESPACE = "labeling"
STATE_DIR = "/var/lib/configurable-ls-backend"
IMAGE_UID = 10001
SECRET_ENV = {
    "CLS_STORE": ("store",),
    "ADMIN_TOKEN": ("adminToken",),
    "LABEL_STUDIO_API_KEY": ("labelStudio", "apiKey"),
}

# Values the chart must refuse at render time, with a word of the reason.
REFUSED = [
    (
        "an extra variable that the chart sets itself",
        {"app": {"extraEnvironmentVars": {"CLS_PORT": "8080"}}},
        "is set by the chart itself",
    ),
    (
        "one variable both plain and from a Secret",
        {
            "app": {
                "extraEnvironmentVars": {"RUST_LOG": "info"},
                "extraEnvironmentSecrets": {"RUST_LOG": {"secretName": "s", "secretKey": "k"}},
            }
        },
        "in both extraEnvironmentVars and extraEnvironmentSecrets",
    ),
    (
        "CPU autoscaling without a CPU request",
        {"app": {"autoscaling": {"enabled": True}}},
        "needs app.resources.requests.cpu",
    ),
]


class Problems(list):
    """Problem lines, each prefixed with what was being checked."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.append(f"{self.label}: {message}")
        return ok


def workspace_version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def check_chart_metadata(problems: Problems) -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = workspace_version()
    problems.check(
        str(meta.get("appVersion")) == version,
        f"appVersion is {meta.get('appVersion')!r} but the workspace version (Cargo.toml) "
        f"is {version!r}: the chart would deploy another release by default",
    )
    floor = f">= {KUBERNETES_VERSIONS[0]}.0-0"
    problems.check(
        meta.get("kubeVersion") == floor,
        f"kubeVersion is {meta.get('kubeVersion')!r}, but the oldest Kubernetes the "
        f"objects are validated against is {KUBERNETES_VERSIONS[0]} ({floor!r})",
    )


def check_value_sets(defaults: dict, ci_values: dict, problems: Problems) -> None:
    """What the defaults promise, and that the CI values really exercise the options."""
    app = defaults["app"]
    problems.check(app["pdb"]["create"] is True, "values.yaml: the PodDisruptionBudget is off")
    problems.check(
        app["replicas"] >= 2 and not app["autoscaling"]["enabled"],
        "values.yaml: the default is no longer a fixed set of several replicas",
    )
    ci_app = ci_values.get("app", {})
    for what, present in (
        ("autoscaling", dig(ci_app, "autoscaling", "enabled")),
        ("a GPU", dig(ci_app, "resources", "limits", "nvidia.com/gpu")),
        ("a nodeSelector", ci_app.get("nodeSelector")),
        ("tolerations", ci_app.get("tolerations")),
        ("extra environment", ci_app.get("extraEnvironmentVars")),
        ("extra environment from Secrets", ci_app.get("extraEnvironmentSecrets")),
        ("a ServiceAccount", dig(ci_app, "serviceAccount", "create")),
        ("the CUDA provider", ci_app.get("executionProvider")),
    ):
        problems.check(bool(present), f"{CI_VALUES.name} no longer turns on {what}")


def lint(values: dict | None, problems: Problems) -> None:
    for version in KUBERNETES_VERSIONS:
        report = helm.lint(
            CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{version}.0"
        )
        messages = report.get("messages") or []
        # 1 is info ("icon is recommended"); 2 and 3 are warnings and errors.
        # "errors" repeats the messages' texts without their paths.
        reported = [m for m in messages if m.get("severity", 0) >= 2]
        seen = {m.get("error") for m in reported}
        for message in reported:
            problems.append(
                f"{problems.label}: helm lint (Kubernetes {version}): "
                f"{message.get('path')}: {message.get('error')}"
            )
        for error in report.get("errors") or []:
            if error not in seen:
                problems.append(f"{problems.label}: helm lint (Kubernetes {version}): {error}")


def render(values: dict | None) -> tuple[list[dict], str]:
    """The rendered objects, and NOTES.txt."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects, notes = [], ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
        elif path.endswith((".yaml", ".yml")):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects, notes


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(objects: list[dict], problems: Problems) -> None:
    for obj in objects:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path) or "(top level)"
                problems.append(
                    f"{problems.label}: {name_of(obj)} is invalid for Kubernetes {version} "
                    f"at {where}: {e.message}"
                )
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{problems.label}: {name_of(obj)}: {e.message}")


def merged(defaults: dict, overrides: dict | None) -> dict:
    """Helm's coalescing of values, for what the checks expect."""
    result = dict(defaults)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def dig(mapping: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping


def only(objects: list[dict], kind: str, problems: Problems) -> dict | None:
    found = [o for o in objects if o.get("kind") == kind]
    if problems.check(len(found) == 1, f"expected one {kind}, rendered {len(found)}"):
        return found[0]
    return None


def check_promises(objects: list[dict], notes: str, values: dict, problems: Problems) -> None:
    app = values["app"]
    kinds = sorted(o.get("kind", "?") for o in objects)
    problems.check(
        "Secret" not in kinds,
        "a Secret is rendered: the chart must only reference existing Secrets",
    )
    problems.check(bool(notes.strip()), "NOTES.txt renders empty")
    for obj in objects:
        problems.check(
            dig(obj, "metadata", "namespace") == NAMESPACE,
            f"{name_of(obj)} does not carry the release namespace",
        )

    deployment = only(objects, "Deployment", problems)
    service = only(objects, "Service", problems)
    if deployment is None or service is None:
        return
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = dig(spec, "template", "metadata", "labels", default={})

    # Rollouts surge and never take a serving replica away first.
    strategy = spec.get("strategy", {})
    problems.check(strategy.get("type") == "RollingUpdate", "the Deployment does not roll")
    rolling = strategy.get("rollingUpdate", {})
    problems.check(
        str(rolling.get("maxUnavailable")) == "0",
        f"rollingUpdate.maxUnavailable is {rolling.get('maxUnavailable')!r}, not 0",
    )
    problems.check(
        str(rolling.get("maxSurge")) == "1",
        f"rollingUpdate.maxSurge is {rolling.get('maxSurge')!r}, not 1",
    )

    hpa_on = bool(app["autoscaling"]["enabled"])
    hpas = [o for o in objects if o.get("kind") == "HorizontalPodAutoscaler"]
    if hpa_on:
        problems.check(
            "replicas" not in spec,
            "the Deployment sets replicas although the HorizontalPodAutoscaler owns them",
        )
        if problems.check(len(hpas) == 1, f"autoscaling is on but {len(hpas)} HPAs rendered"):
            hpa = hpas[0]
            problems.check(hpa["apiVersion"] == "autoscaling/v2", "the HPA is not autoscaling/v2")
            target = hpa["spec"]["scaleTargetRef"]
            problems.check(
                (target.get("kind"), target.get("name"))
                == ("Deployment", deployment["metadata"]["name"]),
                f"the HPA scales {target}, not the Deployment",
            )
    else:
        problems.check(not hpas, "autoscaling is off but an HPA is rendered")
        problems.check(
            spec.get("replicas") == app["replicas"],
            f"replicas is {spec.get('replicas')!r}, values say {app['replicas']!r}",
        )

    pdbs = [o for o in objects if o.get("kind") == "PodDisruptionBudget"]
    if app["pdb"]["create"]:
        if problems.check(len(pdbs) == 1, f"expected one PodDisruptionBudget, got {len(pdbs)}"):
            selector = dig(pdbs[0], "spec", "selector", "matchLabels", default={})
            problems.check(
                bool(selector) and selector.items() <= pod_labels.items(),
                "the PodDisruptionBudget does not select the pods",
            )
    else:
        problems.check(not pdbs, "pdb.create is off but a PodDisruptionBudget is rendered")

    problems.check(
        spec["selector"]["matchLabels"].items() <= pod_labels.items(),
        "the Deployment's selector does not match its pod labels",
    )
    problems.check(
        bool(service["spec"].get("selector"))
        and service["spec"]["selector"].items() <= pod_labels.items(),
        "the Service does not select the pods",
    )
    problems.check(
        [(p.get("port"), p.get("targetPort")) for p in service["spec"]["ports"]]
        == [(app["service"]["port"], "http")],
        f"the Service's ports are {service['spec']['ports']}",
    )

    containers = {c["name"]: c for c in pod["containers"]}
    container = containers.get("app")
    if not problems.check(container is not None, "no container named app"):
        return
    problems.check(
        {"name": "http", "containerPort": 9090, "protocol": "TCP"} in container.get("ports", []),
        "the container does not expose 9090 as http",
    )
    for probe, path in (
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
    ):
        get = dig(container, probe, "httpGet", default={})
        problems.check(
            (get.get("path"), get.get("port")) == (path, "http"),
            f"{probe} is {container.get(probe)!r}, expected GET {path} on port http",
        )

    check_env(container, values, problems)
    check_volumes(pod, container, problems)
    check_security(pod, container, problems)

    sa_objects = [o for o in objects if o.get("kind") == "ServiceAccount"]
    if app["serviceAccount"]["create"]:
        if problems.check(len(sa_objects) == 1, "serviceAccount.create is on but none rendered"):
            problems.check(
                pod.get("serviceAccountName") == sa_objects[0]["metadata"]["name"],
                "the pods do not run as the ServiceAccount the chart creates",
            )
    else:
        problems.check(not sa_objects, "serviceAccount.create is off but one is rendered")
    problems.check(
        pod.get("automountServiceAccountToken") is False,
        "the pods mount a Kubernetes API token they never use",
    )

    # The values reach the pod as given.
    for key, field in (
        ("nodeSelector", "nodeSelector"),
        ("tolerations", "tolerations"),
        ("affinity", "affinity"),
        ("topologySpreadConstraints", "topologySpreadConstraints"),
    ):
        problems.check(
            (pod.get(field) or None) == (app[key] or None),
            f"app.{key} is {app[key]!r} but the pod has {pod.get(field)!r}",
        )
    wanted_resources = {k: v for k, v in app["resources"].items() if v}
    got_resources = {k: v for k, v in container.get("resources", {}).items() if v}
    problems.check(
        got_resources == wanted_resources,
        f"app.resources is {wanted_resources!r} but the container has {got_resources!r}",
    )


def check_env(container: dict, values: dict, problems: Problems) -> None:
    env_list = container.get("env", [])
    names = [e["name"] for e in env_list]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    problems.check(not duplicates, f"environment variables set twice: {duplicates}")
    env = {e["name"]: e for e in env_list}
    app = values["app"]

    for name, wanted in (
        ("CLS_HOST", "0.0.0.0"),
        ("CLS_PORT", "9090"),
        ("CLS_LOG_FORMAT", "json"),
        ("CLS_STATE_DIR", STATE_DIR),
    ):
        problems.check(
            dig(env, name, "value") == wanted,
            f"{name} is {env.get(name)!r}, expected {wanted!r}",
        )
    problems.check(
        dig(env, "CLS_REPLICA_ID", "valueFrom", "fieldRef", "fieldPath") == "metadata.name",
        f"CLS_REPLICA_ID is {env.get('CLS_REPLICA_ID')!r}, "
        "expected the pod name (fieldRef metadata.name)",
    )

    fullname = f"{RELEASE}-configurable-ls-backend"
    for name, path in SECRET_ENV.items():
        entry = env.get(name, {})
        ref = dig(entry, "valueFrom", "secretKeyRef")
        if not problems.check(
            ref is not None and "value" not in entry,
            f"{name} is {entry!r}: it must come from a secretKeyRef, never a literal value",
        ):
            continue
        source = dig(values, *path)
        wanted = (source["existingSecret"] or fullname, source["existingSecretKey"])
        problems.check(
            (ref.get("name"), ref.get("key")) == wanted,
            f"{name} reads {ref.get('name')}/{ref.get('key')}, values say {wanted[0]}/{wanted[1]}",
        )

    url = values["labelStudio"]["url"]
    problems.check(
        dig(env, "LABEL_STUDIO_URL", "value") == (url or None),
        f"LABEL_STUDIO_URL is {env.get('LABEL_STUDIO_URL')!r}, labelStudio.url is {url!r}",
    )
    provider = app["executionProvider"]
    problems.check(
        dig(env, "CLS_EXECUTION_PROVIDER", "value") == (provider or None),
        f"CLS_EXECUTION_PROVIDER is {env.get('CLS_EXECUTION_PROVIDER')!r}, "
        f"app.executionProvider is {provider!r}",
    )

    extra_vars = {**values["global"]["extraEnvironmentVars"], **app["extraEnvironmentVars"]}
    for name, value in extra_vars.items():
        problems.check(
            dig(env, name, "value") == str(value),
            f"extra variable {name} is {env.get(name)!r}, expected {str(value)!r}",
        )
    extra_secrets = {
        **values["global"]["extraEnvironmentSecrets"],
        **app["extraEnvironmentSecrets"],
    }
    for name, ref in extra_secrets.items():
        got = dig(env, name, "valueFrom", "secretKeyRef", default={})
        problems.check(
            (got.get("name"), got.get("key")) == (ref["secretName"], ref["secretKey"]),
            f"extra secret variable {name} is {env.get(name)!r}, expected {ref!r}",
        )


def check_volumes(pod: dict, container: dict, problems: Problems) -> None:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    # Each replica's state dir is a cache of the store, so it lives and dies
    # with the pod; /tmp is writable although the root filesystem is not.
    for path in (STATE_DIR, "/tmp"):
        mount = mounts.get(path)
        volume = volumes.get(mount["name"]) if mount else None
        problems.check(
            volume is not None and "emptyDir" in volume,
            f"{path} is not mounted from an emptyDir volume",
        )


def check_security(pod: dict, container: dict, problems: Problems) -> None:
    pod_context = pod.get("securityContext", {})
    context = container.get("securityContext", {})

    def effective(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    for key, wanted in (
        ("runAsNonRoot", True),
        ("runAsUser", IMAGE_UID),
        ("runAsGroup", IMAGE_UID),
    ):
        problems.check(effective(key) == wanted, f"{key} is {effective(key)!r}, not {wanted!r}")
    problems.check(
        dig(effective("seccompProfile"), "type") == "RuntimeDefault",
        "the seccomp profile is not RuntimeDefault",
    )
    problems.check(context.get("readOnlyRootFilesystem") is True, "the root filesystem is writable")
    problems.check(
        context.get("allowPrivilegeEscalation") is False, "privilege escalation is allowed"
    )
    problems.check(
        "ALL" in dig(context, "capabilities", "drop", default=[]),
        "capabilities are not all dropped",
    )


def check_refusals(problems: Problems) -> None:
    for what, values, reason in REFUSED:
        try:
            render(values)
        except helm.HelmError as e:
            problems.check(reason in str(e), f"{what}: refused, but not saying why: {e}")
        else:
            problems.append(f"{problems.label}: {what} rendered; the chart must refuse it")


def check_values(label: str, overrides: dict | None, defaults: dict) -> tuple[int, Problems]:
    """Lints, renders, validates and checks one set of values.

    Returns how many objects were rendered, and the problems found.
    """
    problems = Problems(label)
    try:
        lint(overrides, problems)
        objects, notes = render(overrides)
    except helm.HelmError as e:
        problems.append(f"{label}: helm cannot load or render the chart: {e}")
        return 0, problems
    validate(objects, problems)
    check_promises(objects, notes, merged(defaults, overrides), problems)
    return len(objects), problems


def main() -> int:
    metadata = Problems("Chart.yaml")
    check_chart_metadata(metadata)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    ci_values = yaml.safe_load(CI_VALUES.read_text())
    default_count, default_problems = check_values("default values", None, defaults)
    ci_count, ci_problems = check_values(str(CI_VALUES.relative_to(CHART)), ci_values, defaults)
    value_sets = Problems("values")
    check_value_sets(defaults, ci_values, value_sets)
    refusals = Problems("refused values")
    check_refusals(refusals)

    problems = metadata + value_sets + default_problems + ci_problems + refusals
    if problems:
        for line in problems:
            print(f"check_chart: {line}", file=sys.stderr)
        print(
            f"check_chart: {len(problems)} problem(s) in {CHART.relative_to(ROOT)}", file=sys.stderr
        )
        return 1
    versions = " and ".join(KUBERNETES_VERSIONS)
    print(
        f"chart ok: {default_count} objects validated against Kubernetes {versions} "
        f"(default values), {ci_count} (ci values); helm {helm.helm_sdk_version()}, "
        f"kubernetes-validate {kubernetes_validate.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
