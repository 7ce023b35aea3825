package amplitude

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonscan"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
)

// TestPrepareMarked checks that bytes braze_to_amplitude marked are read as
// they are without the mark (only the fields before event_properties, no
// validation), and that an invalid message without a mark still fails.
func TestPrepareMarked(t *testing.T) {
	b := newRequestBuilder("key", 5, maxEventsPerRequest, maxBytesHTTPV2Request)
	cases := []string{
		`{"event_type":"[Appboy] Email Open","user_id":"user-1","device_id":"device-1","insert_id":"i","time":1,"library":"Braze","event_properties":{"user_id":"x","device_id":"y","time":1.5}}`,
		`{"event_type":"[Appboy] Email Open","device_id":"device-1","insert_id":"i","time":1,"library":"Braze","event_properties":{}}`,
		`{"event_type":"[Appboy] Email Open","user_id":"null","device_id":"device-1","insert_id":"i","time":1,"library":"Braze","event_properties":{"a":"b"}}`,
		`{"event_type":"[Appboy] Email Open","user_id":"u","insert_id":"i","time":1,"library":"Braze","event_properties":{"a":"b"}}`,
	}
	for _, raw := range cases {
		buf := []byte(raw)
		var bld trusted.Builder
		bld.Add(0, len(buf))
		mark := bld.AmplitudeMark(buf, 0)
		var want, got event
		wantErr, gotErr := b.prepare(&want, 3, buf), b.prepareMarked(&got, 3, buf, mark)
		if (wantErr == nil) != (gotErr == nil) || want.userID != got.userID || want.deviceID != got.deviceID ||
			want.removed != got.removed || string(want.raw) != string(got.raw) {
			t.Errorf("%s:\nmarked %+v (%v)\nplain  %+v (%v)", raw, got, gotErr, want, wantErr)
		}
	}
	var ev event
	if err := b.prepareMarked(&ev, 0, []byte(`{"event_type":"x","user_id":"user-1"`), nil); err == nil {
		t.Fatal("invalid JSON without a mark was accepted")
	}
}

// FuzzReadScalars checks the reading of braze_to_amplitude's event heads
// against jsonscan.ForEach: whenever readScalars takes a valid object, it
// yields the same fields as ForEach on the object cut before its first
// event_properties object, as the output read them before.
func FuzzReadScalars(f *testing.F) {
	for _, seed := range []string{
		`{"event_type":"[Appboy] Email Open","user_id":"user-1","device_id":"device-1","insert_id":"i","time":1,"library":"Braze","price":9.99,"event_properties":{}}`,
		`{"event_type":"a\"b","user_id":"\u0075","time":-1.5e3,"event_properties":{}}`,
		`{"event_type":"x","user_id":null,"event_properties":{}}`,
		`{"event_type":"x", "time":1,"event_properties":{}}`,
		`{"user\u005fid":"abcdef","event_type":"x","event_properties":{}}`,
		`{"event_type":"x","device_id":"d,\",x","event_properties":{}}`,
		`{"event_properties":{"user_id":"inner"},"user_id":"outer"}`,
		`{"event_type":"x","user_id":"a,\"event_properties\":{","event_properties":{"time":1.5}}`,
		`{"event_type":"x","user_id":"abcdef","time":12}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !gjson.ValidBytes(data) || !gjson.ParseBytes(data).IsObject() {
			return
		}
		got, ok := readScalars(string(data))
		if !ok {
			return
		}
		var want headFields
		// What ForEach reads before the first event_properties object.
		head := data
		if i := bytes.Index(data, trusted.PropertiesKey); i > 0 {
			head = data[:i]
		}
		jsonscan.ForEach(string(head), func(k, v gjson.Result) bool {
			want.set(k.Str, v)
			return true
		})
		for i, pair := range [][2]gjson.Result{{got.eventType, want.eventType}, {got.userID, want.userID},
			{got.deviceID, want.deviceID}, {got.time, want.time}} {
			g, w := pair[0], pair[1]
			if g.Type != w.Type || g.Str != w.Str || g.Raw != w.Raw || g.Exists() != w.Exists() {
				t.Fatalf("%q: field %d: %+v, ForEach %+v", data, i, g, w)
			}
		}
	})
}

// markedEvents returns n Amplitude events of the shape braze_to_amplitude
// writes, in one buffer, and the mark it puts on them.
func markedEvents(n int) ([][]byte, *trusted.Mark) {
	var buf []byte
	var marks trusted.Builder
	var spans [][2]int
	for i := range n {
		start := len(buf)
		buf = fmt.Appendf(buf, `{"event_type":"[Appboy] Purchase","user_id":"usr_%06d","device_id":"0f5e2c7a-9b14-4d36-8e2f-%012d","insert_id":"5c1a7e93-0d2b-4f6e-8a41-%012d","time":1767225600000,"library":"Braze","productId":"sneakers-air-42","price":89.99,"platform":"ios","os_version":"17.1","device_model":"iPhone15,2","event_properties":{"app_id":"b7e2d9c4-1f6a-4e3b-8c5d-0a9f8e7d6c5b","currency":"EUR","[Purchase property] size":"42"}}`, i, i, i)
		marks.Add(start, len(buf))
		spans = append(spans, [2]int{start, len(buf)})
	}
	raws := make([][]byte, 0, len(spans))
	for _, s := range spans {
		raws = append(raws, buf[s[0]:s[1]])
	}
	return raws, marks.AmplitudeMark(buf, 0)
}

// BenchmarkPrepareMarked measures reading events braze_to_amplitude marked,
// of the shape it writes.
func BenchmarkPrepareMarked(b *testing.B) {
	bld := newRequestBuilder("0123456789abcdef0123456789abcdef", 5, maxEventsPerRequest, maxBytesHTTPV2Request)
	raws, mark := markedEvents(100)
	store := make([]event, len(raws))
	b.ReportAllocs()
	for b.Loop() {
		for i, r := range raws {
			if err := bld.prepareMarked(&store[i], i, r, mark); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(raws)), "ns/event")
}
