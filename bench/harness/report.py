"""Rendering results as Markdown: one table per scenario, plus the facts needed to reproduce."""

from __future__ import annotations

from harness.results import MEMORY_AFTER_S, LatencySample, MemorySample, Outcome, ScenarioResult

REFERENCE = "nginx"
COLUMNS = (
    "| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | RSS MB | vs nginx | errors | runs |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
)


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def outcome_row(outcome: Outcome, reference_rps: float | None) -> str:
    median = outcome.median()
    if median is None or outcome.skipped:
        reason = outcome.skipped or "no run"
        runs = len(outcome.runs)
        return f"| {outcome.target} | skipped: {_escape(reason)} | | | | | | | {runs} |"
    load = median.load
    ratio = f"{load.requests_per_s / reference_rps:.2f}x" if reference_rps else "-"
    rss = None if median.rss_bytes is None else median.rss_bytes / 1e6
    cells = [
        outcome.target + (f" ({outcome.note})" if outcome.note else ""),
        f"{load.requests_per_s:,.0f}",
        _number(load.p50_ms),
        _number(load.p99_ms),
        _number(median.cpu_us_per_request, 1),
        _number(rss, 1),
        ratio,
        f"{sum(m.load.errors for m in outcome.runs):,}",
        str(len(outcome.runs)),
    ]
    return "| " + " | ".join(cells) + " |"


def _escape(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def scenario_table(result: ScenarioResult) -> str:
    reference = next((o.median() for o in result.outcomes if o.target == REFERENCE), None)
    reference_rps = reference.load.requests_per_s if reference else None
    lines = [f"## {result.name}: {result.title}", "", *COLUMNS]
    lines += [outcome_row(outcome, reference_rps) for outcome in result.outcomes]
    if split := cpu_split_line(result.outcomes):
        lines += ["", split]
    if result.reconfiguration:
        lines += ["", *latency_lines(result.reconfiguration)]
    if result.memory:
        lines += ["", *memory_lines(result.memory)]
    lines += [f"\n{note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def cpu_split_line(outcomes: list[Outcome]) -> str | None:
    """Where each proxy's CPU per request went (median run): its own code (user) and the
    kernel's work for it (system: the system calls, TCP on loopback)."""
    parts = []
    for outcome in outcomes:
        median = outcome.median()
        if median is None or outcome.skipped:
            continue
        total, system = median.cpu_us_per_request, median.system_us_per_request
        if total is not None and system is not None:
            parts.append(f"{outcome.target} {total - system:.1f} + {system:.1f}")
    if not parts:
        return None
    return "Proxy CPU µs/req, user + system: " + ", ".join(parts) + "."


def memory_lines(samples: dict[str, MemorySample]) -> list[str]:
    """Resident memory of each proxy's serving processes around the held connections."""

    def mb(value: int) -> str:
        return f"{value / 1e6:,.1f}"

    lines = [
        "Memory: RSS of the serving processes (workers) before the connections open, while they "
        f"are held (each made one request), and {MEMORY_AFTER_S:g} s after they close.",
        "",
        "| target | connections | before MB | held MB | per connection KB | after MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for target, sample in samples.items():
        per = (sample.held - sample.before) / sample.connections / 1e3 if sample.connections else 0
        lines.append(
            f"| {target} | {sample.connections:,} | {mb(sample.before)} | {mb(sample.held)} | "
            f"{per:,.1f} | {mb(sample.after)} |"
        )
    return lines


def latency_lines(samples: dict[str, LatencySample]) -> list[str]:
    """One row per way of making the change."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:,.1f}"

    lines = [
        "Hot reconfiguration (pysozu): time from starting a change (a backend added to a "
        "cluster that had none) to the first request answered through the new backend.",
        "",
        "| change made with | changes | p50 ms | p99 ms | max ms | failed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for how, sample in samples.items():
        worst = max(sample.seconds) if sample.seconds else None
        lines.append(
            f"| {how} | {len(sample.seconds)} | {ms(sample.quantile(0.5))} | "
            f"{ms(sample.quantile(0.99))} | {ms(worst)} | {sample.failures} |"
        )
    errors = [f"{how}: {s.first_error}" for how, s in samples.items() if s.first_error]
    lines += [f"\nFirst failure: {_escape(error)}" for error in errors]
    return lines


def document(
    *,
    title: str,
    started: str,
    results: list[ScenarioResult],
    machine: dict[str, str],
    versions: dict[str, str],
    method: list[str],
    invocation: str,
    backend_command: str,
    configs: dict[str, str],
) -> str:
    parts = [
        f"# {title}",
        "",
        f"Started {started}. Reproduce with: `{invocation}`",
        "",
        "Method: " + " ".join(method),
        "",
        *(scenario_table(result) for result in results),
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in machine.items()),
        "",
        "## Versions",
        "",
        *(f"- {key}: {value}" for key, value in versions.items()),
        "",
        "## Commands",
        "",
        f"Backend (all scenarios): `{backend_command}`",
        "",
    ]
    for result in results:
        parts += [f"### {result.name}", "", "```", *result.commands, "```", ""]
    if configs:
        parts += ["## Configurations (first scenario)", ""]
        for name, text in configs.items():
            parts += [
                f"<details><summary>{name}</summary>",
                "",
                "```",
                text.rstrip(),
                "```",
                "",
                "</details>",
                "",
            ]
    return "\n".join(parts)
