package currents

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/unsafestr"
)

const (
	fxID   = "2c9e8d3a-0b1f-4a5e-9d7c-5f6e7a8b9c0d"
	fxTime = 1700000000
)

// mappingCases are hand-written events with the exact Amplitude event
// expected. Each runs in the flat storage shape (with the type as a hint)
// and, converted, in the HTTP connector shape.
var mappingCases = []struct {
	name, typ string
	flat      string
	want      string
}{
	{
		name: "purchase with float32 price, quantity and idfa",
		typ:  TypePurchase,
		flat: `{"id":"` + fxID + `","user_id":"5f0000000000000000000001","external_user_id":"user-42","device_id":"dev-1",
			"time":1700000000,"app_id":"app-1","platform":"ios","os_version":"17.1","device_model":"iPhone15,2",
			"product_id":"sku-9","price":3.140000104904175,"currency":"EUR","quantity":2,
			"properties":"{\"color\":\"red\",\"size\":42,\"gift\":true,\"tags\":[\"a\",\"b\"],\"none\":null}",
			"ad_id":"ad-1","ad_id_type":"ios_idfa","ad_tracking_enabled":true,"app_group_id":"ag-1"}`,
		want: `{"event_type":"[Appboy] Purchase","user_id":"user-42","device_id":"dev-1","insert_id":"` + fxID + `",
			"time":1700000000000,"library":"Braze","idfa":"ad-1","productId":"sku-9","price":3.14,"quantity":2,
			"event_properties":{"app_id":"app-1","platform":"ios","os_version":"17.1","device_model":"iPhone15,2",
			"currency":"EUR","ad_id":"ad-1","ad_id_type":"ios_idfa","ad_tracking_enabled":true,"app_group_id":"ag-1",
			"[Purchase property] color":"red","[Purchase property] size":42,"[Purchase property] gift":true,
			"[Purchase property] tags":["a","b"]}}`,
	},
	{
		name: "custom event with google ad id, no timezone, no name property",
		typ:  TypeCustomEvent,
		flat: `{"id":"` + fxID + `","user_id":"5f0000000000000000000001","external_user_id":"user-42","time":1700000000,
			"timezone":"Europe/Paris","name":"Added To Cart","properties":"{\"price\":19.99,\"item\":\"é\\\"q\"}",
			"ad_id":"gaid","ad_id_type":"google_ad_id","platform":"android","device_id":null}`,
		want: `{"event_type":"[Appboy] [Custom Event] Added To Cart","user_id":"user-42","insert_id":"` + fxID + `",
			"time":1700000000000,"library":"Braze","adid":"gaid",
			"event_properties":{"ad_id":"gaid","ad_id_type":"google_ad_id","platform":"android",
			"[Custom event property] price":19.99,"[Custom event property] item":"é\"q"}}`,
	},
	{
		name: "location keeps float32 coordinates short",
		typ:  "users.behaviors.Location",
		flat: `{"id":"` + fxID + `","user_id":"b","device_id":"dev-1","app_id":"app-1","time":1700000000,
			"latitude":40.712799072265625,"longitude":-74.00599670410156,"altitude":12.5,"ll_accuracy":null}`,
		want: `{"event_type":"[Appboy] Location","device_id":"dev-1","insert_id":"` + fxID + `","time":1700000000000,
			"library":"Braze","event_properties":{"app_id":"app-1","latitude":40.7128,"longitude":-74.006,"altitude":12.5}}`,
	},
	{
		name: "content card click renames content_card_id, drops demographics and api ids",
		typ:  "users.messages.contentcard.Click",
		flat: `{"id":"` + fxID + `","user_id":"b","external_user_id":"user-42","time":1700000000,"timezone":"UTC",
			"content_card_id":"card-1","campaign_id":"c1","campaign_name":"Spring","gender":"F","country":"FR",
			"language":"fr","sdk_version":"9","canvas_step_message_variation_id":"x","canvas_api_id":"y","send_id":"s1"}`,
		want: `{"event_type":"[Appboy] Content Card Click","user_id":"user-42","insert_id":"` + fxID + `",
			"time":1700000000000,"library":"Braze",
			"event_properties":{"card_id":"card-1","campaign_id":"c1","campaign_name":"Spring","send_id":"s1"}}`,
	},
	{
		name: "subscription group change keeps timezone, leaves phone number out",
		typ:  "users.behaviors.subscriptiongroup.StateChange",
		flat: `{"id":"` + fxID + `","user_id":"b","external_user_id":"user-42","time":1700000000,"timezone":"UTC",
			"subscription_group_id":"sg","subscription_status":"Subscribed","phone_number":"+33600000000","email_address":"a@b.c"}`,
		want: `{"event_type":"[Appboy] Subscription Group State Change","user_id":"user-42","insert_id":"` + fxID + `",
			"time":1700000000000,"library":"Braze","event_properties":{"timezone":"UTC","subscription_group_id":"sg",
			"subscription_status":"Subscribed","email_address":"a@b.c"}}`,
	},
	{
		name: "time_ms wins over time",
		typ:  "users.behaviors.pushnotification.TokenStateChange",
		flat: `{"id":"` + fxID + `","user_id":"b","external_user_id":"user-42","time":1700000000,"time_ms":1700000000123,
			"push_token":"tok","platform":"web"}`,
		want: `{"event_type":"[Appboy] Push Notification Token State Change","user_id":"user-42","insert_id":"` + fxID + `",
			"time":1700000000123,"library":"Braze","event_properties":{"time_ms":1700000000123,"push_token":"tok","platform":"web"}}`,
	},
	{
		name: "email open keeps its JSON-encoded and array fields as they are",
		typ:  "users.messages.email.Click",
		flat: `{"id":"` + fxID + `","user_id":"b","external_user_id":"user-42","time":1700000000,"email_address":"a@b.c",
			"url":"https://x.test/?a=1&b=2","suspected_bot_click_reason":["ua"],"is_suspected_bot_click":false,"link_alias":null}`,
		want: `{"event_type":"[Appboy] Email Click","user_id":"user-42","insert_id":"` + fxID + `","time":1700000000000,
			"library":"Braze","event_properties":{"email_address":"a@b.c","url":"https://x.test/?a=1&b=2",
			"suspected_bot_click_reason":["ua"],"is_suspected_bot_click":false}}`,
	},
}

func TestMapperFixturesBothShapes(t *testing.T) {
	m := mustMapper(t, nil)
	for _, tc := range mappingCases {
		t.Run(tc.name, func(t *testing.T) {
			var flat map[string]any
			require.NoError(t, json.Unmarshal([]byte(tc.flat), &flat))
			shapes := map[string]struct {
				event []byte
				hint  string
			}{
				"flat":      {[]byte(tc.flat), tc.typ},
				"http":      {mustJSON(t, flatToHTTP(t, tc.typ, flat)), ""},
				"flat+type": {mustJSON(t, mergeType(flat, tc.typ)), "ignored.because.field.wins"},
			}
			for shape, in := range shapes {
				out, res, err := m.AppendEvent([]byte("prefix"), in.event, in.hint)
				require.NoError(t, err, shape)
				assert.Equal(t, tc.typ, res.EventType, shape)
				assert.Empty(t, res.Dropped, shape)
				require.True(t, strings.HasPrefix(string(out), "prefix"), "dst must be appended to")
				assert.JSONEq(t, tc.want, string(out[len("prefix"):]), shape)
			}
		})
	}
}

func mergeType(flat map[string]any, typ string) map[string]any {
	out := map[string]any{"event_type": typ}
	for k, v := range flat {
		out[k] = v
	}
	return out
}

// TestMapperEveryCatalogueType maps a synthetic event of every catalogue type
// in both shapes and checks the name, identity, time and that both shapes
// give the same Amplitude event.
func TestMapperEveryCatalogueType(t *testing.T) {
	m := mustMapper(t, nil)
	for _, et := range catalogue {
		t.Run(et.Type, func(t *testing.T) {
			flat := syntheticEvent(et)
			wantName := "[Appboy] " + et.Name
			switch et.Kind {
			case KindCustom:
				wantName = "[Appboy] [Custom Event] Level Up"
			}
			flatOut, _, err := m.AppendEvent(nil, mustJSON(t, flat), et.Type)
			require.NoError(t, err)
			httpOut, res, err := m.AppendEvent(nil, mustJSON(t, flatToHTTP(t, et.Type, flat)), "")
			require.NoError(t, err)
			assert.Equal(t, et.Type, res.EventType)
			assert.JSONEq(t, string(flatOut), string(httpOut), "both shapes must map alike")

			got := decode(t, httpOut)
			assert.Equal(t, wantName, got["event_type"])
			assert.Equal(t, "user-42", got["user_id"])
			assert.Equal(t, "dev-1", got["device_id"])
			assert.Equal(t, fxID, got["insert_id"])
			assert.EqualValues(t, int64(fxTime*1000), got["time"])
			assert.Equal(t, "Braze", got["library"])
			props := got["event_properties"].(map[string]any)
			assert.Equal(t, "app-1", props["app_id"])
			assert.Equal(t, "Spring", props["campaign_name"])
			for _, k := range []string{"id", "user_id", "external_user_id", "device_id", "time", "gender", "event_type"} {
				assert.NotContains(t, props, k)
			}
			_, hasTZ := props["timezone"]
			assert.Equal(t, et.rules&keepTimezone != 0, hasTZ, "timezone kept only where Braze keeps it")
			switch et.Kind {
			case KindCustom:
				assert.EqualValues(t, 3, props["[Custom event property] level"])
			case KindPurchase:
				assert.Equal(t, "sku", got["productId"])
				assert.EqualValues(t, 9.5, got["price"])
				assert.EqualValues(t, 1, props["[Purchase property] n"])
			}
		})
	}
}

// syntheticEvent builds a flat event of type et with the usual ids, a
// demographic field Braze does not send, and the fields custom events and
// purchases need.
func syntheticEvent(et EventType) map[string]any {
	flat := map[string]any{
		"id": fxID, "user_id": "5f0000000000000000000001", "external_user_id": "user-42",
		"device_id": "dev-1", "time": fxTime, "app_id": "app-1", "campaign_name": "Spring",
		"timezone": "Asia/Tokyo", "gender": "M",
	}
	switch et.Kind {
	case KindCustom:
		flat["name"], flat["properties"] = "Level Up", `{"level":3}`
	case KindPurchase:
		flat["product_id"], flat["price"], flat["currency"], flat["properties"] = "sku", 9.5, "USD", `{"n":1}`
	}
	return flat
}

func TestMapperOptions(t *testing.T) {
	event := func(typ string) []byte {
		return []byte(`{"event_type":"` + typ + `","id":"i-1","time":1700000000,"user":{"external_user_id":"u-1"},
			"properties":{"platform":"ios","os_version":"17","device_model":"iPhone","latitude":1.25,"longitude":2.5,
			"name":"Played","custom_properties":{"k":1},"product_id":"p","price":1,"purchase_properties":{"q":2}}}`)
	}
	cases := []struct {
		name    string
		opts    func(*Options)
		typ     string
		event   []byte
		wantErr string
		drop    DropReason
		check   func(t *testing.T, got map[string]any)
	}{
		{name: "include glob matches", typ: "users.messages.email.Open",
			opts: func(o *Options) { o.IncludeEvents = []string{"users.messages.*"} }},
		{name: "include glob misses", typ: "users.behaviors.Location", drop: DropFiltered,
			opts: func(o *Options) { o.IncludeEvents = []string{"users.messages.*"} }},
		{name: "exclude wins over include", typ: "users.messages.email.Retry", drop: DropFiltered,
			opts: func(o *Options) {
				o.IncludeEvents = []string{"users.messages.*"}
				o.ExcludeEvents = []string{"users.messages.*.Retry"}
			}},
		{name: "unknown dropped by default", typ: "users.messages.pigeon.Send", drop: DropUnknown},
		{name: "unknown rejected", typ: "users.messages.pigeon.Send", wantErr: `unknown Currents event type "users.messages.pigeon.Send"`,
			opts: func(o *Options) { o.UnknownEvents = PolicyReject }},
		{name: "unknown derived", typ: "users.messages.pigeon.DeliveryFailure",
			opts:  func(o *Options) { o.UnknownEvents = PolicyDerive },
			check: wantField("event_type", "[Appboy] Pigeon Delivery Failure")},
		{name: "derived unknown still filtered", typ: "users.messages.pigeon.Send", drop: DropFiltered,
			opts: func(o *Options) { o.UnknownEvents, o.ExcludeEvents = PolicyDerive, []string{"*.pigeon.*"} }},
		{name: "event_names adds an unknown type", typ: "users.messages.pigeon.Send",
			opts:  func(o *Options) { o.EventNames = map[string]string{"users.messages.pigeon.Send": "Pigeon Sent"} },
			check: wantField("event_type", "[Appboy] Pigeon Sent")},
		{name: "event_names overrides a known type", typ: "users.messages.sms.CarrierSend",
			opts: func(o *Options) {
				o.EventNames = map[string]string{"users.messages.sms.CarrierSend": "SMS Carrier Send"}
			},
			check: wantField("event_type", "[Appboy] SMS Carrier Send")},
		{name: "event prefix", typ: "users.messages.email.Open",
			opts:  func(o *Options) { o.EventPrefix = "[Braze] " },
			check: wantField("event_type", "[Braze] Email Open")},
		{name: "custom prefixes", typ: TypeCustomEvent,
			opts: func(o *Options) { o.CustomEventPrefix, o.CustomPropertyPrefix = `CE "`, "p." },
			check: func(t *testing.T, got map[string]any) {
				assert.Equal(t, `CE "Played`, got["event_type"])
				assert.EqualValues(t, 1, props(got)["p.k"])
			}},
		{name: "purchase prefix", typ: TypePurchase,
			opts:  func(o *Options) { o.PurchasePropertyPrefix = "" },
			check: func(t *testing.T, got map[string]any) { assert.EqualValues(t, 2, props(got)["q"]) }},
		{name: "device fields off by default", typ: "users.behaviors.Location",
			check: func(t *testing.T, got map[string]any) {
				for _, k := range []string{"platform", "os_version", "device_model", "location_lat", "location_lng"} {
					assert.NotContains(t, got, k)
				}
				assert.Equal(t, "ios", props(got)["platform"])
			}},
		{name: "device fields opt-in", typ: "users.behaviors.Location",
			opts: func(o *Options) { o.DeviceFields = true },
			check: func(t *testing.T, got map[string]any) {
				assert.Equal(t, "ios", got["platform"])
				assert.Equal(t, "17", got["os_version"])
				assert.Equal(t, "iPhone", got["device_model"])
				assert.EqualValues(t, 1.25, got["location_lat"])
				assert.EqualValues(t, 2.5, got["location_lng"])
				assert.Equal(t, "ios", props(got)["platform"], "still in event_properties")
			}},
		{name: "unidentified dropped", typ: "users.messages.email.Open", drop: DropUnidentified,
			event: []byte(`{"event_type":"users.messages.email.Open","id":"i","time":1,"user":{"user_id":"b","external_user_id":null,"device_id":""}}`)},
		{name: "unidentified rejected", typ: "users.messages.email.Open", wantErr: "neither external_user_id nor device_id",
			opts:  func(o *Options) { o.UnidentifiedEvents = PolicyReject },
			event: []byte(`{"event_type":"users.messages.email.Open","id":"i","time":1,"user":{"user_id":"b"}}`)},
		{name: "anonymous user with a device id is sent", typ: "users.messages.email.Open",
			event: []byte(`{"event_type":"users.messages.email.Open","id":"i","time":1,"user":{"device_id":"d-1"}}`),
			check: func(t *testing.T, got map[string]any) {
				assert.Equal(t, "d-1", got["device_id"])
				assert.NotContains(t, got, "user_id")
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustMapper(t, tc.opts)
			in := tc.event
			if in == nil {
				in = event(tc.typ)
			}
			out, res, err := m.AppendEvent(nil, in, "")
			assert.Equal(t, tc.typ, res.EventType)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				assert.Empty(t, out)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.drop, res.Dropped)
			if tc.drop != "" {
				assert.Empty(t, out, "a dropped event writes nothing")
				return
			}
			got := decode(t, out)
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

func wantField(key, want string) func(*testing.T, map[string]any) {
	return func(t *testing.T, got map[string]any) { assert.Equal(t, want, got[key]) }
}

func props(got map[string]any) map[string]any {
	p, _ := got["event_properties"].(map[string]any)
	return p
}

func TestMapperBadInput(t *testing.T) {
	m := mustMapper(t, nil)
	long := strings.Repeat("x", MaxIDLength+1)
	cases := []struct{ name, event, hint, wantErr string }{
		{"invalid JSON", `{"id":`, "", "not valid JSON"},
		{"not an object", `["a"]`, "", "must be a JSON object, got an array"},
		{"no type", `{"id":"i","time":1,"external_user_id":"u"}`, "", "missing event type"},
		{"type not a string", `{"event_type":7}`, "", "event_type must be a string, got a number"},
		{"missing id", `{"time":1,"external_user_id":"u"}`, "users.messages.email.Open", "missing field id"},
		{"id not a string", `{"id":1,"time":1,"external_user_id":"u"}`, "users.messages.email.Open", "field id must be a string"},
		{"empty id", `{"id":"","time":1,"external_user_id":"u"}`, "users.messages.email.Open", "field id is empty"},
		{"missing time", `{"id":"i","external_user_id":"u"}`, "users.messages.email.Open", "missing field time"},
		{"time as string", `{"id":"i","time":"1700000000","external_user_id":"u"}`, "users.messages.email.Open", "field time must be an integer, got a string"},
		{"fractional time", `{"id":"i","time":1.5,"external_user_id":"u"}`, "users.messages.email.Open", "positive integer"},
		{"negative time", `{"id":"i","time":-5,"external_user_id":"u"}`, "users.messages.email.Open", "positive integer"},
		{"huge time", `{"id":"i","time":99999999999999999,"external_user_id":"u"}`, "users.messages.email.Open", "out of range"},
		{"bad time_ms", `{"id":"i","time":1,"time_ms":"x","external_user_id":"u"}`, "users.messages.email.Open", "field time_ms must be an integer"},
		{"user id as object", `{"id":"i","time":1,"external_user_id":{"string":"u"}}`, "users.messages.email.Open", "external_user_id must be a string, got an object"},
		{"oversized user id", `{"id":"i","time":1,"external_user_id":"` + long + `"}`, "users.messages.email.Open", "over the 1024-byte limit"},
		{"oversized type", `{"id":"i","time":1,"external_user_id":"u"}`, long, "over the 1024-byte limit"},
		{"user not an object", `{"event_type":"users.messages.email.Open","id":"i","time":1,"user":"u"}`, "", "field user must be an object, got a string"},
		{"custom event without name", `{"id":"i","time":1,"external_user_id":"u","properties":"{}"}`, TypeCustomEvent, "missing field name"},
		{"custom properties not JSON", `{"id":"i","time":1,"external_user_id":"u","name":"n","properties":"{oops"}`, TypeCustomEvent, "not a valid JSON-encoded object"},
		{"custom properties an array", `{"id":"i","time":1,"external_user_id":"u","name":"n","properties":"[1]"}`, TypeCustomEvent, "must be an object, got an array"},
		{"purchase without price", `{"id":"i","time":1,"external_user_id":"u","product_id":"p"}`, TypePurchase, "field price must be a number, got nothing"},
		{"purchase price as string", `{"id":"i","time":1,"external_user_id":"u","product_id":"p","price":"3"}`, TypePurchase, "field price must be a number, got a string"},
		{"purchase quantity as string", `{"id":"i","time":1,"external_user_id":"u","product_id":"p","price":3,"quantity":"2"}`, TypePurchase, "field quantity must be a number"},
		{"purchase without product", `{"id":"i","time":1,"external_user_id":"u","price":3}`, TypePurchase, "missing field product_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := m.AppendEvent([]byte("keep"), []byte(tc.event), tc.hint)
			require.ErrorContains(t, err, tc.wantErr)
			assert.Equal(t, "keep", string(out), "dst is returned unchanged on error")
		})
	}
}

func TestNewMapperRejectsBadOptions(t *testing.T) {
	cases := []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{"bad include glob", func(o *Options) { o.IncludeEvents = []string{"users.["} }, `invalid event type pattern "users.["`},
		{"bad exclude glob", func(o *Options) { o.ExcludeEvents = []string{"[]"} }, "invalid event type pattern"},
		{"bad unknown policy", func(o *Options) { o.UnknownEvents = "keep" }, "unknown_events must be drop, derive or reject"},
		{"derive is not an unidentified policy", func(o *Options) { o.UnidentifiedEvents = PolicyDerive }, "unidentified_events must be drop or reject"},
		{"custom event rename", func(o *Options) { o.EventNames = map[string]string{TypeCustomEvent: "X"} }, "cannot rename users.behaviors.CustomEvent"},
		{"empty name", func(o *Options) { o.EventNames = map[string]string{"a.b": " "} }, `empty Amplitude name for "a.b"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			tc.mod(&opts)
			_, err := NewMapper(opts)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestDeriveName(t *testing.T) {
	for in, want := range map[string]string{
		"users.messages.pigeon.DeliveryFailure": "Pigeon Delivery Failure",
		"users.behaviors.app.NewThing":          "App New Thing",
		"users.SomethingNew":                    "Something New",
		"contentoptimizer.ComponentStore":       "Contentoptimizer Component Store",
		"users.messages.sms.SMSSent":            "Sms SMSSent",
	} {
		assert.Equal(t, want, DeriveName(in), in)
	}
}

// The caller may reuse its event buffer (the Avro scanner does): nothing the
// mapper returns may alias it.
func TestResultDoesNotAliasEvent(t *testing.T) {
	for _, typ := range []string{"users.messages.email.Open", "users.messages.pigeon.Send"} {
		event := []byte(`{"event_type":"` + typ + `","id":"i","time":1,"user":{"external_user_id":"u"}}`)
		_, res, err := mustMapper(t, nil).AppendEvent(nil, event, "")
		require.NoError(t, err)
		for i := range event {
			event[i] = 'x'
		}
		assert.Equal(t, typ, res.EventType)
	}
}

func TestDefaultExcludeEvents(t *testing.T) {
	m, err := NewMapper(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	event := func(typ string) []byte {
		return []byte(`{"event_type":"` + typ + `","id":"e1","time":1700000000,"user":{"external_user_id":"u1"},"properties":{}}`)
	}
	for _, typ := range []string{"users.UserDeleteRequest", "users.UserOrphan", "users.RandomBucketNumberUpdate", "users.profile.Update", "agentconsole.AgentExecuted", "agentconsole.ToolInvocation"} {
		out, res, err := m.AppendEvent(nil, event(typ), "")
		if err != nil || res.Dropped != DropFiltered || len(out) != 0 {
			t.Errorf("%s: got %q, %+v, %v; want it filtered by default", typ, out, res, err)
		}
	}
	out, res, err := m.AppendEvent(nil, event("users.messages.email.Open"), "")
	if err != nil || res.Dropped != "" || len(out) == 0 {
		t.Errorf("email open: got %q, %+v, %v; want it mapped", out, res, err)
	}
}

// TestEventTypeFieldWinsOverHint checks where the type comes from, in both
// the validating walk (AppendEvent) and the trusted one (AppendValidEvent):
// an event_type field that is a non-empty string wins over the hint wherever
// it is (the first one), null or "" leaves the hint, anything else is an
// error, and the flattened user and properties objects do not count.
func TestEventTypeFieldWinsOverHint(t *testing.T) {
	const open, click = "users.messages.email.Open", "users.messages.email.Click"
	body := `"id":"i","time":1,"external_user_id":"u"`
	cases := []struct{ name, event, hint, wantType, wantErr string }{
		{"leading field", `{"event_type":"` + open + `",` + body + `}`, click, "[Appboy] Email Open", ""},
		{"trailing field", `{` + body + `,"event_type":"` + open + `"}`, click, "[Appboy] Email Open", ""},
		{"field equal to the hint", `{` + body + `,"event_type":"` + open + `"}`, open, "[Appboy] Email Open", ""},
		{"null field", `{` + body + `,"event_type":null}`, click, "[Appboy] Email Click", ""},
		{"empty field", `{` + body + `,"event_type":""}`, click, "", "event_type must be a string"},
		{"escaped field", `{"event_type":"users.messages.email.Op\u0065n",` + body + `}`, click, "[Appboy] Email Open", ""},
		{"first of two fields", `{` + body + `,"event_type":"` + open + `","event_type":"` + click + `"}`, click, "[Appboy] Email Open", ""},
		{"field in user does not count", `{` + body + `,"user":{"event_type":"` + open + `"}}`, click, "[Appboy] Email Click", ""},
		{"field not a string", `{` + body + `,"event_type":7}`, click, "", "event_type must be a string, got a number"},
		{"field after a bad member", `{"user":"u",` + body + `,"event_type":7}`, click, "", "event_type must be a string"},
		{"field of a filtered type", `{` + body + `,"event_type":"` + open + `"}`, "users.UserDeleteRequest", "[Appboy] Email Open", ""},
		{"filtered hint", `{` + body + `,"event_type":null}`, "users.UserDeleteRequest", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustMapper(t, func(o *Options) { o.ExcludeEvents = DefaultExcludeEvents })
			for _, f := range []func(dst, event []byte, hint string) ([]byte, Result, error){m.AppendEvent, m.AppendValidEvent} {
				out, res, err := f(nil, []byte(tc.event), tc.hint)
				if tc.wantErr != "" {
					require.ErrorContains(t, err, tc.wantErr)
					continue
				}
				require.NoError(t, err)
				if tc.wantType == "" {
					assert.Equal(t, DropFiltered, res.Dropped)
					continue
				}
				assert.Equal(t, tc.wantType, decode(t, out)["event_type"])
			}
		})
	}
}

// BenchmarkMapperWalks compares, on the benchmark's generated stream, the
// mapper's walks over one event: validating (untrusted bytes, the
// validation done in the walk), trusted (bytes a component of ours
// validated, such as braze_currents_http's events), and the plain walk
// after the separate checks it replaced (jsonlimit, gjson.Valid,
// utf8.Valid, then jsonscan.ForEachFlat). One op is one event.
func BenchmarkMapperWalks(b *testing.B) {
	events := generatedStream(10000)
	m := mustMapper(b, func(o *Options) { o.ExcludeEvents = DefaultExcludeEvents })
	walks := []struct {
		name string
		walk func(dst, event []byte) []byte
	}{
		{"validating", func(dst, event []byte) []byte {
			out, _, _, _ := m.appendUnchecked(dst, event, "")
			return out
		}},
		{"trusted", func(dst, event []byte) []byte {
			out, _, _ := m.AppendValidEvent(dst, event, "")
			return out
		}},
		{"checks_then_plain_walk", func(dst, event []byte) []byte {
			if jsonlimit.Check(event, MaxDepth) != nil || !gjson.ValidBytes(event) || !utf8.Valid(event) {
				b.Fatal("invalid event")
			}
			out, _, _ := m.walkEvent(dst, unsafestr.FromBytes(event), "")
			return out
		}},
	}
	for _, w := range walks {
		b.Run(w.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 4096)
			i := 0
			for b.Loop() {
				buf = w.walk(buf[:0], events[i])
				i = (i + 1) % len(events)
			}
		})
	}
}
