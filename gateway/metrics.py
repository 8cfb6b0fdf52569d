"""Prometheus metrics, one registry per app (no process globals), all names prefixed ``mediagate_``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.engine import Engine

from gateway.collectors import QueueCollector, ScrapeCollectors
from gateway.gpu_metrics import GpuCollector
from quality.base import ScoreCard

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 0.05, ..., 1
REVIEW_WAIT_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)  # 1 min .. 1 week


class Metrics:
    """Every metric the gateway exports (docs/observability.md lists them; the Grafana dashboard uses them).

    ``nvml`` stands in for the ``pynvml`` module in tests of the GPU collector."""

    def __init__(self, *, nvml: Any = None) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "mediagate_http_request_duration_seconds", "HTTP request latency by route and outcome.",
            ["method", "route", "outcome"], registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.policy_decisions = Counter(
            "mediagate_policy_decisions_total", "Policy decisions by stage, result and rule code.",
            ["stage", "result", "code"], registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "mediagate_stage_duration_seconds", "Time spent in each stage of the governed flow.",
            ["stage"], registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.generation_seconds = Histogram(
            "mediagate_generation_duration_seconds", "Generator call duration by model.",
            ["model"], registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.policy_activations = Counter(
            "mediagate_policy_activations_total", "Candidate policy bundles activated or refused, by source.",
            ["source", "result"], registry=self.registry,
        )
        self.shadow_decisions = Counter(
            "mediagate_policy_shadow_decisions_total",
            "Live decisions re-evaluated on the shadow bundle, by stage and whether it agreed with the active one.",
            ["stage", "agreement"], registry=self.registry,
        )
        self.features_seconds = Histogram(
            "mediagate_prompt_features_duration_seconds", "Time to normalise a request's text and embed it.",
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.features_cache = Counter(
            "mediagate_prompt_features_cache_total", "Prompt-feature lookups answered from the cache or computed.",
            ["result"], registry=self.registry,
        )
        self.commit_batch_size = Histogram(
            "mediagate_audit_commit_batch_size", "Audited writes committed together in one transaction.",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.commit_seconds = Histogram(
            "mediagate_audit_commit_duration_seconds", "Time to run and commit one batch of audited writes.",
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        self.batch_requests = Histogram(
            "mediagate_generation_batch_requests", "Requests rendered together in one pipeline call, by model.",
            ["model"], registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.scoring_seconds = Histogram(
            "mediagate_scoring_duration_seconds", "Scorer duration per batch by scorer.",
            ["scorer"], registry=self.registry, buckets=LATENCY_BUCKETS,
        )
        # Outcomes: throughput (assets per minute = rate * 60), decisions, score distributions, jobs and reviews.
        self.generations = Counter(
            "mediagate_generations_total", "Generations by audited decision: release, review, reject or deny.",
            ["decision"], registry=self.registry,
        )
        self.assets = Counter(
            "mediagate_assets_total", "Images by the status their generation's audited decision gave them: "
            "released, held (for review) or rejected.", ["status"], registry=self.registry,
        )
        self.image_scores = Histogram(
            "mediagate_image_score", "Numeric score values of audited generations, by scorer and field (the fields "
            "each scorer declares); buckets fit 0..1 scores.", ["scorer", "field"], registry=self.registry,
            buckets=SCORE_BUCKETS,
        )
        self.scorer_failures = Counter(
            "mediagate_scorer_failures_total", "Images a scorer failed on (their card is incomplete: never released).",
            ["scorer"], registry=self.registry,
        )
        self.job_attempts = Counter(
            "mediagate_job_attempts_total", "Async job attempts started (a worker claimed the job).",
            registry=self.registry,
        )
        self.job_retries = Counter(
            "mediagate_job_retries_total", "Async jobs queued again: after a dependency failed (dependency) or after "
            "the process running them stopped (interrupted).", ["reason"], registry=self.registry,
        )
        self.jobs_finished = Counter(
            "mediagate_jobs_finished_total", "Async jobs reaching a final state: completed (an audited decision), "
            "failed or cancelled.", ["status"], registry=self.registry,
        )
        self.review_wait = Histogram(
            "mediagate_review_wait_seconds", "Time from a generation being held to a reviewer's decision, by decision.",
            ["decision"], registry=self.registry, buckets=REVIEW_WAIT_BUCKETS,
        )
        self.scrape_errors = Counter(
            "mediagate_scrape_errors_total", "Scrape-time collectors that could not read their source (queues: the "
            "database, gpu: NVML); their series are missing from that scrape.", ["collector"], registry=None,
        )
        self._scrape = ScrapeCollectors(self.scrape_errors, GpuCollector(self.scrape_errors, nvml=nvml))
        self.registry.register(self._scrape)

    def track_queues(self, db: Engine) -> None:
        """Report queue depths and ages from ``db`` at every scrape (``QueueCollector``), instead of any database
        tracked before (an app whose lifespan runs again builds a new runtime on the same metrics)."""
        self._scrape.queues = QueueCollector(db, self.scrape_errors)

    def observe_decision(self, decision: str, statuses: Iterable[str], cards: Iterable[ScoreCard]) -> None:
        """A generation's audited outcome: its decision, its images' statuses, and their score cards."""
        self.generations.labels(decision).inc()
        for status in statuses:
            self.assets.labels(status).inc()
        for card in cards:
            for result in card.results:
                if not result.ok:
                    self.scorer_failures.labels(result.scorer).inc()
                    continue
                for name, value in result.values.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        self.image_scores.labels(result.scorer, name).observe(value)
