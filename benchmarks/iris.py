"""The model every server serves: KServe's sklearn example, `svm.SVC(gamma="scale")` fitted on iris.

Trained by running a few lines under a given interpreter, so that each server can get a copy pickled by
the scikit-learn it will unpickle with (the peers' venvs may carry another version than inferbox's).
"""

from __future__ import annotations

import json
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
