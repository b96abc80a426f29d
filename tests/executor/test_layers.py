"""The API role never loads the worker's or the handler runtime's modules (ARCHITECTURE.md)."""

from __future__ import annotations

import json
import subprocess
import sys

WORKER_SIDE = ("executor.worker", "executor.runtime")  # packages the API role never loads
PROBE = """
import importlib, json, pkgutil, sys
import executor.api, executor.functions
for package in (executor.api, executor.functions):
    for m in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(m.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_the_api_loads_nothing_of_the_worker() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = [
        name
        for name in json.loads(out)
        if name in WORKER_SIDE or name.startswith(tuple(f"{p}." for p in WORKER_SIDE))
    ]
    assert loaded == [], loaded
