"""The markdown table: each figure per contender (the range over rounds) and its ratio to AWS's stack."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from bench.contenders import LABELS
from bench.scenarios import batching

MB = 1024 * 1024
Record = dict[str, Any]


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "–"
    low, high = min(values), max(values)
    if f"{low:.{digits}f}" == f"{high:.{digits}f}":
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f}–{high:.{digits}f}"


def _ratio(values: list[float], baseline: list[float]) -> str:
    if not values or not baseline or statistics.median(baseline) == 0:
        return "–"
    return f"{statistics.median(values) / statistics.median(baseline):.2f}×"


class Table:
    def __init__(self, contenders: list[str]) -> None:
        self.contenders = contenders
        others = [c for c in contenders if c != "aws"]
        self.ratio_of = others if "aws" in contenders else []
        head = ["", *(LABELS[c] for c in contenders), *(f"{LABELS[c]} / AWS" for c in self.ratio_of)]
        self.lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(self, label: str, values: dict[str, list[float]], digits: int = 1, ratio: bool = True) -> None:
        if not any(values.get(c) for c in self.contenders):
            return
        cells = [_cell(values.get(c, []), digits) for c in self.contenders]
        ratios = [_ratio(values.get(c, []), values.get("aws", [])) if ratio else "" for c in self.ratio_of]
        self.lines.append("| " + " | ".join([label, *cells, *ratios]) + " |")

    def text(self) -> str:
        return "\n".join(self.lines)


def by_contender(records: Iterable[Record], value: Callable[[Record], float | None]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for record in records:
        v = value(record)
        if v is not None:
            out.setdefault(record["contender"], []).append(v)
    return out


def _single_rows(table: Table, results: dict[str, Any]) -> None:
    single = results.get("single", [])
    keys = sorted({(r["framework"], r["format"]) for r in single}, key=lambda k: (_FW_ORDER.get(k[0], 9), k[1]))
    for framework, fmt in keys:
        for c in sorted({r["concurrency"] for r in single}):
            rows = [r for r in single if (r["framework"], r["format"], r["concurrency"]) == (framework, fmt, c)]
            name = f"{framework} {fmt}, c{c}"
            table.row(f"{name}: req/s", by_contender(rows, lambda r: r["rps"]), 0)
            table.row(f"{name}: p50 ms", by_contender(rows, lambda r: r["p50_ms"]), 2)
            table.row(f"{name}: p99 ms", by_contender(rows, lambda r: r["p99_ms"]), 2)
            table.row(f"{name}: server CPU ms/request", by_contender(rows, lambda r: r["server_cpu_ms_per_request"]), 2)
            table.row(f"{name}: wrk CPU share", by_contender(rows, lambda r: r["wrk_cpu_share"]), 2, False)


def _pss_per_model(record: Record) -> float | None:
    pss = {int(k): v for k, v in record["pss_bytes"].items()}
    top = max(pss)
    return (pss[top] - pss[1]) / (top - 1) / MB if top > 1 and 1 in pss else None


def _pss_at(record: Record, level: int) -> float | None:
    pss = {int(k): v for k, v in record["pss_bytes"].items()}
    return _mb(pss.get(level))


def _robin_at(record: Record, key: str, concurrency: int) -> float | None:
    return next((x[key] for x in record["round_robin"] if x["concurrency"] == concurrency), None)


def _mme_rows(table: Table, results: dict[str, Any]) -> None:
    mme = results.get("mme", [])
    for framework in sorted({r["framework"] for r in mme}, key=lambda f: _FW_ORDER.get(f, 9)):
        rows = [r for r in mme if r["framework"] == framework]
        name = f"{framework} MME"
        table.row(f"{name}: load ms (median of models 2..N)",
                  by_contender(rows, lambda r: statistics.median(r["load_ms"][1:] or r["load_ms"])), 0)
        table.row(f"{name}: first invoke ms (median)",
                  by_contender(rows, lambda r: statistics.median(r["first_invoke_ms"])), 1)
        for level in sorted({int(k) for r in rows for k in r["pss_bytes"] if int(k) > 0}):
            table.row(f"{name}: tree PSS MB at {level} models", by_contender(rows, partial(_pss_at, level=level)), 0)
        table.row(f"{name}: PSS MB per additional model", by_contender(rows, _pss_per_model), 1)
        n = max(r["round_robin_models"] for r in rows)
        for c in sorted({x["concurrency"] for r in rows for x in r["round_robin"]}):
            label = f"{name}: round robin over {n}, c{c}"
            table.row(f"{label}: req/s", by_contender(rows, partial(_robin_at, key="rps", concurrency=c)), 0)
            table.row(f"{label}: p99 ms", by_contender(rows, partial(_robin_at, key="p99_ms", concurrency=c)), 2)


def _percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _streaming_rows(table: Table, results: dict[str, Any]) -> None:
    """Per contender, the range over rounds of each round's median (and p90) time to the first chunk
    and to the whole streamed answer."""
    records = results.get("streaming", [])
    if not records:
        return
    r0 = records[0]
    name = f"stream of {r0['tokens']} chunks, one per {r0['token_ms']:g} ms"
    for key, label in (("first_chunk_ms", "first chunk"), ("whole_ms", "whole answer")):
        table.row(f"{name}: {label} p50 ms", by_contender(records, partial(_median_of, key)), 1, False)
        table.row(f"{name}: {label} p90 ms", by_contender(records, partial(_p90_of, key)), 1, False)


def _batching_rows(table: Table, results: dict[str, Any]) -> None:
    """Per framework, variant and concurrency: req/s, its ratio to the unbatched server's (medians over
    rounds) and p50; then whether concurrent answers matched the answers alone (native column)."""
    records = results.get("batching", [])
    for framework in dict.fromkeys(r["framework"] for r in records):
        mine = [r for r in records if r["framework"] == framework]
        variants = list(dict.fromkeys(r["variant"] for r in mine))
        for concurrency in dict.fromkeys(r["concurrency"] for r in mine):
            at = [r for r in mine if r["concurrency"] == concurrency]
            baselines = {"unbatched": variants[0], "default": batching.DEFAULT}
            for variant in variants:
                rps = [r["rps"] for r in at if r["variant"] == variant]
                name = f"batching {framework} c{concurrency} {variant}"
                table.row(f"{name}: req/s", {"native": rps}, 0, False)
                for called, baseline_variant in baselines.items():
                    baseline = [r["rps"] for r in at if r["variant"] == baseline_variant]
                    if variant not in (variants[0], baseline_variant) and rps and baseline:
                        ratio = statistics.median(rps) / statistics.median(baseline)
                        table.row(f"{name}: / {called}", {"native": [ratio]}, 2, False)
                table.row(f"{name}: p50 ms", {"native": [r["p50_ms"] for r in at if r["variant"] == variant]}, 2, False)
    for record in results.get("batching_answers", []):
        name = f"batching {record['framework']} {record['variant']} round {record['round'] + 1}"
        table.row(f"{name}: answers identical (1 = yes)", {"native": [float(record["identical"])]}, 0, False)
        table.row(f"{name}: largest absolute difference", {"native": [record["max_abs_diff"]]}, 9, False)


def _median_of(key: str, record: Record) -> float:
    return statistics.median(record[key])


def _p90_of(key: str, record: Record) -> float:
    return _percentile(record[key], 0.9)


def _mb(value: float | None) -> float | None:
    return None if value is None else value / MB


def _lifecycle_rows(table: Table, results: dict[str, Any]) -> None:
    startup, sigterm = results.get("startup", []), results.get("sigterm", [])
    for framework in sorted({r["framework"] for r in startup}, key=lambda f: _FW_ORDER.get(f, 9)):
        rows = [r for r in startup if r["framework"] == framework]
        table.row(f"{framework}: start to /ping 200, s", by_contender(rows, lambda r: r.get("to_ping_s")), 2)
        table.row(f"{framework}: start to first 200 invocation, s",
                  by_contender(rows, lambda r: r.get("to_first_invoke_s")), 2)
        stops = [r for r in sigterm if r["framework"] == framework]
        table.row(f"{framework}: SIGTERM to exit, s", by_contender(stops, lambda r: r["seconds"]), 2)
        table.row(f"{framework}: processes left after SIGTERM",
                  by_contender(stops, lambda r: r["processes_left"]), 0, False)
    pipeline = results.get("pipeline", [])
    table.row("pipeline scaler → classifier: chained p50 ms", by_contender(pipeline, lambda r: r["chain"]["p50_ms"]), 2)
    table.row("pipeline: sum of the two called alone, p50 ms",
              by_contender(pipeline, lambda r: r["sum_of_parts_p50_ms"]), 2)
    table.row("pipeline: hop overhead (chained − sum), p50 ms",
              by_contender(pipeline, lambda r: r["hop_overhead_p50_ms"]), 2, False)


_FW_ORDER = {"sklearn": 0, "pytorch": 1, "tensorflow": 2}


def _floors(results: dict[str, Any]) -> list[str]:
    lines = ["| floor | p50 ms | p99 ms |", "|---|---|---|"]
    for r in results.get("floor", []):
        lines.append(f"| in-process {r['framework']} {r['format']} (ServedModel.invoke) | "
                     f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    lines += ["", "| start-up floor (`python -c 'import <framework>; load the artifact'`) | s |", "|---|---|"]
    starts: dict[str, list[float]] = {}
    for r in results.get("startup_floor", []):
        starts.setdefault(r["framework"], []).append(r["seconds"])
    lines += [f"| {fw} | {_cell(v, 2)} |" for fw, v in starts.items()]
    images = results.get("images", [])
    if images:
        lines += ["", "| image | size |", "|---|---|"]
        lines += [f"| {r['image']} | {r['bytes'] / 1e9:.2f} GB |" for r in images]
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    table = Table(meta["contenders"])
    _single_rows(table, results)
    _mme_rows(table, results)
    _lifecycle_rows(table, results)
    _streaming_rows(table, results)
    _batching_rows(table, results)
    head = [f"# servekit benchmark, {meta['date']} on {meta['host']}", "",
            f"{meta['machine']}; `{meta['command']}`; {meta['duration_s']:.0f} s.",
            "Cells are the range over rounds (contenders interleaved A B C, then C B A); ratios are medians "
            "over AWS's stack's median.", ""]
    notes = [f"- {f}" for f in results.get("failures", [])]
    tail = ["", "Failures:", *notes] if notes else []
    return "\n".join([*head, table.text(), "", *_floors(results), *tail]) + "\n"
