"""`args.task` where a model's task matters without loading it: the publication's default `modelType`
(control/publishing.py), the replica's command line, and the store's `models.args` (migration 0006)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from inferbox.control.model_config import HfTask, ModelArgs, ModelConfig
from inferbox.control.model_rows import ModelRecord, ModelRows
from inferbox.control.publishing import default_model_type, model_task
from inferbox.runtime import ModelSpec
from inferbox.runtime.kubernetes.manifests import KSERVE_HF_TASKS, inference_service_spec
from inferbox.runtime.local.supervisor import RuntimeSettings, server_argv
from inferbox.store import Store
from inferbox.store.db import MIGRATIONS

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


def test_args_are_stored_and_a_model_from_before_0006_has_none(database_url: str, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL: a row written at revision 0005 reads, after the upgrade, as a model
    without options; a task written afterwards comes back, and an update empties it."""
    store = Store(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        conn.execute(
            text("INSERT INTO tenants (name, status, created_at) VALUES ('tenant-a', 'Active', :t)"),
            {"t": STAMP},
        )
        conn.execute(
            text(
                "INSERT INTO models (namespace, name, framework, storage_uri, min_replicas, max_replicas,"
                " scale_target, scale_metric, generation, created_at, updated_at) VALUES ('tenant-a',"
                " 'old', 'huggingface', :uri, 1, 1, 10, 'concurrency', 1, :t, :t)"
            ),
            {"uri": str(tmp_path), "t": STAMP},
        )
    store.migrate()
    rows = ModelRows(store)
    old = rows.find("tenant-a", "old", fresh=True)
    assert old.config.args == ModelArgs() and "args" not in old.config.view()
    assert old.spec.args == {} and old.spec.server_args == []

    told = record(tmp_path, task="feature-extraction").config
    made = rows.insert("tenant-a", "new", told, STAMP)
    again = ModelRows(store).find("tenant-a", "new", fresh=True)  # a second process reads it
    assert again.config.view()["args"] == {"task": "feature-extraction"}
    assert again.spec.server_args == ["--task=feature-extraction"]
    rows.write(made.id, record(tmp_path).config, 2, STAMP)
    assert ModelRows(store).find("tenant-a", "new", fresh=True).config.args.task is None
    store.engine.dispose()


@pytest.mark.parametrize("task", get_args(HfTask))
def test_an_inference_service_names_each_task_as_kserves_huggingface_server_does(task: str) -> None:
    spec = ModelSpec("tenant-a", "m", "huggingface", "hf://org/model", args={"task": task})
    model = inference_service_spec(spec)["predictor"]["model"]
    kserve_names = {"text_generation", "text_embedding", "sequence_classification"}  # its MLTask's
    assert len(model["args"]) == 1 and model["args"][0].removeprefix("--task=") in kserve_names
    assert model["args"] == [f"--task={KSERVE_HF_TASKS[task]}"]
    # Other frameworks take no args: their InferenceServices are as they were.
    assert (
        "args"
        not in inference_service_spec(ModelSpec("tenant-a", "m", "sklearn", "s3://b/m"))["predictor"]["model"]
    )
