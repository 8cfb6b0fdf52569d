"""Prometheus metrics, one registry per app (no process globals), all names prefixed ``mediagate_``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
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
