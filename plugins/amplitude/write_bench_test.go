//go:build unix

package amplitude

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/proctime"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
)

// BenchmarkWriteBatch measures WriteBatch on the live path's batches: 100
// Amplitude events as braze_to_amplitude leaves them (one shared buffer, its
// mark in each message's metadata beside the input's keys), sent unpaced to
// a loopback server that answers Amplitude's success body, so that it
// measures the output's per-message work and its request/response path, not
// the pacer.
func BenchmarkWriteBatch(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"code":200,"events_ingested":100,"payload_size_bytes":%d,"server_upload_time":1767225600000}`, n)
	}))
	defer srv.Close()
	conf, err := amplitudeOutputSpec().ParseYAML(fmt.Sprintf("api_key: %s\nurl: %s\npacing: false\n", testKey, srv.URL), nil)
	if err != nil {
		b.Fatal(err)
	}
	out, err := newAmplitudeOutputFromParsed(conf, service.MockResources())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = out.Close(context.Background()) }()
	raws, mark := markedEvents(100)
	batch := make(service.MessageBatch, len(raws))
	for i, raw := range raws {
		m := service.NewMessage(raw)
		m.MetaSetMut("braze_currents_version", "1")
		m.MetaSetMut("request_id", "8f3a5c7e9b1d2f40")
		m.MetaSetMut("currents_event_type", "users.behaviors.Purchase")
		trusted.Set(m, mark)
		batch[i] = m
	}
	ctx := context.Background()
	b.ReportAllocs()
	cpu := proctime.CPU()
	for b.Loop() {
		if err := out.WriteBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
	// The process's CPU (the server's included), steadier than the wall
	// time on a shared machine.
	b.ReportMetric(float64(proctime.CPU()-cpu)/float64(b.N*len(batch)), "cpu-ns/event")
}
