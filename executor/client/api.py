"""The HTTP API as the CLI sees it: one client, and every failure turned into one clear line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from executor.settings import Settings, env_name
from schemas.errors import ComputebusError
from schemas.tokens import ADMIN_TOKEN_FILE

# Failures of the function itself (as opposed to a mistake in the request): the CLI exits 1.
FUNCTION_FAILURES = frozenset(
    {
        "function_error",
        "handler_not_found",
        "timeout",
        "out_of_memory",
        "invalid_output",
        "worker_lost",
    }
)


class ClientError(ComputebusError):
    """A usage mistake, a refused request or an API that cannot be reached: exit 2."""


class FunctionFailed(ClientError):
    """The function ran and failed: exit 1 (the message names the invocation)."""


class Api:
    """The computebus HTTP API for the CLI: one client; every failure is a ``ClientError``."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float | None = 60.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClientError(
                f"--api {url!r} is not an http:// or https:// URL (say http://127.0.0.1:8080)"
            )
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.has_token = bool(token)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """The answer's ``body``; with ``missing_ok``, None for a 404."""
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.ConnectError as exc:
            if "ssl" in str(exc).lower() and self.url.startswith("https:"):
                raise ClientError(
                    f"{self.url} does not answer TLS: computebus serve speaks plain http "
                    f"({self.url.replace('https:', 'http:', 1)})"
                ) from None
            raise ClientError(
                f"no computebus API at {self.url}: is `computebus serve` running? "
                "(COMPUTEBUS_API / --api)"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"the computebus API at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"talking to {self.url}: {exc}") from None
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code == 401 and not self.has_token:
            raise ClientError(
                f"the API at {self.url} wants a token: pass --token, set COMPUTEBUS_TOKEN, or run"
                " where `computebus serve` wrote .computebus/admin-token"
            )
        return _body(response)


def find_token(given: str | None, env: Mapping[str, str]) -> str | None:
    """The token to send: ``--token``, else ``COMPUTEBUS_TOKEN``, else the admin token that
    ``serve`` wrote to its data dir (``COMPUTEBUS_DATA_DIR``, default ``.computebus``)."""
    if given:
        return given.strip()
    if env.get("COMPUTEBUS_TOKEN"):
        return env["COMPUTEBUS_TOKEN"].strip()
    path = Path(env.get(env_name("data_dir")) or Settings.data_dir) / ADMIN_TOKEN_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def function_path(ref: str) -> str:
    """``COLLECTION/NAME`` (or ``COLLECTION/SERVICE_ID``) as the API's path."""
    collection, _, name = ref.partition("/")
    if not collection or not name or "/" in name:
        raise ClientError(f"{ref!r}: expected COLLECTION/NAME (or COLLECTION/SERVICE_ID)")
    return f"/compute/functions/{quote(collection, safe='')}/{quote(name, safe='')}"


def _body(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        raise ClientError(f"HTTP {response.status_code}: {response.text[:500]}") from None
    if response.status_code < 400:
        return data.get("body") if isinstance(data, dict) else data
    error = str(data.get("error"))
    details = "".join(  # what the message does not say already
        f"\n  {d['path']}: {d.get('message')}"
        for d in data.get("details") or []
        if isinstance(d, dict) and d.get("path") and str(d.get("message")) not in error
    )
    code = data.get("code")
    message = f"{code} ({response.status_code}): {error}{details}"
    if code in FUNCTION_FAILURES:
        invocation_id = response.headers.get("X-Invocation-Id")
        if invocation_id:
            message += f"\n  invocation {invocation_id}"
        raise FunctionFailed(message)
    raise ClientError(message)
