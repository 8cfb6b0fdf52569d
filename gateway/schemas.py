"""Request bodies of the public API and the edge checks that turn them into a ``FlowRequest``.

Pydantic checks types and static bounds; ``to_flow_request`` checks the rules that need settings or the registry.
Each failure is an ``InvalidInput`` naming the field and the rule.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import DependencyUnavailable, InvalidInput, NotFound
from gateway.flow import FlowRequest, random_seed
from gateway.settings import Settings
from generators.registry import TEMPLATE_MODEL, ModelRegistry

SIZE_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
MIN_SIDE, MAX_SIDE = 64, 4096
MAX_N = 16  # hard ceiling at the edge; tenants' limits are policy (mediagate.pre.max_n)


MAX_LOCALES = 100  # banners in one template request (`locales`)


class ImagePrompt(BaseModel):
    """A diffusion render for one image slot of a template."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None


class LocaleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    locale: str = Field(min_length=2, max_length=35)
    fields: dict[str, str]


class GenerationBody(BaseModel):
    """``POST /v1/generations``: a prompt request or a template request, never both."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str | None = None
    negative_prompt: str | None = None
    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    size: str | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    template: str | None = None
    fields: dict[str, str] | None = None
    locale: str | None = Field(None, max_length=35)
    steps: int | None = Field(None, ge=1, le=500)
    run_async: bool = Field(False, alias="async")  # or the header `Prefer: respond-async`: 202 and a job
    preview: bool = False  # a fast preview-tier render now (200), the final render as a job linked to it
    init_image: str | None = Field(None, max_length=64)  # image-to-image models: a released asset of this tenant
    strength: float | None = Field(None, gt=0, le=1)  # image-to-image: how far from init_image (default 0.6)
    images: dict[str, ImagePrompt] | None = None  # template requests: image slots filled by a diffusion render
    locales: list[LocaleFields] | None = Field(None, min_length=1, max_length=MAX_LOCALES)  # one banner per locale
    brand: str | None = Field(None, min_length=1, max_length=64)  # the tenant's brand kit the images are scored with


class OpenAIImagesBody(BaseModel):
    """``POST /v1/images/generations``, the OpenAI Images API fields. Unknown extras are ignored as OpenAI does."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    model: str | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    size: str | None = None
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = Field(None, max_length=256)


class ReviewDecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


def parse_size(size: str, field: str = "size") -> tuple[int, int]:
    match = SIZE_RE.match(size)
    if match is None:
        raise InvalidInput(field, "size_format", f"`size` must look like '512x512' (WxH) but is {size!r}")
    width, height = int(match.group(1)), int(match.group(2))
    for name, value in (("width", width), ("height", height)):
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise InvalidInput(field, "size_range",
                               f"`{field}` {size}: {name} must be between {MIN_SIDE} and {MAX_SIDE} but is {value}")
        if value % 8:
            raise InvalidInput(field, "size_multiple_of_8", f"`{field}` {size}: `height` and `width` have to be "
                               f"divisible by 8 but are {height} and {width}")
    return width, height


def _check_prompt(prompt: str, settings: Settings, field: str = "prompt") -> str:
    if not prompt.strip():
        raise InvalidInput(field, "non_empty", f"`{field}` must contain non-whitespace text")
    if len(prompt) > settings.max_prompt_chars:
        raise InvalidInput(
            field, "max_length", f"`{field}` has {len(prompt)} characters; the limit is {settings.max_prompt_chars}"
        )
    return prompt


def to_flow_request(body: GenerationBody, settings: Settings, registry: ModelRegistry, templates: Any) -> FlowRequest:
    """Check a native request against the rules that need settings, the registry or the template library."""
    seed = body.seed if body.seed is not None else random_seed()
    if (body.prompt is None) == (body.template is None):
        raise InvalidInput("prompt", "prompt_xor_template", "send either `prompt` or `template` (with `fields`)")
    if body.template is not None:
        if body.prompt is not None or body.negative_prompt is not None:
            raise InvalidInput("negative_prompt", "template_no_prompt", "a template request takes no prompt")
        if body.model not in (None, TEMPLATE_MODEL):
            raise InvalidInput("model", "template_model", f"template requests use model 'template', not {body.model!r}")
        if body.size is not None:
            raise InvalidInput("size", "template_size", "a template's size is fixed by the template; omit `size`")
        if body.steps is not None:
            raise InvalidInput("steps", "template_steps", "a template request takes no `steps`")
        template = templates.get(body.template)
        if template is None:
            raise InvalidInput(
                "template", "known_template", f"unknown template {body.template!r}; see GET /v1/templates"
            )
        locales = _check_locales(body, template)
        fields = template.validate_fields(body.fields or {}, body.locale) if not locales else {}
        image_prompts, image_model = _check_image_prompts(body, template, settings, registry)
        return FlowRequest(kind="template", model=TEMPLATE_MODEL, width=template.width, height=template.height,
                           n=body.n, seed=seed, template=body.template, fields=fields, locale=body.locale,
                           image_prompts=image_prompts, image_model=image_model, locales=locales,
                           brand=body.brand)
    assert body.prompt is not None
    if body.fields is not None:
        raise InvalidInput("fields", "prompt_no_fields", "`fields` belongs to template requests")
    for name in ("images", "locales"):
        if getattr(body, name) is not None:
            raise InvalidInput(name, f"prompt_no_{name}", f"`{name}` belongs to template requests")
    req = prompt_request(body.prompt, body.negative_prompt, body.model, body.n, body.size, seed, settings, registry,
                         steps=body.steps, init_image=body.init_image, strength=body.strength)
    return dataclasses.replace(req, brand=body.brand)


def _check_locales(body: GenerationBody, template: Any) -> list[dict[str, Any]]:
    """A locale batch: every locale's fields checked as a single request's would be; errors name the locale."""
    if body.locales is None:
        return []
    if body.fields is not None or body.locale is not None:
        raise InvalidInput("locales", "locales_xor_fields", "send either `fields` (and `locale`) or `locales`")
    if body.n != 1:
        raise InvalidInput("n", "one_per_locale", "a locale batch makes one banner per locale: `n` must be 1")
    seen: set[str] = set()
    out = []
    for item in body.locales:
        if item.locale.lower() in seen:
            raise InvalidInput(f"locales.{item.locale}", "unique_locale", f"locale {item.locale!r} is given twice")
        seen.add(item.locale.lower())
        try:
            fields = template.validate_fields(item.fields, item.locale)
        except InvalidInput as exc:
            raise InvalidInput(f"locales.{item.locale}.{exc.field}", exc.rule,
                               f"locale {item.locale!r}: {exc.detail}", locale=item.locale) from exc
        out.append({"locale": item.locale, "fields": fields})
    return out


def _check_image_prompts(body: GenerationBody, template: Any, settings: Settings, registry: ModelRegistry
                         ) -> tuple[dict[str, dict[str, str | None]], str | None]:
    """Image slots to fill with diffusion renders: known slots, checked prompts, every required slot filled."""
    slots = {s.name: s for s in template.images}
    asked = body.images or {}
    for name in asked:
        if name not in slots:
            raise InvalidInput(f"images.{name}", "unknown_image_slot", f"template {template.id!r} has no image slot "
                               f"{name!r}; its image slots: {', '.join(slots) or 'none'}")
    for name, slot in slots.items():
        if slot.required and name not in asked:
            raise InvalidInput(f"images.{name}", "required", f"template {template.id!r} needs image slot {name!r}: "
                               "send `images: {\"" + name + "\": {\"prompt\": ...}}`")
    prompts = {name: {"prompt": _check_prompt(p.prompt, settings, f"images.{name}.prompt"),
                      "negative_prompt": p.negative_prompt} for name, p in asked.items()}
    if not prompts:
        return {}, None
    entry = registry.get(settings.default_model)
    if entry is None or entry.backend == "template" or entry.generator is None:
        raise DependencyUnavailable(f"image slots are rendered with {settings.default_model!r}, which is not loaded")
    return prompts, entry.name


def preview_request(final: FlowRequest, settings: Settings, registry: ModelRegistry) -> FlowRequest:
    """The preview of a prompt request: same prompt, seed and number of images, on the preview-tier model at its
    default size and steps."""
    if final.kind != "prompt":
        raise InvalidInput("preview", "preview_prompt_only", "`preview` is for prompt requests; a template banner "
                           "renders in well under a second")
    name = settings.preview_model or registry.preview_model()
    if name is None:
        raise InvalidInput("preview", "preview_model_available", "no preview-tier model is loaded (registry `tier: "
                           "preview`, or MEDIAGATE_PREVIEW_MODEL)")
    assert final.prompt is not None
    req = prompt_request(final.prompt, final.negative_prompt, name, final.n, None, final.seed, settings, registry)
    return dataclasses.replace(req, brand=final.brand)


def prompt_request(
    prompt: str, negative_prompt: str | None, model: str | None, n: int, size: str | None, seed: int,
    settings: Settings, registry: ModelRegistry, *, steps: int | None = None, init_image: str | None = None,
    strength: float | None = None,
) -> FlowRequest:
    """Check a prompt request against the model's registry entry: its maximum size and steps, and for an
    image-to-image model its starting image (a released asset of the tenant, found by the flow)."""
    _check_prompt(prompt, settings)
    if negative_prompt is not None and len(negative_prompt) > settings.max_prompt_chars:
        raise InvalidInput("negative_prompt", "max_length",
                           f"`negative_prompt` has {len(negative_prompt)} characters; the limit is "
                           f"{settings.max_prompt_chars}")
    name = model or settings.default_model
    entry = registry.get(name)
    if entry is None or entry.backend == "template":
        # (whether this tenant may use it is the pre-policy's decision: denied and audited, not unknown)
        known = ", ".join(e.name for e in registry if e.backend != "template")
        raise NotFound(f"unknown model {name!r}; text-to-image models: {known} (GET /v1/models)",
                       field="model", rule="known_model")
    if entry.generator is None:
        raise DependencyUnavailable(f"model {name!r} is unavailable: {entry.error}")
    limits = entry.spec.limits
    width, height = parse_size(size) if size else (entry.default_width, entry.default_height)
    if width > limits.max_width or height > limits.max_height:
        raise InvalidInput("size", "max_size", f"`size` {width}x{height} is above model {name!r}'s limit of "
                           f"{limits.max_width}x{limits.max_height}", limit=f"{limits.max_width}x{limits.max_height}")
    if steps is not None and steps > limits.max_steps:
        raise InvalidInput("steps", "max_steps", f"`steps` {steps} is above model {name!r}'s limit of "
                           f"{limits.max_steps}", limit=limits.max_steps)
    image_to_image = entry.backend == "diffusers-img2img"
    if image_to_image and init_image is None:
        raise InvalidInput("init_image", "required", f"model {name!r} is image-to-image: send `init_image`, the id "
                           "of a released asset")
    if not image_to_image and (init_image is not None or strength is not None):
        field = "init_image" if init_image is not None else "strength"
        raise InvalidInput(field, "model_backend", f"`{field}` is for image-to-image models; {name!r} is "
                           f"{entry.backend}")
    return FlowRequest(kind="prompt", model=name, width=width, height=height, n=n, seed=seed, prompt=prompt,
                       negative_prompt=negative_prompt, steps=steps if steps is not None else limits.default_steps,
                       init_image={"asset_id": init_image} if init_image is not None else None,
                       strength=(strength if strength is not None else 0.6) if image_to_image else None)


def feed_row_request(row: dict[str, Any], settings: Settings, registry: ModelRegistry, templates: Any) -> FlowRequest:
    """A campaign-feed row (``template``, ``fields``, ``locale``, ``brand``) through the same checks as a template
    request to ``POST /v1/generations``."""
    try:
        body = GenerationBody.model_validate(row)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "row"
        raise InvalidInput(field, str(first["type"]), f"`{field}`: {first['msg']}") from exc
    return to_flow_request(body, settings, registry, templates)
