package cohort

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestChangeRoundTrip(t *testing.T) {
	c := Change{CohortID: "c1", CohortName: "Say \"hi\"\n", IDType: IDTypeDevice, Added: []string{"a"}, Removed: []string{"b", "é"}}
	b := c.AppendJSON(nil)
	require.True(t, json.Valid(b))
	got, err := ParseChange(b)
	require.NoError(t, err)
	assert.Equal(t, c, got)
}

func TestParseChangeErrors(t *testing.T) {
	for in, want := range map[string]string{
		`nope`:                "not valid JSON",
		`[]`:                  "must be a JSON object",
		`{"cohort_name":"n"}`: "no cohort_id",
		`{"cohort_id":1}`:     "cohort_id must be a string",
		`{"cohort_id":""}`:    "cohort_id must not be empty",
		`{"cohort_id":"c"}`:   "no cohort_name",
		`{"cohort_id":"c","cohort_name":"n","id_type":"email"}`: "id_type must be",
		`{"cohort_id":"c","cohort_name":"n","added":"a"}`:       "added must be an array",
		`{"cohort_id":"c","cohort_name":"n","removed":[1]}`:     "removed must contain only non-empty strings",
		`{"cohort_id":"c","cohort_name":"n","added":["a",""]}`:  "added must contain only non-empty strings",
	} {
		_, err := ParseChange([]byte(in))
		assert.ErrorContains(t, err, want, in)
	}
	c, err := ParseChange([]byte(`{"cohort_id":"c","cohort_name":"n","added":null}`))
	require.NoError(t, err)
	assert.Equal(t, Change{CohortID: "c", CohortName: "n", IDType: IDTypeExternal}, c)
}

func FuzzParseChange(f *testing.F) {
	f.Add([]byte(`{"cohort_id":"c","cohort_name":"n","id_type":"device_id","added":["a"],"removed":["b"]}`))
	f.Add([]byte(`{"cohort_id":"c","cohort_name":"n","added":[null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseChange(b)
		if err != nil {
			return
		}
		again, err := ParseChange(c.AppendJSON(nil))
		if err != nil {
			t.Fatalf("re-encoded change does not parse: %v", err)
		}
		if len(again.Added) != len(c.Added) || len(again.Removed) != len(c.Removed) || again.CohortID != c.CohortID {
			t.Fatalf("round trip changed %+v into %+v", c, again)
		}
	})
}
