package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/ingest/ingesttest"
)

// BenchmarkServeRequest measures one Braze request of 100 events through the
// input: authentication, body read, validation, split into a batch, hand-off
// and the answer once the batch is acked.
func BenchmarkServeRequest(b *testing.B) { benchServe(b, false) }

// BenchmarkServeRequestGzip is BenchmarkServeRequest with the body
// gzip-compressed (Content-Encoding: gzip).
func BenchmarkServeRequestGzip(b *testing.B) { benchServe(b, true) }

func benchServe(b *testing.B, compressed bool) {
	in, err := newBrazeCurrentsHTTP(testConfig(), service.MockResources())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			_, ack, err := in.ReadBatch(ctx)
			if err != nil {
				return
			}
			_ = ack(ctx, nil)
		}
	}()
	body := ingesttest.Body(ingesttest.Generate(ingesttest.GenConfig{Seed: 1}, 100))
	b.SetBytes(int64(len(body)))
	if compressed {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
		body = buf.Bytes()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/currents", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+testToken)
		r.Header.Set("Braze-Currents-Version", "1")
		if compressed {
			r.Header.Set("Content-Encoding", "gzip")
		}
		w := httptest.NewRecorder()
		in.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}
