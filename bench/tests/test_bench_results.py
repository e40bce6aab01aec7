import pytest
from harness import report, runner
from harness.loadgen import LoadResult
from harness.results import LatencySample, Measurement, Outcome, ScenarioResult


def run(rps: float, cpu_s: float = 1.0, requests: int = 100_000, errors: int = 0) -> Measurement:
    load = LoadResult(requests, 10.0, rps, 0.4, 0.9, errors)
    return Measurement(load, cpu_s, 20_000_000)


def test_the_median_run_is_quoted_whole():
    outcome = Outcome("pysozu", runs=[run(300), run(100), run(200, cpu_s=2.0)])
    median = outcome.median()
    assert median is not None
    assert median.load.requests_per_s == 200
    assert median.cpu_us_per_request == pytest.approx(20.0)


def test_even_run_counts_quote_the_lower_middle():
    assert Outcome("x", runs=[run(4), run(1), run(3), run(2)]).median().load.requests_per_s == 2


def test_table_has_ratios_to_nginx_and_skip_reasons():
    result = ScenarioResult(
        "keepalive-13b",
        "keep-alive GET / (13 B)",
        [
            Outcome("nginx", runs=[run(100_000)]),
            Outcome("pysozu", runs=[run(80_000, errors=3), run(70_000), run(90_000)]),
            Outcome("haproxy", skipped="exited | status 1"),
        ],
    )
    table = report.scenario_table(result)
    assert "## keepalive-13b: keep-alive GET / (13 B)" in table
    assert "| nginx | 100,000 | 0.40 | 0.90 | 10.0 | 20.0 | 1.00x | 0 | 1 |" in table
    assert "| pysozu | 80,000 | 0.40 | 0.90 | 10.0 | 20.0 | 0.80x | 3 | 3 |" in table
    assert "| haproxy | skipped: exited \\| status 1 |" in table


def test_the_table_splits_each_proxys_cpu_into_user_and_system():
    load = LoadResult(100_000, 10.0, 10_000, 0.4, 0.9, 0)
    result = ScenarioResult(
        "close",
        "Connection: close",
        [
            Outcome("nginx", runs=[Measurement(load, 2.4, None, 1.5)]),
            Outcome("pysozu", runs=[Measurement(load, 3.2, None, 1.7)]),
            Outcome("old", runs=[Measurement(load, 3.0, None)]),  # no split measured: left out
        ],
    )
    table = report.scenario_table(result)
    assert "Proxy CPU µs/req, user + system: nginx 9.0 + 15.0, pysozu 15.0 + 17.0." in table


def test_without_nginx_there_is_no_ratio():
    result = ScenarioResult("s", "t", [Outcome("pysozu", runs=[run(5)])])
    assert "| - | 0 | 1 |" in report.scenario_table(result)


def test_latency_quantiles_stay_within_the_sample():
    sample = LatencySample(seconds=[i / 1000 for i in range(1, 101)])
    assert sample.quantile(0.5) == pytest.approx(0.0505)
    assert sample.quantile(0.99) == pytest.approx(0.09901)
    assert LatencySample(seconds=[0.2]).quantile(0.99) == 0.2
    assert LatencySample().quantile(0.5) is None
    samples = {"cli": LatencySample(seconds=[0.1, 0.3], failures=1, first_error="boom")}
    lines = "\n".join(report.latency_lines(samples))
    assert "| cli | 2 | 200.0 | 298.0 | 300.0 | 1 |" in lines
    assert "First failure: cli: boom" in lines


def _runs(*figures):
    """Runs of (requests/s, CPU seconds), each 1 s long."""
    return [
        Measurement(LoadResult(int(rate), 1.0, rate, 1.0, 2.0, 0), cpu, 10_000_000)
        for rate, cpu in figures
    ]


def test_access_log_cost_is_taken_over_every_run_of_both_pysozus():
    on = Outcome("pysozu", _runs((900, 0.054), (800, 0.048), (1000, 0.060)))
    off = Outcome("pysozu-bare", _runs((1000, 0.050), (1000, 0.050), (1000, 0.050)))
    (note,) = runner._access_log_cost([on, off, Outcome("nginx", _runs((2000, 0.05)))])
    assert note.startswith(
        "Access logs and metrics cost pysozu 10.0% of its requests/s (900 with, 1,000"
    )
    assert "and 10.0 µs of CPU per request, 20.0% (60.0 with, 50.0 without" in note
    assert note.endswith(
        "; run by run, 10.0% of requests/s (median of 3 pairs, from 0.0% to 20.0%)."
    )


def test_no_cost_line_without_both_pysozus():
    on = Outcome("pysozu", _runs((900, 0.054)))
    assert runner._access_log_cost([on, Outcome("nginx", _runs((2000, 0.05)))]) == []


def test_memory_table_per_target():
    from harness.results import MemorySample

    result = ScenarioResult("idle-kept-10k", "t", [Outcome("pysozu", runs=[run(5)])])
    result.memory["pysozu"] = MemorySample(10_000, 40_000_000, 88_000_000, 45_000_000)
    result.memory["nginx"] = MemorySample(10_000, 3_000_000, 8_000_000, 3_100_000)
    table = report.scenario_table(result)
    assert "| target | connections | before MB | held MB | per connection KB | after MB |" in table
    assert "| pysozu | 10,000 | 40.0 | 88.0 | 4.8 | 45.0 |" in table
    assert "| nginx | 10,000 | 3.0 | 8.0 | 0.5 | 3.1 |" in table
    assert "5 s after they close" in table
