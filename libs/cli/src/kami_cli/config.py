"""Where the CLI finds Kami: the servers and the services' URLs, from `KAMI_*`
environment variables like the services (flags override them), and the
operator's saved login.

    KAMI_KAFKA_BOOTSTRAP, KAMI_MONGODB_URI        the servers (as every service reads them)
    KAMI_DATABASE_PREFIX                          databases are `<prefix>_<service>` (kami)
    KAMI_TOPIC_PREFIX                             the topic namespace (kami)
    KAMI_IDENTITY_URL ... KAMI_WEB_URL            each service's HTTP API (127.0.0.1:8101...)
    KAMI_TOKEN                                    an access token (else the one `kami login` saved)
    KAMI_CONFIG_DIR                               where `kami login` saves it (~/.config/kami)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Every service and the port it listens on locally (docs/saga.md).
SERVICE_PORTS: dict[str, int] = {
    "identity": 8101,
    "catalog": 8102,
    "inventory": 8103,
    "ordering": 8104,
    "payment": 8105,
    "delivery": 8106,
    "aftersales": 8107,
    # The buyer's site (and the seller center, the operator console): pages
    # over the others' public APIs, no events and no database of its own.
    "web": 8108,
    # The reseller API (issue 15): signed requests, prepaid balances, webhooks.
    "reseller": 8109,
}
SERVICES = tuple(SERVICE_PORTS)
# The services that consume events (a consumer group, a dead-letter topic):
# all but the web pages, which only call the others' HTTP APIs.
EVENT_SERVICES = tuple(service for service in SERVICES if service != "web")
# A service's Python package when it is not `kami_<service>` (`kami_web` is
# the shared HTTP library, so the web service's package is `kami_webfront`).
PACKAGES: dict[str, str] = {"web": "kami_webfront"}


def package_of(service: str) -> str:
    return PACKAGES.get(service, f"kami_{service}")


def default_url(service: str) -> str:
    return f"http://127.0.0.1:{SERVICE_PORTS[service]}"


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAMI_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    mongodb_uri: str = "mongodb://127.0.0.1:27018/"
    database_prefix: str = Field(default="kami", pattern=r"^[A-Za-z0-9_-]+$")
    token: str | None = None
    config_dir: Path | None = None

    identity_url: str = default_url("identity")
    catalog_url: str = default_url("catalog")
    inventory_url: str = default_url("inventory")
    ordering_url: str = default_url("ordering")
    payment_url: str = default_url("payment")
    delivery_url: str = default_url("delivery")
    aftersales_url: str = default_url("aftersales")
    web_url: str = default_url("web")
    reseller_url: str = default_url("reseller")

    def url(self, service: str) -> str:
        url: str = getattr(self, f"{service}_url")
        return url.rstrip("/")

    def database(self, service: str) -> str:
        return f"{self.database_prefix}_{service}"

    @property
    def credentials_path(self) -> Path:
        directory = self.config_dir or Path(click.get_app_dir("kami"))
        return directory / "credentials.json"


@dataclass(frozen=True)
class SavedLogin:
    """What `kami login` keeps: the tokens identity issued, and for whom."""

    identity_url: str
    phone: str
    user_id: str
    access_token: str
    refresh_token: str
    saved_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "identity_url": self.identity_url,
                "phone": self.phone,
                "user_id": self.user_id,
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "saved_at": self.saved_at.isoformat(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> SavedLogin:
        raw = json.loads(text)
        return cls(
            identity_url=raw["identity_url"],
            phone=raw["phone"],
            user_id=raw["user_id"],
            access_token=raw["access_token"],
            refresh_token=raw["refresh_token"],
            saved_at=datetime.fromisoformat(raw["saved_at"]),
        )


def save_login(path: Path, login: SavedLogin) -> None:
    """Write the tokens readable by the user alone (0600), never group or world."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(login.to_json())
    os.chmod(temporary, 0o600)  # an older file keeps its mode through O_TRUNC
    os.replace(temporary, path)


def load_login(path: Path) -> SavedLogin | None:
    if not path.exists():
        return None
    try:
        return SavedLogin.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError):
        return None


def now() -> datetime:
    return datetime.now(UTC)
