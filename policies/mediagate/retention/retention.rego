# METADATA
# title: Retention of asset bytes
# description: |
#   How long a tenant's asset bytes are kept. Audit entries never expire; expiring bytes is itself an audit entry
#   (kind assets.expired). Input: {tenant}. Settings: retention_days (null or absent = keep forever).
package mediagate.retention

import data.mediagate.lib

# METADATA
# title: Days to keep a tenant's asset bytes
# description: A positive number of days, or null to keep them forever.
# entrypoint: true
days := d if {
	d := object.get(lib.tenant_settings(input.tenant), "retention_days", null)
	is_number(d)
	d > 0
} else := null
