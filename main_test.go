package main

import (
	"debug/buildinfo"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	rev := "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name          string
		version, date string
		info          *debug.BuildInfo
		wantV, wantD  string
	}{
		{"ldflags win", "v1.2.3", "2026-11-29", &debug.BuildInfo{Main: debug.Module{Version: "v9.0.0"}, Settings: vcs("vcs.revision", rev, "vcs.time", "2026-01-01T00:00:00Z")}, "v1.2.3", "2026-11-29"},
		{"go install module@version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, "v0.4.0", "unknown"},
		{"clone, clean", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("vcs.revision", rev, "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "false")}, "devel-0123456789ab", "2026-12-01T10:00:00Z"},
		{"clone, uncommitted changes", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("vcs.revision", rev, "vcs.modified", "true")}, "devel-0123456789ab-dirty", "unknown"},
		{"pseudo-version from the VCS", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201100000-0123456789ab+dirty"}, Settings: vcs("vcs.revision", rev)}, "v0.0.0-20261201100000-0123456789ab+dirty", "unknown"},
		{"nothing known", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev", "unknown"},
		{"no build info", "", "", nil, "dev", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, d := buildVersion(tc.version, tc.date, tc.info)
			if v != tc.wantV || d != tc.wantD {
				t.Fatalf("buildVersion = %q, %q; want %q, %q", v, d, tc.wantV, tc.wantD)
			}
		})
	}
}

// TestBinaryVersionAndHelp builds the binary as a user would and runs it:
// --version reports what the binary's own build information says (or the
// -ldflags value), and --help points at this project's documentation.
func TestBinaryVersionAndHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	stamped := filepath.Join(dir, "stamped")
	build := func(out string, args ...string) {
		t.Helper()
		cmd := exec.Command("go", append(append([]string{"build", "-o", out}, args...), ".")...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
	}
	run := func(bin string, args ...string) string {
		t.Helper()
		b, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, b)
		}
		return string(b)
	}
	build(plain)
	build(stamped, "-ldflags", "-X main.Version=v9.8.7 -X main.DateBuilt=2026-11-29T00:00:00Z")

	info, err := buildinfo.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	wantV, wantD := buildVersion("", "", info)
	if got, want := run(plain, "--version"), "Version: "+wantV+"\nDate: "+wantD+"\n"; got != want {
		t.Errorf("--version of a plain build = %q, want %q (from its build info)", got, want)
	}
	if got, want := run(stamped, "--version"), "Version: v9.8.7\nDate: 2026-11-29T00:00:00Z\n"; got != want {
		t.Errorf("--version with -ldflags = %q, want %q", got, want)
	}
	help := run(plain, "--help")
	if !strings.Contains(help, DocsURL) || strings.Contains(help, "benthos.dev") {
		t.Errorf("--help does not point at %s only:\n%s", DocsURL, help)
	}
	checkHelpLinks(t, run, plain)
}

// checkHelpLinks: every link under DocsURL in the help of the binary and of
// its commands is a folder of docs/ with a README.md (what GitHub renders
// for a tree URL), and no help points at benthos.dev.
func checkHelpLinks(t *testing.T, run func(string, ...string) string, bin string) {
	t.Helper()
	seen := 0
	for _, cmd := range []string{"", "blobl", "streams", "template", "test", "lint", "run", "list", "create", "echo"} {
		args := []string{"--help"}
		if cmd != "" {
			args = []string{cmd, "--help"}
		}
		help := run(bin, args...)
		if strings.Contains(help, "benthos.dev") {
			t.Errorf("%s --help points at benthos.dev:\n%s", cmd, help)
		}
		for _, field := range strings.Fields(help) {
			rest, ok := strings.CutPrefix(field, DocsURL)
			if !ok {
				continue
			}
			seen++
			page := filepath.Join("docs", filepath.FromSlash(strings.Trim(rest, "/.")), "README.md")
			if _, err := os.Stat(page); err != nil {
				t.Errorf("%s --help links to %s, but %s does not exist", cmd, field, page)
			}
		}
	}
	if seen < 5 {
		t.Errorf("found %d links to %s in the help texts, want at least 5 (the root, blobl, streams, template and test)", seen, DocsURL)
	}
}

// TestPluginImports keeps the plugin packages documented by cmd/gendocs the
// same as the ones built into the binary (the blank imports: a package main
// uses by name, such as runstatus, registers nothing).
func TestPluginImports(t *testing.T) {
	own := func(file string) []string {
		t.Helper()
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if imp.Name != nil && imp.Name.Name == "_" && strings.HasPrefix(p, "github.com/opencurrents/currents-amplitude/plugins/") {
				out = append(out, p)
			}
		}
		slices.Sort(out)
		return out
	}
	bin, gen := own("main.go"), own(filepath.Join("cmd", "gendocs", "main.go"))
	if len(bin) == 0 || !slices.Equal(bin, gen) {
		t.Fatalf("plugin imports differ:\n main.go:            %v\n cmd/gendocs/main.go: %v", bin, gen)
	}
}

// TestExitCode: a run a component recorded as failed exits 1 even when
// Benthos would exit 0; Benthos' own codes stay.
func TestExitCode(t *testing.T) {
	failed := errors.New("amplitude_reconcile: no report written: boom")
	for _, tc := range []struct {
		name     string
		code     int
		err, run error
		want     int
		stderr   string
	}{
		{"success", 0, nil, nil, 0, ""},
		{"run failed", 0, nil, failed, 1, "currents-amplitude: the run failed: amplitude_reconcile: no report written: boom\n"},
		{"lint errors", 1, nil, nil, 1, ""},
		{"Benthos' code wins", 3, nil, failed, 3, ""},
		{"CLI error", 1, errors.New("bad flag"), nil, 1, "bad flag\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			if got := exitCode(tc.code, tc.err, tc.run, &stderr); got != tc.want || stderr.String() != tc.stderr {
				t.Fatalf("exitCode = %d, stderr %q; want %d, %q", got, stderr.String(), tc.want, tc.stderr)
			}
		})
	}
}
