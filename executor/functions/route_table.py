"""Which HTTP route serves a request: the longest route path that is the request's path or one
of its parents (``/hooks/github`` serves ``/hooks/github/push``, not ``/hooks/githubx``), and at
that path the route of the request's method before one of ``ANY``. Pure: fed by the trigger
store's watch, asked on every ``/r/`` request (a dict lookup per path segment)."""

from __future__ import annotations

from schemas.triggers import ANY_METHOD, HttpTrigger, Trigger


class RouteTable:
    def __init__(self) -> None:
        self._routes: dict[str, dict[str, HttpTrigger]] = {}  # path -> method -> route
        self._paths: dict[str, tuple[str, str]] = {}  # trigger id -> (path, method)

    def changed(self, trigger_id: str, trigger: Trigger | None) -> None:
        """Take a trigger's new state (None: it is gone)."""
        known = self._paths.pop(trigger_id, None)
        if known is not None:
            path, method = known
            at_path = self._routes.get(path, {})
            if at_path.get(method) is not None and at_path[method].id == trigger_id:
                del at_path[method]
            if not at_path:
                self._routes.pop(path, None)
        if isinstance(trigger, HttpTrigger):
            self._routes.setdefault(trigger.path, {})[trigger.method] = trigger
            self._paths[trigger_id] = (trigger.path, trigger.method)

    def match(self, method: str, path: str) -> HttpTrigger | None:
        candidate = path.rstrip("/") or "/"
        while True:
            at_path = self._routes.get(candidate)
            if at_path is not None:
                found = at_path.get(method) or at_path.get(ANY_METHOD)
                if found is None and method == "HEAD":
                    found = at_path.get("GET")
                if found is not None:
                    return found
            if candidate == "/":
                return None
            candidate = candidate.rsplit("/", 1)[0] or "/"

    def __len__(self) -> int:
        return len(self._paths)
