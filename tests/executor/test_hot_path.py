"""Which requests the API's hot path takes itself; the rest (and their answers) are Starlette's,
tested end to end with the rest of the API."""

from __future__ import annotations

import pytest

from executor.api.hot_path import _invoke_params


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("POST", "/compute/functions/team/123456789/invoke", {"ct": "team", "ft": "123456789"}),
        ("POST", "/compute/functions/team/by-name/invoke", {"ct": "team", "ft": "by-name"}),
        ("GET", "/compute/functions/team/123456789/invoke", None),
        ("POST", "/compute/functions/team/123456789/invocations", None),
        ("POST", "/compute/functions/team/a/b/invoke", None),
        ("POST", "/compute/functions//123456789/invoke", None),
        ("POST", "/compute/functions/team//invoke", None),
        ("POST", "/compute/functions/team/invoke", None),
        ("POST", "/compute/functions/team/123456789/invoke/", None),
    ],
)
def test_only_an_invoke_path_takes_the_hot_path(
    method: str, path: str, params: dict[str, str] | None
) -> None:
    assert _invoke_params({"type": "http", "method": method, "path": path}) == params
