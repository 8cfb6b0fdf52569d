"""Provenance on every released image: the invisible watermark (pixels) and the C2PA manifest (file).

The watermark goes in right after generation, so that scores, the audit entry's pixel hash and the released pixels
are the same pixels; its random id is recorded in the audit entry and on the asset row. The C2PA manifest can only
be signed once the audit entry's hash exists, so it is made inside the audit transaction (``Flow`` and review
approval): the signed file's hash goes on the asset row, the pixel hash stays in the entry, and a failure to sign
rolls the transaction back (no provenance, no release).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from PIL import Image

from audit import watermark
from audit.base import AuditEntry
from audit.c2pa_manifest import C2paSigner, ManifestReader, ProvenanceClaims
from gateway.assets import AssetStore
from gateway.errors import DependencyUnavailable
from generators.base import GeneratedImage

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Marked:
    image: GeneratedImage
    watermark_id: str  # hex


class Provenance:
    def __init__(self, signer: C2paSigner, reader: ManifestReader, assets: AssetStore) -> None:
        self.signer = signer
        self.reader = reader
        self.assets = assets

    def mark(self, images: Sequence[GeneratedImage]) -> list[Marked]:
        """Watermark every image with a fresh id. An image that cannot carry the mark is a 503: never unmarked."""
        marked = []
        for g in images:
            mark_id = watermark.new_mark_id()
            try:
                pixels = watermark.embed(g.image, mark_id)
            except ValueError as exc:
                raise DependencyUnavailable(f"image {g.index} cannot carry the provenance watermark: {exc}") from exc
            marked.append(Marked(dataclasses.replace(g, image=pixels), mark_id.hex()))
        return marked

    def sign_and_store(self, png: bytes, claims: ProvenanceClaims) -> str:
        """Sign ``png`` with a C2PA manifest naming ``claims``; store the file; return its SHA-256."""
        return self.assets.put(self.signer.sign(png, "image/png", claims))

    def claims(self, *, model: str, model_revision: str, policy_revision: str, entry: AuditEntry, tenant: str,
               watermark_id: str) -> ProvenanceClaims:
        return ProvenanceClaims(
            model=model, model_revision=model_revision or "unknown", policy_revision=policy_revision,
            audit_entry_id=entry.id, audit_entry_hash=entry.hash, tenant=tenant, watermark_id=watermark_id,
        )

    def close(self) -> None:
        self.signer.close()
        self.reader.close()


def decode_mark(image: Image.Image, sizes: Sequence[tuple[int, int]]) -> watermark.DecodeResult | None:
    """The watermark of ``image`` read at its own size and at each size the gateway produced; None if too small."""
    try:
        return watermark.decode(image, sizes)
    except ValueError:
        return None
