package speclint

import (
	"testing"

	"github.com/redpanda-data/benthos/v4/public/bloblang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRule(t *testing.T) {
	rule := Rule(
		Required("api_key", "the API key"),
		RequiredWhen(`this.method.or("a") == "b"`, "b_key", "the b key", "with method b"),
		Check{If: `this.n.or(0) > 3`, Message: `n "too" large`},
	)
	exe, err := bloblang.Parse(rule)
	require.NoError(t, err, rule)
	for _, tc := range []struct {
		name string
		conf map[string]any
		want []any
	}{
		{"all set", map[string]any{"api_key": "k"}, []any{}},
		{"missing", map[string]any{}, []any{"api_key is empty: set the API key"}},
		{"null", map[string]any{"api_key": nil}, []any{"api_key is empty: set the API key"}},
		{"empty", map[string]any{"api_key": ""}, []any{"api_key is empty: set the API key"}},
		{"conditional off", map[string]any{"api_key": "k", "method": "a"}, []any{}},
		{"conditional on", map[string]any{"api_key": "k", "method": "b"}, []any{"b_key is empty: set the b key with method b"}},
		{"conditional met", map[string]any{"api_key": "k", "method": "b", "b_key": "x"}, []any{}},
		{"quoted message", map[string]any{"api_key": "k", "n": 4}, []any{`n "too" large`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := exe.Query(tc.conf)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestAppend(t *testing.T) {
	rule := `let big = this.n.or(0) > 3
root = [ if $big { "n is too large" } ]` + Append(Required("api_key", "the API key"))
	exe, err := bloblang.Parse(rule)
	require.NoError(t, err, rule)
	for _, tc := range []struct {
		name string
		conf map[string]any
		want []any
	}{
		{"none", map[string]any{"api_key": "k"}, []any{}},
		{"hand-written", map[string]any{"api_key": "k", "n": 4}, []any{"n is too large"}},
		{"appended", map[string]any{}, []any{"api_key is empty: set the API key"}},
		{"both", map[string]any{"n": 4}, []any{"n is too large", "api_key is empty: set the API key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := exe.Query(tc.conf)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
