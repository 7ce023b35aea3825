package currentsgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hamba/avro/v2/ocf"
)

// AvroOptions configure WriteAvro.
type AvroOptions struct {
	// Codec is the block codec: "null" (default), "deflate" or "snappy".
	Codec string
	// BlockLength is the number of records per block; 0 means the
	// library's default (100).
	BlockLength int
}

// WriteAvro writes the next n events of g as Avro object container files in
// the Currents storage layout under dir, one file per event type:
//
//	dir/event_type=<type>/date=<YYYY-MM-DD-HH>/dataexport.prod-01.S3.integration.bench+0+0000000000.avro
//
// and returns the paths of the files written. The record of each type is
// named like Braze's (namespace dataexport.S3.inner.<type prefix>, name
// the type's last segment); its fields are the flat storage shape of the
// generator's events: id, user_id and time required, everything else
// nullable, custom and purchase properties a JSON-encoded string, numbers
// with a fraction written as Avro float (32-bit) as Braze does.
//
// Schemas are derived from the generator's own events, so WriteAvro is a
// test-data tool, not a source of Braze's exact schemas.
func WriteAvro(dir string, g *Generator, n int, opts AvroOptions) ([]string, error) {
	schemas := map[string]*avroSchema{}
	encs := map[string]*ocf.Encoder{}
	files := map[string]*os.File{}
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	defer closeAll()
	date := fmtHour(g.cfg.StartTime + int64(g.n)/int64(g.cfg.EventsPerSecond))
	var encOpts []ocf.EncoderFunc
	if opts.Codec != "" {
		encOpts = append(encOpts, ocf.WithCodec(ocf.CodecName(opts.Codec)))
	}
	if opts.BlockLength > 0 {
		encOpts = append(encOpts, ocf.WithBlockLength(opts.BlockLength))
	}
	for i := 0; i < n; i++ {
		e := g.Next()
		s, ok := schemas[e.Type]
		if !ok {
			s = deriveSchema(g.cfg, e.Type)
			schemas[e.Type] = s
			path := filepath.Join(dir, "event_type="+e.Type, "date="+date,
				"dataexport.prod-01.S3.integration.bench+0+0000000000.avro")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, err
			}
			f, err := os.Create(path)
			if err != nil {
				return nil, err
			}
			files[path] = f
			enc, err := ocf.NewEncoder(s.json, f, encOpts...)
			if err != nil {
				return nil, fmt.Errorf("schema of %s: %w", e.Type, err)
			}
			encs[e.Type] = enc
		}
		rec, err := s.record(e)
		if err != nil {
			return nil, err
		}
		if err := encs[e.Type].Encode(rec); err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", e.Type, e.ID, err)
		}
	}
	for typ, enc := range encs {
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("closing %s: %w", typ, err)
		}
	}
	paths := make([]string, 0, len(files))
	for p, f := range files {
		if err := f.Close(); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	files = nil
	sort.Strings(paths)
	return paths, nil
}

func fmtHour(unix int64) string {
	// Days from civil, inverted (Howard Hinnant's algorithm), to avoid
	// importing time for one format.
	days := unix / 86400
	hour := unix % 86400 / 3600
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
		y++
	}
	return fmt.Sprintf("%04d-%02d-%02d-%02d", y, m, d, hour)
}

// avroSchema is a record schema and its field types.
type avroSchema struct {
	json  string
	types map[string]string
}

// deriveSchema builds the record schema of typ from a sample of the
// generator's events of that type.
func deriveSchema(cfg Config, typ string) *avroSchema {
	cfg.Mix = []Weight{{typ, 1}}
	cfg.Skew = 0
	g := New(cfg)
	types := map[string]string{}
	var order []string
	see := func(key string, v []byte) {
		t := "string"
		switch {
		case len(v) > 0 && (v[0] == 't' || v[0] == 'f'):
			t = "boolean"
		case len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9'):
			t = "long"
			if bytes.ContainsAny(v, ".eE") {
				t = "float"
			}
		}
		old, ok := types[key]
		if !ok {
			order = append(order, key)
		}
		if !ok || old == "long" && t == "float" {
			types[key] = t
		}
	}
	for i := 0; i < 2000; i++ {
		e := g.Next()
		for _, f := range e.Props {
			see(f.Key, f.Value)
		}
		if e.CustomKey != "" {
			see("properties", []byte(`""`))
		}
	}
	var b strings.Builder
	dot := strings.LastIndexByte(typ, '.')
	fmt.Fprintf(&b, `{"type":"record","name":%q,"namespace":%q,"fields":[`, typ[dot+1:], "dataexport.S3.inner."+typ[:dot])
	b.WriteString(`{"name":"id","type":"string"},{"name":"user_id","type":"string"},` +
		`{"name":"external_user_id","type":["null","string"],"default":null},` +
		`{"name":"device_id","type":["null","string"],"default":null},` +
		`{"name":"timezone","type":["null","string"],"default":null},{"name":"time","type":"int"}`)
	for _, k := range order {
		fmt.Fprintf(&b, `,{"name":%q,"type":["null",%q],"default":null}`, k, types[k])
	}
	b.WriteString("]}")
	return &avroSchema{json: b.String(), types: types}
}

// record converts e to the generic form the Avro encoder takes.
func (s *avroSchema) record(e *Event) (map[string]any, error) {
	rec := map[string]any{"id": e.ID, "user_id": e.UserID, "time": int(e.Time),
		"external_user_id": nullable(e.ExternalUserID), "device_id": nullable(e.DeviceID), "timezone": nullable(e.Timezone)}
	for _, f := range e.Props {
		t, ok := s.types[f.Key]
		if !ok {
			return nil, fmt.Errorf("%s field %s is not in the derived schema", e.Type, f.Key)
		}
		var v any
		var err error
		switch t {
		case "string":
			var x string
			err = json.Unmarshal(f.Value, &x)
			v = x
		case "boolean":
			v = f.Value[0] == 't'
		case "long":
			var x int64
			err = json.Unmarshal(f.Value, &x)
			v = x
		case "float":
			var x float32
			err = json.Unmarshal(f.Value, &x)
			v = x
		}
		if err != nil {
			return nil, fmt.Errorf("%s field %s: %w", e.Type, f.Key, err)
		}
		rec[f.Key] = v
	}
	if e.CustomKey != "" {
		rec["properties"] = string(appendObject(nil, e.Custom))
	}
	return rec, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
