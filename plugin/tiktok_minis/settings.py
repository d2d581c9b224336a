"""Settings: every knob of the plugin, read from ``TTMINIS_*`` variables or given in code.

``Settings()`` reads the environment; ``Settings(client_key=..., ...)`` overrides it. Values are
validated at construction and a bad one raises :class:`~tiktok_minis.errors.ConfigurationError`
with a sentence that says what to fix. Secrets are :class:`pydantic.SecretStr`, so they stay out
of ``repr`` and logs.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tiktok_minis.errors import ConfigurationError
from tiktok_minis.support.proxies import parse_networks

__all__ = ["SANDBOX_CLIENT_KEY", "SANDBOX_CLIENT_SECRET", "Settings"]

#: Credentials the built-in emulator accepts in sandbox mode. Not secret: they open nothing real.
SANDBOX_CLIENT_KEY = "sbx_client_key"
SANDBOX_CLIENT_SECRET = "sbx_client_secret"  # noqa: S105 (a public sandbox value, not a secret)

# Sandbox mode needs no secret; this fixed key keeps sandbox sessions and stored sandbox tokens
# valid across restarts of the demo. Outside sandbox mode a real TTMINIS_SECRET_KEY is required.
_SANDBOX_SECRET_KEY = "ttminis-sandbox-insecure-key-do-not-use-in-production"  # noqa: S105

_DAYS_RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)\s*)?$")


class Settings(BaseSettings):
    """Every setting of the plugin (see the README's settings table)."""

    model_config = SettingsConfigDict(
        env_prefix="TTMINIS_", extra="forbid", frozen=True, validate_default=True
    )

    sandbox: bool = Field(
        default=False,
        description="Run the built-in TikTok emulator instead of TikTok (demo and tests only).",
    )
    client_key: str | None = Field(
        default=None, description="The app's client key (required unless sandbox mode)."
    )
    client_secret: SecretStr | None = Field(default=None, description="The app's client secret.")
    api_base_url: str = Field(
        default="https://open.tiktokapis.com", description="Where the TikTok Open API is."
    )
    database_url: str = Field(
        default="sqlite://ttminis.sqlite3", description="A tortoise-orm database URL."
    )
    database_pool_size: int = Field(
        default=20, ge=1, le=1000, description="PostgreSQL pool size (tortoise's default is 5)."
    )
    redis_url: str | None = Field(
        default=None, description="Share rooms and pushes between processes through Redis."
    )
    redis_channel: str = Field(
        default="ttminis", description="The Redis pub/sub channel; one per game and environment."
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Signs sessions and encrypts tokens at rest."
    )
    previous_secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Older secret keys, comma-separated, still accepted while rotating.",
    )
    placeholder_name: str = Field(
        default="TikTok Player",
        min_length=1,
        max_length=64,
        description="A player without profile.",
    )
    placeholder_avatar_url: str = Field(
        default="/ttminis/static/default-avatar.svg",
        min_length=1,
        description="The avatar of a player without a profile.",
    )
    profile_refresh_days: Annotated[tuple[float, float], NoDecode] = Field(
        default=(3.0, 7.0), description="A stored profile is refreshed after a random time in it."
    )
    session_ttl_seconds: int = Field(
        default=30 * 24 * 3600, ge=60, description="How long a resumable session stays valid."
    )
    failed_logins_per_minute: float = Field(
        default=5.0,
        gt=0,
        description="Failed logins a connection may make per minute, sustained.",
    )
    failed_logins_burst: int = Field(
        default=5, ge=1, description="Failed logins a connection may make before the limit."
    )
    failed_logins_per_address_per_minute: float = Field(
        default=30.0,
        gt=0,
        description="Failed logins one client address may make per minute, all its sockets.",
    )
    failed_logins_per_address_burst: int = Field(
        default=30, ge=1, description="Failed logins a client address may make before the limit."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxies whose X-Forwarded-For names the client (addresses or CIDRs).",
    )
    rank_index: Literal["auto", "memory", "redis", "database"] = Field(
        default="auto",
        description="Where ranks are kept: memory (one process), redis (several), database "
        "(counted); auto picks memory, or redis with TTMINIS_REDIS_URL.",
    )
    session_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often each process looks for sessions ended elsewhere (logout, forget).",
    )
    upstream_budget_seconds: float = Field(
        default=10.0, gt=0, le=120, description="The whole time one TikTok operation may take."
    )
    upstream_attempt_timeout_seconds: float = Field(
        default=4.0, gt=0, le=60, description="The time one attempt at a TikTok call may take."
    )
    upstream_max_attempts: int = Field(
        default=4, ge=1, le=10, description="Attempts per TikTok call on retryable failures."
    )
    upstream_retry_after_cap_seconds: float = Field(
        default=5.0, ge=0, le=60, description="The longest Retry-After the client will honour."
    )
    token_refresh_leeway_seconds: int = Field(
        default=300, ge=0, description="Refresh an access token this long before it expires."
    )
    push_interval_ms: int = Field(
        default=100, ge=10, le=10_000, description="At most one board push per interval."
    )
    events_per_second: float = Field(
        default=20.0, gt=0, description="Sustained events a connection may send."
    )
    events_burst: int = Field(
        default=40, ge=1, description="Events a connection may send at once before the limit."
    )
    namespace: str = Field(default="/", pattern=r"^/", description="The Socket.IO namespace.")
    upstream_rate_per_second: float | None = Field(
        default=None,
        gt=0,
        description="A cap on every call to TikTok per second, all endpoints; none by default "
        "(the token endpoint publishes no limit). Shared by the processes with Redis.",
    )
    user_info_rate_per_second: float = Field(
        default=10.0,
        gt=0,
        description="User-info calls per second for the whole app (TikTok allows 600 a minute); "
        "shared by every process through Redis, per process without it.",
    )
    refresher_enabled: bool = Field(
        default=True, description="Refresh granted profiles in the background."
    )
    refresher_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often the refresher looks for due players."
    )
    refresher_batch_size: int = Field(
        default=200, ge=1, le=10_000, description="Due players claimed per round."
    )
    refresher_concurrency: int = Field(
        default=8, ge=1, le=256, description="Profile refreshes in flight at once."
    )
    avatar_max_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="The largest avatar image fetched and stored."
    )
    avatar_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="The time one avatar download may take."
    )
    webhook_tolerance_seconds: int = Field(
        default=300, ge=1, description="How old a signed webhook request may be."
    )

    @field_validator("profile_refresh_days", mode="before")
    @classmethod
    def _parse_days(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _DAYS_RANGE.match(value)
            if not match:
                raise ValueError("give a range of days like '3-7' (or one number like '5')")
            low = float(match.group(1))
            return (low, float(match.group(2) or low))
        return value

    @field_validator("profile_refresh_days")
    @classmethod
    def _check_days(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if low <= 0 or high < low:
            raise ValueError("the range of days must be positive and low-high, like '3-7'")
        return value

    @field_validator("previous_secret_keys", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @field_validator("api_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("give an absolute http(s) URL, like https://open.tiktokapis.com")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme == "postgresql":  # libpq's spelling: the same database
            return f"postgres://{rest}"
        if scheme not in ("sqlite", "postgres", "asyncpg") or not rest:
            raise ValueError(
                "give sqlite:///path/to/file.sqlite3 or postgres://user:password@host:5432/db "
                "(SQLite and PostgreSQL are supported)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^rediss?://", value):
            raise ValueError("give a redis:// or rediss:// URL")
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        if self.sandbox:
            return self
        # Sandbox mode is never implied: a deploy that forgot its credentials must not start
        # with public ones. One sentence names everything missing at once.
        missing = []
        if not self.client_key:
            missing.append("TTMINIS_CLIENT_KEY")
        if self.client_secret is None or not self.client_secret.get_secret_value():
            missing.append("TTMINIS_CLIENT_SECRET")
        secret_key = self.secret_key.get_secret_value() if self.secret_key else ""
        if not secret_key:
            missing.append("TTMINIS_SECRET_KEY")
        if missing:
            raise ValueError(
                f"set {_join_names(missing)} (the credentials from the TikTok Developer Portal "
                "and a random secret key of 32+ characters), or set TTMINIS_SANDBOX=true to run "
                "the built-in TikTok emulator for a demo or local development"
            )
        if len(secret_key) < 32:
            raise ValueError(
                "TTMINIS_SECRET_KEY must be at least 32 random characters (for example: "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_explain(exc)) from None

    @property
    def effective_client_key(self) -> str:
        """The client key to send TikTok: the configured one, or the emulator's in sandbox mode."""
        if self.sandbox or self.client_key is None:
            return SANDBOX_CLIENT_KEY
        return self.client_key

    @property
    def effective_client_secret(self) -> SecretStr:
        """The client secret to send TikTok: the configured one, or the emulator's."""
        if self.sandbox or self.client_secret is None:
            return SecretStr(SANDBOX_CLIENT_SECRET)
        return self.client_secret

    @property
    def token_refresh_leeway(self) -> timedelta:
        """How long before expiry an access token is renewed."""
        return timedelta(seconds=self.token_refresh_leeway_seconds)

    @property
    def secret_keys(self) -> list[str]:
        """The current secret key first, then the older ones still accepted."""
        current = self.secret_key.get_secret_value() if self.secret_key else _SANDBOX_SECRET_KEY
        return [current, *(key.get_secret_value() for key in self.previous_secret_keys)]


def _join_names(names: list[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _explain(exc: ValidationError) -> str:
    """One readable sentence per bad setting, naming the variable to fix."""
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            field = ".".join(str(part) for part in error["loc"])
            message = f"TTMINIS_{field.upper()}: {message}"
        lines.append(message)
    return "Invalid settings: " + "; ".join(lines)
