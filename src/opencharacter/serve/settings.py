"""What `opencharacter serve` exposes and how much it accepts: every default once, with its reason.

The server is meant to sit in front of SillyTavern, a chat UI or an eval harness, so its defaults
are safe on a shared machine: it listens on 127.0.0.1, answers only clients that present the key
when one is set, refuses browsers from other sites, and bounds what one request may cost.
"""

from __future__ import annotations

import ipaddress
import os
import re

from pydantic import Field, field_validator

from opencharacter.backends.http_keys import is_loopback
from opencharacter.config.base import Config
from opencharacter.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024, "m": 10**6, "mb": 10**6}
_UNITS |= {"mi": 2**20, "mib": 2**20, "g": 10**9, "gb": 10**9, "gi": 2**30, "gib": 2**30}


def parse_size(value: str | int) -> int:
    """Bytes from `4194304`, `4MiB`, `4MB`, `512k`."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size (e.g. 4MiB, 512KiB, 1000000)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


class ServeConfig(Config):
    auth_key_env: str | None = Field(
        None,
        description="Environment variable holding the key clients must send as `Authorization: Bearer KEY` "
        "(as vLLM's --api-key); required to listen beyond 127.0.0.1.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins (scheme://host[:port]) allowed to call the API, with CORS answers; "
        "requests carrying any other Origin get 403.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names clients may address the server by, besides localhost and IP addresses "
        "(a guard against DNS rebinding); any other Host header gets 403.",
    )
    max_body: int = Field(4 * 2**20, ge=1024, description="Largest request body in bytes (413 beyond).")
    max_messages: int = Field(2048, ge=1, description="Most messages one request may carry (400 beyond).")
    max_characters: int = Field(
        2_000_000, ge=1, description="Most characters all messages of one request may hold together (400 beyond)."
    )
    max_json_depth: int = Field(64, ge=4, description="Deepest nesting of JSON a request may use (400 beyond).")
    max_active: int | None = Field(
        None, ge=1, description="Requests handed to the backend at once (default: the backend's --concurrency)."
    )
    max_waiting: int = Field(
        256, ge=0, description="Requests that may wait for the backend beyond those; more get 429 with Retry-After."
    )
    retry_after: int = Field(1, ge=1, description="Seconds a refused (429) client is told to wait (Retry-After).")

    @field_validator("max_body", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins = []
        for origin in value:
            origin = origin.strip().rstrip("/").lower()
            if not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"{origin!r} is not an origin like http://localhost:8000 (scheme://host[:port])")
            origins.append(origin)
        return origins

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [host.strip().lower() for host in value if host.strip()]


def auth_key(config: ServeConfig) -> str | None:
    """The key clients must present, read from the environment (never from a flag or a file)."""
    if config.auth_key_env is None:
        return None
    key = os.environ.get(config.auth_key_env, "")
    if not key.strip():
        raise ConfigError(f"--auth-key-env {config.auth_key_env}: that environment variable is not set or empty")
    return key


def check_exposure(host: str, key: str | None) -> None:
    """Listening beyond this machine without a key would hand the model (and, with --backend openai,
    the operator's API key) to anyone who can reach the port."""
    if key is not None or is_loopback(host.strip("[]")):
        return
    try:
        wildcard = ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        wildcard = False
    reach = "every network interface" if wildcard else host
    raise ConfigError(
        f"--host {host} listens on {reach}, beyond this machine: set --auth-key-env NAME "
        "(the key clients must send), or keep the default --host 127.0.0.1"
    )
