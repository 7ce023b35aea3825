package speclint

import (
	"testing"

	"github.com/redpanda-data/benthos/v4/public/bloblang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type lintCase struct {
	name string
	conf map[string]any
	want []any
}

func TestRules(t *testing.T) {
	for _, rc := range []struct {
		name  string
		rule  string
		cases []lintCase
	}{
		{
			name: "Rule",
			rule: Rule(
				Required("api_key", "the API key"),
				RequiredWhen(`this.method.or("a") == "b"`, "b_key", "the b key", "with method b"),
				Check{If: `this.n.or(0) > 3`, Message: `n "too" large`},
			),
			cases: []lintCase{
				{"all set", map[string]any{"api_key": "k"}, []any{}},
				{"missing", map[string]any{}, []any{"api_key is empty: set the API key"}},
				{"null", map[string]any{"api_key": nil}, []any{"api_key is empty: set the API key"}},
				{"empty", map[string]any{"api_key": ""}, []any{"api_key is empty: set the API key"}},
				{"conditional off", map[string]any{"api_key": "k", "method": "a"}, []any{}},
				{"conditional on", map[string]any{"api_key": "k", "method": "b"}, []any{"b_key is empty: set the b key with method b"}},
				{"conditional met", map[string]any{"api_key": "k", "method": "b", "b_key": "x"}, []any{}},
				{"quoted message", map[string]any{"api_key": "k", "n": 4}, []any{`n "too" large`}},
			},
		},
		{
			name: "Append to a hand-written rule",
			rule: "let big = this.n.or(0) > 3\nroot = [ if $big { \"n is too large\" } ]" + Append(Required("api_key", "the API key")),
			cases: []lintCase{
				{"none", map[string]any{"api_key": "k"}, []any{}},
				{"hand-written", map[string]any{"api_key": "k", "n": 4}, []any{"n is too large"}},
				{"appended", map[string]any{}, []any{"api_key is empty: set the API key"}},
				{"both", map[string]any{"n": 4}, []any{"n is too large", "api_key is empty: set the API key"}},
			},
		},
	} {
		t.Run(rc.name, func(t *testing.T) {
			exe, err := bloblang.Parse(rc.rule)
			require.NoError(t, err, rc.rule)
			for _, tc := range rc.cases {
				t.Run(tc.name, func(t *testing.T) {
					got, err := exe.Query(tc.conf)
					require.NoError(t, err)
					assert.Equal(t, tc.want, got)
				})
			}
		})
	}
}
