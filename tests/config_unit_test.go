package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/opencurrents/currents-amplitude/plugins/all"
	_ "github.com/opencurrents/currents-amplitude/plugins/kafka"
	_ "github.com/opencurrents/currents-amplitude/plugins/prometheus"
)

// TestConfigUnitTests runs the Benthos config unit tests of every pipeline in
// config/ (what `currents-amplitude test ./config/...` does), one subtest per
// file, so that `go test ./...` covers them. Benthos fails a file that has no
// test, so every shipped pipeline must carry its own.
//
// Benthos lints each pipeline before its tests, and an empty key is a lint
// error: the placeholder keys of config/lint.env (the file the README's
// `test -e config/lint.env` command reads) stand in for them.
func TestConfigUnitTests(t *testing.T) {
	setLintEnv(t)
	files := configFiles(t)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			code, err := service.RunCLIToCode(context.Background(),
				service.CLIOptSetArgs("currents-amplitude", "test", "--log", "error", f))
			if err != nil {
				t.Fatalf("config unit tests of %s: %v", f, err)
			}
			if code != 0 {
				t.Fatalf("config unit tests of %s failed (exit code %d): see the report above", f, code)
			}
		})
	}
}

// setLintEnv sets the placeholder keys of config/lint.env for the test (a
// dotenv file: KEY=VALUE lines and # comments).
func setLintEnv(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("../config/lint.env")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("config/lint.env: not KEY=VALUE: %q", line)
		}
		t.Setenv(k, v)
		n++
	}
	if n == 0 {
		t.Fatal("config/lint.env sets no variable")
	}
}

// configFiles lists the pipelines under config/ (tests in sibling
// *_benthos_test.yaml files are found by Benthos itself).
func configFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"../config/*.yaml", "../config/*/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			if !strings.HasSuffix(f, "_benthos_test.yaml") {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		t.Fatal("no pipeline found under config/")
	}
	return files
}
