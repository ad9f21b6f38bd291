"""An InferenceService's status (and its predictor Deployment's replicas) as inferbox's `ModelStatus`.

KServe writes `Ready` / `PredictorReady` conditions, `status.url`, `status.address.url` and
`modelStatus` (`states.activeModelState`, `transitionStatus`, `lastFailureInfo`); the local runtime
reports the same phases (Pending, Loading, Ready, FailedToLoad) and condition types, so the API's
`status` / `ready` / `statusDetails` read alike on both backends. Pure functions: no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from inferbox.runtime.base import (
    FAILED_TO_LOAD,
    LOADING,
    PENDING,
    READY,
    Condition,
    ModelStatus,
)


def _when(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)


def conditions(isvc: dict[str, Any]) -> tuple[Condition, ...]:
    out = []
    for raw in (isvc.get("status") or {}).get("conditions") or []:
        if not isinstance(raw, dict) or not raw.get("type"):
            continue
        out.append(
            Condition(
                type=str(raw["type"]),
                status=str(raw.get("status") or "Unknown"),
                reason=str(raw.get("reason") or ""),
                message=str(raw.get("message") or ""),
                last_transition_time=_when(raw.get("lastTransitionTime")),
            )
        )
    return tuple(out)


def _true(conds: tuple[Condition, ...], type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in conds)


def address(isvc: dict[str, Any]) -> str | None:
    """The base URL predict calls go to: the in-cluster address, else the public URL."""
    status = isvc.get("status") or {}
    url = (status.get("address") or {}).get("url") or status.get("url")
    return str(url).rstrip("/") if url else None


def model_status(
    isvc: dict[str, Any] | None, deployment: dict[str, Any] | None, min_replicas: int
) -> ModelStatus:
    if isvc is None:
        return ModelStatus(
            PENDING,
            False,
            None,
            min_replicas,
            0,
            0,
            reason="NotCreated",
            message="The InferenceService does not exist (yet)",
        )
    status = isvc.get("status") or {}
    conds = conditions(isvc)
    model = status.get("modelStatus") or {}
    states = model.get("states") or {}
    failure = model.get("lastFailureInfo") or {}
    transition = model.get("transitionStatus")
    ready = _true(conds, "Ready")
    failed = states.get("activeModelState") == "FailedToLoad" or transition in (
        "BlockedByFailedLoad",
        "InvalidSpec",
    )
    if ready:
        phase = READY
    elif failed or failure:
        phase = FAILED_TO_LOAD
    elif conds or states:
        phase = LOADING
    else:
        phase = PENDING
    reason = message = None
    if not ready:
        not_ready = next((c for c in conds if c.type == "Ready" and c.status != "True"), None)
        if failure:
            reason = str(failure.get("reason") or "ModelLoadFailed")
            message = str(failure.get("message") or "")
        elif not_ready is not None:
            reason, message = not_ready.reason or None, not_ready.message or None
        else:
            reason, message = "Pending", "Waiting for KServe to reconcile the InferenceService"
    dep_spec = (deployment or {}).get("spec") or {}
    dep_status = (deployment or {}).get("status") or {}
    desired = int(dep_spec.get("replicas", min_replicas) if deployment else min_replicas)
    ready_n = int(dep_status.get("readyReplicas") or 0)
    total = int(dep_status.get("replicas") or 0)
    url = status.get("url")
    name = (isvc.get("metadata") or {}).get("name", "")
    return ModelStatus(
        phase=phase,
        ready=ready,
        url=f"{str(url).rstrip('/')}/v1/models/{name}:predict" if url else None,
        desired=desired,
        ready_replicas=ready_n,
        total=total,
        conditions=conds,
        restarts=0,
        reason=reason,
        message=message,
    )
