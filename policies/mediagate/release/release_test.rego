package mediagate.release_test

import data.mediagate.release

card(nsfw, quality) := {
	"complete": true,
	"scores": {"nsfw": {"nsfw": nsfw}, "perceptual": {"quality": quality}},
	"failed": {},
}

# A card with more scores merged in, e.g. with_scores(card(0.01, 0.8), {"ocr": {"banned_words": 1}}).
with_scores(c, scores) := object.union(c, {"scores": scores})

release_input(cards) := release_input_for("demo", null, cards)

release_input_for(tenant, brand, cards) := {
	"principal": {"tenant": tenant, "role": "app", "key_id": "k1"},
	"request": {"kind": "prompt", "model": "demo-tiny", "brand": brand},
	"obligations": {"watermark": true, "max_n": 4, "force_review": false, "review_reasons": []},
	"images": [{"index": i, "card": c} | some i, c in cards],
}

codes(d) := {r.code | some r in d.reasons}

cases := {
	"clean image is released": {"cards": [card(0.01, 0.8)], "outcome": "release", "code": null},
	"nsfw over reject threshold": {"cards": [card(0.97, 0.8)], "outcome": "reject", "code": "safety.nsfw_reject"},
	"nsfw at reject threshold": {"cards": [card(0.85, 0.8)], "outcome": "reject", "code": "safety.nsfw_reject"},
	"nsfw in grey zone": {"cards": [card(0.5, 0.8)], "outcome": "review", "code": "safety.nsfw_review"},
	"nsfw just under review": {"cards": [card(0.399, 0.8)], "outcome": "release", "code": null},
	"low quality": {"cards": [card(0.01, 0.05)], "outcome": "review", "code": "quality.below_min"},
	"one bad image holds the batch": {
		"cards": [card(0.01, 0.8), card(0.6, 0.8)], "outcome": "review", "code": "safety.nsfw_review",
	},
	"reject wins over review": {"cards": [card(0.9, 0.05)], "outcome": "reject", "code": "safety.nsfw_reject"},
	"no images": {"cards": [], "outcome": "review", "code": "score.no_images"},
	"banned words rendered": {
		"cards": [with_scores(card(0.01, 0.8), {"ocr": {"banned_words": 1, "garbled": 0.0}})],
		"outcome": "reject", "code": "ocr.banned_words",
	},
	"garbled text": {
		"cards": [with_scores(card(0.01, 0.8), {"ocr": {"banned_words": 0, "garbled": 0.7}})],
		"outcome": "review", "code": "ocr.garbled_text",
	},
	"clean OCR": {
		"cards": [with_scores(card(0.01, 0.8), {"ocr": {"banned_words": 0, "garbled": 0.1}})],
		"outcome": "release", "code": null,
	},
	"off-brand": {
		"cards": [with_scores(card(0.01, 0.8), {"brand": {"score": 0.1}})], "outcome": "review",
		"code": "brand.below_min",
	},
	"exposed nudity": {
		"cards": [with_scores(card(0.01, 0.8), {"nudity": {"exposed_max": 0.9, "labels": ["FEMALE_BREAST_EXPOSED"]}})],
		"outcome": "reject", "code": "safety.exposed_reject",
	},
	"possible exposed nudity": {
		"cards": [with_scores(card(0.01, 0.8), {"nudity": {"exposed_max": 0.5, "labels": ["BUTTOCKS_EXPOSED"]}})],
		"outcome": "review", "code": "safety.exposed_review",
	},
	"no exposed nudity": {
		"cards": [with_scores(card(0.01, 0.8), {"nudity": {"exposed_max": 0.1, "labels": []}})],
		"outcome": "release", "code": null,
	},
	"distorted photo": {
		"cards": [with_scores(card(0.01, 0.8), {"brisque": {"brisque": 85}})], "outcome": "review",
		"code": "quality.brisque_above_max",
	},
	"natural photo": {
		"cards": [with_scores(card(0.01, 0.8), {"brisque": {"brisque": 20}})], "outcome": "release", "code": null,
	},
	"palette far off": {
		"cards": [with_scores(card(0.01, 0.8), {"brand": {"score": 0.9, "palette_compliance": -0.1}})],
		"outcome": "review", "code": "brand.palette_below_min",
	},
	"text mismatch": {
		"cards": [with_scores(card(0.01, 0.8), {"ocr": {
			"expected": true, "text_checked": true, "text_match": 0.4, "missing_texts": ["Shop now"],
			"banned_words": 0, "garbled": 0.0,
		}})],
		"outcome": "review", "code": "ocr.text_mismatch",
	},
	"text in a script OCR cannot read is not judged": {
		"cards": [with_scores(card(0.01, 0.8), {"ocr": {
			"expected": true, "text_checked": false, "text_match": 0.0, "missing_texts": ["مرحبا"],
			"banned_words": 0, "garbled": 0.0,
		}})],
		"outcome": "release", "code": null,
	},
	"nothing expected": {
		"cards": [with_scores(card(0.01, 0.8), {"ocr": {
			"expected": false, "text_checked": true, "text_match": 1, "missing_texts": [],
			"banned_words": 0, "garbled": 0.0,
		}})],
		"outcome": "release", "code": null,
	},
	"squeezing moved the prediction": {
		"cards": [with_scores(card(0.01, 0.8), {"squeeze": {"score": 0.9, "suspicious": true}})],
		"outcome": "review", "code": "adversarial.suspicious",
	},
	"squeezing changed nothing": {
		"cards": [with_scores(card(0.01, 0.8), {"squeeze": {"score": 0.01, "suspicious": false}})],
		"outcome": "release", "code": null,
	},
	"prompt not shown": {
		"cards": [with_scores(card(0.01, 0.8), {"alignment": {"clip_score": -0.1}})], "outcome": "review",
		"code": "alignment.below_min",
	},
}

test_outcome_table if {
	every _, tc in cases {
		d := release.decision with input as release_input(tc.cards)
		d.outcome == tc.outcome
		expected_code(d, tc.code)
	}
}

expected_code(d, code) if {
	code == null
	d.reasons == []
}

expected_code(d, code) if {
	code != null
	code in codes(d)
}

test_every_reason_is_structured if {
	d := release.decision with input as release_input([card(0.97, 0.05), card(0.5, 0.8)])
	count(d.reasons) == 3
	every r in d.reasons {
		r.code != ""
		r.msg != ""
		startswith(r.rule, "mediagate.release.")
	}
}

test_incomplete_card_is_never_released if {
	c := {"complete": false, "scores": {"perceptual": {"quality": 0.9}}, "failed": {"nsfw": "RuntimeError: boom"}}
	d := release.decision with input as release_input([c])
	d.outcome == "review"
	"score.incomplete" in codes(d)
}

test_force_review_obligation_carries_the_pre_codes if {
	reasons := [{"code": "review.person_name", "msg": "names a person", "rule": "mediagate.pre.person_name"}]
	forced := {"obligations": {"force_review": true, "review_reasons": reasons}}
	inp := object.union(release_input([card(0.01, 0.8)]), forced)
	d := release.decision with input as inp
	d.outcome == "review"
	some r in d.reasons
	r.code == "policy.force_review"
	contains(r.msg, "review.person_name")
}

# Tenant thresholds: acme is stricter than the defaults in data.json.
tenant_cases := {
	"acme rejects what the default reviews": {"tenant": "acme", "nsfw": 0.65, "outcome": "reject"},
	"default reviews it": {"tenant": "demo", "nsfw": 0.65, "outcome": "review"},
	"acme reviews what the default releases": {"tenant": "acme", "nsfw": 0.25, "outcome": "review"},
	"default releases it": {"tenant": "demo", "nsfw": 0.25, "outcome": "release"},
}

test_tenant_thresholds_table if {
	every _, tc in tenant_cases {
		d := release.decision with input as release_input_for(tc.tenant, null, [card(tc.nsfw, 0.8)])
		d.outcome == tc.outcome
	}
}

test_brand_thresholds_override_the_tenant if {
	good := with_scores(card(0.01, 0.45), {"brand": {"score": 0.6}})
	plain := release.decision with input as release_input_for("acme", "acme-basic", [good])
	plain.outcome == "release"
	premium := release.decision with input as release_input_for("acme", "acme-premium", [good])
	premium.outcome == "review"
	"quality.below_min" in codes(premium)
	premium.thresholds.min_quality == 0.5
	premium.thresholds.nsfw_reject == 0.6
}

test_named_brand_without_brand_score_is_reviewed if {
	d := release.decision with input as release_input_for("demo", "acme-premium", [card(0.01, 0.9)])
	d.outcome == "review"
	"brand.score_missing" in codes(d)
}

test_score_context_names_the_tenants_banned_terms if {
	ctx := release.score_context with input as {"principal": {"tenant": "acme"}}
	ctx.banned_terms == data.mediagate.config.tenants.acme.banned_terms
	dflt := release.score_context with input as {"principal": {"tenant": "nobody"}}
	dflt.banned_terms == data.mediagate.config.defaults.banned_terms
}

test_brisque_does_not_judge_template_banners if {
	flat := with_scores(card(0.01, 0.8), {"brisque": {"brisque": 95}})
	inp := object.union(release_input([flat]), {"request": {"kind": "template"}})
	d := release.decision with input as inp
	d.outcome == "release"
}

test_tenant_thresholds_merge_key_by_key if {
	# acme names some thresholds; the ones it does not name keep the default (never undefined: fail closed)
	t := release.thresholds with input as release_input_for("acme", null, [])
	t.exposed_reject == 0.5
	t.min_clip_score == data.mediagate.config.defaults.release.min_clip_score
	t.min_palette_compliance == data.mediagate.config.defaults.release.min_palette_compliance
}
