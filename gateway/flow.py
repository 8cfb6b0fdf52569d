"""The governed flow: [1] pre-policy, [2] generate, [3] score, [4] release policy, [6] audit, [7] deliver.

One path, no bypass. Every stage fails closed: an engine error, a generator crash, a scorer failure or an audit
write that does not commit means nothing is released. Assets become downloadable only through rows written in the
same transaction as the audit entry that records their release.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from PIL import Image
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from audit.base import AuditEntry, AuditStore
from audit.c2pa_manifest import NO_WATERMARK
from audit.group_commit import GroupCommitter
from gateway.assets import AssetStore
from gateway.audit_store import encode as audit_payload
from gateway.auth import Principal
from gateway.commit import commit
from gateway.errors import DependencyUnavailable, GatewayError, InvalidInput, PolicyDenied
from gateway.features import PromptFeatures
from gateway.metrics import Metrics
from gateway.models import Asset, Generation, Review
from gateway.policy.base import PolicyDecision, Reason
from gateway.policy.manager import PolicyManager
from gateway.provenance import Provenance
from gateway.render_cache import RenderCacheStore, cache_key
from gateway.scoring import Scoring, expected_texts
from gateway.usage import on_gpu
from gateway.usage import record as record_usage
from generators.base import GeneratedImage, GenerationSpec, report
from generators.registry import ModelRegistry

log = logging.getLogger(__name__)

STAGES = ("features", "pre_policy", "generate", "provenance", "score", "release_policy", "store", "audit")


@dataclass(frozen=True)
class FlowRequest:
    """A request after edge validation: one shape for the native and the OpenAI-compatible routes."""

    kind: str  # "prompt" | "template"
    model: str
    width: int
    height: int
    n: int
    seed: int
    prompt: str | None = None
    negative_prompt: str | None = None
    template: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    locale: str | None = None
    end_user: str | None = None  # the OpenAI API's `user`: the caller's own end-user id, kept for audit
    steps: int | None = None  # None: the model's default_steps
    preview: Mapping[str, str] | None = None  # a final render's preview: {"generation_id", "audit_entry"}
    # template requests: diffusion renders for image slots ({slot: {"prompt", "negative_prompt"}}, on image_model),
    # and a locale batch ([{"locale", "fields"}]: one banner per locale instead of `fields`)
    image_prompts: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    image_model: str | None = None
    locales: Sequence[Mapping[str, Any]] = field(default_factory=list)
    # image-to-image: the released asset to start from ({"asset_id"}, the flow adds its "sha256"), and the strength
    init_image: Mapping[str, str] | None = None
    strength: float | None = None
    brand: str | None = None  # the tenant's brand kit: scored against, and its release thresholds apply

    @property
    def text(self) -> str:
        """All client-supplied text, which banned-term rules must see."""
        parts = [self.prompt or "", self.negative_prompt or "", *self.fields.values(),
                 *(p.get("prompt") or "" for p in self.image_prompts.values()),
                 *(p.get("negative_prompt") or "" for p in self.image_prompts.values()),
                 *(text for loc in self.locales for text in loc["fields"].values())]
        return "\n".join(p for p in parts if p)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "model": self.model, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
            "template": self.template, "fields": dict(self.fields), "locale": self.locale, "n": self.n,
            "width": self.width, "height": self.height, "seed": self.seed, "steps": self.steps,
            "end_user": self.end_user, "preview": dict(self.preview) if self.preview is not None else None,
            "image_prompts": {k: dict(v) for k, v in self.image_prompts.items()}, "image_model": self.image_model,
            "locales": [{"locale": loc["locale"], "fields": dict(loc["fields"])} for loc in self.locales],
            "init_image": dict(self.init_image) if self.init_image is not None else None, "strength": self.strength,
            "brand": self.brand,
        }


@dataclass(frozen=True)
class JobLink:
    """The async job a flow run belongs to: named in its audit entry, completed in its audit transaction."""

    id: str
    attempt: int
    complete: Callable[[Session, str, str], None]  # (session, generation_id, decision); raises if the job moved on


@dataclass(frozen=True)
class ReleasedAsset:
    id: str
    sha256: str  # the audited pixels (PNG, watermarked, no manifest)
    index: int
    seed: int
    status: str
    size_bytes: int
    watermark_id: str | None = None
    signed_sha256: str | None = None  # the released file, with its C2PA manifest

    @property
    def file_sha256(self) -> str:
        """What an app downloads: the signed file once released, else the pixels."""
        return self.signed_sha256 or self.sha256


@dataclass(frozen=True)
class FlowResult:
    generation_id: str
    decision: str
    reasons: tuple[Reason, ...]
    assets: tuple[ReleasedAsset, ...]
    audit_entry: AuditEntry
    policy_revision: str
    pre_decision_id: str
    release_decision_id: str
    model_revision: str
    review_id: str | None
    stage_seconds: Mapping[str, float]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def random_seed() -> int:
    return secrets.randbelow(2**31)


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class Flow:
    def __init__(
        self, *, db: Engine, committer: GroupCommitter, policy: PolicyManager, features: PromptFeatures,
        registry: ModelRegistry, scoring: Scoring, audit: AuditStore, assets: AssetStore, metrics: Metrics,
        provenance: Provenance, cache: RenderCacheStore | None = None,
    ) -> None:
        self.provenance = provenance
        self.cache = cache
        self.db = db
        self.committer = committer
        self.policy = policy
        self.features = features
        self.registry = registry
        self.scoring = scoring
        self.audit = audit
        self.assets = assets
        self.metrics = metrics

    @contextmanager
    def _stage(self, name: str, timings: dict[str, float]) -> Iterator[None]:
        report("stage", name=name)  # an async job records it, and may stop here if it was cancelled
        start = time.perf_counter()
        try:
            yield
        finally:
            timings[name] = time.perf_counter() - start
            self.metrics.stage_seconds.labels(name).observe(timings[name])

    def _commit(self, write: Callable[[Session], AuditEntry]) -> AuditEntry:
        """Run ``write`` in the next group commit. No commit, no release: 503 and nothing kept."""
        return commit(self.committer, write)

    def run(self, principal: Principal, req: FlowRequest, *, job: JobLink | None = None) -> FlowResult:
        """The governed flow. With ``job``, the audit entry names the job and its attempt, and the job is completed
        in the audit entry's own transaction (``JobLink.complete``)."""
        timings: dict[str, float] = {}
        generation_id = new_id("gen")
        start_image = None
        if req.init_image is not None:  # before any decision: an unknown asset is the client's error, not audited
            start_image, req = self._start_image(principal, req)
        brand_kit = self.scoring.brand_kit(principal.tenant, req.brand)  # likewise an unknown brand
        with self._stage("features", timings):
            features = self.features.compute(req.text, self.policy.active.catalogue)
        base_input = {
            "principal": principal.as_dict(),
            "request": {**req.as_dict(), "text": req.text},
            "features": features,
            "context": {"time": datetime.now(UTC).isoformat(), "usage": self._usage(principal, req)},
        }
        with self._stage("pre_policy", timings):
            pre = self.policy.decide("pre", base_input, ref=generation_id, tenant=principal.tenant)
        if pre.result != "allow":
            entry = self._commit(lambda s: self._record_denial(s, principal, req, generation_id, pre, features, job))
            self.metrics.observe_decision("deny", (), ())
            raise PolicyDenied(
                "; ".join(r.msg for r in pre.reasons) or "denied by the pre-policy",
                codes=pre.codes, reasons=[r.as_dict() for r in pre.reasons], audit_entry=entry.id,
                policy_revision=pre.revision, decision_id=pre.id, generation_id=generation_id,
            )

        entry_model = self.registry.get(req.model)
        if entry_model is None or entry_model.generator is None:  # the edge checked; fail closed all the same
            raise DependencyUnavailable(f"model {req.model!r} is not loaded")
        spec = GenerationSpec(
            model=req.model, width=req.width, height=req.height, n=req.n, seed=req.seed, prompt=req.prompt,
            negative_prompt=req.negative_prompt, template=req.template, fields=dict(req.fields), locale=req.locale,
            steps=req.steps, init_image=start_image, strength=req.strength,
        )
        cache_state, key = "off", None
        image_fills: dict[str, Any] = {}
        with self._stage("generate", timings):
            generator = entry_model.generator
            cached = None
            if self.cache is not None and entry_model.backend == "diffusers-txt2img":
                key = cache_key(principal.tenant, generator.revision, spec, req.steps)
                cached = self.cache.get(key, spec, generator.revision)
                cache_state = "hit" if cached is not None else "miss"
            if cached is not None:
                images = cached
            elif req.kind == "template":
                fills = self._fill_image_slots(req, generator)
                images = self._generate(generator, spec, images={slot: f[0] for slot, f in fills.items()},
                                        locales=req.locales)
                image_fills = {slot: {"model": req.image_model, "revision": rev, "seed": seed}
                               for slot, (_, rev, seed) in fills.items()}
            else:
                images = self._generate(generator, spec)
                if key is not None and self.cache is not None:
                    self.cache.put(key, principal.tenant, images)
        marks: list[str | None] = [None] * len(images)
        if pre.obligations.get("watermark") is not False:  # fail closed: only an explicit false waives it
            with self._stage("provenance", timings):
                marked = self.provenance.mark(images)
            images, marks = [m.image for m in marked], [m.watermark_id for m in marked]
        with self._stage("score", timings):
            context = self.scoring.context(
                principal, kind=req.kind, prompt=req.prompt, brand=brand_kit,
                images=expected_texts(req.kind, req.fields, req.locale, req.locales, len(images)))
            cards = self.scoring.score([g.image for g in images], context)
        release_input = {
            **base_input,
            "obligations": dict(pre.obligations),
            "images": [{"index": g.index, "card": c.as_dict()} for g, c in zip(images, cards, strict=True)],
        }
        with self._stage("release_policy", timings):
            release = self.policy.decide("release", release_input, ref=generation_id, tenant=principal.tenant)

        status = {"release": "released", "review": "held", "reject": "rejected"}[release.result]
        with self._stage("store", timings):
            encoded = [encode_png(g.image) for g in images]
            stored = [
                ReleasedAsset(new_id("ast"), self.assets.put(data), g.index, g.seed, status, len(data))
                for g, data in zip(images, encoded, strict=True)
            ]
        review_id = new_id("rev") if release.result == "review" else None
        payload = {
            "generation_id": generation_id,
            "principal": principal.as_dict(),
            "request": req.as_dict(),
            "features": features,
            "pre": pre.as_dict(),
            "generator": {"model": req.model, "revision": images[0].model_revision if images else "",
                          "cache": cache_state, "cache_key": key, "image_slots": image_fills},
            "images": [
                {"asset_id": a.id, "index": a.index, "seed": a.seed, "sha256": a.sha256, "watermark_id": mark,
                 "card": c.as_dict(), **({"locale": req.locales[a.index]["locale"]} if req.locales else {})}
                for a, c, mark in zip(stored, cards, marks, strict=True)
            ],
            "release": release.as_dict(),
            "decision": release.result,
            "review_id": review_id,
        }
        if brand_kit is not None:  # the scorer versions pin the models; this pins the kit they compared with
            payload["brand_kit"] = {"brand": req.brand, "revision": brand_kit.revision}
        if job is not None:
            payload["job"] = {"id": job.id, "attempt": job.attempt}

        model_revision = images[0].model_revision if images else ""
        signed: dict[str, str] = {}
        gpu = on_gpu(entry_model.generator, getattr(self.registry.get(req.image_model or ""), "generator", None))

        canonical = audit_payload(payload)  # with the request id, in this request's thread, not the committer's

        def write(session: Session) -> AuditEntry:
            entry = self.audit.append(session, tenant=principal.tenant, kind="generation.decided", payload=canonical)
            session.add(Generation(
                id=generation_id, tenant=principal.tenant, key_id=principal.key_id, kind=req.kind, model=req.model,
                model_revision=model_revision, template=req.template, decision=release.result,
                reasons_json=json.dumps([r.as_dict() for r in release.reasons]),
                policy_revision=release.revision, audit_entry_id=entry.id,
            ))
            session.flush()  # the generation row must exist before rows that reference it
            record_usage(session, principal, generation_id=generation_id, audit_entry_id=entry.id, model=req.model,
                         template=req.template, images=len(stored), storage_bytes=sum(a.size_bytes for a in stored),
                         seconds=timings["generate"], gpu=gpu)
            for a, g, data, mark in zip(stored, images, encoded, marks, strict=True):
                if a.status == "released":  # the manifest names this very entry, so it is signed here
                    signed[a.id] = self.provenance.sign_and_store(data, self.provenance.claims(
                        model=req.model, model_revision=model_revision, policy_revision=release.revision,
                        entry=entry, tenant=principal.tenant, watermark_id=mark or NO_WATERMARK,
                    ))
                session.add(Asset(
                    id=a.id, tenant=principal.tenant, generation_id=generation_id, index=a.index, sha256=a.sha256,
                    size_bytes=a.size_bytes, width=g.image.width, height=g.image.height, seed=a.seed, status=a.status,
                    watermark_id=mark, signed_sha256=signed.get(a.id),
                ))
            if review_id is not None:
                session.add(Review(
                    id=review_id, tenant=principal.tenant, generation_id=generation_id,
                    reasons_json=json.dumps([r.as_dict() for r in release.reasons]),
                ))
            if job is not None:
                job.complete(session, generation_id, release.result)
            return entry

        with self._stage("audit", timings):
            entry = self._commit(write)
        self.metrics.observe_decision(release.result, [a.status for a in stored], cards)
        stored = [dataclasses.replace(a, watermark_id=m, signed_sha256=signed.get(a.id))
                  for a, m in zip(stored, marks, strict=True)]
        return FlowResult(
            generation_id=generation_id, decision=release.result, reasons=release.reasons, assets=tuple(stored),
            audit_entry=entry, policy_revision=release.revision, pre_decision_id=pre.id,
            release_decision_id=release.id, model_revision=model_revision,
            review_id=review_id, stage_seconds=timings,
        )

    def provenance_for_approval(self, session: Session, entry: AuditEntry, assets: Sequence[Asset]) -> None:
        """A reviewer's approval releases held assets: sign each with a manifest naming the approval's entry."""
        for asset in assets:
            generation = session.get(Generation, asset.generation_id)
            assert generation is not None  # the foreign key guarantees it
            asset.signed_sha256 = self.provenance.sign_and_store(self.assets.get(asset.sha256), self.provenance.claims(
                model=generation.model, model_revision=generation.model_revision or "",
                policy_revision=generation.policy_revision, entry=entry, tenant=asset.tenant,
                watermark_id=asset.watermark_id or NO_WATERMARK,
            ))

    def _start_image(self, principal: Principal, req: FlowRequest) -> tuple[Image.Image, FlowRequest]:
        """The tenant's released asset an image-to-image request starts from, at the request's size."""
        assert req.init_image is not None
        asset_id = req.init_image["asset_id"]
        with Session(self.db) as session:
            asset = session.exec(select(Asset).where(Asset.id == asset_id, Asset.tenant == principal.tenant,
                                                     Asset.status == "released")).first()
        if asset is None:
            raise InvalidInput("init_image", "known_asset", f"`init_image` {asset_id!r} is not a released asset of "
                               "this tenant")
        image = Image.open(io.BytesIO(self.assets.get(asset.sha256))).convert("RGB")
        if image.size != (req.width, req.height):
            image = image.resize((req.width, req.height), Image.Resampling.LANCZOS)
        return image, dataclasses.replace(req, init_image={"asset_id": asset_id, "sha256": asset.sha256})

    def _fill_image_slots(self, req: FlowRequest, template_generator: Any
                          ) -> dict[str, tuple[Image.Image, str, int]]:
        """Render each requested image slot with the diffusion model, at the slot's size (rounded up to a multiple
        of 8, within the model's limits); slot ``k`` (in name order) is seeded ``seed + 1000 + k``."""
        if not req.image_prompts:
            return {}
        entry = self.registry.get(req.image_model or "")
        if entry is None or entry.generator is None:
            raise DependencyUnavailable(f"model {req.image_model!r} for the image slots is not loaded")
        boxes = {s.name: s.box for s in template_generator.template(req.template).images}
        limits = entry.spec.limits
        fills: dict[str, tuple[Image.Image, str, int]] = {}
        for k, (slot, prompt) in enumerate(sorted(req.image_prompts.items())):
            box = boxes[slot]
            width = min(limits.max_width, -(-box.w // 8) * 8)
            height = min(limits.max_height, -(-box.h // 8) * 8)
            seed = req.seed + 1000 + k
            [image] = self._generate(entry.generator, GenerationSpec(
                model=entry.name, width=width, height=height, n=1, seed=seed, prompt=prompt["prompt"],
                negative_prompt=prompt.get("negative_prompt"), steps=limits.default_steps))
            fills[slot] = (image.image, image.model_revision, seed)
        return fills

    def _generate(self, generator: Any, spec: GenerationSpec, *, images: Mapping[str, Image.Image] | None = None,
                  locales: Sequence[Mapping[str, Any]] = ()) -> list[GeneratedImage]:
        """Run the generator; ``images`` (template image slots) and ``locales`` are for the template generator."""
        start = time.perf_counter()
        expected = len(locales) or spec.n
        try:
            if locales:  # one banner per locale, in one call (fonts, background, layers and images drawn once)
                banners = generator.render_locales(
                    spec.template, [(loc["locale"], loc["fields"]) for loc in locales], seed=spec.seed, images=images)
                generated = [b.generated for b in banners]
            elif images:
                generated = list(generator.generate(spec, images=images))
            else:
                generated = list(generator.generate(spec))
        except GatewayError:
            raise  # bad input the generator could only detect while rendering (e.g. text that does not fit)
        except Exception as exc:  # noqa: BLE001 - a crashed generator releases nothing
            log.exception("generator %s failed", spec.model)
            raise DependencyUnavailable(f"generator {spec.model!r} failed: {type(exc).__name__}") from exc
        finally:
            self.metrics.generation_seconds.labels(spec.model).observe(time.perf_counter() - start)
        if len(generated) != expected:
            raise DependencyUnavailable(f"generator {spec.model!r} returned {len(generated)} images for {expected}")
        return generated

    def _usage(self, principal: Principal, req: FlowRequest) -> dict[str, int]:
        """What the tenant has already made that rules may count: assets released or held per template."""
        if req.template is None:
            return {}
        with Session(self.db) as session:
            used = session.exec(
                select(func.count()).select_from(Asset).join(Generation, col(Asset.generation_id) == Generation.id)
                .where(Generation.tenant == principal.tenant, Generation.template == req.template,
                       col(Asset.status).in_(["released", "held"]))
            ).one()
        return {"template_assets": int(used)}

    def _record_denial(
        self, session: Session, principal: Principal, req: FlowRequest, generation_id: str, pre: PolicyDecision,
        features: Mapping[str, Any], job: JobLink | None = None,
    ) -> AuditEntry:
        payload: dict[str, Any] = {
            "generation_id": generation_id, "principal": principal.as_dict(), "request": req.as_dict(),
            "features": dict(features), "pre": pre.as_dict(), "decision": "deny",
        }
        if job is not None:
            payload["job"] = {"id": job.id, "attempt": job.attempt}
        entry = self.audit.append(session, tenant=principal.tenant, kind="generation.denied", payload=payload)
        session.add(Generation(
            id=generation_id, tenant=principal.tenant, key_id=principal.key_id, kind=req.kind, model=req.model,
            template=req.template, decision="deny", reasons_json=json.dumps([r.as_dict() for r in pre.reasons]),
            policy_revision=pre.revision, audit_entry_id=entry.id,
        ))
        if job is not None:
            session.flush()
            job.complete(session, generation_id, "deny")
        return entry
