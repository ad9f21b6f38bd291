"""A model's input example: bodies that fit it, for the console's test panel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from inferbox.api.deps import ModelName, Namespace, PlatformDep, PrincipalDep
from inferbox.api.models import load_model
from inferbox.blocking import in_thread
from inferbox.control.publishing import model_task

router = APIRouter(tags=["models"])


@router.get(
    "/api/models/{name}/example",
    summary="Request bodies that fit the model",
    description="A V1 and a V2 body built from the input width the model's replica reports. Both are "
    "null while the model is not ready or has no fixed input width (this route never wakes a model "
    "scaled to zero). `task` is a Hugging Face model's task when its files say (`text-generation` "
    "models chat: `POST /api/models/{name}/chat`), else null.",
)
async def input_example(
    name: ModelName, principal: PrincipalDep, platform: PlatformDep, namespace: Namespace = None
) -> dict[str, Any]:
    model = await load_model(platform, principal, name, namespace)
    rows = await platform.predictions.input_example(model)
    task = await in_thread(model_task, model)
    if rows is None:
        return {"name": model.name, "namespace": model.namespace, "task": task, "v1": None, "v2": None}
    v2 = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP64",
                "data": [x for row in rows for x in row],
            }
        ]
    }
    named = {"name": model.name, "namespace": model.namespace, "task": task}
    return {**named, "v1": {"instances": rows}, "v2": v2}
