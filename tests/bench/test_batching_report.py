"""bench/report.py's batching rows: req/s per variant, the ratios to the unbatched front's and to the
default path's, answers."""

from __future__ import annotations

from bench.report import Table, _batching_rows
from bench.scenarios.batching import DEFAULT


def _record(variant: str, concurrency: int, rps: float) -> dict[str, object]:
    return {"framework": "pytorch", "variant": variant, "concurrency": concurrency, "rps": rps, "p50_ms": 1.0,
            "contender": "native", "round": 0}


def test_each_variant_has_its_rate_and_its_ratio_to_the_first_variant() -> None:
    results = {"batching": [_record("unbatched", 16, 1000.0), _record("unbatched", 16, 1200.0),
                            _record("SERVE_BATCH_MAX_SIZE=16", 16, 2200.0),
                            _record("SERVE_BATCH_MAX_SIZE=16", 16, 2200.0)],
               "batching_answers": [{"framework": "pytorch", "variant": "SERVE_BATCH_MAX_SIZE=16", "round": 0,
                                     "identical": True, "max_abs_diff": 0.0}]}
    table = Table(["native"])
    _batching_rows(table, results)
    text = table.text()
    assert "| batching pytorch c16 unbatched: req/s | 1000–1200 |" in text
    assert "| batching pytorch c16 SERVE_BATCH_MAX_SIZE=16: / unbatched | 2.00 |" in text
    assert "answers identical (1 = yes) | 1 |" in text
    assert "round 1: largest absolute difference | 0.000000000 |" in text  # a label holds no "|" of the table


def test_a_variant_beside_the_default_path_has_its_ratio_to_it_too() -> None:
    results = {"batching": [_record("unbatched", 16, 1000.0), _record(DEFAULT, 16, 2000.0),
                            _record("SERVE_BATCH_MAX_SIZE=16, SERVE_PREFORK=true", 16, 5000.0)]}
    table = Table(["native"])
    _batching_rows(table, results)
    text = table.text()
    assert "| batching pytorch c16 SERVE_BATCH_MAX_SIZE=16, SERVE_PREFORK=true: / unbatched | 5.00 |" in text
    assert "| batching pytorch c16 SERVE_BATCH_MAX_SIZE=16, SERVE_PREFORK=true: / default | 2.50 |" in text
    assert f"| batching pytorch c16 {DEFAULT}: / unbatched | 2.00 |" in text
    assert f"c16 {DEFAULT}: / default" not in text and "c16 unbatched: /" not in text  # none to itself

