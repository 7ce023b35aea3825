package currents

import (
	"encoding/json"
	"os"
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
		assert.Contains(t, NameSources, et.Source, "%s has no name source", et.Type)
		assert.Equal(t, et.Source == SourceDerived, et.Note != "", "%s: a derived name, and only one, says why", et.Type)
		if et.PageName != "" {
			assert.Equal(t, SourceGlossary, et.Source, "%s: a page spelling is an alternative to a glossary name", et.Type)
			assert.NotEqual(t, et.Name, et.PageName, et.Type)
		}
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

// TestEventNamesDocListsDerivedAndDisputed keeps docs/event-names.md in step
// with the catalogue: every derived name and every disputed spelling is
// listed there, as in the processor's spec.
func TestEventNamesDocListsDerivedAndDisputed(t *testing.T) {
	doc, err := os.ReadFile("../../docs/event-names.md")
	require.NoError(t, err)
	spec := namingDoc()
	for _, et := range catalogue {
		if et.Source != SourceDerived && et.PageName == "" {
			continue
		}
		for name, text := range map[string]string{"docs/event-names.md": string(doc), "spec": spec} {
			assert.Contains(t, text, "`"+et.Type+"`", "%s does not list %s", name, et.Type)
			assert.Contains(t, text, "`"+et.Name+"`", "%s does not list %s", name, et.Name)
			if et.PageName != "" {
				assert.Contains(t, text, "`"+et.PageName+"`", "%s does not list %s", name, et.PageName)
			}
		}
	}
}

// correctedNames are the names that follow the glossary's Amplitude
// tabs, with the spelling they had before (Braze's older Amplitude page, or
// a derived name).
var correctedNames = []struct{ typ, name, before string }{
	{"users.messages.inappmessage.Impression", "In-App Message Impression", "In-app message Impression"},
	{"users.messages.inappmessage.Click", "In-App Message Click", "In-app message Click"},
	{"users.campaigns.Conversion", "Campaign Conversion", "Campaign Conversion Event"},
	{"users.canvas.Conversion", "Canvas Conversion", "Canvas Conversion Event"},
	{"users.messages.sms.CarrierSend", "SMS Carrier Send", "SMS Send To Carrier"},
	{"users.messages.whatsapp.InboundReceive", "WhatsApp Inbound Received", "WhatsApp Inbound Receive"},
}

// TestCorrectedNamesBothShapes maps each corrected type in the flat storage
// (Avro) shape and in the HTTP connector shape, under the default naming
// and under the amplitude_page preset, and with an event_names override.
func TestCorrectedNamesBothShapes(t *testing.T) {
	glossary := mustMapper(t, nil)
	page := mustMapper(t, func(o *Options) { o.Naming = NamingAmplitudePage })
	for _, tc := range correctedNames {
		t.Run(tc.name, func(t *testing.T) {
			et := catalogueEntry(t, tc.typ)
			flat := syntheticEvent(et)
			override := mustMapper(t, func(o *Options) {
				o.Naming = NamingAmplitudePage
				o.EventNames = map[string]string{tc.typ: "Mine"}
			})
			wantPage := tc.name
			if et.PageName != "" {
				wantPage = tc.before
			}
			for shape, in := range map[string]struct {
				event []byte
				hint  string
			}{
				"avro": {mustJSON(t, flat), tc.typ},
				"http": {mustJSON(t, flatToHTTP(t, tc.typ, flat)), ""},
			} {
				for _, m := range []struct {
					m    *Mapper
					want string
				}{{glossary, tc.name}, {page, wantPage}, {override, "Mine"}} {
					out, res, err := m.m.AppendEvent(nil, in.event, in.hint)
					require.NoError(t, err, shape)
					require.Empty(t, res.Dropped, shape)
					assert.Equal(t, "[Appboy] "+m.want, decode(t, out)["event_type"], shape)
				}
			}
		})
	}
}

// TestWhatsAppInboundProductID checks the glossary's rule for WhatsApp
// inbound messages: product_id is Amplitude's top-level productId, not an
// event property, in both shapes.
func TestWhatsAppInboundProductID(t *testing.T) {
	const typ = "users.messages.whatsapp.InboundReceive"
	m := mustMapper(t, nil)
	for _, tc := range []struct {
		name string
		pid  any
		want any
		err  string
	}{
		{name: "sku", pid: "sku-1", want: "sku-1"},
		{name: "empty", pid: "", want: nil},
		{name: "null", pid: nil, want: nil},
		{name: "number", pid: 7, err: "field product_id must be a string"},
	} {
		flat := syntheticEvent(catalogueEntry(t, typ))
		flat["product_id"], flat["catalog_id"] = tc.pid, "cat-1"
		for shape, in := range map[string][]byte{"avro": mustJSON(t, flat), "http": mustJSON(t, flatToHTTP(t, typ, flat))} {
			out, _, err := m.AppendEvent(nil, in, typ)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err, tc.name+"/"+shape)
				continue
			}
			require.NoError(t, err, tc.name+"/"+shape)
			got := decode(t, out)
			assert.Equal(t, tc.want, got["productId"], tc.name+"/"+shape)
			props := got["event_properties"].(map[string]any)
			assert.NotContains(t, props, "product_id", tc.name+"/"+shape)
			assert.Equal(t, "cat-1", props["catalog_id"], tc.name+"/"+shape)
		}
	}
}

func TestNamingIsValidated(t *testing.T) {
	opts := DefaultOptions()
	opts.Naming = "page"
	_, err := NewMapper(opts)
	assert.ErrorContains(t, err, `naming must be glossary or amplitude_page, got "page"`)
}
