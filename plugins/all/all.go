// Package all registers the Braze and Amplitude plugins of this distribution
// with Benthos' global environment. Blank-import it to add them to your own
// Benthos or Redpanda Connect build:
//
//	import _ "github.com/opencurrents/currents-amplitude/plugins/all"
//
// The Kafka (kafka_franz) and Prometheus plugins are not included: Redpanda
// Connect already has components of those names. This distribution imports
// them from plugins/kafka and plugins/prometheus in main.go.
package all

import (
	// Each package registers its components in init().
	_ "github.com/opencurrents/currents-amplitude/plugins/amplitude"
	_ "github.com/opencurrents/currents-amplitude/plugins/avroscan"
	_ "github.com/opencurrents/currents-amplitude/plugins/cohort"
	_ "github.com/opencurrents/currents-amplitude/plugins/currents"
	_ "github.com/opencurrents/currents-amplitude/plugins/dlq"
	_ "github.com/opencurrents/currents-amplitude/plugins/ingest"
	_ "github.com/opencurrents/currents-amplitude/plugins/profile"
	_ "github.com/opencurrents/currents-amplitude/plugins/progress"
	_ "github.com/opencurrents/currents-amplitude/plugins/ratelimit"
	_ "github.com/opencurrents/currents-amplitude/plugins/reconcile"
	_ "github.com/opencurrents/currents-amplitude/plugins/replay"
	_ "github.com/opencurrents/currents-amplitude/plugins/store"

	"github.com/opencurrents/currents-amplitude/plugins/internal/idtable"
)

// OffHeapBytes returns the memory that the plugins' per-id tables (the
// amplitude output's pacing budgets, device_rate_limit's keys) hold outside
// the Go heap: on Linux they are mapped directly, so Go's memory statistics
// (runtime.MemStats, the go_memstats metrics) do not include them. It is 0
// on other platforms, where the tables are in the heap.
func OffHeapBytes() int64 { return idtable.Mapped() }
