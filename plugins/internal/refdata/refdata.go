// Package refdata locates Braze's public Currents samples for tests.
//
// The samples are not part of this repository (their licence forbids
// copying): tests read them from the shared reference folder next to the
// checkout and skip, with a message, where it is absent.
package refdata

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// roots are the folders, relative to the shared folder, that may hold a
// sample sub-folder such as "avro" or "custom-http-samples".
var roots = []string{
	filepath.Join("reference", "currents"),
	"currents-schemas",
}

// Dir returns the absolute path of the sample folder sub (one of "avro",
// "avro-as-json", "avsc", "avsc-removed", "custom-http-samples"), searching
// for a "shared" folder beside any parent of the working directory. The
// environment variable CURRENTS_SAMPLES_DIR, when set, names a folder that
// holds sub directly. The test is skipped when the folder cannot be found.
func Dir(tb testing.TB, sub string) string {
	tb.Helper()
	if dir, ok := Find(sub); ok {
		return dir
	}
	tb.Skipf("Braze Currents samples %q not found (looked for ../shared beside the checkout, or $CURRENTS_SAMPLES_DIR): skipping", sub)
	return ""
}

// Find is Dir without a test: it reports whether the folder was found.
func Find(sub string) (string, bool) {
	if env := os.Getenv("CURRENTS_SAMPLES_DIR"); env != "" {
		if isDir(filepath.Join(env, sub)) {
			return filepath.Join(env, sub), true
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		for _, root := range roots {
			candidate := filepath.Join(dir, "shared", root, sub)
			if isDir(candidate) {
				return candidate, true
			}
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", false
		}
	}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// Sample is one file of a sample folder.
type Sample struct {
	// Name is the file name without its extension: the event type.
	Name string
	// Path is the file's absolute path.
	Path string
	// Data is the file's content.
	Data []byte
}

// Samples returns every file of the sample folder sub whose name ends in
// ext (such as ".avro"), in name order. The test fails when there is none,
// and is skipped when the folder cannot be found.
func Samples(tb testing.TB, sub, ext string) []Sample {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(Dir(tb, sub), "*"+ext))
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 {
		tb.Fatalf("no %s file in the sample folder %q", ext, sub)
	}
	out := make([]Sample, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = Sample{Name: strings.TrimSuffix(filepath.Base(p), ext), Path: p, Data: data}
	}
	return out
}
