package ingest

import (
	"testing"

	"github.com/tidwall/gjson"
)

// FuzzSplitEvents checks that any body either is refused or yields valid JSON
// objects, never a panic.
func FuzzSplitEvents(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"events":[]}`, `{"events":null}`, `{"events":[` + ev1 + `,` + ev2 + `]}`,
		`{"events":[1]}`, `{"events":{}}`, `[]`, `{"events":[{}`, `{"a":1,"events":[{"x":"\u00e9"}]}`,
		"{\"events\":[{\"k\":\"\xff\"}]}", `{"events":[{"a":[{"b":{}}]}],"events":[]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := splitEvents(body)
		if err != nil {
			if events != nil {
				t.Fatalf("events returned with error %v", err)
			}
			return
		}
		for i, ev := range events {
			if !gjson.ValidBytes(ev) || !gjson.ParseBytes(ev).IsObject() {
				t.Fatalf("event %d is not a JSON object: %q", i, ev)
			}
		}
	})
}
