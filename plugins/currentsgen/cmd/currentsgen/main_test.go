package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		lines     int
		wantError string
	}{
		{args: []string{"-n", "5"}, lines: 5},
		{args: []string{"-n", "5", "-shape", "flat"}, lines: 5},
		{args: []string{"-n", "250", "-shape", "body", "-batch", "100"}, lines: 3},
		{args: []string{"-shape", "avro"}, wantError: "-shape avro needs -o"},
		{args: []string{"-shape", "xml"}, wantError: `unknown -shape "xml"`},
		{args: []string{"-shape", "body", "-batch", "0"}, wantError: "-batch must be positive"},
	} {
		var out bytes.Buffer
		err := run(tc.args, &out)
		if tc.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.wantError)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != tc.lines {
			t.Errorf("%v: %d lines, want %d", tc.args, len(lines), tc.lines)
		}
		for _, l := range lines {
			if !json.Valid([]byte(l)) {
				t.Errorf("%v: invalid JSON line %s", tc.args, l)
			}
		}
	}
	dir := t.TempDir()
	if err := run([]string{"-n", "500", "-shape", "avro", "-codec", "snappy", "-o", dir}, nil); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "event_type=*", "date=*", "*.avro"))
	if len(files) == 0 {
		t.Fatal("no Avro files written")
	}
}
