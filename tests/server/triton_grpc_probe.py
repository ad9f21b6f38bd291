"""Run as a script by test_server_grpc.py: tritonclient.grpc against a replica's gRPC port, printing
what it saw as one JSON object on stdout.

A subprocess because tritonclient.grpc and kserve both register protobuf messages named
``inference.*`` and cannot be imported into one process; our own stubs (``inferbox.oip``) are
imported here too, to show that they do not clash with tritonclient's.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from inferbox.server.grpc import oip_pb2

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def main(port: int) -> None:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    seen: dict[str, object] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("iris"),
        "other_model_ready": _error(lambda: client.is_model_ready("other")),
        "extensions": list(client.get_server_metadata(as_json=True)["extensions"]),
        "metadata": client.get_model_metadata("iris", as_json=True),
        # Our message and tritonclient's, side by side in one process.
        "ours": oip_pb2.ModelReadyRequest(name="iris").SerializeToString().hex(),
    }
    predictions = {}
    for datatype, dtype in (("FP64", np.float64), ("FP32", np.float32)):
        inp = triton_grpc.InferInput("input-0", [3, 4], datatype)
        inp.set_data_from_numpy(np.array(ROWS, dtype=dtype))
        result = client.infer("iris", [inp], request_id=f"id-{datatype}")
        out = result.as_numpy("output-0")
        predictions[datatype] = {
            "values": out.tolist(),
            "dtype": str(out.dtype),
            "id": result.get_response().id,
        }
    seen["predictions"] = predictions
    bad = triton_grpc.InferInput("input-0", [1, 3], "FP64")
    bad.set_data_from_numpy(np.zeros((1, 3)))
    seen["bad_width"] = _error(lambda: client.infer("iris", [bad]))
    print(json.dumps(seen))


def _error(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except InferenceServerException as exc:
        return {"status": exc.status(), "message": exc.message()}


if __name__ == "__main__":
    main(int(sys.argv[1]))
