package mediagate.retention_test

import data.mediagate.retention

cases := {
	"default keeps forever": {"tenant": "demo", "settings": {}, "days": null},
	"a tenant's own retention": {"tenant": "demo", "settings": {"retention_days": 30}, "days": 30},
	"zero is not 'delete at once'": {"tenant": "demo", "settings": {"retention_days": 0}, "days": null},
	"nonsense is not a number of days": {"tenant": "demo", "settings": {"retention_days": "soon"}, "days": null},
}

test_retention_table if {
	every _, tc in cases {
		d := retention.days with input as {"tenant": tc.tenant} with data.mediagate.config.tenants.demo as tc.settings
		d == tc.days
	}
}

test_the_shipped_data if {
	retention.days == 90 with input as {"tenant": "acme"}
}
