"""Prometheus metrics, defined once and shared by the modules that count."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

EDGE_REQUESTS = Counter(
    "dialup_edge_requests",
    "Requests that reached the activator's edge listener",
    ["site", "outcome"],
    registry=REGISTRY,
)
STARTS = Counter("dialup_starts", "Container starts", ["site", "outcome"], registry=REGISTRY)
START_SECONDS = Histogram(
    "dialup_start_seconds",
    "From start decision to the site answering its health probe",
    ["site"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
    registry=REGISTRY,
)
WAITING = Gauge("dialup_waiting_requests", "Requests held while their site starts", ["site"], registry=REGISTRY)
DOCKER_CALLS = Counter("dialup_docker_calls", "Calls made to the Docker Engine API", ["op"], registry=REGISTRY)
MONITOR_TICK_SECONDS = Histogram(
    "dialup_monitor_tick_seconds",
    "Wall time of one monitor tick (host and cgroup reads, responses)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5),
    registry=REGISTRY,
)
ROUTE_CHANGES = Counter("dialup_route_changes", "Caddy route switches", ["site", "target"], registry=REGISTRY)
ROUTE_FAILURES = Counter(
    "dialup_route_failures", "Caddy route switches that failed (each is tried again)", ["site"], registry=REGISTRY
)
NOT_ALLOWED = Counter(
    "dialup_transitions_not_allowed",
    "State changes the transition table refused (each one a bug)",
    ["site"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "dialup_rate_limited_requests",
    "Requests answered 429 because their site was over its rate limit",
    ["site"],
    registry=REGISTRY,
)
