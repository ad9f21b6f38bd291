"""The documentation a publication carries: its endpoint, auth headers, example requests and SDK snippets,
built from the real URL, key and a body that fits the model, so that the curl example runs as printed.

The key is only known in the answers that show it (publish, and rotate's newApiKey). Everywhere else the
examples hold `<your-api-key>` (never the masked key, which no gateway accepts) and `apiKeyNote` says
where the key was shown, so that substituting it makes every example run.

An `openai` publication documents the OpenAI API under `{externalUrl}/v1` (chat completions, or
embeddings for an embedding model), with curl and with the `openai` Python package, whose `base_url` is
that URL: the client appends `/chat/completions` itself."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_INSTANCES: list[list[float]] = [[1.0, 2.0, 3.0, 4.0]]
KEY_PLACEHOLDER = "<your-api-key>"
SHOWN_NOW = "This is the API key, shown only in this answer: keep it now (rotate it to get a new one)."
SHOWN_BEFORE = (
    f"Replace {KEY_PLACEHOLDER} with the publication's API key. It was shown once: in the answer to "
    "POST /api/models/{name}/publish, or to POST /api/models/{name}/publish/rotate-key (newApiKey) "
    "if it was rotated since. Lost it? Rotate the key to get a new one."
)


def example_body(
    model_type: str, example_input: Any, endpoint: str = "chat/completions", model: str = "model"
) -> dict[str, Any]:
    """A body that fits the model; an OpenAI body names the published model, as OpenAI's clients do."""
    if model_type == "openai":
        if endpoint == "embeddings":
            return {"model": model, "input": ["Hello!", "How are you?"]}
        return {"model": model, "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32}
    instances = example_input if isinstance(example_input, list) and example_input else DEFAULT_INSTANCES
    return {"instances": instances}


def v2_body(example_input: Any) -> dict[str, Any]:
    rows = example_input if isinstance(example_input, list) and example_input else DEFAULT_INSTANCES
    width = len(rows[0]) if isinstance(rows[0], list) else 1
    flat = [v for row in rows for v in (row if isinstance(row, list) else [row])]
    return {"inputs": [{"name": "input-0", "shape": [len(rows), width], "datatype": "FP64", "data": flat}]}


def _request(
    method: str, url: str, headers: dict[str, str], body: str | None, description: str
) -> dict[str, Any]:
    return {"method": method, "url": url, "headers": headers, "body": body, "description": description}


def _requests(
    model_type: str, external_url: str, api_key: str, example_input: Any, endpoint: str, model: str
) -> list[dict[str, Any]]:
    """The example requests: the main call first, then the model's other endpoints."""
    json_headers = {"Content-Type": "application/json", "X-API-Key": api_key}
    body = json.dumps(example_body(model_type, example_input, endpoint, model))
    if model_type == "openai":
        what = "Create embeddings" if endpoint == "embeddings" else "Create a chat completion"
        bearer = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        return [
            _request("POST", f"{external_url}/v1/{endpoint}", bearer, body, f"{what} (OpenAI API)"),
            _request(
                "GET",
                f"{external_url}/v1/models",
                {"Authorization": f"Bearer {api_key}"},
                None,
                "List the model (OpenAI API)",
            ),
        ]
    return [
        _request(
            "POST",
            f"{external_url}/predict",
            json_headers,
            body,
            "Make a prediction request (KServe V1 body)",
        ),
        _request(
            "POST",
            f"{external_url}/infer",
            json_headers,
            json.dumps(v2_body(example_input)),
            "Make an inference request (Open Inference Protocol V2 body)",
        ),
        _request(
            "GET", external_url, {"X-API-Key": api_key}, None, "Read the model's metadata (inputs, outputs)"
        ),
    ]


def _sdk_examples(call_url: str, api_key: str, body: dict[str, Any]) -> dict[str, str]:
    body_json = json.dumps(body)
    return {
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
        "curl": _curl(call_url, api_key, body_json),
    }


def _openai_examples(external_url: str, api_key: str, body: dict[str, Any], endpoint: str) -> dict[str, str]:
    """The OpenAI API's own clients: the `openai` package at `{externalUrl}/v1`, fetch, and curl."""
    base_url = f"{external_url}/v1"
    if endpoint == "embeddings":
        call = f"client.embeddings.create(model={body['model']!r}, input={body['input']!r})"
        show = "print([len(item.embedding) for item in response.data], response.usage)"
    else:
        call = (
            f"client.chat.completions.create(\n    model={body['model']!r},\n"
            f"    messages={body['messages']!r},\n    max_tokens={body['max_tokens']!r},\n)"
        )
        show = "print(response.choices[0].message.content, response.usage)"
    python = (
        "from openai import OpenAI\n\n"
        f"client = OpenAI(base_url={base_url!r}, api_key={api_key!r})\n"
        f"response = {call}\n"
        f"{show}"
    )
    body_json = json.dumps(body)
    javascript = (
        f"const response = await fetch('{base_url}/{endpoint}', {{\n"
        "  method: 'POST',\n"
        "  headers: {\n"
        "    'Content-Type': 'application/json',\n"
        f"    'Authorization': 'Bearer {api_key}'\n"
        "  },\n"
        f"  body: JSON.stringify({body_json})\n"
        "});\n"
        "console.log(await response.json());"
    )
    curl = _curl(f"{base_url}/{endpoint}", api_key, body_json, auth=f"Authorization: Bearer {api_key}")
    return {"python": python, "javascript": javascript, "curl": curl}


def _curl(url: str, api_key: str, body_json: str, host: str | None = None, auth: str | None = None) -> str:
    lines = [f"curl -X POST {url}"]
    if host:
        lines.append(f"  -H 'Host: {host}'")
    auth = auth or f"X-API-Key: {api_key}"
    lines += ["  -H 'Content-Type: application/json'", f"  -H '{auth}'", f"  -d '{body_json}'"]
    return " \\\n".join(lines)


def documentation(
    *,
    model_type: str,
    external_url: str,
    gateway_url: str,
    public_hostname: str | None,
    api_key: str | None,
    example_input: Any,
    model_name: str = "{name}",
    openai_endpoint: str = "chat/completions",
) -> dict[str, Any]:
    """`api_key`: the full key in the one answer that shows it, else None (the examples then hold
    `<your-api-key>`). `openai_endpoint`: the main call of an openai publication, "chat/completions" or
    "embeddings"."""
    note = SHOWN_NOW if api_key else SHOWN_BEFORE.replace("{name}", model_name)
    api_key = api_key or KEY_PLACEHOLDER
    requests = _requests(model_type, external_url, api_key, example_input, openai_endpoint, model_name)
    call_url = requests[0]["url"]
    body = example_body(model_type, example_input, openai_endpoint, model_name)
    if model_type == "openai":
        sdk = _openai_examples(external_url, api_key, body, openai_endpoint)
    else:
        sdk = _sdk_examples(call_url, api_key, body)
    docs: dict[str, Any] = {
        "endpointUrl": external_url,
        "authHeaders": {"X-API-Key": api_key},
        "apiKeyNote": note,
        "exampleRequests": requests,
        "sdkExamples": sdk,
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
            "curl": _curl(local, api_key, json.dumps(body), host=public_hostname),
        }
    return docs
