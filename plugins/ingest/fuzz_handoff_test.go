package ingest

import (
	"net/http/httptest"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
)

// FuzzTrustedEvents checks the input's side of the validate-once hand-off:
// whatever the body and its query (a sender may name a parameter after the
// mark's key), every message of an accepted body carries a mark vouching
// for its bytes, which are a valid JSON object of valid UTF-8 nested within
// the announced depth; a refused body yields no message.
func FuzzTrustedEvents(f *testing.F) {
	for _, seed := range []string{
		`{"events":[` + ev1 + `,` + ev2 + `]}`, `{"events":[{"a":[{"b":{}}]}]}`, "{\"events\":[{\"k\":\"\xff\"}]}",
		`{"events":[1]}`, `{"events":[{}`, `{"id":"x"}`, ``,
	} {
		f.Add([]byte(seed), "currents_trusted=validated")
	}
	in, err := newBrazeCurrentsHTTP(testConfig(), service.MockResources())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		events, clean, err := in.split(nil, body)
		if err != nil || len(events) == 0 {
			return
		}
		r := httptest.NewRequest("POST", "/currents", nil)
		r.URL.RawQuery = query
		for i, msg := range in.toBatch(clean, events, "1", "id", r) {
			raw, _ := msg.AsBytes()
			mark := trusted.Of(msg, raw)
			if mark == nil {
				t.Fatalf("event %d of an accepted body is not marked: %q", i, raw)
			}
			if !gjson.ValidBytes(raw) || !gjson.ParseBytes(raw).IsObject() {
				t.Fatalf("marked event %d is not a valid JSON object: %q", i, raw)
			}
			if d := jsonlimit.Depth(raw, 1<<20); d > mark.Depth() {
				t.Fatalf("marked event %d nests %d levels, the mark says at most %d", i, d, mark.Depth())
			}
		}
	})
}
