"""Settings from the environment: names, defaults, ranges, and the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferbox.config import ConfigError, Settings, environment_names, from_env

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_spellings() -> None:
    s = from_env({})
    assert (s.port, s.gateway_port, s.rate_limit_requests, s.rate_limit_burst) == (8085, 8080, 100, 10)
    assert s.forwarded_allow_ips == () and s.redis_url is None and s.max_body_bytes == 32 * 1024 * 1024
    s = from_env(
        {
            "LOG_LEVEL": "warn,json",
            "CORS_ORIGINS": "https://a.example, https://b.example",
            "DATABASE_URL": "postgres://u@db/x",
            "FORWARDED_ALLOW_IPS": "10.0.0.0/8,127.0.0.1",
            "PORT": " 9000 ",
            "REDIS_URL": "",
        }
    )
    assert (s.log_level, s.log_json, s.port) == ("warning", True, 9000)
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.database_url == "postgresql+psycopg://u@db/x"
    assert s.forwarded_allow_ips == ("10.0.0.0/8", "127.0.0.1") and s.redis_url is None


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("PORT", "70000", "at most 65535"),
        ("INFERBOX_MAX_BODY_BYTES", "10", "at least 65536"),
        ("INFERBOX_WS_QUEUE_SIZE", "0", "at least 1"),
        ("CORS_ORIGINS", "console.example", "origins like"),
        ("FORWARDED_ALLOW_IPS", "proxy.local", "IP addresses or networks"),
        ("REDIS_URL", "http://x", "scheme redis"),
        ("INFERBOX_RUNTIME", "nomad", "one of local, kubernetes"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env({name: value})
    message = str(info.value)
    assert message.startswith(name) and words in message and "\n" not in message


def test_secrets_are_not_repeated_in_refusals() -> None:
    with pytest.raises(ConfigError) as info:
        from_env({"JWT_SECRET": "tooshort"})
    assert "tooshort" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        from_env({"DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(info.value)


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [alias for alias in environment_names().values() if f"`{alias}`" not in readme]
    assert missing == []


def test_settings_are_typed_and_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError):
        Settings(nonsense=1)  # type: ignore[call-arg]
    assert Settings(port=1234).with_(gateway_port=4321).gateway_port == 4321
