package avroscan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/avroscan/avroscantest"
)

// benchRecords is the number of records in the benchmark files, in blocks
// of benchPerBlock (about 64 KB, as Braze's writer makes them).
const (
	benchRecords  = 20000
	benchPerBlock = 250
)

// writeBenchFile writes a benchmark file with codec, records first to
// first+benchRecords-1, and returns its path.
func writeBenchFile(b *testing.B, dir string, codec ocf.CodecName, first int) string {
	b.Helper()
	data, _, _ := avroscantest.Records(b, codec, benchRecords, benchPerBlock, func(i int) any { return avroscantest.Identified(first + i) })
	p := filepath.Join(dir, "event_type=users.behaviors.Purchase", fmt.Sprintf("date=2026-11-29-%02d", first/benchRecords), string(codec)+".avro")
	require.NoError(b, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(b, os.WriteFile(p, data, 0o644))
	return p
}

// reportRecords reports records/s over the whole benchmark.
func reportRecords(b *testing.B, perOp int) {
	b.ReportMetric(float64(perOp)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDecode compares, per codec, reading a file of 20,000 Braze-like
// records: the raw read (the floor), this package's block decoder, the whole
// scanner (messages with metadata, record by record and in batches of 500),
// and hamba's generic OCF decoder with encoding/json (the obvious
// alternative).
//
//	go test -run '^$' -bench BenchmarkDecode -benchmem ./plugins/avroscan
func BenchmarkDecode(b *testing.B) {
	dir := b.TempDir()
	for _, codec := range []ocf.CodecName{ocf.Null, ocf.Snappy, ocf.Deflate} {
		path := writeBenchFile(b, dir, codec, 0)
		st, err := os.Stat(path)
		require.NoError(b, err)

		b.Run(string(codec)+"/raw_read", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(st.Size())
			for b.Loop() {
				f, err := os.Open(path)
				require.NoError(b, err)
				_, err = io.Copy(io.Discard, bufio.NewReaderSize(f, 64<<10))
				require.NoError(b, err)
				f.Close()
			}
			reportRecords(b, benchRecords)
		})
		b.Run(string(codec)+"/currents_avro_decoder", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(st.Size())
			lim := limits{blockBytes: 16 << 20, blockRecords: 1 << 20, jsonBytes: 256 << 20}
			for b.Loop() {
				f, err := os.Open(path)
				require.NoError(b, err)
				o, err := newOCFReader(f, lim)
				require.NoError(b, err)
				n := 0
				for {
					blk, err := o.next()
					if errors.Is(err, io.EOF) {
						break
					}
					require.NoError(b, err)
					n += blk.len()
				}
				require.Equal(b, benchRecords, n)
				o.close()
				f.Close()
			}
			reportRecords(b, benchRecords)
		})
		// Record by record (the default) and in batches of 500, as the
		// backfill pipeline reads.
		for _, sc := range []struct{ name, yaml string }{
			{"currents_avro_scanner", "    {}"},
			{"currents_avro_scanner_batch500", "    batch_size: 500"},
		} {
			b.Run(string(codec)+"/"+sc.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(st.Size())
				c := newTestCreator(b, sc.yaml)
				ctx := context.Background()
				for b.Loop() {
					n := scanFile(ctx, b, c, path, func(service.MessageBatch) {})
					require.Equal(b, benchRecords, n)
				}
				reportRecords(b, benchRecords)
			})
		}
		b.Run(string(codec)+"/hamba_generic_encoding_json", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(st.Size())
			for b.Loop() {
				f, err := os.Open(path)
				require.NoError(b, err)
				dec, err := ocf.NewDecoder(bufio.NewReaderSize(f, 64<<10), ocf.WithDecoderSchemaCache(&avro.SchemaCache{}))
				require.NoError(b, err)
				n := 0
				for dec.HasNext() {
					var rec map[string]any
					require.NoError(b, dec.Decode(&rec))
					_, err := json.Marshal(rec)
					require.NoError(b, err)
					n++
				}
				require.NoError(b, dec.Error())
				require.Equal(b, benchRecords, n)
				f.Close()
			}
			reportRecords(b, benchRecords)
		})
	}
}

// BenchmarkScanProgress scans and acknowledges one file of benchRecords
// records (blocks of 100) record by record, as the backfill does, without and
// with the progress file (200 block records and one file record, written in
// one commit per 200 ms and one at the end).
func BenchmarkScanProgress(b *testing.B) {
	data, _, _ := avroscantest.File(b, ocf.Null, benchRecords, 100)
	for _, mode := range []string{"off", "on"} {
		b.Run("progress_"+mode, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				yaml := "{}"
				if mode == "on" {
					yaml = "progress_path: " + filepath.Join(b.TempDir(), "p.db")
				}
				conf, err := currentsAvroScannerSpec().ParseYAML(yaml, nil)
				require.NoError(b, err)
				c, err := newCurrentsAvroFromParsed(conf, service.MockResources())
				require.NoError(b, err)
				s, err := c.Create(io.NopCloser(bytes.NewReader(data)), func(context.Context, error) error { return nil }, nil)
				require.NoError(b, err)
				ctx := context.Background()
				for {
					_, ack, err := s.NextBatch(ctx)
					if err != nil {
						break
					}
					_ = ack(ctx, nil)
				}
				_ = s.Close(ctx)
				_ = c.Close(ctx)
			}
			reportRecords(b, benchRecords)
		})
	}
}

// scanFile scans the file at path with a scanner of c, calls each with every
// batch before acknowledging it, and returns the records scanned.
func scanFile(ctx context.Context, b *testing.B, c *service.OwnedScannerCreator, path string, each func(service.MessageBatch)) int {
	f, err := os.Open(path)
	require.NoError(b, err)
	details := service.NewScannerSourceDetails()
	details.SetName(path)
	s, err := c.Create(f, func(context.Context, error) error { return nil }, details)
	require.NoError(b, err)
	n := 0
	for {
		batch, ack, err := s.NextBatch(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(b, err)
		each(batch)
		n += len(batch)
		_ = ack(ctx, nil)
	}
	require.NoError(b, s.Close(ctx))
	return n
}
