// Command currents-amplitude is a Benthos distribution that forwards Braze
// Currents events to Amplitude and syncs Amplitude cohorts back into Braze.
//
// It is the Benthos CLI (run, lint, test, echo, list, create, blobl...) with
// Benthos' core components plus the plugins under ./plugins.
package main

//go:generate go run ./cmd/gendocs -out docs/components

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	// The plugin packages of this distribution. cmd/gendocs imports the same
	// list (TestPluginImports keeps them equal).
	_ "github.com/opencurrents/currents-amplitude/plugins/all"
	_ "github.com/opencurrents/currents-amplitude/plugins/kafka"
	_ "github.com/opencurrents/currents-amplitude/plugins/prometheus"
	"github.com/opencurrents/currents-amplitude/plugins/runstatus"
)

// Version and DateBuilt may be set at build time with
// -ldflags "-X main.Version=v1.2.3 -X main.DateBuilt=2026-11-29T00:00:00Z".
// Left empty, they come from the build information Go records in the binary
// (the module version of `go install ...@v1.2.3`, or the VCS revision and
// commit time of a build from a clone).
var (
	Version   string
	DateBuilt string
)

// DocsURL is the documentation shown by `currents-amplitude --help`: the
// docs/ folder of the repository. Benthos appends paths to it in the help of
// its own tools (`blobl`: /guides/bloblang/about, `streams`:
// /guides/streams_mode/about, `template`: /configuration/templating, `test`:
// /configuration/unit_testing); each is a folder of docs/ whose README.md
// points at the Redpanda Connect page (TestHelpLinks checks them).
const DocsURL = "https://github.com/opencurrents/currents-amplitude/tree/main/docs"

// DefaultConfigPaths are where `currents-amplitude run` without a config file
// looks for one: the conventional path of the Docker image first.
var DefaultConfigPaths = []string{"/etc/currents-amplitude/config.yaml", "./config.yaml"}

func main() {
	info, _ := debug.ReadBuildInfo()
	version, built := buildVersion(Version, DateBuilt, info)
	code, err := service.RunCLIToCode(
		context.Background(),
		service.CLIOptSetVersion(version, built),
		service.CLIOptSetBinaryName("currents-amplitude"),
		service.CLIOptSetProductName("Currents to Amplitude"),
		service.CLIOptSetDocumentationURL(DocsURL),
		service.CLIOptSetDefaultConfigPaths(DefaultConfigPaths...),
	)
	os.Exit(exitCode(code, err, runstatus.Err(), os.Stderr))
}

// exitCode is the exit code of the process: Benthos' own, or 1 when a
// component recorded a failure of the run (runstatus) in a stream that
// otherwise ended normally. Errors are written to stderr.
func exitCode(code int, err, runErr error, stderr io.Writer) int {
	if err != nil {
		fmt.Fprintln(stderr, err)
	}
	if code == 0 && runErr != nil {
		fmt.Fprintf(stderr, "currents-amplitude: the run failed: %v\n", runErr)
		return 1
	}
	return code
}

// buildVersion returns the version and build date to report: the values set
// with -ldflags when there are any, otherwise the module version (when it is
// a release, not "(devel)"), otherwise "devel-" and the first 12 characters of
// the VCS revision (with "-dirty" for uncommitted changes), otherwise "dev".
// The date is the VCS commit time when not set, otherwise "unknown".
func buildVersion(version, date string, info *debug.BuildInfo) (string, string) {
	var rev, vcsTime string
	modified := false
	if info != nil {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if version == "" {
		switch {
		case info != nil && info.Main.Version != "" && info.Main.Version != "(devel)":
			version = info.Main.Version
		case rev != "":
			version = "devel-" + rev[:min(12, len(rev))]
			if modified {
				version += "-dirty"
			}
		default:
			version = "dev"
		}
	}
	if date == "" {
		date = vcsTime
		if date == "" {
			date = "unknown"
		}
	}
	return version, date
}
