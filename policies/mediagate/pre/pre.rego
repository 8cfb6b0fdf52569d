# METADATA
# title: Pre-generation policy
# description: |
#   Decides, before any compute is spent, whether a principal may generate what it asked for, and what the rest
#   of the flow must do if it may (obligations). Input:
#     principal: {tenant, role, key_id}
#     request:   {kind, model, prompt, negative_prompt, template, fields, locale, n, width, height, seed, text, brand}
#     features:  {normalized, folded, changed, mixed_script, concepts: {concept id: similarity}}
#     context:   {time (RFC 3339), usage: {template_assets}}
#   `request.text` is every client-supplied text joined (prompt, negative prompt, template fields). `features` are
#   computed by the gateway from that text before this policy runs (see docs/policies.md).
package mediagate.pre

import data.mediagate.lib

settings := lib.tenant_settings(input.principal.tenant)

features := object.get(input, "features", {})

# The three readings of the request text that banned-term rules check: as sent, normalised (Unicode NFKC,
# invisible characters stripped, homoglyphs folded) and folded (leetspeak and spaced-out letters undone).
readings := {
	"as sent": input.request.text,
	"after normalisation": object.get(features, "normalized", ""),
	"after folding": object.get(features, "folded", ""),
}

# Each reading as padded words (" a red car ") and as the set of its 1- to 4-word sequences. Computed once per
# decision, so checking thousands of banned terms is one set intersection, not a regex pass per term.
padded := {name: lib.words(text) | some name, text in readings}

grams := {name: lib.word_grams(p, 4) | some name, p in padded}

# Banned terms are stored as lib.words leaves them (lower case, single spaces, at most 4 words; see the data
# check in pre_test), so a term is found exactly when it is one of a reading's word sequences.
banned_terms := {t | some t in settings.banned_terms}

term_hits contains [term, name] if {
	some name, g in grams
	some term in banned_terms & g
}

# METADATA
# title: Banned term in the request text
# description: A term of the tenant's banned_terms occurs as whole words in the raw, normalised or folded text.
# custom:
#   code: prompt.banned_term
deny contains violation if {
	some [term, _] in term_hits
	matched := [name | some [t, name] in term_hits; t == term]
	violation := {
		"code": "prompt.banned_term",
		"msg": sprintf("the request text contains the banned term %q (%s)", [term, concat(", ", sort(matched))]),
		"rule": "mediagate.pre.banned_term",
	}
}

# METADATA
# title: Request text close in meaning to a banned concept
# description: The sentence-embedding similarity of the text to one of the tenant's banned_concepts reaches the
#   concept's threshold (data.mediagate.config.concepts[id].threshold).
# custom:
#   code: prompt.banned_concept
deny contains violation if {
	some id in settings.banned_concepts
	similarity := features.concepts[id]
	threshold := data.mediagate.config.concepts[id].threshold
	similarity >= threshold
	violation := {
		"code": "prompt.banned_concept",
		"msg": sprintf(
			"the request text is close to the banned concept %q (%s): similarity %s >= %s",
			[id, data.mediagate.config.concepts[id].title, lib.num(similarity), lib.num(threshold)],
		),
		"rule": "mediagate.pre.banned_concept",
	}
}

# METADATA
# title: Prompt features missing
# description: Fail closed. Without the normalised text or a banned concept's similarity the policy cannot vouch
#   for the request, so it is denied rather than waved through.
# custom:
#   code: prompt.features_missing
deny contains violation if {
	missing := {id | some id in settings.banned_concepts; not is_number(object.get(features, ["concepts", id], null))}
	no_text := {"normalized" | not is_string(object.get(features, "normalized", null))}
	count(missing | no_text) > 0
	violation := {
		"code": "prompt.features_missing",
		"msg": sprintf("prompt features missing for %v; the request cannot be checked", [sort(missing | no_text)]),
		"rule": "mediagate.pre.features_missing",
	}
}

# METADATA
# title: Prompt longer than the tenant allows
# custom:
#   code: prompt.too_long
deny contains violation if {
	input.request.kind == "prompt"
	length := count(input.request.prompt)
	length > settings.max_prompt_chars
	violation := {
		"code": "prompt.too_long",
		"msg": sprintf(
			"the prompt has %d characters; tenant %q allows %d",
			[length, input.principal.tenant, settings.max_prompt_chars],
		),
		"rule": "mediagate.pre.max_prompt_chars",
	}
}

# METADATA
# title: Model not on the tenant's allow-list
# custom:
#   code: model.not_allowed
deny contains violation if {
	not input.request.model in settings.models
	violation := {
		"code": "model.not_allowed",
		"msg": sprintf("model %q is not allowed for tenant %q", [input.request.model, input.principal.tenant]),
		"rule": "mediagate.pre.model_allow_list",
	}
}

# METADATA
# title: Image-slot model not on the tenant's allow-list
# description: A template's image slots are rendered by a diffusion model; the tenant must be allowed that model too.
# custom:
#   code: image_model.not_allowed
deny contains violation if {
	input.request.image_model != null
	not input.request.image_model in settings.models
	violation := {
		"code": "image_model.not_allowed",
		"msg": sprintf(
			"image slots are rendered with model %q, which is not allowed for tenant %q",
			[input.request.image_model, input.principal.tenant],
		),
		"rule": "mediagate.pre.model_allow_list",
	}
}

# METADATA
# title: Template not on the tenant's allow-list
# custom:
#   code: template.not_allowed
deny contains violation if {
	input.request.kind == "template"
	not template_allowed(input.request.template)
	violation := {
		"code": "template.not_allowed",
		"msg": sprintf("template %q is not allowed for tenant %q", [input.request.template, input.principal.tenant]),
		"rule": "mediagate.pre.template_allow_list",
	}
}

# Campaign windows: bundle-wide ones, overridden per tenant by the tenant's own `campaigns`.
campaigns := object.union(data.mediagate.config.campaigns, object.get(settings, "campaigns", {}))

# METADATA
# title: Template used outside its campaign window
# description: A template listed in campaigns may only be used between not_before and not_after (RFC 3339,
#   inclusive). Without a parsable request time the window cannot be checked, which is a denial too.
# custom:
#   code: campaign.not_active
deny contains violation if {
	input.request.kind == "template"
	window := campaigns[input.request.template]
	not within(window)
	violation := {
		"code": "campaign.not_active",
		"msg": sprintf(
			"template %q may only be used from %s to %s; the request time is %v",
			[input.request.template, window.not_before, window.not_after, object.get(input, ["context", "time"], null)],
		),
		"rule": "mediagate.pre.campaign_window",
	}
}

within(window) if {
	now := lib.ns(input.context.time)
	lib.ns(window.not_before) <= now
	now <= lib.ns(window.not_after)
}

# METADATA
# title: Too many images in one request
# custom:
#   code: request.n_exceeds_max
deny contains violation if {
	input.request.n > settings.max_n
	violation := {
		"code": "request.n_exceeds_max",
		"msg": sprintf(
			"n is %d but tenant %q may ask for at most %d",
			[input.request.n, input.principal.tenant, settings.max_n],
		),
		"rule": "mediagate.pre.max_n",
	}
}

# METADATA
# title: Image larger than the tenant may request
# description: Prompt requests only; a template's size is fixed by the template.
# custom:
#   code: request.size_exceeds_max
deny contains violation if {
	input.request.kind == "prompt"
	too_large
	violation := {
		"code": "request.size_exceeds_max",
		"msg": sprintf(
			"size %dx%d exceeds the maximum %dx%d for tenant %q",
			[input.request.width, input.request.height, settings.max_width, settings.max_height, input.principal.tenant],
		),
		"rule": "mediagate.pre.max_size",
	}
}

# METADATA
# title: Image too small to carry the invisible watermark
# description: |
#   Every released image carries an invisible watermark naming its audit entry, and the mark needs at least
#   watermark_min_side pixels on each side. A request that could never be released is refused before compute.
# custom:
#   code: request.below_watermark_min
deny contains violation if {
	obligations.watermark
	some side in [input.request.width, input.request.height]
	side < settings.watermark_min_side
	violation := {
		"code": "request.below_watermark_min",
		"msg": sprintf(
			"size %dx%d: every side must be at least %d pixels to carry the provenance watermark",
			[input.request.width, input.request.height, settings.watermark_min_side],
		),
		"rule": "mediagate.pre.watermark_min_side",
	}
}

too_large if input.request.width > settings.max_width

too_large if input.request.height > settings.max_height

template_allowed(_) if "*" in settings.templates

template_allowed(id) if id in settings.templates

# METADATA
# title: Templates the principal's tenant may use
# description: |
#   Evaluated by GET /v1/templates with input {principal, templates: [ids]}.
allowed_templates contains id if {
	some id in input.templates
	template_allowed(id)
}

# METADATA
# title: Models the principal's tenant may use
# description: |
#   Evaluated by GET /v1/models with input {principal, models: [registry names]}: the same allow-list the
#   model.not_allowed rule enforces.
allowed_models contains name if {
	some name in input.models
	name in settings.models
}

# METADATA
# title: Concept catalogue
# description: Example phrases of every banned concept, which the gateway embeds to compute features.concepts.
# entrypoint: true
concept_catalogue := {id: concept.examples | some id, concept in data.mediagate.config.concepts}

# METADATA
# title: Prompt names a person
# description: A public figure from person_names.public_figures, or a given name followed by a capitalised word
#   ("Taylor Swift"), in a prompt request. Generating real people is held for a human.
# custom:
#   code: review.person_name
review contains reason if {
	input.request.kind == "prompt"
	settings.review_person_names
	some name in person_names
	reason := {
		"code": "review.person_name",
		"msg": sprintf("the prompt appears to name a person (%q); a human must review the result", [name]),
		"rule": "mediagate.pre.person_name",
	}
}

given_names := {n | some n in data.mediagate.config.person_names.given_names}

person_names contains name if {
	some name in data.mediagate.config.person_names.public_figures
	name in grams["after normalisation"]
}

person_names contains name if {
	tokens := regex.split(`[^\p{L}\p{N}]+`, input.request.text)
	some i, token in tokens
	lib.fold_case(token) in given_names
	regex.match(`^\p{Lu}\p{Ll}`, tokens[i + 1])
	name := concat(" ", [token, tokens[i + 1]])
}

# METADATA
# title: Words that mix scripts
# description: A word mixing e.g. Latin and Cyrillic letters is a common way to slip past term lists.
# custom:
#   code: review.mixed_script
review contains reason if {
	settings.review_mixed_script
	features.mixed_script == true
	reason := {
		"code": "review.mixed_script",
		"msg": "the request text mixes scripts inside a word; a human must review the result",
		"rule": "mediagate.pre.mixed_script",
	}
}

# METADATA
# title: First assets of a template for this tenant
# description: The first new_template_review_count assets a tenant makes from a template are reviewed.
# custom:
#   code: review.new_template
review contains reason if {
	input.request.kind == "template"
	used := object.get(input, ["context", "usage", "template_assets"], 0)
	used < settings.new_template_review_count
	reason := {
		"code": "review.new_template",
		"msg": sprintf(
			"template %q has %d reviewed or released assets for this tenant; the first %d are reviewed",
			[input.request.template, used, settings.new_template_review_count],
		),
		"rule": "mediagate.pre.new_template",
	}
}

# METADATA
# title: Tenant under review
# description: force_review in the tenant's settings holds every result for a human.
# custom:
#   code: review.tenant_forced
review contains reason if {
	settings.force_review == true
	reason := {
		"code": "review.tenant_forced",
		"msg": sprintf("tenant %q is configured to review every result", [input.principal.tenant]),
		"rule": "mediagate.pre.tenant_forced",
	}
}

# Obligations the rest of the flow must honour when the request is allowed.
obligations := {
	"watermark": object.get(settings, "watermark", true) != false,
	"max_n": settings.max_n,
	"force_review": count(review) > 0,
	"review_reasons": [r | some r in review],
}

# METADATA
# title: Pre-policy decision
# description: The one entrypoint the gateway evaluates before generation.
# entrypoint: true
decision := {
	"allow": count(deny) == 0,
	"deny": [v | some v in deny],
	"obligations": obligations,
}
