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

	"github.com/opencurrents/currents-amplitude/plugins/avroscan/avroscantest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/refdata"
)

// FuzzDecode feeds arbitrary bytes to the container reader and decoder:
// they must never panic, never exceed their limits, and produce valid JSON
// records or a *formatError.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 60s ./plugins/avroscan
func FuzzDecode(f *testing.F) {
	for _, codec := range []ocf.CodecName{ocf.Null, ocf.Deflate, ocf.Snappy, ocf.ZStandard} {
		data, _, _ := avroscantest.File(f, codec, 5, 2)
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

// FuzzScanDamaged runs the whole scanner (on_damage: dead_letter, the
// default) over arbitrary bytes: it must end, acknowledge the source once,
// and emit only valid JSON: records, or dead-letter messages (failed, with
// the block's description), never more messages than there are bytes.
//
//	go test -run '^$' -fuzz FuzzScanDamaged -fuzztime 60s ./plugins/avroscan
func FuzzScanDamaged(f *testing.F) {
	data, _, ends := avroscantest.File(f, ocf.Snappy, 30, 5)
	f.Add(data)
	f.Add(data[:ends[2]+7])
	corrupt := bytes.Clone(data)
	corrupt[ends[0]] ^= 0xff
	f.Add(corrupt)
	f.Add(append(bytes.Clone(data), 0x02, 0x04, 'x'))
	f.Fuzz(func(t *testing.T, data []byte) {
		res := scan(t, "    max_block_size: 65536\n    max_block_records: 1024", "f.avro", data)
		if !res.acked {
			t.Fatal("source not acknowledged")
		}
		if len(res.msgs) > len(data)+1 {
			t.Fatalf("%d messages from %d bytes", len(res.msgs), len(data))
		}
		for _, m := range res.msgs {
			b, err := m.AsBytes()
			if err != nil || !json.Valid(b) {
				t.Fatalf("message is not valid JSON: %q", b)
			}
		}
	})
}
