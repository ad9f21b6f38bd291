"""The model every server serves: KServe's sklearn example, `svm.SVC(gamma="scale")` fitted on iris.

Trained by running a few lines under a given interpreter, so that each server can get a copy pickled by
the scikit-learn it will unpickle with (the peers' venvs may carry another version than inferbox's).
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

# The README's example row (class 1, versicolor).
ROW = [6.8, 2.8, 4.8, 1.4]

TRAIN = """
import sys, joblib
from sklearn import datasets, svm
X, y = datasets.load_iris(return_X_y=True)
joblib.dump(svm.SVC(gamma="scale").fit(X, y), sys.argv[1])
"""

VERSIONS = """
import importlib.metadata as m, json, platform
out = {"python": platform.python_version()}
for dist in ("scikit-learn", "kserve", "mlserver", "mlserver-sklearn", "uvloop", "joblib"):
    try:
        out[dist] = m.version(dist)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def train(python: str | Path, dest_dir: Path) -> Path:
    """Fit the model with `python`'s scikit-learn and dump it as DEST/model.joblib."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / "model.joblib"
    subprocess.run([str(python), "-c", TRAIN, str(path)], check=True, timeout=300)
    return path


def versions(python: str | Path) -> dict[str, Any]:
    """Python and package versions as seen by `python`."""
    out = subprocess.run(
        [str(python), "-c", VERSIONS], check=True, capture_output=True, text=True, timeout=120
    )
    return dict(json.loads(out.stdout))


def v1_body() -> bytes:
    """KServe V1: `{"instances": [row]}`."""
    return json.dumps({"instances": [ROW]}).encode()


def v2_body() -> bytes:
    """Open Inference Protocol V2: one FP64 tensor of shape [1, 4]."""
    tensor = {"name": "predict", "shape": [1, len(ROW)], "datatype": "FP64", "data": ROW}
    return json.dumps({"inputs": [tensor]}).encode()


def api_body() -> bytes:
    """inferbox's `/api/models/{name}/predict`: the V1 body under `inputData`."""
    return json.dumps({"inputData": {"instances": [ROW]}}).encode()


#: The batch of the binary-tensor comparison: 32 rows of 4 FP32 features.
BATCH_ROWS = 32


def v2_json_batch() -> bytes:
    """V2 JSON: one FP32 tensor of shape [32, 4], the twin of `v2_binary_batch`."""
    tensor = {
        "name": "predict",
        "shape": [BATCH_ROWS, len(ROW)],
        "datatype": "FP32",
        "data": [ROW] * BATCH_ROWS,
    }
    return json.dumps({"inputs": [tensor]}).encode()


def v2_binary_batch() -> tuple[bytes, dict[str, str]]:
    """V2 with the binary tensor extension both ways: the [32, 4] FP32 tensor as raw bytes after the JSON
    header, and the outputs asked for in binary; returns the body and its headers."""
    raw = struct.pack(f"<{BATCH_ROWS * len(ROW)}f", *(ROW * BATCH_ROWS))
    tensor = {
        "name": "predict",
        "shape": [BATCH_ROWS, len(ROW)],
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


def grpc_infer_request(model: str = "iris") -> bytes:
    """A serialised gRPC ModelInferRequest: one FP64 row of shape [1, 4] in typed contents (which every
    Open Inference Protocol server reads; MLServer and inferbox alike)."""
    from inferbox.server.grpc import oip_pb2 as pb

    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="predict", datatype="FP64", shape=[1, len(ROW)])
    tensor.contents.fp64_contents.extend(ROW)
    return request.SerializeToString()
