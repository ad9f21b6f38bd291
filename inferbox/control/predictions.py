"""Calling a model for the API's predict: its body, as V1 or V2 by its shape, to a replica the runtime
picks, and the model's answer back as it is. Also the documentation's example input, read from what
a ready replica says of its input.

Replica failures (not ready, timed out, unreachable) are raised as the runtime's own errors; the API
maps them, as the gateway does, to its answers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from inferbox.blocking import in_thread
from inferbox.control.chat import ChatCalls
from inferbox.control.errors import InvalidField, UpstreamFailed
from inferbox.control.model_rows import ModelRecord
from inferbox.control.outbound import OutboundRefused, check_url
from inferbox.runtime import Runtime
from inferbox.runtime.client import REPLICA_ERRORS, ReplicaClient

READY_WAIT_SECONDS = 30.0
PREDICT_TIMEOUT_SECONDS = 60.0
JSON_HEADERS = {"Content-Type": "application/json"}


def predict_path(name: str, input_data: Any) -> str:
    """The replica's path for a body: V2 `infer` for `{"inputs": [tensors]}`, else V1 `predict`."""
    if not isinstance(input_data, dict):
        raise InvalidField("Field 'inputData' must be an object with 'instances' (V1) or 'inputs' (V2)")
    inputs = input_data.get("inputs")
    is_v2 = (
        isinstance(inputs, list)
        and bool(inputs)
        and all(isinstance(t, dict) and "datatype" in t for t in inputs)
    )
    if is_v2:
        return f"/v2/models/{name}/infer"
    if "instances" not in input_data and "inputs" not in input_data:
        raise InvalidField("Field 'inputData' must hold 'instances' (V1) or 'inputs' (V2)")
    return f"/v1/models/{name}:predict"


def _resolved(
    url: str, headers: dict[str, str], resolve: list[tuple[str, int | None, str]]
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`url` pointed at the address an override names for its host, with the name kept in `Host` and,
    for https, in TLS's server name (so the certificate is checked against the name, as curl does)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidField("Field 'connectionSettings.port' must be between 1 and 65535") from None
    for host, want_port, address in resolve:
        if (parts.hostname or "").lower() != host.lower().rstrip(".") or want_port not in (None, port):
            continue
        literal = f"[{address}]" if ":" in address else address
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        return (
            urlunsplit((parts.scheme, f"{literal}:{port}", parts.path, parts.query, "")),
            {**headers, "Host": parts.netloc.rsplit("@", 1)[-1]},
            extensions,
        )
    return url, headers, {}


class Predictor:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._http = ReplicaClient(timeout=PREDICT_TIMEOUT_SECONDS)
        # The console's chat (an OpenAI chat completion, streamed): control/chat.py.
        self.chat = ChatCalls(runtime)

    async def close(self) -> None:
        await self._http.close()
        await self.chat.close()

    async def predict(self, record: ModelRecord, input_data: Any) -> tuple[int, bytes]:
        """Send `input_data` to a replica; the model's status and body come back as they are."""
        path = predict_path(record.name, input_data)
        answer = await self._http.call(
            lambda: self.runtime.connect(record.namespace, record.name, READY_WAIT_SECONDS),
            "POST",
            path,
            orjson.dumps(input_data),
            JSON_HEADERS,
        )
        return answer.status, answer.body

    async def predict_custom(
        self,
        url: str,
        input_data: Any,
        headers: dict[str, str],
        resolve: list[tuple[str, int | None, str]] | None = None,
    ) -> tuple[int, bytes]:
        """Admin-only: call a URL the admin gave, after refusing link-local and metadata addresses.
        `resolve`: (host, port or None, address) overrides, as `curl --resolve`; the guard judges the
        address that is connected to."""
        url, headers, extensions = _resolved(url, headers, resolve or [])
        try:
            await in_thread(check_url, url)
        except OutboundRefused as exc:
            raise InvalidField(f"Field 'connectionSettings.url': {exc}") from None
        # An arbitrary (maybe https) URL: the general-purpose client, not the replica client.
        try:
            async with httpx.AsyncClient(timeout=PREDICT_TIMEOUT_SECONDS, follow_redirects=False) as client:
                response = await client.post(
                    url,
                    content=orjson.dumps(input_data),
                    headers={**headers, **JSON_HEADERS},
                    extensions=extensions,
                )
        except httpx.TimeoutException:
            raise UpstreamFailed(f"No answer from {url}", timed_out=True) from None
        except httpx.TransportError as exc:
            raise UpstreamFailed(type(exc).__name__, timed_out=False) from None
        return response.status_code, response.content

    async def input_example(self, record: ModelRecord) -> list[list[float]] | None:
        """Rows that fit the model, from the input width its replica reports (V2 metadata), for
        documentation; None when the model cannot tell (not ready, or no fixed width). Never wakes a
        model scaled to zero: publishing must not start replicas."""
        status = self.runtime.status(record.namespace, record.name)
        if status is None or status.ready_replicas == 0:
            return None
        try:
            async with self.runtime.connect(record.namespace, record.name, 2.0) as base_url:
                answer = await self._http.request("GET", base_url, f"/v2/models/{record.name}", timeout=2.0)
            shape = orjson.loads(answer.body)["inputs"][0]["shape"]
        except (*REPLICA_ERRORS, KeyError, IndexError, TypeError, ValueError):
            return None
        width = shape[-1] if isinstance(shape, list) and len(shape) == 2 else None
        if not isinstance(width, int) or not 0 < width <= 64:
            return None
        return [[float(i + 1) for i in range(width)]]
