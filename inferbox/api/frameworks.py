"""`GET /api/frameworks`: what this install can serve, for the deploy and edit forms of a console.

Listed from the model server's own framework table, so that a framework is offered exactly when a
create naming it would be accepted; one whose optional extra is missing is listed as unavailable, with
what to install (the same sentence a create would answer with)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from inferbox.api.deps import PrincipalDep
from inferbox.blocking import in_thread
from inferbox.server.frameworks import FRAMEWORKS, missing_extra

router = APIRouter(tags=["models"])

DESCRIPTIONS = {
    "sklearn": "Scikit-learn models and pipelines (model.joblib, .pkl)",
    "xgboost": "XGBoost boosters (model.json, .ubj, .bst)",
    "lightgbm": "LightGBM boosters (model.txt)",
    "onnx": "ONNX models, run by ONNX Runtime (model.onnx)",
    "pytorch": "PyTorch models saved whole or as TorchScript (.pt, .pth)",
    "huggingface": "Hugging Face Transformers models (a directory with config.json), OpenAI-compatible",
}


class FrameworkOut(BaseModel):
    name: str = Field(description="the value of a model's `framework`")
    description: str
    available: bool = Field(description="whether this install can serve it now")
    extra: str | None = Field(description="the optional inferbox extra that installs it, if any")
    reason: str | None = Field(description="while unavailable: what to install")
    modelFiles: list[str] = Field(description="the file names looked for in a storageUri")


class FrameworkList(BaseModel):
    frameworks: list[FrameworkOut]


def _listing() -> FrameworkList:
    out = []
    for name, framework in FRAMEWORKS.items():
        missing = missing_extra(name)
        files = [framework.marker] if framework.marker else [f"*{e}" for e in framework.extensions]
        out.append(
            FrameworkOut(
                name=name,
                description=DESCRIPTIONS.get(name, f"{name} models"),
                available=missing is None,
                extra=framework.extra,
                reason=missing,
                modelFiles=files,
            )
        )
    return FrameworkList(frameworks=out)


@router.get("/api/frameworks", response_model=FrameworkList, summary="The frameworks this install serves")
async def frameworks(_principal: PrincipalDep) -> FrameworkList:
    # find_spec reads the file system: off the event loop.
    return await in_thread(_listing)
