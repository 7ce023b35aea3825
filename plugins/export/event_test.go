package export

import (
	"strings"
	"testing"
	"time"
)

func TestParseEvent(t *testing.T) {
	cases := []struct {
		name, in string
		want     Event
		err      string
	}{
		{
			name: "exported row",
			in:   `{"$insert_id":"e1","event_type":"[Appboy] Email Open","user_id":"usr_1","device_id":null,"client_event_time":"2026-01-01 10:59:59.999000","event_time":"2026-01-01 11:00:03.000000","server_upload_time":"2026-01-01 11:02:00.000000"}`,
			want: Event{InsertID: "e1", EventType: "[Appboy] Email Open", UserID: "usr_1", Time: time.Date(2026, 1, 1, 10, 59, 59, 999e6, time.UTC).UnixMilli()},
		},
		{
			name: "row with T separator and Z, event_time only",
			in:   `{"$insert_id":"e2","event_type":"x","device_id":"dev-1","event_time":"2026-01-01T00:00:00.000000Z"}`,
			want: Event{InsertID: "e2", EventType: "x", DeviceID: "dev-1", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()},
		},
		{
			name: "compact record / HTTP API event",
			in:   `{"insert_id":"e3","event_type":"x","time":1767225600000,"user_id":"u1","device_id":"d1","event_properties":{"a":1}}`,
			want: Event{InsertID: "e3", EventType: "x", Time: 1767225600000, UserID: "u1", DeviceID: "d1"},
		},
		{name: "not JSON", in: `{"$insert_id":`, err: "not valid JSON"},
		{name: "not an object", in: `[1]`, err: "not a JSON object"},
		{name: "no insert id", in: `{"event_type":"x","time":1}`, err: "no insert_id"},
		{name: "numeric insert id", in: `{"insert_id":7,"event_type":"x","time":1}`, err: "insert_id: not a string"},
		{name: "empty insert id", in: `{"$insert_id":"","event_type":"x","event_time":"2026-01-01 00:00:00"}`, err: "no insert_id"},
		{name: "no time in a row", in: `{"$insert_id":"a","event_type":"x"}`, err: "neither client_event_time"},
		{name: "bad row time", in: `{"$insert_id":"a","event_type":"x","client_event_time":"yesterday at noon"}`, err: "client_event_time"},
		{name: "time as a string", in: `{"insert_id":"a","event_type":"x","time":"1767225600000"}`, err: "time: not a number"},
		{name: "fractional time", in: `{"insert_id":"a","event_type":"x","time":1.5}`, err: "time:"},
		{name: "no event type", in: `{"insert_id":"a","time":1}`, err: "no event_type"},
		{name: "numeric user id", in: `{"insert_id":"a","event_type":"x","time":1,"user_id":5}`, err: "user_id: not a string"},
		{name: "overlong id", in: `{"insert_id":"` + strings.Repeat("a", MaxFieldLength+1) + `","event_type":"x","time":1}`, err: "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEvent([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			// The compact record decodes to the same event.
			back, err := ParseEvent(AppendCompact(nil, got))
			if err != nil || back != got {
				t.Fatalf("compact round trip: %+v, %v", back, err)
			}
		})
	}
}

func TestParseHour(t *testing.T) {
	want := time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{in: "20261129T13", want: want},
		{in: "2026-11-29T13", want: want},
		{in: "2026-11-29T13:00:00Z", want: want},
		{in: "2026-11-29T14:00:00+01:00", want: want},       // Paris in winter
		{in: "2026-11-29T08:00:00-05:00", want: want},       // New York
		{in: "2026-11-29", want: want.Add(-13 * time.Hour)}, // midnight UTC
		{in: "2026-11-30T00:00:00+11:00", want: want},       // Sydney: the day before in UTC
		{in: "2026-11-29T18:30:00+05:30", want: want},       // India: a whole UTC hour
		{in: "2026-11-29T18:00:00+05:30", err: "whole UTC hour"},
		{in: "2026-11-29T13:30:00Z", err: "whole UTC hour"},
		{in: "yesterday", err: "expected YYYYMMDDTHH"},
		{in: "", err: "expected"},
	} {
		got, err := ParseHour(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseHour(%q): error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("ParseHour(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
