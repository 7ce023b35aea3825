package reconcile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/s2"
)

// FuzzDecodeRecord checks the spill record decoder on arbitrary bytes: no
// panic, and what it accepts encodes back to the bytes it consumed.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, "5d0b7a6e-1c2f-4e8a", sideExpected, 1767225600000, "[Appboy] Email Open", []byte(`{"insert_id":"x"}`)))
	f.Add(appendRecord(nil, "", sidePresent, -1, "", nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r record
		n, err := decodeRecord(b, &r)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		again := appendRecord(nil, string(r.id), r.side, r.time, string(r.typ), r.body)
		var r2 record
		if _, err := decodeRecord(again, &r2); err != nil || !bytes.Equal(r2.id, r.id) || r2.time != r.time || !bytes.Equal(r2.body, r.body) {
			t.Fatalf("re-encoded record decodes to %+v, %v", r2, err)
		}
	})
}

// FuzzRunReader checks the run file reader on arbitrary (damaged) content:
// it ends with an error or io.EOF, never panics or loops.
func FuzzRunReader(f *testing.F) {
	f.Add(appendRecord(appendRecord(nil, "a", sideExpected, 1, "t", nil), "b", sidePresent, 2, "t", nil))
	f.Add([]byte{5, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "run")
		fh, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w := s2.NewWriter(fh)
		_, _ = w.Write(b)
		_ = w.Close()
		_ = fh.Close()
		r, err := openRun(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.f.Close()
		for i := 0; i <= len(b); i++ {
			if err := r.next(); err != nil {
				return
			}
		}
		t.Fatalf("more records than bytes")
	})
}
