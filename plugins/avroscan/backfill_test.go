package avroscan

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	_ "github.com/opencurrents/currents-amplitude/plugins/amplitude"
	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	_ "github.com/opencurrents/currents-amplitude/plugins/currents"
	"github.com/opencurrents/currents-amplitude/plugins/internal/refdata"
	_ "github.com/opencurrents/currents-amplitude/plugins/ratelimit"
)

const backfillConfig = "../../config/currents_storage_backfill.yaml"

// writeTree writes files (relative path -> content) under dir.
func writeTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
}

// buildBackfill builds the shipped backfill pipeline with env overriding
// its environment variables.
func buildBackfill(t testing.TB, env map[string]string) *service.Stream {
	t.Helper()
	yaml, err := os.ReadFile(backfillConfig)
	require.NoError(t, err)
	sb := service.NewStreamBuilder()
	sb.SetEnvVarLookupFunc(func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	require.NoError(t, sb.SetYAML(string(yaml)))
	strm, err := sb.Build()
	require.NoError(t, err)
	return strm
}

// TestBackfillPipelineEndToEnd runs config/currents_storage_backfill.yaml
// over a Braze-like folder (two good files, one truncated) against a
// loopback Amplitude: every identified event of the good blocks is ingested
// exactly once, events Amplitude refuses land in the dead-letter file with
// their source, unidentified events are dropped, and the run ends by itself.
func TestBackfillPipelineEndToEnd(t *testing.T) {
	dir := t.TempDir()
	good, _, ends := genFile(t, ocf.Snappy, 400, 50)
	writeTree(t, dir, map[string][]byte{
		"dataexport.prod-01.S3.integration.x/event_type=users.behaviors.Purchase/date=2026-11-29-10/7/0/a.avro": good,
		"dataexport.prod-01.S3.integration.x/event_type=users.behaviors.Purchase/date=2026-11-29-11/7/0/b.avro": good[:ends[2]+9], // blocks 0-2 survive
	})
	srv := amplitudetest.NewServer(amplitudetest.Options{APIKey: "backfill-test-key"})
	defer srv.Close()
	dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
	strm := buildBackfill(t, map[string]string{
		"CURRENTS_DIR":      dir,
		"AMPLITUDE_API_KEY": "backfill-test-key",
		"AMPLITUDE_URL":     srv.BatchURL(),
		"DLQ_PATH":          dlq,
		"LOG_LEVEL":         "none",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, strm.Run(ctx))

	// Both files hold the same ids: a.avro all 400 records, b.avro the 150
	// before its damage. Amplitude gets each sent id of b.avro twice (and
	// de-duplicates it), and no id more often than that.
	wantIngested, wantDuplicates, wantDLQ := 0, 0, map[string]int{}
	for i := range 400 {
		p := testPurchase(i)
		copies := 1
		if i < 150 {
			copies = 2
		}
		switch {
		case p.External == nil: // unidentified: dropped by braze_to_amplitude
			_, ok := srv.Event(p.ID)
			assert.False(t, ok, "unidentified event %s was sent", p.ID)
		case *p.External == "x": // refused by the amplitude output
			wantDLQ[p.ID] = copies
		default:
			wantIngested++
			wantDuplicates += copies - 1
			ev, ok := srv.Event(p.ID)
			if assert.True(t, ok, "event %s not ingested", p.ID) {
				assert.Equal(t, "[Appboy] Purchase", ev.EventType)
				assert.Equal(t, *p.External, ev.UserID)
				assert.Equal(t, int64(p.Time)*1000, gjson.Get(ev.Raw, "time").Int())
			}
		}
	}
	assert.Equal(t, wantIngested, srv.Count())
	assert.Equal(t, wantDuplicates, srv.Duplicates())

	f, err := os.Open(dlq)
	require.NoError(t, err)
	defer f.Close()
	gotDLQ := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct {
			Reason string `json:"reason"`
			Type   string `json:"currents_event_type"`
			Source struct {
				File   string `json:"file"`
				Block  int    `json:"block"`
				Record int    `json:"record"`
			} `json:"source"`
			Event struct {
				InsertID string `json:"insert_id"`
			} `json:"event"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), sc.Text())
		gotDLQ[rec.Event.InsertID]++
		assert.Contains(t, rec.Reason, "amplitude (")
		assert.Equal(t, "users.behaviors.Purchase", rec.Type)
		assert.True(t, strings.HasSuffix(rec.Source.File, ".avro"), rec.Source.File)
		assert.Equal(t, fmt.Sprintf("evt-%06d", rec.Source.Record), rec.Event.InsertID)
		assert.Equal(t, rec.Source.Record/50, rec.Source.Block)
	}
	require.NoError(t, sc.Err())
	assert.Equal(t, wantDLQ, gotDLQ)
}

// TestBrazeSamplesMapToAmplitude reads every real Braze sample file through
// the scanner and braze_to_amplitude: each becomes one Amplitude event named
// "[Appboy] ...", with insert_id, time and user of the record, except the
// samples with neither external_user_id nor device_id, which Braze does not
// send either (flagged here with unidentified_events: reject). Nothing is
// excluded (exclude_events: [] overrides the default exclusions).
func TestBrazeSamplesMapToAmplitude(t *testing.T) {
	avroDir := refdata.Dir(t, "avro")
	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetLoggerYAML("level: none"))
	require.NoError(t, sb.AddInputYAML(fmt.Sprintf(`
file:
  paths: [ %q ]
  scanner:
    currents_avro: {}
`, filepath.Join(avroDir, "*.avro"))))
	require.NoError(t, sb.AddProcessorYAML(`braze_to_amplitude: { unknown_events: reject, unidentified_events: reject, exclude_events: [] }`))
	var mu sync.Mutex
	out := map[string]*service.Message{}
	require.NoError(t, sb.AddConsumerFunc(func(_ context.Context, m *service.Message) error {
		mu.Lock()
		defer mu.Unlock()
		p, _ := m.MetaGetMut("path")
		out[filepath.Base(p.(string))] = m.Copy()
		return nil
	}))
	strm, err := sb.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, strm.Run(ctx))

	samples := refdata.Samples(t, "avro", ".avro")
	for _, s := range samples {
		name := filepath.Base(s.Path)
		res := scan(t, "    {}", "", s.Data)
		require.NoError(t, res.err)
		rec, _ := res.msgs[0].AsBytes()
		m, ok := out[name]
		if !assert.True(t, ok, "%s: no Amplitude event", name) {
			continue
		}
		if err := m.GetError(); err != nil {
			assert.NotEqual(t, gjson.String, gjson.GetBytes(rec, "external_user_id").Type, "%s: %v", name, err)
			assert.NotEqual(t, gjson.String, gjson.GetBytes(rec, "device_id").Type, "%s: %v", name, err)
			continue
		}
		got, _ := m.AsBytes()
		assert.True(t, strings.HasPrefix(gjson.GetBytes(got, "event_type").String(), "[Appboy] "), "%s: %s", name, got)
		assert.Equal(t, gjson.GetBytes(rec, "id").String(), gjson.GetBytes(got, "insert_id").String(), name)
		if ms := gjson.GetBytes(rec, "time_ms"); ms.Exists() && ms.Type == gjson.Number {
			assert.Equal(t, ms.Int(), gjson.GetBytes(got, "time").Int(), name)
		} else {
			assert.Equal(t, gjson.GetBytes(rec, "time").Int()*1000, gjson.GetBytes(got, "time").Int(), name)
		}
		if ext := gjson.GetBytes(rec, "external_user_id"); ext.Type == gjson.String {
			assert.Equal(t, ext.String(), gjson.GetBytes(got, "user_id").String(), name)
		}
	}
	assert.Len(t, out, len(samples))
}
