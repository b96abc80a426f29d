"""``Settings.from_env``: every value parsed from its field's type, every bad one refused at
start-up naming its variable, and a mistyped variable pointed out."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.settings import Settings, SettingsError, unknown_settings


def test_values_are_parsed_by_their_fields_type() -> None:
    settings = Settings.from_env(
        {
            "COMPUTEBUS_PORT": "9000",
            "COMPUTEBUS_IDLE_S": "2.5",
            "COMPUTEBUS_ALLOW_NETWORK": "yes",
            "COMPUTEBUS_DATA_DIR": "/var/lib/computebus",
            "COMPUTEBUS_SANDBOX_UIDS": "2000-2999",
            "COMPUTEBUS_PYTHON": "/usr/bin/python3",
            "NATS_URL": "nats://127.0.0.1:4222",
            "COMPUTEBUS_NODE": "",  # empty is unset
            "COMPUTEBUS_CORS_ORIGINS": "https://app.example.com, http://127.0.0.1:3000",
            "COMPUTEBUS_OPS_PUBLIC": "false",
        }
    )
    assert settings.cors_origins == ("https://app.example.com", "http://127.0.0.1:3000")
    assert settings.ops_public is False and settings.ops_open is False
    assert settings.port == 9000 and settings.idle_s == 2.5 and settings.allow_network is True
    assert settings.data_dir == Path("/var/lib/computebus")
    assert settings.sandbox_uids == (2000, 2999)
    assert settings.python == "/usr/bin/python3" and settings.node is None
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert Settings.from_env({}) == Settings()
    assert Settings().ops_open is True  # loopback: /metrics and /openapi.json need no token
    assert Settings(host="0.0.0.0").ops_open is False


@pytest.mark.parametrize(
    ("name", "raw", "said"),
    [
        ("COMPUTEBUS_PORT", "http", "COMPUTEBUS_PORT='http': invalid literal for int()"),
        ("COMPUTEBUS_PORT", "70000", "COMPUTEBUS_PORT must be 0-65535, got 70000"),
        ("COMPUTEBUS_MAX_TIMEOUT_MS", "-5", "COMPUTEBUS_MAX_TIMEOUT_MS must be positive, got -5"),
        ("COMPUTEBUS_ALLOW_NETWORK", "maybe", "not a boolean (true or false)"),
        ("COMPUTEBUS_SANDBOX_UIDS", "5", "not a uid range FIRST-LAST"),
        ("COMPUTEBUS_ISOLATION", "max", "COMPUTEBUS_ISOLATION must be one of auto, bwrap+cgroup"),
        ("COMPUTEBUS_MONITOR_MAX_BYTES", "1024", "COMPUTEBUS_MONITOR_MAX_BYTES must be at least"),
        ("COMPUTEBUS_COLLECTION_BUNDLE_MAX_BYTES", "1", "COMPUTEBUS_COLLECTION_BUNDLE_MAX_BYTES"),
        ("COMPUTEBUS_CORS_ORIGINS", "https://a.example/path", "is not an origin"),
        ("COMPUTEBUS_OPS_PUBLIC", "sometimes", "not a boolean"),
        ("COMPUTEBUS_SPARES", "-1", "COMPUTEBUS_SPARES must be 0 or more, got -1"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(name: str, raw: str, said: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({name: raw})
    assert said in str(refused.value)


def test_a_mistyped_variable_is_pointed_out() -> None:
    env = {
        "COMPUTEBUS_IDLE": "5",
        "COMPUTEBUS_API": "http://x",  # the CLI's, not a server setting
        "COMPUTEBUS_TEST_ANYTHING": "1",
        "COMPUTEBUS_ZZZ": "1",
        "HOME": "/root",
    }
    assert unknown_settings(env) == [
        "COMPUTEBUS_IDLE is not a computebus setting and is ignored "
        "(did you mean COMPUTEBUS_IDLE_S?)",
        "COMPUTEBUS_ZZZ is not a computebus setting and is ignored",
    ]
