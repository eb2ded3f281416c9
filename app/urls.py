"""URLs the API hands out, built from the URL the client used.

Behind a reverse proxy that URL is not the one the daemon sees: :class:`ProxyResolver`
rewrites the ASGI scope (scheme, host, client address, root path) from the
``X-Forwarded-*`` headers, but only when the direct peer is a trusted proxy. Everything
downstream (``base_url``, ``request.client``) then reads the scope as if the client had
called us directly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from litestar.connection import ASGIConnection
from litestar.datastructures import URL

if TYPE_CHECKING:
    from litestar.types import HTTPScope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,255}$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


def base_url(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Scheme, host and root path of the request, without a trailing slash."""
    return str(connection.base_url).rstrip("/")


def schema_url(connection: ASGIConnection[Any, Any, Any, Any], name: str) -> str:
    """Where ``GET /schemas/<name>.json`` serves the JSON Schema of a wire type."""
    return f"{base_url(connection)}/schemas/{name}.json"


def scope_base_url(scope: Mapping[str, Any]) -> str:
    """:func:`base_url` for code that has only the ASGI scope (middleware)."""
    base = cast("HTTPScope", {**scope, "path": "/", "query_string": b""})
    url = URL.from_scope(base)
    return str(url).rstrip("/")


def normalise_root_path(text: str) -> str:
    """``/runwarden`` from ``runwarden/`` and the like; ``""`` for none; ValueError if unsafe."""
    path = "/" + text.strip().strip("/")
    if path == "/":
        return ""
    if not _PREFIX.match(path) or any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"root path {text!r} must look like /runwarden (letters, digits, ._~-)")
    return path


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated IPs or CIDRs (``10.0.0.0/8, ::1``); ValueError naming a bad one."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _last(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The value nearest to us: proxies append to these lists, clients write the start."""
    values = [value.decode("latin-1") for key, value in headers if key == name]
    items = [item.strip() for item in ",".join(values).split(",") if item.strip()]
    return items[-1] if items else None


@dataclass(frozen=True)
class ProxyResolver:
    """Honours ``X-Forwarded-Proto/-Host/-For/-Prefix`` from trusted peers only."""

    trusted: tuple[Network, ...] = ()

    def is_trusted(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.trusted)

    def apply(self, scope: dict[str, Any], root_path: str) -> None:
        """Rewrite ``scope`` as the client saw the request; ``root_path`` is where we live."""
        client = scope.get("client")
        headers = scope["headers"]
        if client and self.is_trusted(client[0]):
            proto = (_last(headers, b"x-forwarded-proto") or "").lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
            host = _last(headers, b"x-forwarded-host")
            if host and _HOST.match(host):
                scope["headers"] = [(k, v) for k, v in headers if k != b"host"]
                scope["headers"].append((b"host", host.encode("latin-1")))
            scope["client"] = (self._client_ip(headers, client[0]), client[1])
            prefix = _last(headers, b"x-forwarded-prefix")
            if prefix:
                with contextlib.suppress(ValueError):  # an odd prefix: keep ours
                    root_path = normalise_root_path(prefix)
        if root_path:
            # Litestar routes on path minus root_path, the ASGI way (uvicorn's too). Proxies
            # that strip the prefix and ones that pass it through both end up here.
            path = scope["path"]
            if path != root_path and not path.startswith(root_path + "/"):
                scope["path"] = root_path + path
                scope["raw_path"] = root_path.encode() + scope.get("raw_path", path.encode())
            scope["root_path"] = root_path

    def _client_ip(self, headers: Iterable[tuple[bytes, bytes]], peer: str) -> str:
        """The first address from the right that is not one of our proxies."""
        values = [value.decode("latin-1") for key, value in headers if key == b"x-forwarded-for"]
        hops = [item.strip() for item in ",".join(values).split(",") if item.strip()]
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:
                return peer  # garbage in the chain: trust nothing beyond the proxy itself
            if not any(ip in network for network in self.trusted):
                return str(ip)
        return str(_ip(hops[0])) if hops else peer
