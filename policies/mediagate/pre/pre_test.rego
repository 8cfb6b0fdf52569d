package mediagate.pre_test

import data.mediagate.pre

principal(tenant) := {"tenant": tenant, "role": "app", "key_id": "k1"}

# A request as the gateway builds it; `overrides` replace fields of `request`.
prompt_request(overrides) := object.union(
	{
		"kind": "prompt", "prompt": "a red bicycle", "negative_prompt": null, "model": "demo-tiny", "n": 1,
		"width": 128, "height": 128, "template": null, "fields": {}, "locale": null, "text": "a red bicycle",
	},
	overrides,
)

template_request(id, overrides) := object.union(
	{
		"kind": "template", "prompt": null, "negative_prompt": null, "model": "template", "n": 1, "width": 1024,
		"height": 512, "template": id, "fields": {"headline": "Spring sale"}, "locale": null, "text": "Spring sale",
	},
	overrides,
)

# Similarities of a harmless text: every concept far away, except those in `overrides`.
concepts_with(overrides) := object.union({id: 0.05 | some id, _ in data.mediagate.config.concepts}, overrides)

gore_threshold := data.mediagate.config.concepts["violence.gore"].threshold

clean_features(text) := {
	"normalized": lower(text), "folded": lower(text), "changed": false, "mixed_script": false,
	"concepts": concepts_with({}),
}

# Top-level keys of `b` replace those of `a` (object.union would merge nested objects).
shallow_union(a, b) := {k: v | some k in object.keys(a) | object.keys(b); v := object.get(b, k, a[k])}

make_input(tenant, request, feature_overrides) := {
	"principal": principal(tenant),
	"request": request,
	"features": shallow_union(clean_features(request.text), feature_overrides),
	"context": {"time": "2026-11-25T12:00:00Z", "usage": {"template_assets": 10}},
}

decide(tenant, request, feature_overrides) := d if {
	d := pre.decision with input as make_input(tenant, request, feature_overrides)
}

codes(decision) := {v.code | some v in decision.deny}

review_codes(decision) := {r.code | some r in decision.obligations.review_reasons}

test_clean_prompt_allowed if {
	d := decide("demo", prompt_request({}), {})
	d.allow
	d.deny == []
	d.obligations.watermark
	not d.obligations.force_review
}

# Table: tenant, request overrides, feature overrides and the code expected among the denials.
deny_cases := {
	"banned term": {
		"tenant": "demo", "req": {"text": "a scene full of gore"}, "features": {}, "code": "prompt.banned_term",
	},
	"banned term, any case": {
		"tenant": "demo", "req": {"text": "GORE at night"}, "features": {}, "code": "prompt.banned_term",
	},
	"banned phrase across punctuation": {
		"tenant": "demo", "req": {"text": "stop child-abuse"}, "features": {}, "code": "prompt.banned_term",
	},
	"banned term after normalisation": {
		"tenant": "demo", "req": {"text": "g\u200bore"}, "features": {"normalized": "gore", "folded": "gore"},
		"code": "prompt.banned_term",
	},
	"banned term after folding": {
		"tenant": "demo", "req": {"text": "g0r3"}, "features": {"normalized": "g0r3", "folded": "gore"},
		"code": "prompt.banned_term",
	},
	"tenant's own banned term": {
		"tenant": "acme", "req": {"text": "logo of competitorco"}, "features": {}, "code": "prompt.banned_term",
	},
	"banned concept": {
		"tenant": "demo", "req": {"text": "entrails everywhere"},
		"features": {"concepts": concepts_with({"violence.gore": gore_threshold})},
		"code": "prompt.banned_concept",
	},
	"concept similarity missing": {
		"tenant": "demo", "req": {}, "features": {"concepts": {}}, "code": "prompt.features_missing",
	},
	"normalised text missing": {
		"tenant": "demo", "req": {}, "features": {"normalized": null}, "code": "prompt.features_missing",
	},
	"prompt too long for tenant": {
		"tenant": "restricted",
		"req": {"model": "template", "prompt": concat("", array.concat(["a"], [" cat" | some _ in numbers.range(1, 60)]))},
		"features": {}, "code": "prompt.too_long",
	},
	"model not allowed": {"tenant": "restricted", "req": {}, "features": {}, "code": "model.not_allowed"},
	"unknown model": {"tenant": "demo", "req": {"model": "sdxl"}, "features": {}, "code": "model.not_allowed"},
	"n over max": {"tenant": "demo", "req": {"n": 5}, "features": {}, "code": "request.n_exceeds_max"},
	"tenant's own max n": {
		"tenant": "restricted", "req": {"n": 2, "model": "template"}, "features": {}, "code": "request.n_exceeds_max",
	},
	"width over max": {"tenant": "demo", "req": {"width": 1024}, "features": {}, "code": "request.size_exceeds_max"},
	"height over max": {"tenant": "demo", "req": {"height": 520}, "features": {}, "code": "request.size_exceeds_max"},
	"too small for the watermark": {
		"tenant": "demo", "req": {"width": 64}, "features": {}, "code": "request.below_watermark_min",
	},
}

test_deny_table if {
	every _, tc in deny_cases {
		d := decide(tc.tenant, prompt_request(tc.req), tc.features)
		not d.allow
		tc.code in codes(d)
	}
}

allow_cases := {
	"substring of a banned term is not the term": {
		"tenant": "demo", "req": {"text": "gorey mountain view"}, "features": {},
	},
	"other tenant's banned term": {"tenant": "demo", "req": {"text": "logo of competitorco"}, "features": {}},
	"concept below threshold": {
		"tenant": "demo", "req": {}, "features": {"concepts": concepts_with({"violence.gore": gore_threshold - 0.01})},
	},
	"concept not banned for tenant": {
		"tenant": "demo", "req": {}, "features": {"concepts": concepts_with({"violence.gore": 0.9})},
		"settings": {"banned_concepts": ["self_harm"]},
	},
	"at the size limit": {"tenant": "demo", "req": {"width": 512, "height": 512}, "features": {}},
	"at the n limit": {"tenant": "demo", "req": {"n": 4}, "features": {}},
	"prompt at the length limit": {
		"tenant": "demo", "req": {"prompt": concat("", ["a" | some _ in numbers.range(1, 1000)])}, "features": {},
	},
}

test_allow_table if {
	every _, tc in allow_cases {
		d := pre.decision with input as make_input(tc.tenant, prompt_request(tc.req), tc.features)
			with data.mediagate.config.tenants.demo as object.get(tc, "settings", {})
		d.allow
	}
}

test_every_denial_is_structured if {
	d := decide("demo", prompt_request({"text": "gore", "n": 9, "model": "x"}), {})
	count(d.deny) == 3
	every v in d.deny {
		v.code != ""
		v.msg != ""
		startswith(v.rule, "mediagate.pre.")
	}
}

test_banned_term_message_names_the_readings if {
	d := decide("demo", prompt_request({"text": "g0re"}), {"normalized": "g0re", "folded": "gore"})
	some v in d.deny
	v.code == "prompt.banned_term"
	v.msg == "the request text contains the banned term \"gore\" (after folding)"
}

test_model_allow_list_lists_what_the_pre_policy_allows if {
	models := {"principal": principal("demo"), "models": ["demo-tiny", "sd-turbo", "template"]}
	allowed := pre.allowed_models with input as models
		with data.mediagate.config.tenants.demo as {"models": ["sd-turbo"]}
	allowed == {"sd-turbo"}
	d := pre.decision with input as make_input("demo", prompt_request({"model": "demo-tiny"}), {})
		with data.mediagate.config.tenants.demo as {"models": ["sd-turbo"]}
	"model.not_allowed" in codes(d)
}

test_image_slots_need_the_diffusion_model_allowed if {
	req := object.union(template_request("spring-sale", {}), {"image_model": "demo-tiny"})
	restricted := pre.decision with input as make_input("restricted", req, {})
	"image_model.not_allowed" in codes(restricted)
	demo := pre.decision with input as make_input("demo", req, {})
	not "image_model.not_allowed" in codes(demo)
	plain := pre.decision with input as make_input("restricted", template_request("spring-sale", {}), {})
	not "image_model.not_allowed" in codes(plain)
}

test_template_allow_list if {
	d := pre.decision with input as make_input("demo", template_request("spring-sale", {}), {})
		with data.mediagate.config.tenants.demo as {"templates": ["product-square"]}
	"template.not_allowed" in codes(d)
	templates := {"principal": principal("demo"), "templates": ["spring-sale", "product-square"]}
	allowed := pre.allowed_templates with input as templates
		with data.mediagate.config.tenants.demo as {"templates": ["product-square"]}
	allowed == {"product-square"}
}

test_template_size_not_checked_against_prompt_limits if {
	d := decide("demo", template_request("spring-sale", {"width": 4096}), {})
	d.allow
}

campaign_cases := {
	"inside the window": {"time": "2026-11-25T12:00:00Z", "allow": true},
	"first second of the window": {"time": "2026-03-01T00:00:00Z", "allow": true},
	"last second of the window": {"time": "2027-06-30T23:59:59Z", "allow": true},
	"before the window": {"time": "2026-02-28T23:59:59Z", "allow": false},
	"after the window": {"time": "2027-07-01T00:00:00Z", "allow": false},
	"time in another zone, inside": {"time": "2026-03-01T00:30:00+00:30", "allow": true},
	"no time": {"time": null, "allow": false},
	"unparsable time": {"time": "yesterday", "allow": false},
}

test_campaign_window_table if {
	every _, tc in campaign_cases {
		base := make_input("demo", template_request("spring-sale", {}), {})
		d := pre.decision with input as object.union(base, {"context": {"time": tc.time}})
		d.allow == tc.allow
		tc.allow == ("campaign.not_active" in codes(d)) == false
	}
}

test_template_without_campaign_needs_no_time if {
	base := make_input("demo", template_request("product-square", {}), {})
	d := pre.decision with input as object.union(base, {"context": {"time": null}})
	d.allow
}

test_tenant_campaign_overrides_the_bundle_window if {
	d := pre.decision with input as make_input("demo", template_request("spring-sale", {}), {})
		with data.mediagate.config.tenants.demo as {"campaigns": {"spring-sale": {
			"not_before": "2027-01-01T00:00:00Z", "not_after": "2027-02-01T00:00:00Z",
		}}}
	"campaign.not_active" in codes(d)
}

review_cases := {
	"public figure": {"req": {"text": "joe biden riding a horse"}, "features": {}, "code": "review.person_name"},
	"public figure after normalisation": {
		"req": {"text": "j\u043ee biden"}, "features": {"normalized": "joe biden"}, "code": "review.person_name",
	},
	"given name and surname": {
		"req": {"text": "portrait of Priya Raman at a desk"}, "features": {}, "code": "review.person_name",
	},
	"mixed scripts": {"req": {"text": "g\u043ere"}, "features": {"mixed_script": true}, "code": "review.mixed_script"},
}

test_review_obligation_table if {
	every _, tc in review_cases {
		d := decide("demo", prompt_request(tc.req), tc.features)
		d.allow
		d.obligations.force_review
		tc.code in review_codes(d)
	}
}

no_review_cases := {
	"given name as an ordinary word": {"text": "a mark on the wall"},
	"capitalised words that are not names": {"text": "The Eiffel Tower at Night"},
	"given name without surname": {"text": "a dog called taylor"},
}

test_no_review_table if {
	every _, tc in no_review_cases {
		d := decide("demo", prompt_request(tc), {})
		not d.obligations.force_review
	}
}

test_person_names_only_for_prompts if {
	d := decide("demo", template_request("product-square", {"text": "Meet Taylor Swift"}), {})
	not "review.person_name" in review_codes(d)
}

test_new_template_is_reviewed_until_n_assets if {
	base := make_input("acme", template_request("product-square", {}), {})
	few := pre.decision with input as object.union(base, {"context": {"usage": {"template_assets": 2}}})
		with data.mediagate.config.tenants.acme as {"new_template_review_count": 3}
	"review.new_template" in review_codes(few)
	enough := pre.decision with input as object.union(base, {"context": {"usage": {"template_assets": 3}}})
		with data.mediagate.config.tenants.acme as {"new_template_review_count": 3}
	not "review.new_template" in review_codes(enough)
}

test_force_review_from_tenant_settings if {
	d := pre.decision with input as make_input("demo", prompt_request({}), {})
		with data.mediagate.config.tenants.demo as {"force_review": true}
	d.obligations.force_review
	review_codes(d) == {"review.tenant_forced"}
}

test_watermark_obligation_cannot_be_dropped_by_omission if {
	d := pre.decision with input as make_input("demo", prompt_request({}), {})
		with data.mediagate.config.defaults.watermark as null
	d.obligations.watermark
}

test_concept_catalogue_lists_every_concept if {
	count(pre.concept_catalogue) == count(data.mediagate.config.concepts)
	every id, examples in pre.concept_catalogue {
		count(examples) > 0
		data.mediagate.config.concepts[id].threshold > 0
	}
}

# Data check: banned terms must be stored the way the matcher reads text (see pre.banned_terms).
test_banned_terms_are_stored_normalised if {
	every settings in array.concat([data.mediagate.config.defaults], [s | some s in data.mediagate.config.tenants]) {
		every term in object.get(settings, "banned_terms", []) {
			data.mediagate.lib.words(term) == concat("", [" ", term, " "])
			count(split(term, " ")) <= 4
		}
	}
}

test_multi_word_and_repeated_terms if {
	d := decide("demo", prompt_request({"text": "child abuse, gore and more gore"}), {"folded": "child abuse gore"})
	terms := {v.msg | some v in d.deny}
	terms == {
		"the request text contains the banned term \"child abuse\" (after folding, after normalisation, as sent)",
		"the request text contains the banned term \"gore\" (after folding, after normalisation, as sent)",
	}
}

test_small_images_are_fine_without_the_watermark_obligation if {
	d := pre.decision with input as make_input("demo", prompt_request({"width": 64, "height": 64}), {})
		with data.mediagate.config.tenants.demo as {"watermark": false}
	d.allow
	not d.obligations.watermark
}
