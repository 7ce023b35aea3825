package tests

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readmePipelines are the short names the README's environment table uses.
var readmePipelines = map[string]string{
	"quick":     "quickstart.yaml",
	"live":      "currents_http_to_amplitude.yaml",
	"replay":    "currents_replay_to_amplitude.yaml",
	"backfill":  "currents_storage_backfill.yaml",
	"k-in":      "currents_http_to_kafka.yaml",
	"k-out":     "kafka_to_amplitude.yaml",
	"cohorts":   "amplitude_cohorts_to_braze.yaml",
	"webhook":   "amplitude_cohort_webhook_to_braze.yaml",
	"profiles":  "connected_content_profiles.yaml",
	"reconcile": "reconcile.yaml",
}

// TestReadmeEnvTable checks the README's environment-variable table against
// the variables each shipped pipeline reads (`${VAR...}` and `env("VAR")`
// outside comments): every variable a pipeline reads is listed for it, and
// none is listed for a pipeline that does not read it.
func TestReadmeEnvTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	start := strings.Index(string(readme), "<!-- env-table:start -->")
	end := strings.Index(string(readme), "<!-- env-table:end -->")
	require.True(t, start >= 0 && end > start, "README.md lacks the env-table markers")
	listed := map[string][]string{} // variable -> sorted pipeline files
	row := regexp.MustCompile("^\\| ((?:`[A-Z0-9_]+`(?:, )?)+) \\| ([^|]+) \\|")
	varName := regexp.MustCompile("`([A-Z0-9_]+)`")
	for _, line := range strings.Split(string(readme)[start:end], "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var files []string
		for _, p := range strings.Split(m[2], ",") {
			f, ok := readmePipelines[strings.TrimSpace(p)]
			require.True(t, ok, "README env table: unknown pipeline %q in %q", strings.TrimSpace(p), line)
			files = append(files, f)
		}
		slices.Sort(files)
		for _, v := range varName.FindAllStringSubmatch(m[1], -1) {
			require.NotContains(t, listed, v[1], "README env table lists %s twice", v[1])
			listed[v[1]] = files
		}
	}
	require.NotEmpty(t, listed)

	read := map[string][]string{}
	ref := regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)|env\("([A-Z_][A-Z0-9_]*)"\)`)
	for _, f := range slices.Sorted(maps.Values(readmePipelines)) {
		b, err := os.ReadFile(filepath.Join("../config", f))
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, m := range ref.FindAllStringSubmatch(line, -1) {
				v := m[1] + m[2]
				if !slices.Contains(read[v], f) {
					read[v] = append(read[v], f)
				}
			}
		}
	}
	for v, files := range read {
		slices.Sort(files)
		if !slices.Equal(listed[v], files) {
			t.Errorf("%s is read by %v but the README lists it for %v", v, files, listed[v])
		}
	}
	for v, files := range listed {
		if _, ok := read[v]; !ok {
			t.Errorf("the README lists %s for %v, which no pipeline reads", v, files)
		}
	}
	// Every shipped pipeline has a short name.
	all, err := filepath.Glob("../config/*.yaml")
	require.NoError(t, err)
	for _, f := range all {
		base := filepath.Base(f)
		if strings.HasSuffix(base, "_benthos_test.yaml") {
			continue
		}
		found := false
		for _, p := range readmePipelines {
			found = found || p == base
		}
		if !found {
			t.Errorf("config/%s has no short name in the README's environment table (readmePipelines)", base)
		}
	}
}
