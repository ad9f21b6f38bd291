"""KServe's Python ModelServer serving the iris SVC, as KServe's sklearnserver does.

Run by the kserve venv's python (benchmarks/.peers/kserve), never imported by inferbox:

    python kserve_iris.py --model_name iris --model_dir DIR --http_port P --grpc_port G

The model class follows kserve/kserve python/sklearnserver/sklearnserver/model.py: load the single
joblib/pickle file of the model dir, predict the V1 `instances` (or a V2 tensor) in one call, and answer
with `get_predict_response`. The model dir is a local path, so KServe's storage download is skipped.
Everything else is ModelServer's default (1 worker, gRPC on, latency logging on): only ports are set.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import joblib
from kserve import Model, ModelServer, model_server
from kserve.errors import InferenceError, ModelMissingError
from kserve.utils.utils import get_predict_input, get_predict_response

MODEL_EXTENSIONS = (".joblib", ".pkl", ".pickle")
ENV_PREDICT_PROBA = "PREDICT_PROBA"


class SKLearnModel(Model):
    """A scikit-learn estimator behind KServe's V1/V2 handlers."""

    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.ready = False

    def load(self) -> bool:
        model_path = Path(self.model_dir)
        files = [p for p in sorted(model_path.iterdir()) if p.is_file() and p.suffix in MODEL_EXTENSIONS]
        if not files:
            raise ModelMissingError(str(model_path))
        if len(files) > 1:
            raise RuntimeError(f"More than one model file is detected, only one is allowed: {files}")
        self._model = joblib.load(files[0])
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        try:
            instances = get_predict_input(payload)
            if os.environ.get(ENV_PREDICT_PROBA, "false").lower() == "true" and hasattr(
                self._model, "predict_proba"
            ):
                result = self._model.predict_proba(instances)
            else:
                result = self._model.predict(instances)
            return get_predict_response(payload, result, self.name)
        except Exception as exc:
            raise InferenceError(str(exc)) from exc


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True, help="a local directory holding model.joblib")
    args, _ = parser.parse_known_args()
    model = SKLearnModel(args.model_name, args.model_dir)
    model.load()
    ModelServer().start([model])


if __name__ == "__main__":
    main()
