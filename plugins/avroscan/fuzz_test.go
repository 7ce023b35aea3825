package avroscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamba/avro/v2/ocf"

	"github.com/opencurrents/currents-amplitude/plugins/internal/refdata"
)

// FuzzDecode feeds arbitrary bytes to the container reader and decoder:
// they must never panic, never exceed their limits, and produce valid JSON
// records or a *formatError.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 60s ./plugins/avroscan
func FuzzDecode(f *testing.F) {
	for _, codec := range []ocf.CodecName{ocf.Null, ocf.Deflate, ocf.Snappy, ocf.ZStandard} {
		data, _, _ := genFile(f, codec, 5, 2)
		f.Add(data)
	}
	f.Add(mismatchedFile(f, 3))
	if dir, ok := refdata.Find("avro"); ok {
		files, _ := filepath.Glob(filepath.Join(dir, "*.avro"))
		for _, p := range files[:min(len(files), 8)] {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("Obj\x01"))
	f.Add([]byte{})

	lim := limits{blockBytes: 1 << 16, blockRecords: 1 << 10, jsonBytes: 1 << 18}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := newOCFReader(bytes.NewReader(data), lim)
		if err != nil {
			var fe *formatError
			if !errors.As(err, &fe) {
				t.Fatalf("header error is not a *formatError: %v", err)
			}
			return
		}
		defer o.close()
		for {
			b, err := o.next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				var fe *formatError
				if !errors.As(err, &fe) || fe.block < 0 {
					t.Fatalf("block error is not a block *formatError: %v", err)
				}
				return
			}
			if len(b.json) > lim.jsonBytes {
				t.Fatalf("block JSON of %d bytes exceeds the limit", len(b.json))
			}
			for i := range b.len() {
				if rec := b.record(i); !json.Valid(rec) {
					t.Fatalf("block %d record %d is not valid JSON: %q", b.index, i, rec)
				}
			}
		}
	})
}
