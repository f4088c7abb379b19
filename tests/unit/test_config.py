"""Settings: defaults, environment variables, the TOML file, and start-up errors with the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from coldbrew.config import Settings, load_settings
from coldbrew.prices import DEFAULT_PRICES_PER_HOUR_USD


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No COLDBREW_* variable from the outer shell; COLDBREW_HOME is an empty tmp dir."""
    for name in list(os.environ):
        if name.upper().startswith("COLDBREW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLDBREW_HOME", str(tmp_path))
    return tmp_path


def test_defaults(clean_env: Path) -> None:
    settings = Settings()
    assert settings.home == clean_env
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.hardware_slots == {"cpu": os.cpu_count() or 1}
    assert settings.prices_per_hour_usd == DEFAULT_PRICES_PER_HOUR_USD
    assert settings.prices_per_hour_usd["cpu"] == 0.05
    assert settings.db_path == clean_env / "coldbrew.db"
    assert settings.artifact_dir("acme", "abc") == clean_env / "artifacts" / "acme" / "abc"


def test_default_prices_are_not_shared_between_settings() -> None:
    first = Settings()
    first.prices_per_hour_usd["cpu"] = 9.0
    assert Settings().prices_per_hour_usd["cpu"] == 0.05
    assert DEFAULT_PRICES_PER_HOUR_USD["cpu"] == 0.05


def test_price_per_second() -> None:
    settings = Settings()
    assert settings.price_per_second_usd("H100") == pytest.approx(1.99 / 3600, rel=1e-12)
    assert settings.price_per_second_usd("T4") == 0.0


def test_slots_without_a_price_fail_with_the_fix() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(hardware_slots={"cpu": 2, "T4": 1})
    message = str(caught.value)
    assert "hardware classes ['T4'] have slots but no price" in message
    assert "prices_per_hour_usd" in message
    assert "COLDBREW_PRICES_PER_HOUR_USD" in message


def test_unknown_class_with_a_price_is_fine() -> None:
    settings = Settings(hardware_slots={"T4": 1}, prices_per_hour_usd={"T4": 0.35, "cpu": 0.05})
    assert settings.price_per_second_usd("T4") == pytest.approx(0.35 / 3600, rel=1e-12)


def test_negative_slot_count_fails_with_an_example() -> None:
    with pytest.raises(ValidationError, match=r"slot counts must be >= 0, got \{'L4': -1\}"):
        Settings(hardware_slots={"cpu": 1, "L4": -1})


@pytest.mark.parametrize(
    ("field", "value"),
    [("port", 0), ("port", 70000), ("job_ttl_s", 0), ("webhook_max_attempts", 0)],
)
def test_out_of_range_values_fail_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_hardware_slots_from_env_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDBREW_HARDWARE_SLOTS", '{"cpu": 2, "L4": 1}')
    settings = Settings()
    assert settings.hardware_slots == {"cpu": 2, "L4": 1}
    assert settings.prices_per_hour_usd == DEFAULT_PRICES_PER_HOUR_USD


def test_unpriced_slots_from_env_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDBREW_HARDWARE_SLOTS", '{"cpu": 2, "T4": 1}')
    with pytest.raises(ValidationError, match="prices_per_hour_usd"):
        Settings()


def test_prices_from_env_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDBREW_HARDWARE_SLOTS", '{"cpu": 2, "T4": 1}')
    monkeypatch.setenv("COLDBREW_PRICES_PER_HOUR_USD", '{"cpu": 0.04, "T4": 0.35}')
    assert Settings().prices_per_hour_usd == {"cpu": 0.04, "T4": 0.35}


def test_scalars_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDBREW_PORT", "9001")
    monkeypatch.setenv("COLDBREW_LOG_JSON", "true")
    settings = Settings()
    assert (settings.port, settings.log_json) == (9001, True)


def test_toml_file_in_home_is_read(clean_env: Path) -> None:
    (clean_env / "config.toml").write_text(
        'port = 8100\nhost = "0.0.0.0"\n[hardware_slots]\ncpu = 3\nL4 = 2\n'
    )
    settings = Settings()
    assert (settings.host, settings.port) == ("0.0.0.0", 8100)
    assert settings.hardware_slots == {"cpu": 3, "L4": 2}


def test_env_beats_toml_and_flags_beat_env(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "config.toml").write_text("port = 8100\njob_ttl_s = 60.0\n")
    monkeypatch.setenv("COLDBREW_PORT", "8200")
    assert Settings().port == 8200
    assert Settings().job_ttl_s == 60.0
    assert load_settings(port=8300).port == 8300


def test_load_settings_ignores_flags_left_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDBREW_PORT", "8200")
    assert load_settings(port=None, host="0.0.0.0").port == 8200
