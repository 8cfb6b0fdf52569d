package mediagate.quota_test

import data.mediagate.quota

unlimited := {name: null | some name in quota.names}

settings := {
	"defaults": {"requests_per_minute_per_key": 10, "requests_per_minute_per_tenant": 20, "images_per_day_per_tenant": 100},
	"roles": {"auditor": {"requests_per_minute_per_key": 2}},
	"tenants": {
		"big": {"requests_per_minute_per_tenant": 1000, "concurrent_jobs_per_tenant": 3},
		"open": {"requests_per_minute_per_key": null, "requests_per_minute_per_tenant": null},
		"typo": {"images_per_day_per_tenant": "lots", "gpu_seconds_per_day_per_tenant": -1},
	},
	"keys": {"key_vip": {"requests_per_minute_per_key": 500, "gpu_seconds_per_day_per_tenant": 3600.5}},
}

cases := {
	"defaults": {
		"input": {"tenant": "demo", "key_id": "key_1", "role": "app"},
		"want": {"requests_per_minute_per_key": 10, "requests_per_minute_per_tenant": 20, "images_per_day_per_tenant": 100},
	},
	"a role's override": {
		"input": {"tenant": "demo", "key_id": "key_1", "role": "auditor"},
		"want": {"requests_per_minute_per_key": 2, "requests_per_minute_per_tenant": 20, "images_per_day_per_tenant": 100},
	},
	"a tenant's override replaces only what it names": {
		"input": {"tenant": "big", "key_id": "key_1", "role": "app"},
		"want": {
			"requests_per_minute_per_key": 10, "requests_per_minute_per_tenant": 1000,
			"images_per_day_per_tenant": 100, "concurrent_jobs_per_tenant": 3,
		},
	},
	"null lifts a default": {
		"input": {"tenant": "open", "key_id": "key_1", "role": "app"},
		"want": {"images_per_day_per_tenant": 100},
	},
	"a key's override wins over its tenant's": {
		"input": {"tenant": "big", "key_id": "key_vip", "role": "app"},
		"want": {
			"requests_per_minute_per_key": 500, "requests_per_minute_per_tenant": 1000,
			"images_per_day_per_tenant": 100, "concurrent_jobs_per_tenant": 3, "gpu_seconds_per_day_per_tenant": 3600.5,
		},
	},
	"nonsense refuses instead of lifting": {
		"input": {"tenant": "typo", "key_id": "key_1", "role": "app"},
		"want": {
			"requests_per_minute_per_key": 10, "requests_per_minute_per_tenant": 20, "images_per_day_per_tenant": 0,
			"gpu_seconds_per_day_per_tenant": 0,
		},
	},
	"an input without names gets the defaults": {
		"input": {},
		"want": {"requests_per_minute_per_key": 10, "requests_per_minute_per_tenant": 20, "images_per_day_per_tenant": 100},
	},
	"a non-string tenant is no tenant": {
		"input": {"tenant": 7, "key_id": null, "role": ["app"]},
		"want": {"requests_per_minute_per_key": 10, "requests_per_minute_per_tenant": 20, "images_per_day_per_tenant": 100},
	},
}

test_limits_table if {
	every _, tc in cases {
		got := quota.limits with input as tc.input with data.mediagate.quota.config as settings
		got == object.union(unlimited, tc.want)
	}
}

test_every_limit_is_always_named if {
	got := quota.limits with input as {"tenant": "demo"} with data.mediagate.quota.config as {}
	got == unlimited
}

test_unknown_names_are_found if {
	bad := {"defaults": {"request_per_minute": 1}, "tenants": {"t": {"images_per_day": 2}}}
	found := quota.unknown with data.mediagate.quota.config as bad
	found == {"defaults.request_per_minute", "tenants.t.images_per_day"}
}

test_the_shipped_data_names_only_known_limits if {
	count(quota.unknown) == 0
}

test_the_shipped_data if {
	restricted := quota.limits with input as {"tenant": "restricted", "key_id": "key_1", "role": "app"}
	restricted.requests_per_minute_per_key == 30
	restricted.concurrent_jobs_per_tenant == 4
	demo := quota.limits with input as {"tenant": "demo", "key_id": "key_1", "role": "app"}
	demo.gpu_seconds_per_day_per_tenant == null
	demo.requests_per_minute_per_key > 0
}
