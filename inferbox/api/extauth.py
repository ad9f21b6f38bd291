"""Envoy Gateway's external authorization (the `envoy` data plane of the Kubernetes runtime).

Envoy calls `{extAuth.http.path}{original path}` with the original method and the headers the
SecurityPolicy forwards, and lets the request through only on a 2xx, copying the headers named in
`headersToBackend` from this answer onto the request it sends the model. So this route:

- takes the key from `X-API-Key` or `Authorization: Bearer pk_live_…` (as the inferbox gateway does),
- checks it against the gateway's route table (hashes only: no key ever leaves inferbox),
- and checks that the key belongs to the publication that serves the original host and path: a valid
  key of one model must not open another model's route,

then answers 200 with `x-inferbox-tenant`, `x-inferbox-model` and `x-inferbox-key-id` (the key's public
lookup id, which Envoy's global rate limits are keyed on), or 401 / 403 in the API's error shape.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from inferbox.api.deps import PlatformDep
from inferbox.auth import apikeys
from inferbox.runtime.kubernetes.manifests import KEY_ID_HEADER
from inferbox.timefmt import now

router = APIRouter(tags=["publishing"])

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@router.api_route(
    "/api/validate-api-key/{path:path}",
    methods=METHODS,
    include_in_schema=False,
)
async def envoy_ext_auth(path: str, request: Request, platform: PlatformDep) -> JSONResponse:
    routes = platform.gateway.routes
    key = _key(request)
    at = now()
    owner = routes.find_key(key, at) if key else None
    if key is None or owner is None:
        details = "A valid API key is required (X-API-Key or Authorization: Bearer)"
        return JSONResponse({"error": "Invalid API key", "details": details}, status_code=401)
    host = request.headers.get("host", "").split(":", 1)[0].lower().rstrip(".")
    found = routes.match(host, "/" + path)
    if found is None or found[0].publication_id != owner.publication_id:
        details = "This key does not belong to the model at this address"
        return JSONResponse({"error": "Forbidden", "details": details}, status_code=403)
    headers = {
        "x-inferbox-tenant": owner.namespace,
        "x-inferbox-model": owner.model,
        KEY_ID_HEADER: apikeys.lookup_id(key) or "",
    }
    return JSONResponse({"valid": True, "tenant": owner.namespace, "model": owner.model}, headers=headers)
