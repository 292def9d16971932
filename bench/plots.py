"""PNG plots (matplotlib, Agg backend): throughput and p99 against concurrency, tree memory against
loaded models, load time per model; one line per contender."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.contenders import LABELS

MB = 1024 * 1024
COLORS = {"aws": "tab:blue", "native": "tab:green", "front": "tab:purple", "pool": "tab:red", "mms": "tab:orange"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _median_by(points: dict[tuple[str, int], list[float]]) -> dict[str, tuple[list[int], list[float]]]:
    lines: dict[str, tuple[list[int], list[float]]] = {}
    for (contender, x), values in sorted(points.items()):
        xs, ys = lines.setdefault(contender, ([], []))
        xs.append(x)
        ys.append(statistics.median(values))
    return lines


def _panel(ax: Any, lines: dict[str, tuple[list[int], list[float]]], title: str, xlabel: str, ylabel: str) -> None:
    for contender, (xs, ys) in lines.items():
        ax.plot(xs, ys, marker="o", color=COLORS.get(contender), label=LABELS.get(contender, contender))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def concurrency(results: dict[str, Any], metric: str, ylabel: str, path: Path) -> Path:
    """One panel per framework/format: ``metric`` against concurrency per contender."""
    plt = _pyplot()
    single = results.get("single", [])
    keys = sorted({(r["framework"], r["format"]) for r in single})
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4.2 * max(1, len(keys)), 3.6), squeeze=False)
    for ax, (framework, fmt) in zip(axes[0], keys, strict=False):
        points: dict[tuple[str, int], list[float]] = {}
        for r in single:
            if (r["framework"], r["format"]) == (framework, fmt):
                points.setdefault((r["contender"], r["concurrency"]), []).append(r[metric])
        _panel(ax, _median_by(points), f"{framework}, {fmt}", "concurrency (wrk connections)", ylabel)
        ax.set_xscale("log", base=2)
        ticks = sorted({r["concurrency"] for r in single})
        ax.set_xticks(ticks, [str(t) for t in ticks])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _mme_points(record: dict[str, Any], key: str) -> list[tuple[int, float]]:
    """(x, y) of one MME record: tree PSS in MB per loaded-model count, or load ms per model number."""
    if key == "pss_bytes":
        return [(int(n), value / MB) for n, value in record["pss_bytes"].items()]
    return [(i + 1, ms) for i, ms in enumerate(record["load_ms"])]


def mme(results: dict[str, Any], key: str, xlabel: str, ylabel: str, path: Path, log_y: bool = False) -> Path:
    """One panel per framework of ``key`` in the MME records, a line per contender."""
    plt = _pyplot()
    records = results.get("mme", [])
    frameworks = sorted({r["framework"] for r in records})
    fig, axes = plt.subplots(1, max(1, len(frameworks)), figsize=(4.2 * max(1, len(frameworks)), 3.6), squeeze=False)
    for ax, framework in zip(axes[0], frameworks, strict=False):
        points: dict[tuple[str, int], list[float]] = {}
        for r in records:
            if r["framework"] == framework:
                for x, y in _mme_points(r, key):
                    points.setdefault((r["contender"], x), []).append(y)
        _panel(ax, _median_by(points), f"{framework} MME", xlabel, ylabel)
        if log_y:
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def streaming(results: dict[str, Any], path: Path) -> Path:
    """Per contender, every streamed request's time to the first chunk and to the whole answer (each
    round a column of points), with the script's own generation time as dotted lines."""
    plt = _pyplot()
    records = results.get("streaming", [])
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    names = sorted({r["contender"] for r in records})
    for x, contender in enumerate(names):
        for r in (r for r in records if r["contender"] == contender):
            offset = 0.08 * r["round"]
            ax.scatter([x - 0.15 + offset] * len(r["first_chunk_ms"]), r["first_chunk_ms"], s=8, marker="o",
                       color=COLORS.get(contender), label="first chunk" if x == 0 and r["round"] == 0 else None)
            ax.scatter([x + 0.15 + offset] * len(r["whole_ms"]), r["whole_ms"], s=8, marker="^", color="tab:gray",
                       label="whole answer" if x == 0 and r["round"] == 0 else None)
    if records:
        r0 = records[0]
        ax.axhline(r0["token_ms"], linestyle=":", color="black", linewidth=0.8)
        ax.axhline(r0["token_ms"] * r0["tokens"], linestyle=":", color="black", linewidth=0.8)
        ax.set_title(f"streamed answer of {r0['tokens']} chunks, one per {r0['token_ms']:g} ms "
                     "(dotted: the script's own time)", fontsize=9)
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(names)), [LABELS.get(n, n) for n in names])
    ax.set_yscale("log")
    ax.set_ylabel("ms from the request")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(results: dict[str, Any], out: Path) -> list[Path]:
    return [
        concurrency(results, "rps", "requests/s", out / "throughput.png"),
        concurrency(results, "p99_ms", "p99 latency, ms", out / "p99.png"),
        mme(results, "pss_bytes", "loaded models", "server tree PSS, MB", out / "memory.png"),
        mme(results, "load_ms", "model number", "POST /models, ms", out / "load_time.png", log_y=True),
        streaming(results, out / "streaming.png"),
    ]
