"""Settings: read from TTMINIS_*, validated at construction with a sentence saying what to fix."""

from __future__ import annotations

import pytest

from tiktok_minis import ConfigurationError, Settings

_CREDENTIALS = ("TTMINIS_CLIENT_KEY", "TTMINIS_CLIENT_SECRET", "TTMINIS_SECRET_KEY")


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials and no sandbox switch in the environment."""
    for name in (*_CREDENTIALS, "TTMINIS_SANDBOX"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("bare_environment")
def test_sandbox_mode_is_never_implied() -> None:
    """With nothing set the start stops, naming every variable to set and the sandbox switch."""
    with pytest.raises(ConfigurationError) as caught:
        Settings()
    for name in (*_CREDENTIALS, "TTMINIS_SANDBOX=true"):
        assert name in caught.value.message


@pytest.mark.usefixtures("bare_environment")
@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"database_url": "postgres://postgres@127.0.0.1/test"}, _CREDENTIALS),
        ({"client_secret": "s3cr3t", "secret_key": "k" * 40}, ("TTMINIS_CLIENT_KEY",)),
        ({"client_key": "aw123", "secret_key": "k" * 40}, ("TTMINIS_CLIENT_SECRET",)),
        ({"client_key": "aw123", "client_secret": "s3cr3t"}, ("TTMINIS_SECRET_KEY",)),
        (
            {"client_key": "", "client_secret": "s3cr3t", "secret_key": "k" * 40},
            ("TTMINIS_CLIENT_KEY",),
        ),
    ],
)
def test_a_missing_credential_stops_the_start(
    values: dict[str, str], missing: tuple[str, ...]
) -> None:
    """Any credential missing (or empty) stops the start, named; none falls back to the emulator."""
    with pytest.raises(ConfigurationError) as caught:
        Settings(**values)
    message = caught.value.message
    assert "TTMINIS_SANDBOX=true" in message
    assert [name for name in _CREDENTIALS if name in message] == list(missing)


@pytest.mark.usefixtures("bare_environment")
def test_sandbox_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """TTMINIS_SANDBOX=true (or sandbox=True) runs the emulator on SQLite with the defaults."""
    monkeypatch.setenv("TTMINIS_SANDBOX", "true")
    settings = Settings()
    assert settings.sandbox is True
    assert Settings(sandbox=True) == settings
    assert settings.database_url == "sqlite://ttminis.sqlite3"
    assert settings.api_base_url == "https://open.tiktokapis.com"
    assert settings.placeholder_name == "TikTok Player"
    assert settings.profile_refresh_days == (3.0, 7.0)
    assert settings.redis_url is None


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """TTMINIS_* variables configure the plugin, ranges included."""
    monkeypatch.setenv("TTMINIS_CLIENT_KEY", "aw123")
    monkeypatch.setenv("TTMINIS_CLIENT_SECRET", "s3cr3t")
    monkeypatch.setenv("TTMINIS_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("TTMINIS_PROFILE_REFRESH_DAYS", "2-4")
    monkeypatch.setenv("TTMINIS_PLACEHOLDER_NAME", "Mystery Player")
    monkeypatch.setenv("TTMINIS_PREVIOUS_SECRET_KEYS", "old-one, older-one")
    settings = Settings()
    assert settings.sandbox is False
    assert settings.effective_client_key == "aw123"
    assert settings.profile_refresh_days == (2.0, 4.0)
    assert settings.placeholder_name == "Mystery Player"
    assert settings.secret_keys == ["k" * 40, "old-one", "older-one"]


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"client_key": "aw123"}, "TTMINIS_CLIENT_SECRET"),
        ({"client_key": "aw123", "client_secret": "x"}, "TTMINIS_SECRET_KEY"),
        (
            {"client_key": "aw123", "client_secret": "x", "secret_key": "short"},
            "TTMINIS_SECRET_KEY",
        ),
        ({"profile_refresh_days": "7-3"}, "TTMINIS_PROFILE_REFRESH_DAYS"),
        ({"profile_refresh_days": "soon"}, "TTMINIS_PROFILE_REFRESH_DAYS"),
        ({"database_url": "mongodb://x"}, "TTMINIS_DATABASE_URL"),
        ({"api_base_url": "open.tiktokapis.com"}, "TTMINIS_API_BASE_URL"),
        ({"redis_url": "localhost:6379"}, "TTMINIS_REDIS_URL"),
        ({"push_interval_ms": 0}, "TTMINIS_PUSH_INTERVAL_MS"),
        ({"unknown_knob": 1}, "TTMINIS_UNKNOWN_KNOB"),
    ],
)
def test_bad_values_name_the_variable_to_fix(values: dict[str, object], names: str) -> None:
    """A bad setting raises ConfigurationError naming the variable."""
    with pytest.raises(ConfigurationError) as caught:
        Settings(**values)
    assert names in str(caught.value)


def test_secrets_stay_out_of_repr() -> None:
    """repr and str of the settings never show the client secret or the secret key."""
    settings = Settings(client_key="aw123", client_secret="top-secret-value", secret_key="s" * 40)
    for text in (repr(settings), str(settings)):
        assert "top-secret-value" not in text
        assert "s" * 40 not in text
