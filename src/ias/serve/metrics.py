"""`/metrics`: the server's counters in Prometheus' text format (no client library needed)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Latency buckets in seconds: sampling requests take from milliseconds to minutes.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class Metrics:
    requests: Counter = field(default_factory=Counter)  # (route, status) -> count
    samples: int = 0
    generated_tokens: int = 0
    prompt_tokens: int = 0
    cancelled: int = 0  # requests whose client left or whose time ran out
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    latency_sum: float = 0.0

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] += 1
        if route.startswith("/v1/"):
            self.latency_counts[next((k for k, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))] += 1
            self.latency_sum += seconds

    def render(self, queue_depth: int, in_flight: int) -> str:
        lines = [
            "# HELP ias_requests_total HTTP requests answered, by route and status.",
            "# TYPE ias_requests_total counter",
        ]
        lines += [
            f'ias_requests_total{{route="{route}",status="{status}"}} {count}'
            for (route, status), count in sorted(self.requests.items())
        ]
        for name, value, kind, text in (
            ("ias_samples_total", self.samples, "counter", "Samples returned to clients."),
            ("ias_generated_tokens_total", self.generated_tokens, "counter", "Tokens generated for answered requests."),
            ("ias_prompt_tokens_total", self.prompt_tokens, "counter", "Prompt tokens of answered requests."),
            (
                "ias_cancelled_requests_total",
                self.cancelled,
                "counter",
                "Requests dropped before their answer: client gone, timed out, or failed mid-stream.",
            ),
            ("ias_queue_depth", queue_depth, "gauge", "Sampling requests waiting or running."),
            ("ias_in_flight_requests", in_flight, "gauge", "HTTP requests being handled."),
        ):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        lines += [
            "# HELP ias_request_latency_seconds Latency of /v1 requests.",
            "# TYPE ias_request_latency_seconds histogram",
        ]
        total = 0
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], self.latency_counts):
            total += count
            lines.append(f'ias_request_latency_seconds_bucket{{le="{bound}"}} {total}')
        lines += [
            f"ias_request_latency_seconds_sum {self.latency_sum:.6f}",
            f"ias_request_latency_seconds_count {total}",
        ]
        return "\n".join(lines) + "\n"
