"""The spec's 400 wording, built from pydantic's errors, for the two configs defined once."""

from __future__ import annotations

import pytest

from inferbox.control.errors import InvalidField
from inferbox.control.model_config import ModelConfig
from inferbox.control.publish_config import PublishConfig, RateLimiting
from inferbox.control.validation import validated

OK = {"framework": "sklearn", "storageUri": "/models/iris"}


@pytest.mark.parametrize(
    ("data", "details"),
    [
        ({}, "Field 'framework' is required"),
        ({**OK, "framework": None}, "Field 'framework' is required"),
        ({**OK, "minReplicas": -1}, "Field 'minReplicas' must be at least 0"),
        ({**OK, "minReplicas": "1"}, "Field 'minReplicas' must be an integer"),
        ({**OK, "minReplicas": True}, "Field 'minReplicas' must be an integer"),
        ({**OK, "scaleTarget": 0}, "Field 'scaleTarget' must be greater than 0"),
        ({**OK, "scaleTarget": 10**6}, "Field 'scaleTarget' must be at most 100000"),
        ({**OK, "scaleMetric": "gpu"}, "Field 'scaleMetric' must be one of concurrency, rps, cpu, memory"),
        ({**OK, "framework": "caffe"}, "Field 'framework' must be one of"),
        ({**OK, "storageUri": "relative/path"}, "Field 'storageUri': path relative/path must be absolute"),
    ],
)
def test_model_config_refusals_name_the_field(data: dict[str, object], details: str) -> None:
    with pytest.raises(InvalidField) as info:
        validated(ModelConfig, data)
    assert info.value.details.startswith(details)


def test_model_config_is_named_once_for_the_api_the_store_and_the_runtime() -> None:
    config = validated(ModelConfig, {**OK, "maxReplicas": 3, "minReplicas": None})
    assert config.view() == {
        "framework": "sklearn",
        "storageUri": "/models/iris",
        "minReplicas": 1,
        "maxReplicas": 3,
        "scaleTarget": 10,
        "scaleMetric": "concurrency",
    }
    assert set(config.fields()) == {
        "framework",
        "storage_uri",
        "min_replicas",
        "max_replicas",
        "scale_target",
        "scale_metric",
        "args",  # `{}` here; the view above leaves it out when it holds no option
    }


@pytest.mark.parametrize(
    ("config", "details"),
    [
        (
            {"rateLimiting": {"burstLimit": 0}},
            "Field 'config.rateLimiting.burstLimit' must be a positive integer",
        ),
        (
            {"rateLimiting": {"burstLimit": 1.5}},
            "Field 'config.rateLimiting.burstLimit' must be a positive integer",
        ),
        ({"rateLimiting": {"tokensPerHour": 2 * 10**9}}, "must be at most 1,000,000,000"),
        ({"externalPath": "/api/x"}, "Field 'config.externalPath' must not use the reserved prefix /api"),
        ({"externalPath": "/models/x/v2"}, "Field 'config.externalPath' must not hold a /v2 segment"),
        ({"externalPath": "/v1/models/x"}, "Field 'config.externalPath' must not hold a /v1 segment"),
        (
            {"publicHostname": "10.0.0.1"},
            "Field 'config.publicHostname' must be a DNS name, not an IP address",
        ),
        (
            {"authentication": {"allowedTenants": ["A_B"]}},
            "Field 'config.authentication.allowedTenants': 'A_B'",
        ),
    ],
)
def test_publish_config_refusals_name_the_field(config: dict[str, object], details: str) -> None:
    with pytest.raises(InvalidField) as info:
        validated(PublishConfig, config, prefix=("config",))
    assert details in info.value.details


def test_limits_carry_their_windows_to_the_gateway() -> None:
    limits = RateLimiting(requestsPerMinute=60, requestsPerHour=600, burstLimit=2)
    assert [(q.name, q.amount, q.seconds) for q in limits.request_quotas()] == [
        ("burstLimit", 2, 1),
        ("requestsPerMinute", 60, 60),
        ("requestsPerHour", 600, 3600),
    ]
    assert limits.token_quota().amount == 100_000
