import json

from ragline.ops.benchmarks import write_report

SERVE = {
    level: {"rps": rps, "p50_ms": p50, "p99_ms": p50 * 2, "deciles_ms": [p50 * (0.5 + i / 10) for i in range(9)]}
    for level, rps, p50 in (("c1", 80.0, 11.0), ("c8", 100.0, 70.0), ("c32", 120.0, 250.0))
}


def test_the_report_holds_every_result_a_summary_and_plots(tmp_path):
    results = {"search": {"chunks": 100000, "p50_ms": 9.7, "p99_ms": 17.6}, "serve": {"search": SERVE, "query": SERVE}}
    written = write_report(results, tmp_path / "results")
    names = sorted(p.name for p in written)
    assert names == ["latency.png", "results.json", "serve.png", "summary.md"]
    assert json.loads((tmp_path / "results" / "results.json").read_text())["results"] == results
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "| p50_ms | 9.7 |" in summary and "| search.c32.rps | 120.0 |" in summary
    assert all((tmp_path / "results" / n).read_bytes()[:4] == b"\x89PNG" for n in ("serve.png", "latency.png"))
