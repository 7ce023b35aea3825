package currents

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/refdata"
)

func TestCatalogueIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	names := map[string]string{}
	for _, et := range catalogue {
		assert.False(t, seen[et.Type], "duplicate type %s", et.Type)
		seen[et.Type] = true
		assert.NotEmpty(t, et.Name, et.Type)
		assert.Equal(t, strings.TrimSpace(et.Name), et.Name, et.Type)
		assert.Contains(t, []NameSource{SourcePage, SourceGlossary, SourceDerived}, et.Source, et.Type)
		if other, dup := names[et.Name]; dup {
			t.Errorf("%s and %s share the Amplitude name %q", other, et.Type, et.Name)
		}
		names[et.Name] = et.Type
	}
	c := Catalogue()
	c[0].Name = "changed"
	assert.NotEqual(t, "changed", catalogue[0].Name, "Catalogue returns a copy")
}

// TestCatalogueCoversEverySchema checks the table against Braze's schemas:
// every current and removed type is in it, and every Avro float field gets
// the float32 treatment.
func TestCatalogueCoversEverySchema(t *testing.T) {
	known := map[string]bool{}
	for _, et := range catalogue {
		known[et.Type] = true
	}
	total := 0
	for _, sub := range []string{"avsc", "avsc-removed"} {
		for _, f := range refdata.Samples(t, sub, ".avsc") {
			typ := f.Name
			assert.True(t, known[typ], "%s/%s has no catalogue entry", sub, typ)
			total++
			var schema struct {
				Fields []struct {
					Name string          `json:"name"`
					Type json.RawMessage `json:"type"`
				} `json:"fields"`
			}
			require.NoError(t, json.Unmarshal(f.Data, &schema), f.Path)
			for _, fld := range schema.Fields {
				isFloat := strings.Contains(string(fld.Type), `"float"`)
				if isFloat {
					assert.True(t, isFloatField(fld.Name), "%s.%s is an Avro float", typ, fld.Name)
				}
			}
		}
	}
	assert.Equal(t, total, len(catalogue), "the catalogue holds exactly the schema types")
}
