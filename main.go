// Command currents-amplitude is a Benthos distribution that forwards Braze
// Currents events to Amplitude and syncs Amplitude cohorts back into Braze.
//
// It is the Benthos CLI (run, lint, test, echo, list, create, blobl...) with
// Benthos' core components plus the plugins under ./plugins.
package main

import (
	"context"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	_ "github.com/opencurrents/currents-amplitude/plugins/all"
	_ "github.com/opencurrents/currents-amplitude/plugins/kafka"
	_ "github.com/opencurrents/currents-amplitude/plugins/prometheus"
)

// Version and DateBuilt are set at build time with
// -ldflags "-X main.Version=v1.2.3 -X main.DateBuilt=2026-11-29T00:00:00Z".
var (
	Version   = "dev"
	DateBuilt = "unknown"
)

func main() {
	service.RunCLI(
		context.Background(),
		service.CLIOptSetVersion(Version, DateBuilt),
		service.CLIOptSetBinaryName("currents-amplitude"),
		service.CLIOptSetProductName("Currents to Amplitude"),
	)
}
