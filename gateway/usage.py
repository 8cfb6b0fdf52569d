"""Usage accounting and cost (docs/quotas.md): what each generation used, and the sums ``GET /v1/usage`` serves.

The flow writes one ``UsageRecord`` per generation in the same transaction as the generation's audit entry
(:func:`record`), so there is no usage without an audited generation and no audited generation without its usage.
The same transaction adds the generation's GPU-seconds to the tenant's day counter, which the edge
(``gateway.quotas``) compares with ``gpu_seconds_per_day_per_tenant``. Cost is derived when read, from the prices
in the settings, so a price change re-prices history instead of leaving two kinds of rows.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from gateway.auth import Principal
from gateway.errors import InvalidInput
from gateway.models import UsageRecord
from gateway.quotas import Charge, Window, apply_charges
from gateway.settings import Settings

GPU_LIMIT = "gpu_seconds_per_day_per_tenant"


def on_gpu(*generators: Any) -> bool:
    """Whether any of these generators runs on a GPU (its ``device`` is CUDA); templates and CPU pipelines do not."""
    return any(str(getattr(g, "device", "cpu")).startswith("cuda") for g in generators if g is not None)


def record(session: Session, principal: Principal, *, generation_id: str, audit_entry_id: str, model: str,
           template: str | None, images: int, storage_bytes: int, seconds: float, gpu: bool) -> UsageRecord:
    """Add a generation's usage to the caller's (audit) transaction: ``seconds`` of generation on the GPU or the
    CPU; GPU-seconds also go onto the tenant's day counter."""
    row = UsageRecord(
        generation_id=generation_id, tenant=principal.tenant, key_id=principal.key_id, model=model,
        template=template, images=images, gpu_seconds=seconds if gpu else 0.0, cpu_seconds=0.0 if gpu else seconds,
        storage_bytes=storage_bytes, audit_entry_id=audit_entry_id,
    )
    session.add(row)
    if gpu and seconds > 0:
        apply_charges(session, [Charge(GPU_LIMIT, principal.tenant, Window.of("day", time.time()), seconds)])
    return row


@dataclass(frozen=True)
class Prices:
    """What a unit costs. Storage is charged once, when the bytes are written, for ``storage_months`` months."""

    currency: str
    gpu_second: float
    cpu_second: float
    image: float
    storage_gb_month: float
    storage_months: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        return cls(settings.price_currency, settings.price_gpu_second, settings.price_cpu_second,
                   settings.price_image, settings.price_storage_gb_month, settings.price_storage_months)

    def cost(self, *, gpu_seconds: float, cpu_seconds: float, images: int, storage_bytes: int) -> dict[str, float]:
        parts = {
            "gpu": gpu_seconds * self.gpu_second,
            "cpu": cpu_seconds * self.cpu_second,
            "images": images * self.image,
            "storage": storage_bytes / 1e9 * self.storage_gb_month * self.storage_months,
        }
        return {**{k: round(v, 6) for k, v in parts.items()}, "total": round(sum(parts.values()), 6)}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 date or date-time; one without a zone is UTC."""
    if len(value) > 64:
        raise InvalidInput(field, "max_length", f"`{field}` must be an ISO 8601 date-time of at most 64 characters")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(field, "iso8601", f"`{field}` must be an ISO 8601 date-time such as "
                           f"2026-11-01T00:00:00Z, not {value[:64]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_range(start: str | None, end: str | None, *, max_days: int, now: datetime | None = None
                ) -> tuple[datetime, datetime]:
    """``[from, to)``: ``to`` defaults to now, ``from`` to the start of ``to``'s UTC month."""
    stop = parse_time(end, "to") if end is not None else (now or datetime.now(UTC))
    begin = parse_time(start, "from") if start is not None else stop.replace(day=1, hour=0, minute=0, second=0,
                                                                             microsecond=0)
    if begin > stop:
        raise InvalidInput("from", "from_not_after_to", f"`from` ({begin.isoformat()}) is after `to` "
                           f"({stop.isoformat()})")
    if stop - begin > timedelta(days=max_days):
        raise InvalidInput("to", "max_range", f"the range from `from` to `to` covers {(stop - begin).days} days; "
                           f"one query may cover at most {max_days}")
    return begin, stop


_SUMS = ("images", "gpu_seconds", "cpu_seconds", "storage_bytes")


def _totals(generations: int, sums: dict[str, Any], prices: Prices) -> dict[str, Any]:
    cost = prices.cost(**sums)
    images = sums["images"]
    return {
        "generations": generations, "images": images, "gpu_seconds": round(sums["gpu_seconds"], 6),
        "cpu_seconds": round(sums["cpu_seconds"], 6), "storage_bytes": sums["storage_bytes"], "cost": cost,
        "cost_per_asset": round(cost["total"] / images, 6) if images else None,
    }


def summarize(db: Engine, *, start: datetime, end: datetime, tenant: str | None, prices: Prices) -> dict[str, Any]:
    """Usage in ``[start, end)`` per tenant, model and template (one tenant's, or every tenant's with ``None``)."""
    u = UsageRecord
    query = (
        select(col(u.tenant), col(u.model), col(u.template), func.count(), func.sum(u.images),
               func.sum(u.gpu_seconds), func.sum(u.cpu_seconds), func.sum(u.storage_bytes))
        .where(col(u.created_at) >= start, col(u.created_at) < end)
        .group_by(col(u.tenant), col(u.model), col(u.template))
        .order_by(col(u.tenant), col(u.model), col(u.template))
    )
    if tenant is not None:
        query = query.where(col(u.tenant) == tenant)
    with Session(db) as session:
        rows = session.execute(query).all()
    data = []
    overall = {"images": 0, "gpu_seconds": 0.0, "cpu_seconds": 0.0, "storage_bytes": 0}
    generations = 0
    for tenant_, model, template, count, *values in rows:
        sums = {"images": int(values[0] or 0), "gpu_seconds": float(values[1] or 0.0),
                "cpu_seconds": float(values[2] or 0.0), "storage_bytes": int(values[3] or 0)}
        for name in _SUMS:
            overall[name] += sums[name]
        generations += int(count)
        data.append({"tenant": tenant_, "model": model, "template": template, **_totals(int(count), sums, prices)})
    return {
        "from": start.isoformat(), "to": end.isoformat(), "tenant": tenant, "prices": prices.as_dict(),
        "data": data, "totals": _totals(generations, overall, prices),
    }
