"""`args.task` read where a model's task matters without loading it: the publication's default
`modelType` and its documented endpoint (control/publishing.py), and the replica's command line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from inferbox.control.model_config import ModelArgs, ModelConfig
from inferbox.control.model_rows import ModelRecord
from inferbox.control.publishing import default_model_type, model_task
from inferbox.runtime.local.supervisor import RuntimeSettings, server_argv

STAMP = datetime(2026, 1, 1, tzinfo=UTC)


def record(tmp_path: Path, framework: str = "huggingface", task: str | None = None) -> ModelRecord:
    # An empty directory: nothing in it names a task, so only `args` can.
    config = ModelConfig(framework=framework, storage_uri=str(tmp_path), args=ModelArgs(task=task))  # type: ignore[arg-type]
    return ModelRecord(1, "tenant-a", "m", config, 1, None, STAMP, STAMP)


@pytest.mark.parametrize(
    ("task", "model_type"),
    [
        ("text-generation", "openai"),
        ("feature-extraction", "openai"),
        ("text-classification", "traditional"),
    ],
)
def test_args_task_decides_the_default_model_type(tmp_path: Path, task: str, model_type: str) -> None:
    model = record(tmp_path, task=task)
    assert model_task(model) == task
    assert default_model_type(model) == model_type


def test_args_task_wins_over_what_the_directory_says(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    assert model_task(record(tmp_path)) == "text-generation"
    assert model_task(record(tmp_path, task="feature-extraction")) == "feature-extraction"


def test_the_replica_is_started_with_the_task_and_without_one_when_none_is_given(tmp_path: Path) -> None:
    settings = RuntimeSettings()
    told = server_argv(settings, record(tmp_path, task="text-generation").spec, tmp_path)
    assert told.count("--task=text-generation") == 1
    plain = server_argv(settings, record(tmp_path).spec, tmp_path)
    assert not [a for a in plain if a.startswith("--task")]
