package currents

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/refdata"
)

// TestBrazeHTTPSamples maps every Custom HTTP sample of Braze's repository.
func TestBrazeHTTPSamples(t *testing.T) {
	m := mustMapper(t, func(o *Options) { o.UnknownEvents = PolicyReject })
	forEachSample(t, "custom-http-samples", func(t *testing.T, typ string, raw []byte) {
		var in map[string]any
		require.NoError(t, json.Unmarshal(raw, &in))
		user, _ := in["user"].(map[string]any)
		props, _ := in["properties"].(map[string]any)
		flat := map[string]any{"id": in["id"], "time": in["time"]}
		for _, src := range []map[string]any{user, props} {
			for k, v := range src {
				flat[k] = v
			}
		}
		checkSample(t, m, raw, "", typ, flat)
	})
}

// TestBrazeAvroSamplesAsJSON maps every record of the avro-tools JSON dumps
// of Braze's Avro samples, unions unwrapped as the Avro scanner emits them.
func TestBrazeAvroSamplesAsJSON(t *testing.T) {
	m := mustMapper(t, func(o *Options) { o.UnknownEvents = PolicyReject })
	forEachSample(t, "avro-as-json", func(t *testing.T, typ string, raw []byte) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		n := 0
		for {
			var rec any
			if err := dec.Decode(&rec); errors.Is(err, io.EOF) {
				break
			} else {
				require.NoError(t, err)
			}
			flat := unwrapUnions(rec).(map[string]any)
			checkSample(t, m, mustJSON(t, flat), typ, typ, flat)
			n++
		}
		require.Positive(t, n)
	})
}

// forEachSample runs fn, in a subtest named after the event type, on every
// JSON file of a sample folder.
func forEachSample(t *testing.T, sub string, fn func(t *testing.T, typ string, raw []byte)) {
	for _, s := range refdata.Samples(t, sub, ".json") {
		t.Run(s.Name, func(t *testing.T) {
			fn(t, s.Name, s.Data)
		})
	}
}

// unwrapUnions turns avro-tools' {"string": "x"} union encoding into "x".
func unwrapUnions(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 1 {
			for k, inner := range x {
				switch k {
				case "string", "int", "long", "float", "double", "boolean", "bytes", "array", "map":
					return unwrapUnions(inner)
				}
			}
		}
		for k, inner := range x {
			x[k] = unwrapUnions(inner)
		}
	case []any:
		for i, inner := range x {
			x[i] = unwrapUnions(inner)
		}
	}
	return v
}

// checkSample maps one sample and checks name, identity, time and that every
// Braze field the connector sends arrived in event_properties.
func checkSample(t *testing.T, m *Mapper, event []byte, hint, typ string, flat map[string]any) {
	t.Helper()
	out, res, err := m.AppendEvent(nil, event, hint)
	require.NoError(t, err)
	require.Equal(t, typ, res.EventType)
	et := catalogueEntry(t, typ)
	ext, _ := flat["external_user_id"].(string)
	dev, _ := flat["device_id"].(string)
	if ext == "" && dev == "" {
		assert.Equal(t, DropUnidentified, res.Dropped)
		return
	}
	require.Empty(t, res.Dropped)
	got := decode(t, out)

	wantName := "[Appboy] " + et.Name
	if et.Kind == KindCustom {
		wantName = "[Appboy] [Custom Event] " + flat["name"].(string)
	}
	assert.Equal(t, wantName, got["event_type"])
	assert.Equal(t, flat["id"], got["insert_id"])
	assert.Equal(t, nilIfEmpty(ext), got["user_id"])
	assert.Equal(t, nilIfEmpty(dev), got["device_id"])
	wantTime := toFloat(flat["time"]) * 1000
	if ms, ok := flat["time_ms"]; ok && ms != nil {
		wantTime = toFloat(ms)
	}
	assert.EqualValues(t, wantTime, got["time"])

	props := got["event_properties"].(map[string]any)
	for k, v := range flat {
		want, key := v, k
		switch {
		case v == nil, sentElsewhere(et, k):
			assert.NotContains(t, props, k)
			continue
		case k == "content_card_id":
			key = "card_id"
		case k == "properties" || k == "custom_properties" || k == "purchase_properties":
			checkCustomProperties(t, et, v, props)
			continue
		}
		if isFloatField(k) {
			// Avro floats come back in their shortest float32 form.
			assert.InDelta(t, toFloat(want), toFloat(props[key]), 1e-5, k)
			assert.LessOrEqual(t, len(jsonNumber(props[key])), 8, "%s must not carry float32 noise", k)
			continue
		}
		assert.JSONEq(t, string(mustJSON(t, want)), string(mustJSON(t, props[key])), k)
	}
	if et.rules&topProductID != 0 {
		pid, _ := flat["product_id"].(string)
		assert.Equal(t, nilIfEmpty(pid), got["productId"])
	}
	if et.Kind == KindPurchase {
		assert.Equal(t, flat["product_id"], got["productId"])
		assert.EqualValues(t, 3.14, got["price"], "the samples' price is 3.14 (float32 3.140000104904175)")
	}
}

// sentElsewhere lists the sample fields that must not be in event_properties.
func sentElsewhere(et EventType, k string) bool {
	switch k {
	case "id", "time", "user_id", "external_user_id", "device_id", "event_type",
		"gender", "country", "language", "carrier", "resolution", "sdk_version", "canvas_step_message_variation_id":
		return true
	case "timezone":
		return et.rules&keepTimezone == 0
	case "phone_number":
		return et.rules&noPhone != 0
	case "name":
		return et.Kind == KindCustom
	case "product_id":
		return et.Kind == KindPurchase || et.rules&topProductID != 0
	case "price", "quantity":
		return et.Kind == KindPurchase
	}
	return strings.HasSuffix(k, "_api_id")
}

func checkCustomProperties(t *testing.T, et EventType, v any, props map[string]any) {
	t.Helper()
	if s, ok := v.(string); ok {
		require.NoError(t, json.Unmarshal([]byte(s), &v))
	}
	prefix := "[Custom event property] "
	if et.Kind == KindPurchase {
		prefix = "[Purchase property] "
	}
	custom := v.(map[string]any)
	require.NotEmpty(t, custom)
	for k, want := range custom {
		assert.JSONEq(t, string(mustJSON(t, want)), string(mustJSON(t, props[prefix+k])), k)
	}
}

func catalogueEntry(t *testing.T, typ string) EventType {
	t.Helper()
	for _, et := range catalogue {
		if et.Type == typ {
			return et
		}
	}
	t.Fatalf("%s is not in the catalogue", typ)
	return EventType{}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return -1
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
