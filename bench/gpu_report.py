"""bench/gpu.py's ratios and table, apart from the measuring."""

from __future__ import annotations

from typing import Any

from coldstart import detail_medians

__all__ = ["detail_medians", "ratios", "table"]


def get(report: dict[str, Any], *path: str) -> Any:
    """report[a][b]... or None when any step is missing."""
    value: Any = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ratio(a: Any, b: Any, digits: int = 3) -> float | None:
    return round(a / b, digits) if number(a) and number(b) and b > 0 else None


def diff(a: Any, b: Any) -> float | None:
    return round(a - b, 3) if number(a) and number(b) else None


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    """Served figures over the in-process ceiling of the same run."""
    fresh = get(report, "ceiling", "fresh_process_ms") or {}
    fresh_total = sum(v for v in fresh.values() if number(v)) if fresh else None
    # what a forked child must still do: everything but the import its template already did
    floor = fresh_total - fresh.get("import_ms", 0) if fresh_total else None
    return {
        # throughput: requests/s served over images/s in the tight loop
        "unbatched_c32_rps_over_b1_images_per_s": ratio(
            get(report, "warm", "c32", "rps"), get(report, "ceiling", "b1", "images_per_s")
        ),
        "unbatched_c32_rps_over_b1_predict_per_s": ratio(
            get(report, "warm", "c32", "rps"),
            get(report, "ceiling", "b1", "predict_images_per_s"),
        ),
        "batched_c32_rps_over_b32_images_per_s": ratio(
            get(report, "batched", "c32", "rps"), get(report, "ceiling", "b32", "images_per_s")
        ),
        "batched_c32_rps_over_b32_predict_per_s": ratio(
            get(report, "batched", "c32", "rps"),
            get(report, "ceiling", "b32", "predict_images_per_s"),
        ),
        # latency: what serving adds to one request
        "c1_p50_over_b1_predict": ratio(
            get(report, "warm", "c1", "p50_ms"), get(report, "ceiling", "b1", "predict_ms")
        ),
        "c1_p50_minus_b1_predict_ms": diff(
            get(report, "warm", "c1", "p50_ms"), get(report, "ceiling", "b1", "predict_ms")
        ),
        "batched_c1_p50_minus_b1_predict_ms": diff(
            get(report, "batched", "c1", "p50_ms"), get(report, "ceiling", "b1", "predict_ms")
        ),
        # cold start against a fresh process doing the same loading with no server
        "cold_p50_over_fresh_process": ratio(get(report, "cold", "client_p50_ms"), fresh_total),
        "cold_p50_minus_fresh_process_ms": diff(get(report, "cold", "client_p50_ms"), fresh_total),
        "fresh_process_total_ms": round(fresh_total, 1) if fresh_total else None,
        "cold_p50_minus_setup_floor_ms": diff(get(report, "cold", "client_p50_ms"), floor),
        "setup_floor_ms": round(floor, 1) if floor else None,
    }


def fmt(value: Any, digits: int = 2) -> str:
    if not number(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
        for r in rows
    ]


def table(report: dict[str, Any]) -> str:
    c = report.get("ceiling") or {}
    lines = [
        f"GPU rows: {c.get('gpu', report.get('device'))}, torch {c.get('torch', '-')}, "
        f"ResNet-50 ({c.get('model', '-')}), {c.get('dtype', '-')}, "
        f"{c.get('image_size', '-')}px, coldbrew hardware {report.get('hardware')} "
        f"slots {report.get('slots', '-')}",
        "",
        "ceiling, in-process on the same device:",
    ]
    rows = [["", "batch 1", "batch 32"]]
    for label, key in (
        ("forward back to back, ms/batch", "forward_ms"),
        ("  images/s", "images_per_s"),
        ("forward then wait, ms (p50)", "forward_synced_ms"),
        ("predict() in-process, ms (p50)", "predict_ms"),
        ("  images/s", "predict_images_per_s"),
        ("CUDA graph replay, ms/batch (lead)", "graph_ms"),
    ):
        digits = 1 if key.endswith("per_s") else 3
        rows.append([label, fmt(get(c, "b1", key), digits), fmt(get(c, "b32", key), digits)])
    lines += _grid(rows)
    fresh = c.get("fresh_process_ms") or {}
    lines.append(
        "fresh process, no server: "
        + ", ".join(f"{k.removesuffix('_ms')} {fmt(v, 0)} ms" for k, v in fresh.items())
    )
    cold = report.get("cold") or {}
    lines += [
        "",
        f"cold start from zero (resnet50-cold, {len(cold.get('tries', []))} tries, "
        f"runsync as the client sees it): p50 {fmt(cold.get('client_p50_ms'), 0)} ms "
        f"(min {fmt(cold.get('client_min_ms'), 0)}, max {fmt(cold.get('client_max_ms'), 0)}), "
        f"all flagged cold: {cold.get('all_cold')}, errors: {cold.get('errors')}",
        f"  server coldStartDetail p50: {cold.get('detail_p50')}",
        f"  worker setup() stages p50: {cold.get('setup_p50')}",
        "",
        "warm, one worker:",
    ]
    r = report.get("ratios") or {}
    cc = f"c{get(report, 'settings', 'concurrency') or 32}"
    rows = [["endpoint", "c1 p50 ms", "c1 p99 ms", f"{cc} req/s", f"{cc} p50 ms", f"{cc} p99 ms"]]
    rows[0].append("errors")
    for name, key in (("resnet50", "warm"), ("resnet50-batch (<=32)", "batched")):
        w = report.get(key) or {}
        errors = (get(w, "c1", "errors") or 0) + (get(w, "c32", "errors") or 0)
        rows.append(
            [
                name,
                fmt(get(w, "c1", "p50_ms"), 3),
                fmt(get(w, "c1", "p99_ms"), 3),
                fmt(get(w, "c32", "rps"), 1),
                fmt(get(w, "c32", "p50_ms"), 3),
                fmt(get(w, "c32", "p99_ms"), 3),
                str(errors) if w else "-",
            ]
        )
    lines += _grid(rows)

    def f3(key: str) -> str:
        return fmt(r.get(key), 3)

    lines += [
        "",
        "against the ceiling:",
        f"  unbatched {cc} req/s / batch-1 images/s: {f3('unbatched_c32_rps_over_b1_images_per_s')}"
        f" (/ batch-1 predict() per s: {f3('unbatched_c32_rps_over_b1_predict_per_s')})",
        f"  batched {cc} req/s / batch-32 images/s: {f3('batched_c32_rps_over_b32_images_per_s')}"
        f" (/ batch-32 predict() images/s: {f3('batched_c32_rps_over_b32_predict_per_s')})",
        f"  c1 p50 - batch-1 predict() p50: {fmt(r.get('c1_p50_minus_b1_predict_ms'), 3)} ms"
        f" (x{fmt(r.get('c1_p50_over_b1_predict'), 2)}); batched endpoint: "
        f"{fmt(r.get('batched_c1_p50_minus_b1_predict_ms'), 3)} ms",
        f"  cold p50 - fresh process (import+context+load+first forward "
        f"{fmt(r.get('fresh_process_total_ms'), 0)} ms): "
        f"{fmt(r.get('cold_p50_minus_fresh_process_ms'), 0)} ms "
        f"(x{fmt(r.get('cold_p50_over_fresh_process'), 2)})",
        f"  cold p50 - the same without the import (context+load+first forward "
        f"{fmt(r.get('setup_floor_ms'), 0)} ms): {fmt(r.get('cold_p50_minus_setup_floor_ms'), 0)}"
        " ms",
    ]
    if report.get("error"):
        lines.append(f"STOPPED EARLY: {report['error'][:500]}")
    lines.append(f"elapsed {report.get('elapsed_s')} s")
    return "\n".join(lines)
