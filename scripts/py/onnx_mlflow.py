"""Helpers shared by make_models.py and register_models.py.

Owns: reading an ONNX graph's real inputs/outputs and turning them into the
MLflow signature the server checks against the graph. Does not own which
models exist (the two scripts decide that).
"""

from __future__ import annotations

import numpy as np
import onnx
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int, ...]:
    """Static dims as-is; symbolic or unknown dims become -1 (MLflow's "dynamic")."""
    return tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
        for d in value_info.type.tensor_type.shape.dim
    )


def _dtype(value_info: onnx.ValueInfoProto) -> np.dtype:
    elem = value_info.type.tensor_type.elem_type
    if elem == onnx.TensorProto.STRING:
        # MLflow writes numpy's str dtype as "str" in MLmodel, as it does when
        # it infers a signature from text.
        return np.dtype(str)
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))


def _specs(values, skip: set[str]) -> Schema:
    return Schema([TensorSpec(_dtype(v), _dims(v), v.name) for v in values if v.name not in skip])


def signature_from_onnx(model: onnx.ModelProto) -> ModelSignature:
    """The signature that exactly matches the graph's inputs and outputs.

    Older exporters list initializers among graph inputs; those are weights,
    not feeds, so they are left out.
    """
    initializers = {t.name for t in model.graph.initializer}
    return ModelSignature(
        inputs=_specs(model.graph.input, initializers),
        outputs=_specs(model.graph.output, set()),
    )


def load_graph(path) -> onnx.ModelProto:
    """Loads an ONNX file with its weights (needed to re-save it through MLflow)."""
    return onnx.load(str(path))
