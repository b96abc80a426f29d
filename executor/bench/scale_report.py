"""What ``computebus bench --functions`` prints: a table, then every figure as one JSON line."""

from __future__ import annotations

import json
from typing import Any


def report(fig: dict[str, Any]) -> None:
    n = fig["functions"]
    rows = [
        (
            "register",
            f"{n} functions in {fig['register_s']:.1f} s",
            f"{fig['register_per_s']:.0f}/s",
        ),
        ("http invoke p50, 1 fn", f"{fig['http_p50_ms_one']:.3f} ms", "before registering"),
        (
            f"http invoke p50, {n} fns",
            f"{fig['http_p50_ms_n']:.3f} ms",
            f"{fig['http_p50_ratio']:.2f}x a 1-fn stack at the same time "
            f"({fig['http_p50_ms_reference']:.3f} ms; aim <= 1.10x), "
            f"{fig['http_p50_ratio_to_before']:.2f}x before",
        ),
        ("nats invoke p50, 1 fn", f"{fig['nats_p50_ms_one']:.3f} ms", "before registering"),
        (
            f"nats invoke p50, {n} fns",
            f"{fig['nats_p50_ms_n']:.3f} ms",
            f"{fig['nats_p50_ratio']:.2f}x a 1-fn stack at the same time "
            f"({fig['nats_p50_ms_reference']:.3f} ms; aim <= 1.10x), "
            f"{fig['nats_p50_ratio_to_before']:.2f}x before",
        ),
        (
            "GET ?limit=50 p50",
            f"{fig['list_p50_ms']:.2f} ms",
            f"aim < 20 ms ({fig['list_samples']} samples, total {fig['list_total']})",
        ),
        (
            "new worker ready",
            f"{fig['new_worker_ready_s']:.2f} s",
            f"aim < 5 s ({fig['new_worker_functions']} functions in its view)",
        ),
        ("API RSS", f"{fig['api_rss_mib']:.1f} MiB", f"with {n} functions"),
        ("worker RSS", f"{fig['worker_rss_mib']:.1f} MiB", f"with {n} functions"),
        ("new worker RSS", f"{fig['new_worker_rss_mib']:.1f} MiB", "when ready"),
        ("python handler RSS", f"{fig['python_handler_rss_mib']:.1f} MiB", "per warm process"),
        ("node handler RSS", f"{fig['node_handler_rss_mib']:.1f} MiB", "per warm process"),
        (
            "worker RSS, warm",
            f"{fig['worker_rss_warm_mib']:.1f} MiB",
            f"{fig['warm_processes']} warm processes, "
            f"their RSS {fig['handlers_rss_warm_mib']:.0f} MiB, "
            f"PSS {fig['handlers_pss_warm_mib']:.0f} MiB",
        ),
        (
            "after idle reaping",
            f"{fig['worker_rss_after_idle_mib']:.1f} MiB",
            f"{fig['warm_after_idle']} warm left {fig['reaped_after_s']:.1f} s later "
            f"(idle timeout {fig['idle_s']:g} s; {fig['spares']} spares are kept)",
        ),
    ]
    for name, value, note in rows:
        print(f"{name:<26} {value:>22}   {note}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in fig.items()}))
