# METADATA
# title: Quotas and rate limits
# description: |
#   The limits the gateway enforces at its edge, before any work: requests per minute (per API key and per tenant),
#   images per UTC day (per key and per tenant), unfinished async jobs per tenant and GPU-seconds per UTC day per
#   tenant. Input: {tenant, key_id, role}. Settings in data.mediagate.quota.config: defaults, overridden limit by
#   limit by roles[role], then tenants[tenant], then keys[key_id]. A limit is a number >= 0, or null (or absent)
#   for unlimited.
package mediagate.quota

# The limits the gateway knows, in the order the problem+json and docs/quotas.md list them.
names := [
	"requests_per_minute_per_key",
	"requests_per_minute_per_tenant",
	"images_per_day_per_key",
	"images_per_day_per_tenant",
	"concurrent_jobs_per_tenant",
	"gpu_seconds_per_day_per_tenant",
]

layer(kind, name) := object.get(object.get(data.mediagate.quota.config, kind, {}), name, {}) if {
	is_string(name)
} else := {}

merged := object.union_n([
	object.get(data.mediagate.quota.config, "defaults", {}),
	layer("roles", object.get(input, "role", null)),
	layer("tenants", object.get(input, "tenant", null)),
	layer("keys", object.get(input, "key_id", null)),
])

# A number >= 0 is the limit and null is none; anything else (a string, a negative number, an object) counts as 0,
# so that a typo in the data refuses work instead of lifting the limit.
valid(value) := value if {
	is_number(value)
	value >= 0
} else := null if {
	is_null(value)
} else := 0

# METADATA
# title: The limits of a request's key and tenant
# description: |
#   An object with every name of `names`: a number >= 0, or null for unlimited. Defaults, then the role's, the
#   tenant's and the key's overrides, each replacing only the limits it names.
# entrypoint: true
limits := {name: valid(object.get(merged, name, null)) | some name in names}

# METADATA
# title: Settings the data names but the gateway does not know
# description: Misspelt limit names in any layer of the data; the bundle's own test keeps this empty.
unknown := {sprintf("%s.%s", [where, name]) |
	some where, settings in layers
	some name in object.keys(settings)
	not name in names
}

layers[where] := settings if {
	some kind in ["roles", "tenants", "keys"]
	some id, settings in object.get(data.mediagate.quota.config, kind, {})
	where := sprintf("%s.%s", [kind, id])
}

layers.defaults := object.get(data.mediagate.quota.config, "defaults", {})
