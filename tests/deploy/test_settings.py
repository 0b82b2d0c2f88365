"""Every setting is documented, and a wrong one stops the CLI with one clear paragraph."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cli
from core.codec import new_codec_key_spec
from core.config import Settings, get_settings
from core.temporal import data_converter, tls_config

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "sk_live_do_not_print_me"


def documented_settings() -> set[str]:
    section = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def test_the_readme_table_lists_exactly_the_settings() -> None:
    assert documented_settings() == {name.upper() for name in Settings.model_fields}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment (no .env from the working directory); settings read afresh."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("variables", "named", "why"),
    [
        ({"SMTP_PORT": "twenty-five"}, "SMTP_PORT", "valid integer"),
        (
            {"WORKER_MAX_CONCURRENT_ACTIVITIES": "0"},
            "WORKER_MAX_CONCURRENT_ACTIVITIES",
            "greater than 0",
        ),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT", "'json' or 'text'"),
        ({"PAYLOAD_CODEC_KEYS": f"k1:{SECRET}"}, "PAYLOAD_CODEC_KEYS", "not valid base64"),
        ({"STRIPE_WEBHOOK_SECRET": ""}, "STRIPE_WEBHOOK_SECRET", "at least 1 character"),
        (
            {"TEMPORAL_TLS_CERT": "/no/such/cert.pem", "TEMPORAL_TLS_KEY": "/no/such/key.pem"},
            "TEMPORAL_TLS_CERT",
            "no file at /no/such/cert.pem",
        ),
    ],
)
def test_a_malformed_setting_exits_2_naming_it(
    environment: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    named: str,
    why: str,
) -> None:
    for name, value in variables.items():
        environment.setenv(name, value)

    with pytest.raises(SystemExit) as exited:
        cli.main(["migrate"])

    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert f"{named}: " in message and why in message
    assert "Traceback" not in message and message.count("\n") == 1
    assert SECRET not in message


def test_a_missing_half_of_a_pair_is_named(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("cert")
    environment.setenv("TEMPORAL_TLS_CERT", str(cert))

    with pytest.raises(SystemExit) as exited:
        cli.main(["worker"])

    assert exited.value.code == 2
    assert "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together" in capsys.readouterr().err


def test_every_problem_is_listed_at_once(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("SMTP_PORT", "x")
    environment.setenv("LOG_LEVEL", "loud")

    with pytest.raises(SystemExit):
        cli.main(["api"])

    message = capsys.readouterr().err
    assert "2 setting(s) are wrong" in message
    assert "SMTP_PORT: " in message and "LOG_LEVEL: " in message


def test_help_needs_no_settings(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("SMTP_PORT", "x")

    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])

    assert exited.value.code == 0


def test_empty_optional_values_mean_unset(environment: pytest.MonkeyPatch) -> None:
    for name in ("STRIPE_SECRET_KEY", "SMTP_USERNAME", "TEMPORAL_API_KEY", "METRICS_PORT"):
        environment.setenv(name, "")

    settings = get_settings()

    assert settings.stripe_secret_key is None
    assert settings.smtp_username is None
    assert settings.temporal_api_key is None
    assert settings.metrics_port is None


def test_the_temporal_connection_takes_the_tls_files_and_the_codec(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----")
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----")
    settings = Settings(
        _env_file=None,
        temporal_tls_cert=str(cert),
        temporal_tls_key=str(key),
        payload_codec_keys=new_codec_key_spec("2026-01"),  # type: ignore[arg-type]
    )

    tls = tls_config(settings)

    assert tls is not None
    assert (tls.client_cert, tls.client_private_key) == (cert.read_bytes(), key.read_bytes())
    assert data_converter(settings).payload_codec is not None
    assert data_converter(Settings(_env_file=None)).payload_codec is None
    assert tls_config(Settings(_env_file=None)) is None
