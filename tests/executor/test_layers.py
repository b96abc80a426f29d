"""The layers hold: the API role never loads the worker's or the handler runtime's modules
(ARCHITECTURE.md), and the README's tree names every module."""

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


def test_the_readme_tree_names_every_module() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    tree = readme[readme.index("### Where things are") : readme.index("## Performance")]
    modules = [
        path
        for package in ("schemas", "bus", "executor")
        for path in (root / package).rglob("*.py")
        if path.name != "__init__.py" and not path.name.endswith("_bootstrap.py")
    ]
    missing = sorted(str(p.relative_to(root)) for p in modules if p.name not in tree)
    assert missing == [], f"README's 'Where things are' does not name {missing}"
