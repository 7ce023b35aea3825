package amplitude

import (
	"testing"

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
