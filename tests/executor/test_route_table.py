"""Which route serves a request: longest path first, then the method before ANY; and the split
of traffic across revisions."""

from __future__ import annotations

from collections import Counter

from executor.functions.route_table import RouteTable
from executor.functions.triggers import pick_revision
from schemas.triggers import FunctionTarget, HttpTrigger


def trigger(trigger_id: str, path: str, method: str = "POST") -> HttpTrigger:
    target = FunctionTarget(collection_topic="c", service="123456789")
    return HttpTrigger(id=trigger_id, function=target, method=method, path=path, public=False)


def served(table: RouteTable, method: str, path: str) -> str | None:
    found = table.match(method, path)
    return found.id if found is not None else None


def test_the_longest_path_of_the_method_serves() -> None:
    table = RouteTable()
    for t in (
        trigger("root", "/", "ANY"),
        trigger("hooks", "/hooks"),
        trigger("github", "/hooks/github"),
        trigger("get", "/hooks/github", "GET"),
    ):
        table.changed(t.id, t)
    assert served(table, "POST", "/hooks/github/push") == "github"
    assert served(table, "POST", "/hooks/github/") == "github"
    assert served(table, "POST", "/hooks/githubx") == "hooks"
    assert served(table, "GET", "/hooks/github/push") == "get"
    assert served(table, "HEAD", "/hooks/github") == "get"
    assert served(table, "PUT", "/hooks/github") == "root"
    table.changed("root", None)
    assert served(table, "PUT", "/hooks/github") is None and len(table) == 3


def test_a_moved_route_leaves_its_old_path() -> None:
    table = RouteTable()
    table.changed("a", trigger("a", "/one"))
    table.changed("a", trigger("a", "/two"))
    assert served(table, "POST", "/one") is None and served(table, "POST", "/two") == "a"


def test_traffic_follows_the_weights() -> None:
    picks = Counter(pick_revision({"3": 90, "4": 10}, f"id-{n}") for n in range(2000))
    assert set(picks) == {3, 4} and 1700 <= picks[3] <= 1900
    assert {pick_revision({"1": 0, "2": 100}, f"id-{n}") for n in range(100)} == {2}
