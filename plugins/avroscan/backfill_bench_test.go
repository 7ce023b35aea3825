package avroscan

import (
	"context"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"
)

// BenchmarkBackfill is the backfill pipeline's work per record in one
// process: the scanner in batches of 500 (with the metadata the file input
// adds), the shallow copy Benthos makes before the processors, and
// braze_to_amplitude. One op is one file of benchRecords records; ns/record
// and allocs/record are reported.
//
//	go test -run '^$' -bench BenchmarkBackfill -benchmem ./plugins/avroscan
func BenchmarkBackfill(b *testing.B) {
	path := writeBenchFile(b, b.TempDir(), ocf.Null, 0)
	pconf, err := service.NewConfigSpec().Field(service.NewProcessorField("p")).ParseYAML("p:\n  braze_to_amplitude: {}", nil)
	require.NoError(b, err)
	proc, err := pconf.FieldProcessor("p")
	require.NoError(b, err)
	b.Cleanup(func() { _ = proc.Close(context.Background()) })
	for _, process := range []bool{false, true} {
		name := "scan"
		if process {
			name = "scan_and_map"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			c := newTestCreator(b, "    batch_size: 500")
			ctx := context.Background()
			modTime := time.Unix(1764633600, 0).UTC()
			n := 0
			for b.Loop() {
				n += scanFile(ctx, b, c, path, func(batch service.MessageBatch) {
					for _, m := range batch { // as Benthos' file input does
						m.MetaSetMut("path", path)
						m.MetaSetMut("mod_time_unix", modTime.Unix())
						m.MetaSetMut("mod_time", modTime.Format(time.RFC3339))
					}
					if process {
						out, err := proc.ProcessBatch(ctx, batch.Copy())
						require.NoError(b, err)
						require.Len(b, out, 1)
						require.Len(b, out[0], len(batch))
					}
				})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
			b.ReportMetric(0, "ns/op")
		})
	}
}
