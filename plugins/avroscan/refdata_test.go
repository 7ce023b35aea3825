package avroscan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	_ "github.com/opencurrents/currents-amplitude/plugins/currents"
	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/refdata"
)

// TestBrazeSamplesDecode decodes every real Braze sample file and compares
// it with avro-tools' JSON of the same file, after unwrapping that JSON's
// unions ({"string": "x"} -> "x") and reading its floats as float32.
func TestBrazeSamplesDecode(t *testing.T) {
	jsonDir := refdata.Dir(t, "avro-as-json")
	for _, s := range refdata.Samples(t, "avro", ".avro") {
		eventType, data := s.Name, s.Data
		t.Run(eventType, func(t *testing.T) {
			res := scan(t, "    {}", "bucket/event_type="+eventType+"/date=2026-11-29-13/"+filepath.Base(s.Path), data)
			require.NoError(t, res.err)
			require.NoError(t, res.ackErr)

			o, err := newOCFReader(bytes.NewReader(data), limits{blockBytes: 1 << 20, blockRecords: 1 << 10, jsonBytes: 1 << 20})
			require.NoError(t, err)
			wantRecords := avroToolsRecords(t, filepath.Join(jsonDir, eventType+".json"))
			require.Len(t, res.msgs, len(wantRecords))
			for i, m := range res.msgs {
				got, err := m.AsBytes()
				require.NoError(t, err)
				require.True(t, json.Valid(got), "invalid JSON: %s", got)
				want := unwrapUnions(t, o.schema, wantRecords[i])
				assert.Equal(t, want, decodeNumbers(t, got))
				et, _ := m.MetaGetMut(currentsbody.MetaEventType)
				assert.Equal(t, eventType, et)
			}
			// Without the path, the event type comes from the schema name.
			res = scan(t, "    {}", "", data)
			require.NoError(t, res.err)
			et, _ := res.msgs[0].MetaGetMut(currentsbody.MetaEventType)
			assert.Equal(t, eventType, et)
		})
	}
}

// avroToolsRecords reads the records of an avro-tools tojson file (one JSON
// document per record, pretty-printed or not).
func avroToolsRecords(t *testing.T, path string) []any {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out []any
	for dec.More() {
		var v any
		require.NoError(t, dec.Decode(&v))
		out = append(out, v)
	}
	return out
}

// decodeNumbers parses JSON keeping numbers as written.
func decodeNumbers(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}

// unwrapUnions turns avro-tools' JSON of a value of schema s into the JSON
// the scanner must write: a union's {"<branch type>": value} becomes the
// value alone, and a float becomes its shortest float32 form.
func unwrapUnions(t *testing.T, s avro.Schema, v any) any {
	t.Helper()
	switch s := s.(type) {
	case *avro.RefSchema:
		return unwrapUnions(t, s.Schema(), v)
	case *avro.UnionSchema:
		if v == nil {
			return nil
		}
		obj, ok := v.(map[string]any)
		require.True(t, ok, "union value %v is not an object", v)
		require.Len(t, obj, 1)
		for branch, inner := range obj {
			for _, typ := range s.Types() {
				name := string(typ.Type())
				if named, ok := typ.(avro.NamedSchema); ok {
					name = named.FullName()
				}
				if name == branch {
					return unwrapUnions(t, typ, inner)
				}
			}
			t.Fatalf("union branch %q not in %s", branch, s)
		}
	case *avro.RecordSchema:
		obj := v.(map[string]any)
		out := make(map[string]any, len(obj))
		for _, f := range s.Fields() {
			out[f.Name()] = unwrapUnions(t, f.Type(), obj[f.Name()])
		}
		return out
	case *avro.ArraySchema:
		arr := v.([]any)
		out := make([]any, len(arr))
		for i := range arr {
			out[i] = unwrapUnions(t, s.Items(), arr[i])
		}
		return out
	case *avro.MapSchema:
		obj := v.(map[string]any)
		out := make(map[string]any, len(obj))
		for k, e := range obj {
			out[k] = unwrapUnions(t, s.Values(), e)
		}
		return out
	case *avro.PrimitiveSchema:
		if s.Type() == avro.Float {
			f, err := v.(json.Number).Float64()
			require.NoError(t, err)
			return json.Number(strconv.FormatFloat(float64(float32(f)), 'f', -1, 32))
		}
	}
	return v
}

// TestBrazeSamplesMapToAmplitude reads every real Braze sample file through
// the scanner and braze_to_amplitude: each becomes one Amplitude event named
// "[Appboy] ...", with insert_id, time and user of the record, except the
// samples with neither external_user_id nor device_id, which Braze does not
// send either (flagged here with unidentified_events: reject). Nothing is
// excluded (exclude_events: [] overrides the default exclusions).
func TestBrazeSamplesMapToAmplitude(t *testing.T) {
	avroDir := refdata.Dir(t, "avro")
	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetLoggerYAML("level: none"))
	require.NoError(t, sb.AddInputYAML(fmt.Sprintf(`
file:
  paths: [ %q ]
  scanner:
    currents_avro: {}
`, filepath.Join(avroDir, "*.avro"))))
	require.NoError(t, sb.AddProcessorYAML(`braze_to_amplitude: { unknown_events: reject, unidentified_events: reject, exclude_events: [] }`))
	var mu sync.Mutex
	out := map[string]*service.Message{}
	require.NoError(t, sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		mu.Lock()
		defer mu.Unlock()
		p, _ := m.MetaGetMut("path")
		out[filepath.Base(p.(string))] = m.Copy()
		return nil
	}))
	strm, err := sb.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, strm.Run(ctx))

	samples := refdata.Samples(t, "avro", ".avro")
	for _, s := range samples {
		name := filepath.Base(s.Path)
		res := scan(t, "    {}", "", s.Data)
		require.NoError(t, res.err)
		rec, _ := res.msgs[0].AsBytes()
		m, ok := out[name]
		if !assert.True(t, ok, "%s: no Amplitude event", name) {
			continue
		}
		if err := m.GetError(); err != nil {
			assert.NotEqual(t, gjson.String, gjson.GetBytes(rec, "external_user_id").Type, "%s: %v", name, err)
			assert.NotEqual(t, gjson.String, gjson.GetBytes(rec, "device_id").Type, "%s: %v", name, err)
			continue
		}
		got, _ := m.AsBytes()
		assert.True(t, strings.HasPrefix(gjson.GetBytes(got, "event_type").String(), "[Appboy] "), "%s: %s", name, got)
		assert.Equal(t, gjson.GetBytes(rec, "id").String(), gjson.GetBytes(got, "insert_id").String(), name)
		if ms := gjson.GetBytes(rec, "time_ms"); ms.Exists() && ms.Type == gjson.Number {
			assert.Equal(t, ms.Int(), gjson.GetBytes(got, "time").Int(), name)
		} else {
			assert.Equal(t, gjson.GetBytes(rec, "time").Int()*1000, gjson.GetBytes(got, "time").Int(), name)
		}
		if ext := gjson.GetBytes(rec, "external_user_id"); ext.Type == gjson.String {
			assert.Equal(t, ext.String(), gjson.GetBytes(got, "user_id").String(), name)
		}
	}
	assert.Len(t, out, len(samples))
}
