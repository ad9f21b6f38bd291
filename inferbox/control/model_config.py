"""A model's user-settable configuration: its one definition.

`ModelConfig`'s fields are named once. The API reads and writes them by their camelCase aliases
(`storageUri`, `minReplicas`), the store's columns and the runtime's `ModelSpec` carry the same names in
snake_case, so a row, a spec and a JSON view are all made from `model_dump()` of this class. Adding a
field means adding it here and a column. `args` (`ModelArgs`) is the one nested field: the framework's
own options, stored as a JSON object.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from inferbox import storage
from inferbox.control.errors import InvalidField
from inferbox.control.tenants import label_problem
from inferbox.control.validation import field_error
from inferbox.server.frameworks import FRAMEWORKS

MAX_NAME = 45  # KServe's limit: the predictor's service name must stay a DNS label
MAX_SCALE_TARGET = 100_000
ScaleMetric = Literal["concurrency", "rps", "cpu", "memory"]
# The tasks a huggingface model may be told to serve (the model server's `--task`): the ones whose
# config does not say so themselves are mostly language models saved without their head's name.
HfTask = Literal["text-generation", "feature-extraction", "text-classification"]


def _known_framework(name: str) -> str:
    if name not in FRAMEWORKS:
        raise field_error(f"must be one of {', '.join(FRAMEWORKS)}; got '{name}'")
    return name


def _storage_shape(uri: str) -> str:
    """The shape of a storageUri (an absolute path, or a URI with a scheme); whether it exists is
    checked later, after the caller's storage policy (see control/storage_policy.py)."""
    if storage.is_local(uri):
        try:
            storage.local_path(uri)
        except storage.StorageError as exc:
            raise field_error(": " + str(exc).removeprefix("storageUri").lstrip(":").strip()) from None
    return uri


class ModelArgs(BaseModel):
    """A framework's own options for a model (today only huggingface's `task`). Unknown keys are
    refused rather than ignored: a misspelt option would otherwise silently change nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: HfTask | None = Field(
        None,
        description="huggingface only: the pipeline task (default: from the model's config.json)",
    )

    def is_empty(self) -> bool:
        return self.task is None


class ModelConfig(BaseModel):
    """What a user sets of a model. Defaults apply to fields left out or given as null."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    framework: Annotated[
        str,
        Field(max_length=64, description="sklearn, xgboost, lightgbm, onnx, pytorch or huggingface"),
        AfterValidator(_known_framework),
    ]
    storage_uri: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2048,
            description="file:///path, /abs/path, or s3:// gs:// https:// hf://",
        ),
        AfterValidator(_storage_shape),
    ]
    min_replicas: Annotated[StrictInt, Field(ge=0, description="0 (scale to zero) up to maxReplicas")] = 1
    max_replicas: Annotated[StrictInt, Field(ge=1, description="1 up to INFERBOX_MAX_REPLICAS")] = 1
    scale_target: Annotated[
        StrictInt,
        Field(gt=0, le=MAX_SCALE_TARGET, description="in-flight requests (or rps) per replica"),
    ] = 10
    scale_metric: Annotated[
        ScaleMetric, Field(description="concurrency or rps (cpu and memory on Kubernetes)")
    ] = "concurrency"
    args: Annotated[
        ModelArgs, Field(description='the framework\'s options: {"task": ...} for huggingface')
    ] = ModelArgs()

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    def check_bounds(self, max_replicas: int) -> None:
        """The rules between fields, and the machine's replica cap (a setting)."""
        if self.max_replicas > max_replicas:
            raise InvalidField(f"Field 'maxReplicas' must be at most {max_replicas} (INFERBOX_MAX_REPLICAS)")
        if self.min_replicas > self.max_replicas:
            raise InvalidField("Field 'minReplicas' must not exceed 'maxReplicas'")
        if not self.args.is_empty() and self.framework != "huggingface":
            raise InvalidField(f"Field 'args' is only for framework huggingface (got '{self.framework}')")

    @field_serializer("args")
    def _args_set(self, args: ModelArgs) -> dict[str, Any]:
        # Only the options given: `{}` for none, the same in the API's view, the store and the spec.
        return args.model_dump(exclude_none=True)

    def view(self) -> dict[str, Any]:
        """The API's names: `{"framework", "storageUri", "minReplicas", ...}`; `args` only when it
        holds an option, so that a model without any answers exactly as the spec shows."""
        view = self.model_dump(by_alias=True, include=set(ModelConfig.model_fields))
        if not view["args"]:
            del view["args"]
        return view

    def fields(self) -> dict[str, Any]:
        """The store's and ModelSpec's names: `{"framework", "storage_uri", "min_replicas", ...}`."""
        return self.model_dump(include=set(ModelConfig.model_fields))

    @classmethod
    def of(cls, row: Any) -> ModelConfig:
        """From anything with the fields as attributes (a store row); trusted, so not re-validated.
        `args` may be a `ModelArgs`, its JSON object, or None (a row stored before it existed)."""
        values = {name: getattr(row, name) for name in ModelConfig.model_fields}
        if not isinstance(values["args"], ModelArgs):
            values["args"] = ModelArgs.model_construct(**(values["args"] or {}))
        return ModelConfig.model_construct(**values)

    @classmethod
    def api_names(cls) -> tuple[str, ...]:
        return tuple(f.alias or name for name, f in ModelConfig.model_fields.items())


def check_name(name: str) -> None:
    problem = label_problem(name, max_length=MAX_NAME)
    if problem:
        raise InvalidField(f"Field 'name' {problem}")
