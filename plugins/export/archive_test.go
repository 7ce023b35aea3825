package export

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"
)

// buildZip writes entries (name -> content), gzipping those ending in .gz.
func buildZip(t testing.TB, entries [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.Create(e[0])
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e[0], ".gz") {
			gz := gzip.NewWriter(w)
			_, _ = gz.Write([]byte(e[1]))
			_ = gz.Close()
		} else {
			_, _ = w.Write([]byte(e[1]))
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll returns every line and every error of an archive.
func readAll(t testing.TB, b []byte) (lines []string, errs []error) {
	t.Helper()
	a, err := OpenArchive(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, []error{err}
	}
	defer a.Close()
	for i := 0; ; i++ {
		if i > 1<<20 {
			t.Fatal("archive reader does not end")
		}
		line, err := a.Next()
		if err == io.EOF {
			return lines, errs
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lines = append(lines, string(line))
	}
}

func TestArchive(t *testing.T) {
	long := strings.Repeat("x", MaxLineLength+10)
	damaged := buildZip(t, [][2]string{{"1/1_2026-01-01_0#0.json.gz", "a\nb\n"}})
	cases := []struct {
		name      string
		zip       []byte
		lines     []string
		errSubstr []string
	}{
		{
			name: "gzipped and plain entries, blank lines, no final newline",
			zip: buildZip(t, [][2]string{
				{"123/", ""},
				{"123/123_2026-01-01_10#0.json.gz", "{\"a\":1}\n\n{\"a\":2}\n"},
				{"123/123_2026-01-01_10#1.json.gz", "{\"a\":3}"},
				{"123/123_2026-01-01_11#0.json", "{\"a\":4}\r\n"},
			}),
			lines: []string{`{"a":1}`, `{"a":2}`, `{"a":3}`, "{\"a\":4}\r"},
		},
		{
			name:      "overlong line skipped, the next read",
			zip:       buildZip(t, [][2]string{{"x.json.gz", "first\n" + long + "\nlast\n"}}),
			lines:     []string{"first", "last"},
			errSubstr: []string{"x.json.gz line 2: row longer"},
		},
		{
			name:      "not a zip",
			zip:       []byte("<html>maintenance</html>"),
			errSubstr: []string{"export archive: zip: not a valid zip file"},
		},
		{
			name:      "empty archive",
			zip:       buildZip(t, nil),
			lines:     nil,
			errSubstr: nil,
		},
		{
			name:      "damaged entry, the next entry read",
			zip:       corruptFirstEntry(t, damaged, buildZip(t, [][2]string{{"ok.json", "c\n"}})),
			lines:     []string{"c"},
			errSubstr: []string{"1/1_2026-01-01_0#0.json.gz"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines, errs := readAll(t, tc.zip)
			if strings.Join(lines, "|") != strings.Join(tc.lines, "|") {
				t.Errorf("lines %q, want %q", lines, tc.lines)
			}
			if len(errs) != len(tc.errSubstr) {
				t.Fatalf("errors %v, want %d", errs, len(tc.errSubstr))
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tc.errSubstr[i]) {
					t.Errorf("error %q lacks %q", err, tc.errSubstr[i])
				}
				if strings.Contains(tc.errSubstr[i], "longer") && !errors.Is(err, ErrLineTooLong) {
					t.Errorf("error %v is not ErrLineTooLong", err)
				}
			}
		})
	}
}

// corruptFirstEntry returns a zip whose first entry is the damaged gzip of
// src's first entry, followed by the entries of next.
func corruptFirstEntry(t *testing.T, src, next []byte) []byte {
	t.Helper()
	zr, _ := zip.NewReader(bytes.NewReader(src), int64(len(src)))
	fr, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	gzBytes, _ := io.ReadAll(fr)
	// Keep the gzip header, damage the compressed data.
	for i := 12; i < len(gzBytes)-8; i++ {
		gzBytes[i] ^= 0xff
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: zr.File[0].Name, Method: zip.Store})
	_, _ = w.Write(gzBytes)
	nr, _ := zip.NewReader(bytes.NewReader(next), int64(len(next)))
	for _, f := range nr.File {
		if err := zw.Copy(f); err != nil {
			t.Fatal(err)
		}
	}
	_ = zw.Close()
	return buf.Bytes()
}

func FuzzArchive(f *testing.F) {
	f.Add(buildZip(f, [][2]string{{"a.json.gz", "{\"$insert_id\":\"a\"}\nb\n"}, {"b.json", "c"}}))
	f.Add([]byte("PK\x03\x04garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, _ := readAll(t, b)
		for _, l := range lines {
			if len(l) > MaxLineLength {
				t.Fatalf("line of %d bytes", len(l))
			}
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"$insert_id":"e1","event_type":"x","client_event_time":"2026-01-01 10:59:59.999000"}`))
	f.Add([]byte(`{"insert_id":"e3","event_type":"x","time":1767225600000,"user_id":"u1"}`))
	f.Add([]byte(`{"insert_id":"e3","event_type":"x","time":-9223372036854775808}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvent(b)
		if err != nil {
			return
		}
		if ev.InsertID == "" || ev.EventType == "" {
			t.Fatalf("accepted an event without id or type: %+v", ev)
		}
		back, err := ParseEvent(AppendCompact(nil, ev))
		if err != nil {
			t.Fatalf("compact record of %+v does not decode: %v", ev, err)
		}
		if back.Time != ev.Time || back.UserID != ev.UserID || back.DeviceID != ev.DeviceID {
			t.Fatalf("round trip %+v -> %+v", ev, back)
		}
	})
}
