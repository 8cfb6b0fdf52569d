package mediagate.lib_test

import data.mediagate.lib

word_cases := {
	"plain word": {"text": "a scene of gore", "term": "gore", "match": true},
	"case and punctuation": {"text": "GORE!!! at night", "term": "gore", "match": true},
	"phrase across punctuation": {"text": "no child-abuse here", "term": "child abuse", "match": true},
	"prefix is not the word": {"text": "gorey mountain", "term": "gore", "match": false},
	"suffix is not the word": {"text": "ungore", "term": "gore", "match": false},
	"regex metacharacters are literal": {"text": "learn c++ today", "term": "c++", "match": true},
	"metacharacters do not widen": {"text": "learn cxx today", "term": "c.+", "match": false},
	"empty term never matches": {"text": "anything", "term": "", "match": false},
	"non-latin words": {"text": "ein Bild von Blut", "term": "blut", "match": true},
	"text that is not a string": {"text": null, "term": "gore", "match": false},
}

matches(text, term) := true if {
	lib.has_words(text, term)
} else := false

test_has_words_table if {
	every _, tc in word_cases {
		matches(tc.text, tc.term) == tc.match
	}
}

test_tenant_settings_override_key_by_key if {
	s := lib.tenant_settings("restricted")
	s.max_n == 1
	s.models == ["template"]
	s.max_width == data.mediagate.config.defaults.max_width
}

test_unknown_tenant_gets_defaults if {
	lib.tenant_settings("nobody") == data.mediagate.config.defaults
}

test_ns_parses_rfc3339 if {
	lib.ns("2026-01-01T00:00:00Z") < lib.ns("2026-01-01T00:00:01Z")
}

test_ns_is_undefined_for_non_timestamps if {
	not lib.ns(null)
	not lib.ns("yesterday")
	not lib.ns("2026-13-45")
}

test_word_grams if {
	lib.word_grams(lib.words("A red, red car!"), 2) == {"a", "red", "car", "a red", "red red", "red car"}
	lib.word_grams(lib.words(""), 4) == set()
	lib.word_grams(lib.words("one"), 4) == {"one"}
}
