# METADATA
# title: Release policy
# description: |
#   Decides what happens to generated images once they are scored: release, review (held for a human) or
#   reject. Input: {principal, request, obligations (from mediagate.pre), images: [{index, card}]}, where a card is
#   {complete, scores: {scorer: {name: value}}, failed: {scorer: error}}. A card that is not complete is never
#   released: a scorer that failed gives no evidence (fail closed). Thresholds come from the tenant's `release`
#   settings, overridden by data.mediagate.config.brands[request.brand].release when the request names a brand.
package mediagate.release

import data.mediagate.lib

settings := lib.tenant_settings(input.principal.tenant)

brand := object.get(input.request, "brand", null)

thresholds := object.union(
	settings.release,
	object.get(object.get(data.mediagate.config, ["brands", brand], {}), "release", {}),
)

# METADATA
# title: What the scorers compare images with
# description: |
#   The tenant's banned terms, which the OCR scorer looks for in text rendered in the image. Input: {principal}.
#   The gateway asks for it before scoring; no answer means no scoring (fail closed).
# entrypoint: true
score_context := {"banned_terms": settings.banned_terms}

# METADATA
# title: NSFW probability above the reject threshold
# custom:
#   code: safety.nsfw_reject
reject contains reason if {
	some image in input.images
	p := image.card.scores.nsfw.nsfw
	p >= thresholds.nsfw_reject
	reason := {
		"code": "safety.nsfw_reject",
		"msg": sprintf("image %d: NSFW probability %s >= %s", [image.index, lib.num(p), lib.num(thresholds.nsfw_reject)]),
		"rule": "mediagate.release.nsfw_reject",
	}
}

# METADATA
# title: Banned words rendered in the image
# description: OCR found more banned words in the image than the tenant tolerates (scores.ocr.banned_words).
# custom:
#   code: ocr.banned_words
reject contains reason if {
	some image in input.images
	found := image.card.scores.ocr.banned_words
	found > thresholds.max_ocr_banned_words
	reason := {
		"code": "ocr.banned_words",
		"msg": sprintf(
			"image %d: %d banned words rendered in the image (max %d)",
			[image.index, found, thresholds.max_ocr_banned_words],
		),
		"rule": "mediagate.release.ocr_banned_words",
	}
}

# METADATA
# title: Exposed nudity above the reject threshold
# description: nudenet's highest confidence for an exposed intimate body part (scores.nudity.exposed_max).
# custom:
#   code: safety.exposed_reject
reject contains reason if {
	some image in input.images
	p := image.card.scores.nudity.exposed_max
	p >= thresholds.exposed_reject
	reason := {
		"code": "safety.exposed_reject",
		"msg": sprintf(
			"image %d: exposed nudity detected (%v, confidence %s >= %s)",
			[image.index, image.card.scores.nudity.labels, lib.num(p), lib.num(thresholds.exposed_reject)],
		),
		"rule": "mediagate.release.exposed_reject",
	}
}

# METADATA
# title: A scorer failed, so the card is incomplete
# custom:
#   code: score.incomplete
review contains reason if {
	some image in input.images
	not image.card.complete
	failed := [name | some name, _ in object.get(image.card, "failed", {})]
	reason := {
		"code": "score.incomplete",
		"msg": sprintf("image %d: score card incomplete (failed: %v)", [image.index, failed]),
		"rule": "mediagate.release.incomplete_card",
	}
}

# METADATA
# title: NSFW probability in the grey zone
# custom:
#   code: safety.nsfw_review
review contains reason if {
	some image in input.images
	p := image.card.scores.nsfw.nsfw
	p >= thresholds.nsfw_review
	p < thresholds.nsfw_reject
	reason := {
		"code": "safety.nsfw_review",
		"msg": sprintf("image %d: NSFW probability %s >= %s", [image.index, lib.num(p), lib.num(thresholds.nsfw_review)]),
		"rule": "mediagate.release.nsfw_review",
	}
}

# METADATA
# title: Exposed nudity in the grey zone
# custom:
#   code: safety.exposed_review
review contains reason if {
	some image in input.images
	p := image.card.scores.nudity.exposed_max
	p >= thresholds.exposed_review
	p < thresholds.exposed_reject
	reason := {
		"code": "safety.exposed_review",
		"msg": sprintf(
			"image %d: possible exposed nudity (%v, confidence %s >= %s)",
			[image.index, image.card.scores.nudity.labels, lib.num(p), lib.num(thresholds.exposed_review)],
		),
		"rule": "mediagate.release.exposed_review",
	}
}

# METADATA
# title: BRISQUE above the maximum (natural images only)
# description: |
#   BRISQUE (scores.brisque.brisque, lower is better) is fitted to natural photographs; flat banner graphics score
#   badly by design, so the rule applies to diffusion renders and uploads, not to template banners.
# custom:
#   code: quality.brisque_above_max
review contains reason if {
	input.request.kind != "template"
	some image in input.images
	b := image.card.scores.brisque.brisque
	b > thresholds.max_brisque
	reason := {
		"code": "quality.brisque_above_max",
		"msg": sprintf("image %d: BRISQUE %s > %s", [image.index, lib.num(b), lib.num(thresholds.max_brisque)]),
		"rule": "mediagate.release.max_brisque",
	}
}

# METADATA
# title: The image does not show the prompt
# description: CLIPScore of the image against the prompt (scores.alignment.clip_score) under min_clip_score.
# custom:
#   code: alignment.below_min
review contains reason if {
	some image in input.images
	s := image.card.scores.alignment.clip_score
	s < thresholds.min_clip_score
	reason := {
		"code": "alignment.below_min",
		"msg": sprintf(
			"image %d: CLIPScore %s < %s",
			[image.index, lib.num(s), lib.num(thresholds.min_clip_score)],
		),
		"rule": "mediagate.release.min_clip_score",
	}
}

# METADATA
# title: Too little of the image is in the brand palette
# description: Share of pixels within the kit's CIEDE2000 distance of its palette (scores.brand.palette_compliance).
# custom:
#   code: brand.palette_below_min
review contains reason if {
	some image in input.images
	c := image.card.scores.brand.palette_compliance
	c < thresholds.min_palette_compliance
	reason := {
		"code": "brand.palette_below_min",
		"msg": sprintf(
			"image %d: palette compliance %s < %s",
			[image.index, lib.num(c), lib.num(thresholds.min_palette_compliance)],
		),
		"rule": "mediagate.release.min_palette_compliance",
	}
}

# METADATA
# title: The rendered text does not match the requested text
# description: |
#   OCR read the banner and its text differs from what the template was asked to render (scores.ocr.text_match).
#   Only where the OCR model reads the locale's script (scores.ocr.text_checked); other scripts are not judged.
# custom:
#   code: ocr.text_mismatch
review contains reason if {
	some image in input.images
	ocr := image.card.scores.ocr
	ocr.expected
	ocr.text_checked
	ocr.text_match < thresholds.min_text_match
	reason := {
		"code": "ocr.text_mismatch",
		"msg": sprintf(
			"image %d: rendered text matches the request only %s < %s (missing: %v)",
			[image.index, lib.num(ocr.text_match), lib.num(thresholds.min_text_match), ocr.missing_texts],
		),
		"rule": "mediagate.release.min_text_match",
	}
}

# METADATA
# title: Perceptual quality below the minimum
# custom:
#   code: quality.below_min
review contains reason if {
	some image in input.images
	q := image.card.scores.perceptual.quality
	q < thresholds.min_quality
	reason := {
		"code": "quality.below_min",
		"msg": sprintf("image %d: perceptual quality %s < %s", [image.index, lib.num(q), lib.num(thresholds.min_quality)]),
		"rule": "mediagate.release.min_quality",
	}
}

# METADATA
# title: Brand fit below the minimum
# description: scores.brand.score (similarity to the brand kit) under min_brand.
# custom:
#   code: brand.below_min
review contains reason if {
	some image in input.images
	s := image.card.scores.brand.score
	s < thresholds.min_brand
	reason := {
		"code": "brand.below_min",
		"msg": sprintf("image %d: brand score %s < %s", [image.index, lib.num(s), lib.num(thresholds.min_brand)]),
		"rule": "mediagate.release.min_brand",
	}
}

# METADATA
# title: A brand was named but the image has no brand score
# description: Fail closed. Thresholds for a brand cannot be applied without the brand score.
# custom:
#   code: brand.score_missing
review contains reason if {
	brand != null
	some image in input.images
	image.card.complete
	not is_number(object.get(image.card, ["scores", "brand", "score"], null))
	reason := {
		"code": "brand.score_missing",
		"msg": sprintf("image %d: brand %q was requested but the image has no brand score", [image.index, brand]),
		"rule": "mediagate.release.brand_score_missing",
	}
}

# METADATA
# title: Garbled text in the image
# description: OCR judged too much of the rendered text garbled (scores.ocr.garbled, 0..1), typical of diffusion.
# custom:
#   code: ocr.garbled_text
review contains reason if {
	some image in input.images
	g := image.card.scores.ocr.garbled
	g > thresholds.max_ocr_garbled
	reason := {
		"code": "ocr.garbled_text",
		"msg": sprintf(
			"image %d: garbled-text score %s > %s",
			[image.index, lib.num(g), lib.num(thresholds.max_ocr_garbled)],
		),
		"rule": "mediagate.release.ocr_garbled",
	}
}

# METADATA
# title: The image looks adversarially perturbed
# description: |
#   Feature squeezing (scores.squeeze.suspicious): squeezing the image moved the NSFW model's prediction more than
#   natural images move it, the mark of a fragile adversarial perturbation. A human looks before it is released.
# custom:
#   code: adversarial.suspicious
review contains reason if {
	some image in input.images
	image.card.scores.squeeze.suspicious == true
	reason := {
		"code": "adversarial.suspicious",
		"msg": sprintf(
			"image %d: feature-squeezing score %s above the detector's threshold",
			[image.index, lib.num(image.card.scores.squeeze.score)],
		),
		"rule": "mediagate.release.adversarial_suspicious",
	}
}

# METADATA
# title: The pre-policy obliged a human review
# description: Carries over every review reason of mediagate.pre (person names, new templates, ...).
# custom:
#   code: policy.force_review
review contains reason if {
	input.obligations.force_review == true
	codes := [r.code | some r in object.get(input.obligations, "review_reasons", [])]
	reason := {
		"code": "policy.force_review",
		"msg": sprintf("the pre-policy requires a human review (%s)", [concat(", ", codes)]),
		"rule": "mediagate.release.force_review",
	}
}

# METADATA
# title: No images
# description: Nothing to vouch for is never a release.
# custom:
#   code: score.no_images
review contains reason if {
	count(input.images) == 0
	reason := {"code": "score.no_images", "msg": "no images to score", "rule": "mediagate.release.no_images"}
}

outcome := "reject" if {
	count(reject) > 0
} else := "review" if {
	count(review) > 0
} else := "release"

# METADATA
# title: Release decision
# description: The one entrypoint the gateway evaluates after scoring.
# entrypoint: true
decision := {
	"outcome": outcome,
	"reasons": array.concat([r | some r in reject], [r | some r in review]),
	"thresholds": thresholds,
}
