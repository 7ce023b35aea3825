package deadletter

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// Metadata keys read into the record's `source` object: where the message
// came from. Inputs set them; any that are absent are left out.
const (
	// MetaRequestID is the id of the Braze request an event came in
	// (braze_currents_http).
	MetaRequestID = "currents_request_id"
	// MetaPath is the file a line or record came from (Benthos' file input
	// and currents_avro both set it).
	MetaPath = "path"
	// MetaLine is the 1-based line number of a replayed line.
	MetaLine = "currents_line"
)

// SourceKeys are the metadata keys copied into a record's `source`, in
// order: request, file, Avro block and record, line, Kafka coordinates.
var SourceKeys = []string{
	MetaRequestID,
	MetaPath,
	"currents_avro_file",
	"currents_avro_block",
	"currents_avro_record",
	MetaLine,
	"kafka_topic",
	"kafka_partition",
	"kafka_offset",
}

// Record is one dead-letter record before encoding.
type Record struct {
	Reason    Reason
	Error     string
	FailedAt  time.Time
	Component string
	// EventType is the Currents event type, when known.
	EventType string
	// Source holds key/value pairs from SourceKeys, in that order.
	Source [][2]string
	// Event is the message as it was; valid JSON is embedded as is, other
	// bytes as a JSON string. Invalid UTF-8 is replaced by U+FFFD in both
	// cases, as the mapper does in the events it sends, so that the record
	// is valid JSON text and shows what was (or would have been) sent.
	Event []byte
}

// Encode appends r as one JSON object (no newline) to dst:
//
//	{"reason":"...","error":"...","failed_at":"2026-12-01T10:00:00.000Z",
//	 "component":"amplitude","currents_event_type":"...",
//	 "source":{"path":"...","currents_avro_record":"12"},"event":{...}}
func (r *Record) Encode(dst []byte) []byte {
	dst = append(dst, `{"reason":`...)
	dst = jsonw.AppendString(dst, string(r.Reason))
	if r.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = jsonw.AppendString(dst, r.Error)
	}
	dst = append(dst, `,"failed_at":`...)
	dst = strconv.AppendQuote(dst, r.FailedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	if r.Component != "" {
		dst = append(dst, `,"component":`...)
		dst = jsonw.AppendString(dst, r.Component)
	}
	if r.EventType != "" {
		dst = append(dst, `,"currents_event_type":`...)
		dst = jsonw.AppendString(dst, r.EventType)
	}
	if len(r.Source) > 0 {
		dst = append(dst, `,"source":{`...)
		for i, kv := range r.Source {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonw.AppendKey(dst, kv[0])
			dst = jsonw.AppendString(dst, kv[1])
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"event":`...)
	if len(r.Event) > 0 && gjson.ValidBytes(r.Event) {
		if utf8.Valid(r.Event) {
			dst = append(dst, r.Event...)
		} else { // invalid bytes can only be inside strings: still valid JSON
			dst = append(dst, bytes.ToValidUTF8(r.Event, []byte("\uFFFD"))...)
		}
	} else {
		dst = jsonw.AppendString(dst, string(r.Event))
	}
	return append(dst, '}')
}
