package mediagate.pre_test

import data.mediagate.pre

principal(tenant) := {"tenant": tenant, "role": "app", "key_id": "k1"}

prompt_request(overrides) := object.union(
	{
		"kind": "prompt", "prompt": "a red bicycle", "negative_prompt": "", "model": "demo-tiny", "n": 1,
		"width": 64, "height": 64, "template": null, "fields": {}, "locale": null, "text": "a red bicycle",
	},
	overrides,
)

codes(decision) := {v.code | some v in decision.deny}

test_clean_prompt_allowed if {
	d := pre.decision with input as {"principal": principal("demo"), "request": prompt_request({})}
	d.allow
	d.deny == []
	d.obligations.watermark
}

# Table: request overrides, tenant, and the code expected among the denials.
deny_cases := {
	"banned term": {"tenant": "demo", "req": {"text": "a scene full of gore"}, "code": "prompt.banned_term"},
	"banned term, any case": {"tenant": "demo", "req": {"text": "GORE at night"}, "code": "prompt.banned_term"},
	"tenant's own banned term": {"tenant": "acme", "req": {"text": "logo of competitorco"}, "code": "prompt.banned_term"},
	"model not allowed": {"tenant": "restricted", "req": {}, "code": "model.not_allowed"},
	"unknown model": {"tenant": "demo", "req": {"model": "sdxl"}, "code": "model.not_allowed"},
	"n over max": {"tenant": "demo", "req": {"n": 5}, "code": "request.n_exceeds_max"},
	"tenant's own max n": {"tenant": "restricted", "req": {"n": 2, "model": "template"}, "code": "request.n_exceeds_max"},
	"width over max": {"tenant": "demo", "req": {"width": 1024}, "code": "request.size_exceeds_max"},
	"height over max": {"tenant": "demo", "req": {"height": 520}, "code": "request.size_exceeds_max"},
}

test_deny_table if {
	every note, tc in deny_cases {
		d := pre.decision with input as {"principal": principal(tc.tenant), "request": prompt_request(tc.req)}
		not d.allow
		tc.code in codes(d)
	}
}

allow_cases := {
	"substring of a banned term is not the term": {"tenant": "demo", "req": {"text": "gorey mountain view"}},
	"other tenant's banned term": {"tenant": "demo", "req": {"text": "logo of competitorco"}},
	"at the size limit": {"tenant": "demo", "req": {"width": 512, "height": 512}},
	"at the n limit": {"tenant": "demo", "req": {"n": 4}},
}

test_allow_table if {
	every note, tc in allow_cases {
		d := pre.decision with input as {"principal": principal(tc.tenant), "request": prompt_request(tc.req)}
		d.allow
	}
}

test_every_denial_is_structured if {
	d := pre.decision with input as {
		"principal": principal("demo"),
		"request": prompt_request({"text": "gore", "n": 9, "model": "x"}),
	}
	count(d.deny) == 3
	every v in d.deny {
		v.code != ""
		v.msg != ""
		startswith(v.rule, "mediagate.pre.")
	}
}

test_template_allow_list if {
	req := prompt_request({"kind": "template", "model": "template", "template": "spring-sale"})
	d := pre.decision with input as {"principal": principal("demo"), "request": req}
		with data.mediagate.config.tenants.demo as {"templates": ["product-square"]}
	"template.not_allowed" in codes(d)
	allowed := pre.allowed_templates with input as {"principal": principal("demo"), "templates": ["spring-sale", "product-square"]}
		with data.mediagate.config.tenants.demo as {"templates": ["product-square"]}
	allowed == {"product-square"}
}

test_templates_size_not_checked_against_prompt_limits if {
	req := prompt_request({"kind": "template", "model": "template", "template": "spring-sale", "width": 1024})
	d := pre.decision with input as {"principal": principal("demo"), "request": req}
	d.allow
}

test_force_review_obligation_from_data if {
	d := pre.decision with input as {"principal": principal("demo"), "request": prompt_request({})}
		with data.mediagate.config.tenants.demo as {"force_review": true}
	d.obligations.force_review
}
