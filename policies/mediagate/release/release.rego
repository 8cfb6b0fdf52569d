# METADATA
# title: Release policy
# description: |
#   Decides what happens to generated images once they are scored: release, review (held for a human) or
#   reject. Input: {principal, request, obligations, images: [{index, card: {complete, scores, failed}}]}.
#   A card that is not complete is never released: a scorer that failed gives no evidence (fail closed).
package mediagate.release

settings := object.union(data.mediagate.config.defaults, object.get(data.mediagate.config.tenants, input.principal.tenant, {}))

thresholds := settings.release

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
		"msg": sprintf("image %d: NSFW probability %.3f >= %.3f", [image.index, p, thresholds.nsfw_reject]),
		"rule": "mediagate.release.nsfw_reject",
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
		"msg": sprintf("image %d: NSFW probability %.3f >= %.3f", [image.index, p, thresholds.nsfw_review]),
		"rule": "mediagate.release.nsfw_review",
	}
}

# METADATA
# title: Perceptual quality below the tenant's minimum
# custom:
#   code: quality.below_min
review contains reason if {
	some image in input.images
	q := image.card.scores.perceptual.quality
	q < thresholds.min_quality
	reason := {
		"code": "quality.below_min",
		"msg": sprintf("image %d: perceptual quality %.3f < %.3f", [image.index, q, thresholds.min_quality]),
		"rule": "mediagate.release.min_quality",
	}
}

# METADATA
# title: The pre-policy obliged a human review
# custom:
#   code: policy.force_review
review contains reason if {
	input.obligations.force_review == true
	reason := {
		"code": "policy.force_review",
		"msg": "the pre-policy requires a human review for this request",
		"rule": "mediagate.release.force_review",
	}
}

# No images means nothing to vouch for: never a release.
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
}
