# METADATA
# title: Pre-generation policy
# description: |
#   Decides, before any compute is spent, whether a principal may generate what it asked for.
#   Input: {principal: {tenant, role, key_id}, request: {kind, prompt, negative_prompt, model, n, width, height,
#   template, fields, locale, text}, context: {time}}. Tenant settings come from data.mediagate.config, where
#   data.mediagate.config.tenants[tenant] overrides data.mediagate.config.defaults key by key.
package mediagate.pre

# Tenant settings: defaults merged with the tenant's own overrides.
settings := object.union(data.mediagate.config.defaults, object.get(data.mediagate.config.tenants, input.principal.tenant, {}))

# Lower-cased text the banned-term rules look at: the prompt, the negative prompt and every template field.
text := lower(input.request.text)

# METADATA
# title: Banned term in the request text
# custom:
#   code: prompt.banned_term
deny contains violation if {
	some term in settings.banned_terms
	regex.match(sprintf(`(^|[^\p{L}\p{N}])%s([^\p{L}\p{N}]|$)`, [lower(term)]), text)
	violation := {
		"code": "prompt.banned_term",
		"msg": sprintf("the request text contains the banned term %q", [term]),
		"rule": "mediagate.pre.banned_term",
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

# METADATA
# title: Too many images in one request
# custom:
#   code: request.n_exceeds_max
deny contains violation if {
	input.request.n > settings.max_n
	violation := {
		"code": "request.n_exceeds_max",
		"msg": sprintf("n is %d but tenant %q may ask for at most %d", [input.request.n, input.principal.tenant, settings.max_n]),
		"rule": "mediagate.pre.max_n",
	}
}

# METADATA
# title: Image larger than the tenant may request
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

too_large if input.request.width > settings.max_width

too_large if input.request.height > settings.max_height

template_allowed(id) if "*" in settings.templates

template_allowed(id) if id in settings.templates

# METADATA
# title: Templates the principal's tenant may use
# description: Evaluated by GET /v1/templates with input {principal, templates: [ids]}.
allowed_templates contains id if {
	some id in input.templates
	template_allowed(id)
}

# Obligations the rest of the flow must honour when the request is allowed.
obligations := {
	"watermark": true,
	"max_n": settings.max_n,
	"force_review": object.get(settings, "force_review", false),
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
