# METADATA
# title: Shared helpers of the mediagate policies
# description: |
#   Tenant settings (defaults merged with each tenant's overrides) and word matching that cannot be fooled by
#   regex metacharacters in a banned term. Used by mediagate.pre and mediagate.release.
package mediagate.lib

# METADATA
# title: Settings of a tenant
# description: data.mediagate.config.defaults overridden key by key by data.mediagate.config.tenants[tenant].
tenant_settings(tenant) := object.union(
	data.mediagate.config.defaults,
	object.get(data.mediagate.config.tenants, tenant, {}),
)

# Letters and digits only, single-spaced and padded, so that a word test is a substring test. Undefined for
# anything but a string (OPA would make a builtin type error undefined, regorus raises: never rely on either).
words(text) := concat("", [" ", trim_space(regex.replace(fold_case(text), `[^\p{L}\p{N}]+`, " ")), " "]) if {
	is_string(text)
}

# METADATA
# title: Word sequences of a text
# description: |
#   Every run of 1 to n consecutive words of `padded` (a lib.words result), joined by single spaces: the
#   phrases a set of banned terms can be intersected with.
word_grams(padded, n) := {gram |
	words := split(trim_space(padded), " ")
	some i, _ in words
	some k in numbers.range(1, n)
	i + k <= count(words)
	gram := concat(" ", array.slice(words, i, i + k))
	gram != ""
}

# METADATA
# title: Whole-word (or whole-phrase) match
# description: True when `term` occurs in `text` as whole words, ignoring case and punctuation. No regex is built
#   from the term, so a term such as "c++" cannot break or widen the match.
has_words(text, term) if {
	needle := words(term)
	needle != "  "
	contains(words(text), needle)
}

# METADATA
# title: RFC 3339 timestamp to nanoseconds
# description: Undefined (never an error) for anything that is not an RFC 3339 string, so that a rule comparing
#   times simply does not hold. Engines differ on builtin errors (OPA makes them undefined, regorus raises), hence
#   the shape check before the builtin.
ns(timestamp) := time.parse_rfc3339_ns(timestamp) if {
	is_string(timestamp)
	regex.match(`^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$`, timestamp)
}

# METADATA
# title: Lower case, the same in every engine
# description: |
#   Lower case, the same in OPA and regorus: Go maps U+0130 to "i" and a capital sigma to "σ" everywhere, Rust to
#   "i̇" and (word-final) "ς". Mapping those two first makes both engines agree.
fold_case(s) := lower(replace(replace(s, "\u0130", "I"), "\u03a3", "\u03c3"))

# METADATA
# title: A number as text, the same in every engine
# description: |
#   A score as text, the same in OPA and regorus: their sprintf %f differs for whole numbers and rounding ties.
num(x) := sprintf("%v", [round(x * 1000) / 1000])
