"""The prompt cache: an identical request reuses the stored render instead of running the model again.

Identical means the same tenant, model and model revision (the weights' hash), prompt, negative prompt, size, number
of images, steps and seed. Only the generator's output is reused: the request still passes the pre-policy and the
release policy, gets fresh watermarks, scores and its own audit entry, which records ``"cache": "hit"`` and the key.

Entries live ``ttl_s`` (default a day) and at most ``max_entries`` are kept (oldest dropped first); the retention
job drops a tenant's entries with its assets. A cache that cannot be read or written is skipped, never fatal: it is
an optimisation, and the model is the fallback.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from datetime import UTC, datetime, timedelta

from PIL import Image
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.models import RenderCache, RenderCacheImage
from generators.base import GeneratedImage, GenerationSpec

log = logging.getLogger(__name__)


def cache_key(tenant: str, revision: str, spec: GenerationSpec, steps: int | None) -> str:
    fields = {"tenant": tenant, "model": spec.model, "revision": revision, "prompt": spec.prompt,
              "negative_prompt": spec.negative_prompt, "width": spec.width, "height": spec.height, "n": spec.n,
              "seed": spec.seed, "steps": steps}
    return "rc_" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:40]


class RenderCacheStore:
    def __init__(self, db: Engine, *, ttl_s: float = 86400.0, max_entries: int = 10_000) -> None:
        self.db, self.ttl, self.max_entries = db, timedelta(seconds=ttl_s), max_entries

    def get(self, key: str, spec: GenerationSpec, revision: str) -> list[GeneratedImage] | None:
        try:
            with Session(self.db) as session:
                entry = session.get(RenderCache, key)
                if entry is None or _aware(entry.created_at) < datetime.now(UTC) - self.ttl:
                    return None
                rows = session.exec(select(RenderCacheImage).where(RenderCacheImage.key == key)
                                    .order_by(col(RenderCacheImage.index))).all()
                if len(rows) != spec.n:
                    return None
                session.execute(update(RenderCache).where(col(RenderCache.key) == key)
                                .values(hits=col(RenderCache.hits) + 1))
                session.commit()
                return [GeneratedImage(image=Image.open(io.BytesIO(r.png)).convert("RGB"), index=r.index,
                                       seed=r.seed, model=spec.model, model_revision=revision) for r in rows]
        except Exception:  # noqa: BLE001 - a broken cache falls back to the model
            log.exception("prompt cache lookup failed for %s", key)
            return None

    def put(self, key: str, tenant: str, images: list[GeneratedImage]) -> None:
        try:
            with Session(self.db) as session:
                if session.get(RenderCache, key) is not None:
                    return
                session.add(RenderCache(key=key, tenant=tenant, model=images[0].model,
                                        revision=images[0].model_revision))
                session.flush()
                for g in images:
                    buf = io.BytesIO()
                    g.image.save(buf, format="PNG")
                    session.add(RenderCacheImage(key=key, index=g.index, seed=g.seed, png=buf.getvalue()))
                session.commit()
            self._prune()
        except Exception:  # noqa: BLE001 - not caching is always allowed
            log.exception("prompt cache store failed for %s", key)

    def _prune(self) -> None:
        with Session(self.db) as session:
            cutoff = datetime.now(UTC) - self.ttl
            stale = list(session.exec(select(RenderCache.key).where(col(RenderCache.created_at) < cutoff)).all())
            extra = session.exec(select(RenderCache.key).order_by(col(RenderCache.created_at).desc())
                                 .offset(self.max_entries)).all()
            self._drop(session, [*stale, *extra])
            session.commit()

    def drop_tenant_before(self, tenant: str, cutoff: datetime) -> int:
        """The retention job: a tenant's renders expire with its assets."""
        with Session(self.db) as session:
            keys = list(session.exec(select(RenderCache.key).where(
                RenderCache.tenant == tenant, col(RenderCache.created_at) < cutoff)).all())
            self._drop(session, keys)
            session.commit()
        return len(keys)

    @staticmethod
    def _drop(session: Session, keys: list[str]) -> None:
        if keys:
            session.execute(delete(RenderCacheImage).where(col(RenderCacheImage.key).in_(keys)))
            session.execute(delete(RenderCache).where(col(RenderCache.key).in_(keys)))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
