"""Who may talk to the server: Host and Origin checks, CORS for listed origins, the bearer key,
and JSON-only bodies. One aiohttp middleware, in front of every route.

Why each check exists:
- a web page the user visits can send a "simple" cross-site POST (`Content-Type: text/plain`, no
  preflight) to http://127.0.0.1:8000: a foreign `Origin` is refused (403), and so is any body
  that is not `application/json` (415), which a browser cannot send cross-site without a preflight;
- DNS rebinding makes a foreign site's name resolve to 127.0.0.1, so its requests arrive with
  `Host: attacker.example`: only localhost, IP addresses and `--allowed-hosts` names pass (403);
- `--auth-key-env`: every API route needs `Authorization: Bearer KEY`, compared in constant time
  (401 otherwise); `/health` answers without it, and says nothing but whether the server is up.
Refusals are OpenAI-shaped error bodies, never a traceback.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from opencharacter.backends.http_keys import is_loopback
from opencharacter.serve.api import error_body
from opencharacter.serve.settings import ServeConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/health"})
_CORS_METHODS = "GET, POST, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type"


def refusal(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
    kind = {401: "authentication_error", 403: "permission_error"}.get(status, "invalid_request_error")
    return web.json_response(error_body(message, kind, None, code), status=status, headers=headers)


def _host_name(header: str) -> str:
    """The host of a Host header, without its port (`[::1]:8000` → `::1`)."""
    if header.startswith("["):
        return header[1 : header.find("]")].lower() if "]" in header else header.lower()
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def cors_headers(request: web.Request) -> dict[str, str]:
    """CORS answer headers for a request that passed the guard (so its Origin, if any, is listed);
    a streamed answer sends its headers itself, before the middleware could add them."""
    origin = request.headers.get("Origin")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin is not None else {}


class Guard:
    def __init__(self, config: ServeConfig, key: str | None) -> None:
        self.origins = set(config.allowed_origins)
        self.hosts = set(config.allowed_hosts)
        self._key = key.encode() if key is not None else None

    def host_allowed(self, header: str | None) -> bool:
        # An IP literal cannot be a rebound name: the page that sent it was served from that address.
        host = _host_name(header or "")
        return bool(host) and (is_loopback(host) or _is_ip(host) or host in self.hosts)

    def authorised(self, header: str | None) -> bool:
        if self._key is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._key)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.host_allowed(request.headers.get("Host")):
            return refusal(403, "this Host is not served here (add it with --allowed-hosts)", "host_not_allowed")
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/").lower() not in self.origins:
            return refusal(403, f"requests from {origin} are not allowed (see --allowed-origins)", "origin_not_allowed")
        cors = cors_headers(request)
        if request.method == "OPTIONS":  # a CORS preflight from a listed origin (browsers send no key here)
            preflight = {
                **cors,
                "Access-Control-Allow-Methods": _CORS_METHODS,
                "Access-Control-Allow-Headers": _CORS_HEADERS,
                "Access-Control-Max-Age": "600",
            }
            return web.Response(status=204, headers=preflight)
        if request.path not in OPEN_PATHS and not self.authorised(request.headers.get("Authorization")):
            headers = {"WWW-Authenticate": "Bearer", **cors}
            return refusal(401, "missing or wrong API key (send Authorization: Bearer KEY)", "invalid_api_key", headers)
        if request.method == "POST" and request.content_type != "application/json":
            message = f"the body must be application/json, not {request.content_type or 'unlabelled'}"
            return refusal(415, message, "unsupported_media_type", cors)
        response = await handler(request)
        if cors and not response.prepared:
            response.headers.update(cors)
        return response
