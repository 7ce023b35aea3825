package currentsgen

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"
)

func TestWriteAvro(t *testing.T) {
	for _, codec := range []string{"", "deflate", "snappy"} {
		dir := t.TempDir()
		const n = 3000
		paths, err := WriteAvro(dir, New(Config{Seed: 5, Devices: 300}), n, AvroOptions{Codec: codec, BlockLength: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) != len(DefaultMix) {
			t.Errorf("codec %q: %d files, want one per type (%d)", codec, len(paths), len(DefaultMix))
		}
		total := 0
		for _, p := range paths {
			rel, _ := filepath.Rel(dir, p)
			typ := strings.TrimPrefix(strings.Split(rel, string(filepath.Separator))[0], "event_type=")
			if _, ok := kindByType[typ]; !ok || !strings.Contains(rel, "date=2026-01-01-00") {
				t.Fatalf("unexpected layout %s", rel)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := ocf.NewDecoder(f)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(dec.Metadata()["avro.schema"]); !strings.Contains(got, `"name":"dataexport.S3.inner.`+typ+`"`) {
				t.Fatalf("schema without Braze namespace: %s", got)
			}
			for dec.HasNext() {
				var rec map[string]any
				if err := dec.Decode(&rec); err != nil {
					t.Fatalf("%s: %v", rel, err)
				}
				if rec["id"] == "" || rec["time"] == nil {
					t.Fatalf("%s: record without id or time: %v", rel, rec)
				}
				if typ == "users.behaviors.Purchase" {
					if _, ok := rec["price"].(float32); !ok {
						t.Fatalf("purchase price is not an Avro float: %#v", rec["price"])
					}
					var props map[string]any
					if err := json.Unmarshal([]byte(rec["properties"].(string)), &props); err != nil {
						t.Fatalf("purchase properties is not a JSON string: %v", err)
					}
				}
				total++
			}
			if err := dec.Error(); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		if total != n {
			t.Errorf("codec %q: decoded %d records, want %d", codec, total, n)
		}
	}
}

func TestFmtHour(t *testing.T) {
	for _, unix := range []int64{0, 1767225600, 1709164800 + 3600*13, 951782400, 4102444799} {
		if got, want := fmtHour(unix), time.Unix(unix, 0).UTC().Format("2006-01-02-15"); got != want {
			t.Errorf("fmtHour(%d) = %s, want %s", unix, got, want)
		}
	}
}
