"""Where the openai backend's API key may go: only to the servers it is meant for.

The rule (docs/engine.md, "API keys"):
- `--api-key-env NAME` given explicitly (flag or YAML): the key in $NAME goes to the `--base-url`
  servers of that same command — the user named both, for each other.
- the default, `OPENAI_API_KEY`, not named: it goes to OpenAI's own API (https://api.openai.com)
  and to the server in `OPENAI_BASE_URL`, the pairing the OpenAI SDK itself makes; never to another
  `--base-url` (a local vLLM, a colleague's box, a URL from someone else's config).
- never over a redirect (the client does not follow them), and a key sent over plain `http://` to a
  host that is not this machine gets a warning: anyone on the path can read it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from urllib.parse import urlsplit

from opencharacter.config import BackendConfig

log = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL: what a key is bound to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_destinations(config: BackendConfig, base_urls: list[str]) -> list[bool]:
    """For each server, whether the key is sent to it."""
    if {"api_key_env", "api_key_file"} & config.model_fields_set:  # named explicitly: that command's servers
        return [True] * len(base_urls)
    allowed = {origin(OPENAI_URL)}
    if paired := os.environ.get("OPENAI_BASE_URL"):
        allowed |= {origin(url.strip()) for url in paired.split(",") if url.strip()}
    return [origin(url) in allowed for url in base_urls]


def warn_plain_http(base_urls: list[str], keyed: list[bool], key_env: str) -> list[str]:
    """Warn (and return the servers) where the key would cross a network unencrypted."""
    exposed = []
    for url, sent in zip(base_urls, keyed, strict=True):
        scheme, host, _ = origin(url)
        if sent and scheme == "http" and not is_loopback(host):
            exposed.append(url)
            log.warning(
                "warning: the key in $%s is sent to %s over plain http://: anyone on the network can read it",
                key_env,
                url,
            )
    return exposed


def withheld_hint(key_env: str) -> str:
    """What a 401 says when the default key was kept from a server."""
    return (
        f"${key_env} is only sent to api.openai.com and $OPENAI_BASE_URL; "
        f"pass --api-key-env {key_env} to send it to this server"
    )
