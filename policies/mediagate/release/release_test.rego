package mediagate.release_test

import data.mediagate.release

card(nsfw, quality) := {
	"complete": true,
	"scores": {"nsfw": {"nsfw": nsfw}, "perceptual": {"quality": quality}},
	"failed": {},
}

release_input(cards) := {
	"principal": {"tenant": "demo", "role": "app", "key_id": "k1"},
	"request": {"kind": "prompt", "model": "demo-tiny"},
	"obligations": {"watermark": true, "max_n": 4, "force_review": false},
	"images": [{"index": i, "card": c} | some i, c in cards],
}

codes(d) := {r.code | some r in d.reasons}

cases := {
	"clean image is released": {"cards": [card(0.01, 0.8)], "outcome": "release", "code": null},
	"nsfw over reject threshold": {"cards": [card(0.97, 0.8)], "outcome": "reject", "code": "safety.nsfw_reject"},
	"nsfw in grey zone": {"cards": [card(0.5, 0.8)], "outcome": "review", "code": "safety.nsfw_review"},
	"low quality": {"cards": [card(0.01, 0.05)], "outcome": "review", "code": "quality.below_min"},
	"one bad image holds the batch": {"cards": [card(0.01, 0.8), card(0.6, 0.8)], "outcome": "review", "code": "safety.nsfw_review"},
	"reject wins over review": {"cards": [card(0.9, 0.05)], "outcome": "reject", "code": "safety.nsfw_reject"},
	"no images": {"cards": [], "outcome": "review", "code": "score.no_images"},
}

test_outcome_table if {
	every note, tc in cases {
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

test_incomplete_card_is_never_released if {
	c := {"complete": false, "scores": {"perceptual": {"quality": 0.9}}, "failed": {"nsfw": "RuntimeError: boom"}}
	d := release.decision with input as release_input([c])
	d.outcome == "review"
	"score.incomplete" in codes(d)
}

test_force_review_obligation if {
	inp := object.union(release_input([card(0.01, 0.8)]), {"obligations": {"force_review": true}})
	d := release.decision with input as inp
	d.outcome == "review"
	"policy.force_review" in codes(d)
}

test_tenant_thresholds_from_data if {
	d := release.decision with input as release_input([card(0.3, 0.8)])
		with data.mediagate.config.tenants.demo as {"release": {"nsfw_review": 0.2, "nsfw_reject": 0.85, "min_quality": 0.1}}
	d.outcome == "review"
}
