"""The cascade as one ONNX graph (the ``onnx`` package; opset 17, IR version 8, which every
mainstream runtime of the last years loads: onnxruntime >= 1.13, OpenVINO, TensorRT, ...).

Graph inputs and outputs::

    input          [N, n_inputs]    float32 (or float64 with dtype="float64")
    outputs        [N, n_outputs]   the output units' activations (cascor's network forward)
    probabilities  [N, n_classes]   classifiers: as predict_proba
    label          [N]              classifiers: as predict (int64, double or string labels)
    prediction     [N, n_outputs]   regressors: as predict (target units)

Each hidden unit is a Gemm over the columns before it (bias folded into Gemm's C), its
steepness a Mul, its activation a few elementwise ops, and a Concat appends its column: the
same order of work as cascor's own forward pass, so float64 graphs agree with the estimators
to ~1e-15 and float32 graphs with cascor's float32 forward pass to float32 rounding.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import ExportError
from ..inference import OUTPUT_RANGES, Model

OPSET = 17
IR_VERSION = 8


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'cascor[export]'") from None
    return onnx


class _Builder:
    def __init__(self, dtype: np.dtype):
        self.onnx = _onnx()
        self.dtype = np.dtype(dtype)
        self.nodes: list = []
        self.inits: list = []
        self._n = 0
        self._scalars: dict = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, hint: str = "c", dtype=None) -> str:
        """An initializer; scalars of the graph's dtype are shared."""
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=dtype or self.dtype)
        key = (arr.dtype.str, float(arr)) if arr.ndim == 0 else None
        if key in self._scalars:
            return self._scalars[key]
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._scalars[key] = name
        return name

    def op(self, op_type: str, *inputs: str, hint: str | None = None, out: str | None = None, **attrs) -> str:
        out = out or self.name(hint or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def activation(self, name: str, x: str, out: str | None = None) -> str:
        """The registry's activation ``name`` of ``x`` (cascor.kernels' formulas)."""
        def half():
            return self.const(0.5, "half")

        def one():
            return self.const(1.0, "one")

        if name == "symmetric_sigmoid":
            return self.op("Sub", self.op("Sigmoid", x), half(), out=out)
        if name == "asymmetric_sigmoid":
            return self.op("Sigmoid", x, out=out)
        if name == "tanh":
            return self.op("Tanh", x, out=out)
        if name == "gaussian":
            return self.op("Exp", self.op("Mul", self.op("Mul", x, x), self.const(-0.5)), out=out)
        if name == "gaussian_symmetric":
            e = self.op("Exp", self.op("Neg", self.op("Mul", x, x)))
            return self.op("Sub", self.op("Mul", e, self.const(2.0)), one(), out=out)
        if name == "linear":
            return self.op("Identity", x, out=out)
        if name in ("elliot", "elliot_symmetric"):
            r = self.op("Div", x, self.op("Add", self.op("Abs", x), one()))
            return self.op("Add", self.op("Mul", r, half()), half(), out=out) if name == "elliot" else \
                self.op("Identity", r, out=out)
        if name in ("sin", "cos", "sin_symmetric", "cos_symmetric"):
            f = self.op("Sin" if name.startswith("sin") else "Cos", x)
            return self.op("Identity", f, out=out) if name.endswith("symmetric") else \
                self.op("Add", self.op("Mul", f, half()), half(), out=out)
        if name == "softmax":
            return self.op("Softmax", x, axis=1, out=out)
        raise ExportError(f"no ONNX form for the activation {name!r}")


def _labels(classes: np.ndarray):
    """The class labels as an ONNX tensor's numpy array and element type name."""
    kind = classes.dtype.kind
    if kind in "biu":
        return classes.astype(np.int64), "int64"
    if kind == "f":
        return classes.astype(np.float64), "double"
    if kind == "U":
        return classes.astype(object), "string"
    raise ExportError(f"class labels of dtype {classes.dtype} cannot be ONNX tensor values "
                      "(expected integers, floats or strings)")


def to_onnx(model: Model, dtype: str = "float32"):
    """The ``onnx.ModelProto`` of ``model``, checked by ``onnx.checker``."""
    if dtype not in ("float32", "float64"):
        raise ExportError(f"ONNX dtype: expected float32 or float64, found {dtype!r}")
    b = _Builder(np.dtype(dtype))
    onnx = b.onnx
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
    n_in = model.n_inputs
    x = "input"
    if not (np.all(model.input_scale == 1.0) and np.all(model.input_offset == 0.0)):
        x = b.op("Add", b.op("Mul", x, b.const(model.input_scale, "input_scale")),
                 b.const(model.input_offset, "input_offset"), hint="scaled_input")
    values = x
    for k, (w, act, steep) in enumerate(zip(model.hidden_weights, model.hidden_activations, model.hidden_steepness)):
        net = b.op("Gemm", values, b.const(w[1:, None], f"unit{k}_weights"), b.const(w[:1], f"unit{k}_bias"),
                   hint=f"unit{k}_net")
        if steep != 1.0:
            net = b.op("Mul", net, b.const(steep, f"unit{k}_steepness"))
        col = b.activation(act, net, out=f"unit{k}")
        values = b.op("Concat", values, col, axis=1, hint=f"values{k}")
    W = model.output_weights
    net = b.op("Gemm", values, b.const(W[:, 1:].T, "output_weights"), b.const(W[:, 0], "output_bias"),
               hint="output_net")
    b.activation(model.output_activation, net, out="outputs")
    n_out = model.n_outputs
    outs = [helper.make_tensor_value_info("outputs", elem, ["N", n_out])]

    if model.task == "classification":
        n_classes = len(model.classes)
        low, high = OUTPUT_RANGES[model.output_activation]
        def one():  # (a shared scalar, created only where a node uses it)
            return b.const(1.0, "one")

        if model.probabilities == "native":
            p = "outputs"
        else:
            p = b.op("Div", b.op("Sub", "outputs", b.const(low)), b.const(high - low))
            p = b.op("Max", b.op("Min", p, one()), b.const(0.0))
        if n_classes == 2:
            b.op("Concat", b.op("Sub", one(), p), p, axis=1, out="probabilities")
            idx = b.op("Cast", b.op("Greater", "outputs", b.const((low + high) / 2)), to=TensorProto.INT64)
            idx = b.op("Reshape", idx, b.const([-1], "flat", dtype=np.int64))
        else:
            if model.probabilities == "native":
                b.op("Identity", p, out="probabilities")
            else:
                p = b.op("Add", p, b.const(1e-12))
                b.op("Div", p, b.op("ReduceSum", p, b.const([1], "axis", dtype=np.int64), keepdims=1),
                     out="probabilities")
            idx = b.op("ArgMax", "outputs", axis=1, keepdims=0)
        labels, label_type = _labels(model.classes)
        if label_type == "string":
            name = b.name("classes")
            b.inits.append(helper.make_tensor(name, TensorProto.STRING, [n_classes],
                                              [s.encode("utf-8") for s in labels]))
        else:
            name = b.const(labels, "classes", dtype=labels.dtype)
        b.op("Gather", name, idx, axis=0, out="label")
        label_elem = {"int64": TensorProto.INT64, "double": TensorProto.DOUBLE, "string": TensorProto.STRING}[label_type]
        outs += [helper.make_tensor_value_info("probabilities", elem, ["N", n_classes]),
                 helper.make_tensor_value_info("label", label_elem, ["N"])]
    else:
        b.op("Add", b.op("Mul", "outputs", b.const(model.target_scale, "target_scale")),
             b.const(model.target_mean, "target_mean"), out="prediction")
        outs.append(helper.make_tensor_value_info("prediction", elem, ["N", n_out]))

    graph = helper.make_graph(b.nodes, "cascade", [helper.make_tensor_value_info("input", elem, ["N", n_in])],
                              outs, initializer=b.inits,
                              doc_string=f"Cascade-Correlation network: {n_in} inputs, {model.n_hidden} hidden "
                                         f"units, {n_out} outputs ({model.output_activation})")
    proto = helper.make_model(graph, producer_name="cascor", opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    meta = {"task": model.task, "hidden_units": str(model.n_hidden), "output_activation": model.output_activation}
    if model.task == "classification":
        meta["classes"] = json.dumps([c.item() if hasattr(c, "item") else c for c in model.classes])
        meta["probabilities"] = model.probabilities
    if model.feature_names:
        meta["feature_names"] = json.dumps(model.feature_names)
    helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    return proto
