"""A Kubernetes API server for tests and benchmarks: kmock 0.8's `KubernetesEmulator`, with its gaps filled.

No cluster runs on these machines, so the Kubernetes runtime is tested through its client library, over
real HTTP on loopback, against this emulator. kmock 0.8 stores objects and serves discovery, but, as
shipped, it:

- answers 200 to a create (the API server, and the official client, expect 201),
- fails on cluster-scoped collection paths (`GET/POST /api/v1/namespaces` raises in its path parser),
- gives objects no `resourceVersion`, `uid` or `creationTimestamp`, ignores `labelSelector`,
- replays every object on each watch and ignores `resourceVersion`, so a watch cannot resume, and
  never answers 410 Gone,
- has no garbage collection (owner references, a namespace's objects), no `status` subresource and
  no pod logs.

`KubeEmulator` keeps kmock's storage (`objects`), its discovery documents and its error shape, and
serves the resource paths itself with those semantics: a global resourceVersion counter, a bounded
event history that watches resume from (410 past it), JSON merge patches (kmock's dict patch: `None`
removes a key), owner-reference and namespace cascades. It also injects faults on request (`fail`,
`drop_watches`, `compact`) for the fault tests. `EmulatorThread` runs it on its own event loop in a
thread, so that synchronous tests and benchmarks can start, stop and restart it on a fixed port.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import yaml
from kmock import KubernetesEmulator, Request, ResourceInfo, Server, resource
from kmock._internal import enums, rendering

T = TypeVar("T")

# What the emulator serves, with discovery details that `kubectl` needs (kind, scope, verbs).
READ = ("get", "list", "watch")
WRITE = ("create", "patch", "update", "delete")
KINDS: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    # "group/version/plural": (kind, namespaced, subresources)
    "v1/namespaces": ("Namespace", False, ()),
    "v1/nodes": ("Node", False, ()),
    "v1/pods": ("Pod", True, ("log",)),
    "v1/services": ("Service", True, ()),
    "v1/events": ("Event", True, ()),
    "v1/serviceaccounts": ("ServiceAccount", True, ()),
    "apps/v1/deployments": ("Deployment", True, ()),
    "serving.kserve.io/v1beta1/inferenceservices": ("InferenceService", True, ("status",)),
    "serving.kserve.io/v1alpha1/servingruntimes": ("ServingRuntime", True, ()),
    "serving.kserve.io/v1alpha1/clusterservingruntimes": ("ClusterServingRuntime", False, ()),
    "gateway.networking.k8s.io/v1/gateways": ("Gateway", True, ()),
    "gateway.networking.k8s.io/v1/httproutes": ("HTTPRoute", True, ()),
    "gateway.networking.k8s.io/v1beta1/referencegrants": ("ReferenceGrant", True, ()),
    "gateway.envoyproxy.io/v1alpha1/securitypolicies": ("SecurityPolicy", True, ()),
    "gateway.envoyproxy.io/v1alpha1/backendtrafficpolicies": ("BackendTrafficPolicy", True, ()),
}
SHORT = {
    "namespaces": ["ns"],
    "pods": ["po"],
    "services": ["svc"],
    "deployments": ["deploy"],
    "inferenceservices": ["isvc"],
    "nodes": ["no"],
    "events": ["ev"],
    "serviceaccounts": ["sa"],
}
_NAMESPACES = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?/?$")


def _key(res: resource) -> str:
    return f"{res.group}/{res.version}/{res.plural}".lstrip("/")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
    # Exactly `application/json`, without a charset: lightkube only decodes errors of that type.
    return aiohttp.web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    """`labelSelector` with equality (`a=b`, `a==b`, `a!=b`) and existence (`a`, `!a`) terms."""
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class Fault:
    """Answer `status` to the next `times` requests whose method and path match."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int


@attrs.define(kw_only=True)
class KubeEmulator(KubernetesEmulator):
    """kmock's emulator with resource versions, resumable watches, selectors, GC and faults."""

    history_limit: int = 10_000
    _rv: int = attrs.field(default=0, init=False)
    _history: list[tuple[int, str, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _watchers: list[tuple[str, asyncio.Queue[dict[str, Any] | None]]] = attrs.field(factory=list, init=False)
    faults: list[Fault] = attrs.field(factory=list, init=False)
    # Pod logs by (namespace, pod): what `GET .../pods/NAME/log` answers.
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)
    # (method, path, User-Agent) of every request served, for the tests' "who called" assertions.
    seen: list[tuple[str, str, str]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for path, (kind, namespaced, subresources) in KINDS.items():
            self.resources[path] = ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=set(READ + WRITE),
                subresources=set(subresources),
            )

    # -- entry -----------------------------------------------------------------------------------------
    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        found = _NAMESPACES.match(raw.path)
        if found:
            # kmock's path parser raises on this cluster-scoped collection (and reads a namespace's own
            # path as a namespace, not an object): build the request here.
            body = await raw.read()
            method = enums.method(raw.method)
            name = found.group("name")
            action = (
                enums.action.WATCH
                if raw.query.get("watch") == "true"
                else enums.action.LIST
                if method == enums.method.GET and name is None
                else enums.action.CREATE
                if name is None
                else None
            )
            request = Request(
                raw_request=raw,
                url=raw.url,
                method=raw.method,
                params=dict(raw.query),
                headers=dict(raw.headers),
                data=json.loads(body) if body else None,
                body=body,
                action=action,
                resource=resource("", "v1", "namespaces"),
                name=name,
            )
            return await self._handle(request)
        return await super().__call__(raw)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        self.seen.append((raw.method, raw.path, raw.headers.get("User-Agent", "")))
        for fault in self.faults:
            if fault.times > 0 and fault.method == raw.method and fault.path.search(raw.path):
                fault.times -= 1
                return self._error(fault.status, "InternalError" if fault.status >= 500 else "Conflict")
        res = request.resource
        if res is not None and not res.plural and request.method == enums.method.GET:
            listing = self._resource_list(res.group or "", res.version or "")
            if listing is not None:
                return _json(listing)
        if res is None or not res.plural or _key(res) not in KINDS:
            return await super(KubernetesEmulator, self)._handle(request)  # discovery (kmock's)
        key = _key(res)
        try:
            if request.action == enums.action.WATCH:
                return await self._watch(request, key)
            async with self._lock:
                return self._serve(request, res, key)
        except _Refused as exc:
            return self._error(exc.code, exc.reason, exc.message)

    @staticmethod
    def _resource_list(group: str, version: str) -> dict[str, Any] | None:
        """`/api/v1` and `/apis/GROUP/VERSION` (kmock writes the core group's groupVersion as "/v1",
        which kubectl cannot map, so the core kinds would be unknown to it)."""
        group_version = f"{group}/{version}" if group else version
        found = []
        for path, (kind, namespaced, subresources) in KINDS.items():
            if path.rsplit("/", 1)[0] != group_version:
                continue
            plural = path.rsplit("/", 1)[1]
            base = {"kind": kind, "namespaced": namespaced, "singularName": kind.lower()}
            found.append(
                {"name": plural, **base, "verbs": [*READ, *WRITE], "shortNames": SHORT.get(plural, [])}
            )
            found += [{"name": f"{plural}/{sub}", **base, "verbs": ["get"]} for sub in subresources]
        if not found:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": found,
        }

    @staticmethod
    def _error(code: int, reason: str, message: str | None = None) -> aiohttp.web.Response:
        return _json(_status(code, reason, message or reason), status=code)

    # -- serving -------------------------------------------------------------------------------------------
    def _serve(self, request: rendering.Request, res: resource, key: str) -> aiohttp.web.StreamResponse:
        namespaced = KINDS[key][1]
        ns = request.namespace if namespaced else None
        method = request.method
        if request.name is None:
            if method == enums.method.GET:
                selector = request.params.get("labelSelector")
                items = [
                    obj
                    for (_, o_ns, _), obj in self._items(key)
                    if (ns is None or o_ns == ns) and _selected(obj, selector)
                ]
                return _json(
                    {
                        "apiVersion": "v1",
                        "kind": KINDS[key][0] + "List",
                        "metadata": {"resourceVersion": str(self._rv)},
                        "items": items,
                    }
                )
            if method == enums.method.POST:
                return _json(self._create(res, key, ns, request.data), status=201)
            raise _Refused(405, "MethodNotAllowed", f"{method} is not served on collections")
        if request.subresource == "log" and key == "v1/pods":
            self._existing(res, ns, request.name)
            text = self.pod_logs.get((ns or "", request.name), "")
            tail = request.params.get("tailLines")
            if tail and tail.isdigit():
                text = "".join(text.splitlines(keepends=True)[-int(tail) :])
            return aiohttp.web.Response(text=text)
        if method == enums.method.GET:
            return _json(self._existing(res, ns, request.name))
        if method == enums.method.PATCH:
            ctype = request.headers.get("Content-Type", "")
            if "merge-patch" not in ctype and "strategic" not in ctype:
                raise _Refused(415, "UnsupportedMediaType", f"patch type {ctype!r} is not emulated")
            patch = request.data or {}
            if request.subresource == "status":
                patch = {"status": patch.get("status")}
            return _json(self._patch(res, key, ns, request.name, patch))
        if method == enums.method.DELETE:
            return _json(self._delete(res, key, ns, request.name))
        raise _Refused(405, "MethodNotAllowed", f"{method} is not emulated")

    def _items(self, key: str) -> Iterator[tuple[tuple[str, str | None, str], dict[str, Any]]]:
        for (r, ns, name), obj in self.objects.items():
            if _key(r) == key and not obj.deleted:
                yield (key, ns, name), obj.raw

    def _existing(self, res: resource, ns: str | None, name: str) -> dict[str, Any]:
        if (res, ns, name) not in self.objects or self.objects[res, ns, name].deleted:
            raise _Refused(404, "NotFound", f'{res.plural} "{name}" not found')
        raw: dict[str, Any] = self.objects[res, ns, name].raw
        return raw

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, key: str, type_: str, obj: dict[str, Any]) -> None:
        event = {"type": type_, "object": obj}
        self._history.append((self._rv, key, event))
        if len(self._history) > self.history_limit:
            del self._history[: len(self._history) - self.history_limit]
        for wkey, queue in self._watchers:
            if wkey == key:
                queue.put_nowait(event)

    def _create(self, res: resource, key: str, ns: str | None, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not (data.get("metadata") or {}).get("name"):
            raise _Refused(422, "Invalid", "metadata.name is required")
        name = data["metadata"]["name"]
        if ns and key != "v1/namespaces" and not self._has_namespace(ns):
            raise _Refused(404, "NotFound", f'namespaces "{ns}" not found')
        if (res, ns, name) in self.objects and not self.objects[res, ns, name].deleted:
            raise _Refused(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
        obj = json.loads(json.dumps(data))
        obj.setdefault("apiVersion", key.rsplit("/", 1)[0])
        obj.setdefault("kind", KINDS[key][0])
        meta = obj.setdefault("metadata", {})
        if ns is not None:
            meta["namespace"] = ns
        meta.update(
            uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self._bump(), generation=1
        )
        if (res, ns, name) in self.objects:
            del self.objects[res, ns, name]
        self.objects[res, ns, name] = obj
        self._record(key, "ADDED", obj)
        return obj

    def _has_namespace(self, ns: str) -> bool:
        res = resource("", "v1", "namespaces")
        return (res, None, ns) in self.objects and not self.objects[res, None, ns].deleted

    def _patch(self, res: resource, key: str, ns: str | None, name: str, patch: Any) -> dict[str, Any]:
        before = self._existing(res, ns, name)
        if not isinstance(patch, dict):
            raise _Refused(400, "BadRequest", "a merge patch is a JSON object")
        patch = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
        (patch.get("metadata") or {}).pop("resourceVersion", None)
        self.objects[res, ns, name].patch(patch)
        obj: dict[str, Any] = self.objects[res, ns, name].raw
        if obj.get("spec") != before.get("spec"):
            obj["metadata"]["generation"] = int(before["metadata"].get("generation", 1)) + 1
        obj["metadata"]["resourceVersion"] = self._bump()
        self._record(key, "MODIFIED", obj)
        return obj

    def _delete(self, res: resource, key: str, ns: str | None, name: str) -> dict[str, Any]:
        obj = self._existing(res, ns, name)
        self._remove(res, key, ns, name)
        return obj

    def _remove(self, res: resource, key: str, ns: str | None, name: str) -> None:
        obj = self.objects[res, ns, name].raw
        self.objects[res, ns, name].delete()
        self._bump()
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._record(key, "DELETED", obj)
        uid = obj["metadata"].get("uid")
        # The garbage collector: what this object owned, and, for a namespace, all it held.
        for (r, o_ns, o_name), other in list(self.objects.items()):
            if other.deleted:
                continue
            raw = other.raw
            owners = raw.get("metadata", {}).get("ownerReferences") or []
            gone_ns = key == "v1/namespaces" and o_ns == name
            if gone_ns or any(o.get("uid") == uid for o in owners):
                self._remove(r, _key(r), o_ns, o_name)

    async def _watch(self, request: rendering.Request, key: str) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        namespaced = KINDS[key][1]
        ns = request.namespace if namespaced else None
        selector = request.params.get("labelSelector")
        since = request.params.get("resourceVersion")
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        async with self._lock:
            backlog: list[dict[str, Any]] = []
            if since in (None, "", "0"):
                backlog = [{"type": "ADDED", "object": obj} for _, obj in self._items(key)]
            else:
                assert since is not None
                oldest = self._history[0][0] if self._history else self._rv + 1
                if not since.isdigit() or (int(since) < oldest - 1 and int(since) < self._rv):
                    backlog = [
                        {"type": "ERROR", "object": _status(410, "Expired", "too old resource version")}
                    ]
                else:
                    backlog = [e for rv, k, e in self._history if k == key and rv > int(since)]
            entry = (key, queue)
            self._watchers.append(entry)
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(raw)

        def wanted(event: dict[str, Any]) -> bool:
            meta = event["object"].get("metadata", {})
            if event["type"] == "ERROR":
                return True
            return (ns is None or meta.get("namespace") == ns) and _selected(event["object"], selector)

        timeout = request.params.get("timeoutSeconds")
        deadline = float(timeout) if timeout and timeout.isdigit() else None
        try:
            for event in backlog:
                if wanted(event):
                    await response.write(json.dumps(event).encode() + b"\n")
                if event["type"] == "ERROR":
                    return response
            loop = asyncio.get_running_loop()
            end = None if deadline is None else loop.time() + deadline
            while True:
                wait = None if end is None else max(end - loop.time(), 0)
                try:
                    event_or_none = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    break
                if event_or_none is None:  # dropped on purpose (drop_watches)
                    break
                if wanted(event_or_none):
                    await response.write(json.dumps(event_or_none).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.remove(entry)
        return response

    # -- the tests' hands ----------------------------------------------------------------------------------
    def fail(self, method: str, path: str, status: int = 500, times: int = 1) -> None:
        """The next `times` requests of `method` on a path matching the regex `path` answer `status`."""
        self.faults.append(Fault(method.upper(), re.compile(path), status, times))

    def drop_watches(self) -> int:
        """End every open watch stream mid-way (as a load balancer cutting idle connections)."""
        for _, queue in self._watchers:
            queue.put_nowait(None)
        return len(self._watchers)

    def compact(self) -> None:
        """Forget the event history (as etcd's compaction): a watch resuming from before answers 410."""
        self._history.clear()
        self._rv += 1

    def put(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create (or merge into) an object as a controller would, with watch events. `path` is
        'group/version/plural'."""
        res = resource(path)
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") if KINDS[path][1] else None
        if (res, ns, meta["name"]) in self.objects and not self.objects[res, ns, meta["name"]].deleted:
            return self._patch(res, path, ns, meta["name"], obj)
        return self._create(res, path, ns, obj)

    def get(self, path: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        res = resource(path)
        ns = namespace if KINDS[path][1] else None
        if (res, ns, name) not in self.objects or self.objects[res, ns, name].deleted:
            return None
        raw: dict[str, Any] = self.objects[res, ns, name].raw
        return raw

    def all(self, path: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o for (_, ns, _), o in self._items(path) if namespace is None or ns == namespace]

    def remove(self, path: str, namespace: str | None, name: str) -> None:
        """Delete an object behind the client's back (as another user of the cluster would)."""
        res = resource(path)
        self._remove(res, path, namespace if KINDS[path][1] else None, name)


class _Refused(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class EmulatorThread:
    """A `KubeEmulator` served on loopback from its own event loop in a daemon thread.

    `stop()` and `start()` take the listener down and up again on the same port with the same objects
    (an API server restart); `call(fn)` runs `fn(emulator)` on the emulator's loop and returns its value.
    """

    def __init__(self, port: int = 0) -> None:
        self.emulator = KubeEmulator()
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-emulator", daemon=True)
        self._thread.start()
        self._server: Server | None = None
        self._submit(self._enter_handler()).result(10)

    def _submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _enter_handler(self) -> None:
        await self.emulator.__aenter__()

    async def _start(self) -> None:
        server = Server(self.emulator, port=self.port or None)
        await server.__aenter__()
        self.port = server.port
        self._server = server

    async def _stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            self.emulator.drop_watches()
            await server.__aexit__(None, None, None)

    def start(self) -> EmulatorThread:
        self._submit(self._start()).result(10)
        return self

    def stop(self) -> None:
        self._submit(self._stop()).result(10)

    def close(self) -> None:
        self.stop()
        self._submit(self.emulator.__aexit__(None, None, None)).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, fn: Callable[[KubeEmulator], T]) -> T:
        async def run() -> T:
            async with self.emulator._lock:
                return fn(self.emulator)

        result: T = self._submit(run()).result(10)
        return result

    def kubeconfig(self, directory: Path) -> Path:
        """A kubeconfig file pointing at the emulator (plain HTTP, a token it ignores)."""
        path = directory / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "inferbox", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "inferbox"}}],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(config))
        return path
