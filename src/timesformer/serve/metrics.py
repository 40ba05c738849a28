"""Prometheus text exposition (format 0.0.4) for the server's few metrics.

Small enough to write out rather than depend on `prometheus_client`: counters and
histograms keyed by label values, one lock, rendered on demand by `GET /metrics`.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Callable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    """Cumulative buckets, sum and count per label tuple."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts: dict[tuple, list[int]] = defaultdict(lambda: [0] * (len(buckets) + 1))
        self.sums: dict[tuple, float] = defaultdict(float)

    def observe(self, labels: tuple, value: float) -> None:
        self.counts[labels][bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] += value


def _labels(names: tuple[str, ...], values: tuple, extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class ServerMetrics:
    """What `/metrics` reports; the app and the batch queue record into it from any thread."""

    def __init__(self, queue_depth: Callable[[], int], in_flight: Callable[[], int]):
        self._lock = threading.Lock()
        self._queue_depth = queue_depth
        self._in_flight = in_flight
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)  # (method, route, status)
        self.latency = Histogram(LATENCY_BUCKETS)  # by (route,)
        self.batch_sizes = Histogram(BATCH_BUCKETS)  # by ()
        self.videos: dict[str, int] = defaultdict(int)  # by result: "ok" | "rejected"

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            self.latency.observe((route,), seconds)

    def record_batch(self, size: int) -> None:
        with self._lock:
            self.batch_sizes.observe((), size)

    def record_video(self, ok: bool) -> None:
        with self._lock:
            self.videos["ok" if ok else "rejected"] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP timesformer_requests_total HTTP requests by method, route and status.",
                "# TYPE timesformer_requests_total counter",
            ]
            for key, count in sorted(self.requests.items()):
                lines.append(f"timesformer_requests_total{_labels(('method', 'route', 'status'), key)} {count}")
            lines += _histogram(
                "timesformer_request_duration_seconds", "Request latency by route.", self.latency, ("route",)
            )
            lines += _histogram("timesformer_batch_size", "Clips per model call.", self.batch_sizes, ())
            lines += [
                "# HELP timesformer_videos_decoded_total Uploaded videos decoded (ok) or refused as unreadable (rejected).",
                "# TYPE timesformer_videos_decoded_total counter",
            ]
            for result in ("ok", "rejected"):
                lines.append(f'timesformer_videos_decoded_total{{result="{result}"}} {self.videos[result]}')
            lines += [
                "# HELP timesformer_queue_depth Clips waiting for the model.",
                "# TYPE timesformer_queue_depth gauge",
                f"timesformer_queue_depth {self._queue_depth()}",
                "# HELP timesformer_requests_in_flight Requests being served.",
                "# TYPE timesformer_requests_in_flight gauge",
                f"timesformer_requests_in_flight {self._in_flight()}",
            ]
        return "\n".join(lines) + "\n"


def _histogram(name: str, help_text: str, hist: Histogram, names: tuple[str, ...]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for key in sorted(hist.counts):
        cumulative = 0
        for bound, count in zip((*hist.buckets, float("inf")), hist.counts[key]):
            cumulative += count
            le = "+Inf" if bound == float("inf") else _number(bound)
            bound_label = f'le="{le}"'
            lines.append(f"{name}_bucket{_labels(names, key, bound_label)} {cumulative}")
        lines.append(f"{name}_sum{_labels(names, key)} {_number(hist.sums[key])}")
        lines.append(f"{name}_count{_labels(names, key)} {cumulative}")
    return lines
