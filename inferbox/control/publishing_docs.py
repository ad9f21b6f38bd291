"""The documentation a publication carries: its endpoint, auth headers, example requests and SDK snippets,
built from the real URL, key and a body that fits the model, so that the curl example runs as printed."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_INSTANCES: list[list[float]] = [[1.0, 2.0, 3.0, 4.0]]


def example_body(model_type: str, example_input: Any) -> dict[str, Any]:
    if model_type == "openai":
        return {"model": "model", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32}
    instances = example_input if isinstance(example_input, list) and example_input else DEFAULT_INSTANCES
    return {"instances": instances}


def v2_body(example_input: Any) -> dict[str, Any]:
    rows = example_input if isinstance(example_input, list) and example_input else DEFAULT_INSTANCES
    width = len(rows[0]) if isinstance(rows[0], list) else 1
    flat = [v for row in rows for v in (row if isinstance(row, list) else [row])]
    return {"inputs": [{"name": "input-0", "shape": [len(rows), width], "datatype": "FP64", "data": flat}]}


def documentation(
    *,
    model_type: str,
    external_url: str,
    gateway_url: str,
    public_hostname: str | None,
    api_key: str,
    example_input: Any,
) -> dict[str, Any]:
    json_headers = {"Content-Type": "application/json", "X-API-Key": api_key}
    if model_type == "openai":
        call_url = f"{external_url}/chat/completions"
        description = "Create a chat completion (OpenAI API)"
        extra = [
            {
                "method": "GET",
                "url": f"{external_url}/models",
                "headers": {"X-API-Key": api_key},
                "body": None,
                "description": "List the model (OpenAI API)",
            }
        ]
    else:
        call_url = f"{external_url}/predict"
        description = "Make a prediction request (KServe V1 body)"
        extra = [
            {
                "method": "POST",
                "url": f"{external_url}/infer",
                "headers": json_headers,
                "body": json.dumps(v2_body(example_input)),
                "description": "Make an inference request (Open Inference Protocol V2 body)",
            },
            {
                "method": "GET",
                "url": external_url,
                "headers": {"X-API-Key": api_key},
                "body": None,
                "description": "Read the model's metadata (inputs, outputs)",
            },
        ]
    body = example_body(model_type, example_input)
    body_json = json.dumps(body)
    docs: dict[str, Any] = {
        "endpointUrl": external_url,
        "authHeaders": {"X-API-Key": api_key},
        "exampleRequests": [
            {
                "method": "POST",
                "url": call_url,
                "headers": json_headers,
                "body": body_json,
                "description": description,
            },
            *extra,
        ],
        "sdkExamples": {
            "python": (
                "import requests\n\n"
                "response = requests.post(\n"
                f"    {call_url!r},\n"
                f"    headers={{'X-API-Key': {api_key!r}}},\n"
                f"    json={body!r}\n"
                ")\n"
                "print(response.json())"
            ),
            "javascript": (
                f"const response = await fetch('{call_url}', {{\n"
                "  method: 'POST',\n"
                "  headers: {\n"
                "    'Content-Type': 'application/json',\n"
                f"    'X-API-Key': '{api_key}'\n"
                "  },\n"
                f"  body: JSON.stringify({body_json})\n"
                "});\n"
                "console.log(await response.json());"
            ),
            "curl": (
                f"curl -X POST {call_url} \\\n"
                "  -H 'Content-Type: application/json' \\\n"
                f"  -H 'X-API-Key: {api_key}' \\\n"
                f"  -d '{body_json}'"
            ),
        },
    }
    if public_hostname:
        # The public URL needs DNS (and TLS) in front of the gateway; this reaches the gateway directly.
        path = external_url.split(public_hostname, 1)[1]
        local = call_url.replace(external_url, f"{gateway_url}{path}")
        docs["localTest"] = {
            "description": (
                f"Until {public_hostname} resolves to the gateway, "
                "call the gateway directly with a Host header"
            ),
            "curl": (
                f"curl -X POST {local} \\\n"
                f"  -H 'Host: {public_hostname}' \\\n"
                "  -H 'Content-Type: application/json' \\\n"
                f"  -H 'X-API-Key: {api_key}' \\\n"
                f"  -d '{body_json}'"
            ),
        }
    return docs
