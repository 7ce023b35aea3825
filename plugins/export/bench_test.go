package export_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/export"
	"github.com/opencurrents/currents-amplitude/plugins/export/exporttest"
)

const benchRows = 50_000

// benchArchive returns an Export API answer of benchRows events over two
// hours, as the fake server builds it.
func benchArchive(b *testing.B) []byte {
	b.Helper()
	srv := exporttest.NewServer(exporttest.Options{APIKey: "k", SecretKey: "s", RowsPerFile: 10_000})
	defer srv.Close()
	for i := range benchRows {
		at := day.Add(time.Duration(i) * 144 * time.Millisecond)
		srv.Add(exporttest.Event{InsertID: fmt.Sprintf("5d0b7a6e-1c2f-4e8a-9b3d-%012d", i), EventType: "[Appboy] Email Open",
			UserID: fmt.Sprintf("usr_%09d", i%5000), Time: at})
	}
	c := export.NewClient(srv.URL, "k", "s", srv.Client(), b.TempDir())
	f, size, err := c.Download(context.Background(), day, day.Add(time.Hour))
	if err != nil || f == nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := make([]byte, size)
	if _, err := f.ReadAt(out, 0); err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkExportArchive decodes an Export API answer into compact records:
// this package's streaming reader, and side by side the plain Benthos
// processors (unarchive zip, decompress gzip, unarchive lines, a mapping),
// which hold the whole archive and every entry in memory.
func BenchmarkExportArchive(b *testing.B) {
	zipped := benchArchive(b)
	b.Run("streaming", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(zipped)))
		var buf []byte
		for b.Loop() {
			a, err := export.OpenArchive(bytes.NewReader(zipped), int64(len(zipped)))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for {
				line, err := a.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				ev, err := export.ParseEvent(line)
				if err != nil {
					b.Fatal(err)
				}
				buf = export.AppendCompact(buf[:0], ev)
				n++
			}
			if n != benchRows {
				b.Fatalf("%d rows", n)
			}
		}
		b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("benthos_processors", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(zipped)))
		for b.Loop() {
			var n atomic.Int64
			sb := service.NewStreamBuilder()
			_ = sb.SetLoggerYAML("level: off")
			send, err := sb.AddProducerFunc()
			if err != nil {
				b.Fatal(err)
			}
			for _, p := range []string{
				"unarchive: { format: zip }",
				"decompress: { algorithm: gzip }",
				"unarchive: { format: lines }",
				`mapping: 'root = {"insert_id": this."$insert_id", "event_type": this.event_type, "time": this.client_event_time.ts_strptime("%Y-%m-%d %H:%M:%S.%f").ts_unix_milli(), "user_id": this.user_id}'`,
			} {
				if err := sb.AddProcessorYAML(p); err != nil {
					b.Fatal(err)
				}
			}
			if err := sb.AddBatchConsumerFunc(func(_ context.Context, mb service.MessageBatch) error {
				n.Add(int64(len(mb)))
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			st, err := sb.Build()
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- st.Run(context.Background()) }()
			if err := send(context.Background(), service.NewMessage(zipped)); err != nil {
				b.Fatal(err)
			}
			_ = st.Stop(context.Background())
			<-done
			if n.Load() < benchRows { // plus an empty line per file
				b.Fatalf("%d rows", n.Load())
			}
		}
		b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
