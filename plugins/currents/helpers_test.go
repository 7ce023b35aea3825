package currents

import (
	"encoding/json"
	"testing"
)

// flatToHTTP converts a flat (storage shape) event into the HTTP connector
// shape, following Braze's mapping rule: id, time and event_type stay at the
// top, the user fields move into "user", everything else into "properties",
// and the JSON-encoded "properties" string becomes custom_properties or
// purchase_properties.
func flatToHTTP(t testing.TB, typ string, flat map[string]any) map[string]any {
	t.Helper()
	user, props := map[string]any{}, map[string]any{}
	ev := map[string]any{"event_type": typ, "user": user, "properties": props}
	for k, v := range flat {
		switch k {
		case "id", "time", "event_type":
			ev[k] = v
		case "user_id", "external_user_id", "device_id", "timezone":
			user[k] = v
		case "properties":
			var obj any
			if err := json.Unmarshal([]byte(v.(string)), &obj); err != nil {
				t.Fatalf("fixture properties: %v", err)
			}
			key := "custom_properties"
			if typ == TypePurchase {
				key = "purchase_properties"
			}
			props[key] = obj
		default:
			props[k] = v
		}
	}
	ev["event_type"] = typ
	return ev
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, b)
	}
	return m
}

// mustMapper builds a Mapper from DefaultOptions with every type allowed
// (DefaultExcludeEvents cleared, so each catalogue type can be checked), then
// applies mod.
func mustMapper(t testing.TB, mod func(*Options)) *Mapper {
	t.Helper()
	opts := DefaultOptions()
	opts.ExcludeEvents = nil
	if mod != nil {
		mod(&opts)
	}
	m, err := NewMapper(opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
