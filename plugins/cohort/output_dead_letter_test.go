package cohort

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/cohort/cohorttest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
)

// TestBrazeCohortDeadLetter checks which failures the dead_letter output
// takes (changes refused for their own reason, once each, acked) and which
// nack the batch (outages), and that no error text names a local file.
func TestBrazeCohortDeadLetter(t *testing.T) {
	valid := Change{CohortID: "c1", CohortName: "N", IDType: IDTypeExternal, Added: []string{"a"}}
	busy := make([]cohorttest.Response, 40)
	for i := range busy {
		busy[i] = cohorttest.Response{Status: 503, Body: "busy"}
	}
	upstream := service.NewMessage([]byte(`{"cohort_id":"c1"}`))
	deadletter.Fail(upstream, deadletter.ReasonUnmappable, assert.AnError)
	for _, tc := range []struct {
		name       string
		script     []cohorttest.Response
		msg        *service.Message
		wantReason string // "" means nothing dead-lettered
		wantNack   bool
	}{
		{"delivered", nil, changeMsg(valid), "", false},
		{"refused by Braze (400)", []cohorttest.Response{{Status: 400, Body: `{"message":"bad ids"}`}}, changeMsg(valid), string(ReasonRefused), false},
		{"invalid change", nil, service.NewMessage([]byte(`{"cohort_id":"c1","cohort_name":7}`)), string(ReasonInvalidChange), false},
		{"device ids through users_track", nil, changeMsg(Change{CohortID: "c1", CohortName: "N", IDType: IDTypeDevice, Added: []string{"d"}}), string(ReasonUnaddressable), false},
		{"errored upstream", nil, upstream, string(deadletter.ReasonUnmappable), false},
		{"wrong key (401) is an outage", []cohorttest.Response{{Status: 401, Body: `{"message":"Invalid API key"}`}}, changeMsg(valid), "", true},
		{"retries exhausted is an outage", busy, changeMsg(valid), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
			dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
			out, _ := newTestOutput(t, braze, "backoff: { max_elapsed_time: 10s }\ndead_letter:\n  file: { path: "+dlq+", codec: lines }\n")
			braze.Script(tc.script...)
			err := out.WriteBatch(t.Context(), service.MessageBatch{tc.msg})
			if tc.wantNack {
				require.Error(t, err)
				var berr *service.BatchError
				assert.NotErrorAs(t, err, &berr, "an outage nacks the whole batch")
			} else {
				require.NoError(t, err)
			}
			raw, _ := os.ReadFile(dlq)
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			if tc.wantReason == "" {
				assert.Empty(t, strings.TrimSpace(string(raw)))
				return
			}
			require.Len(t, lines, 1)
			assert.Equal(t, tc.wantReason, gjson.Get(lines[0], "reason").String())
			assert.Equal(t, "braze_cohort", gjson.Get(lines[0], "component").String())
			assert.Equal(t, "c1", gjson.Get(lines[0], "event.cohort_id").String())

			// A re-send of the same change is not written again.
			braze.Script(tc.script...)
			require.NoError(t, out.WriteBatch(t.Context(), service.MessageBatch{tc.msg}))
			raw, _ = os.ReadFile(dlq)
			assert.Len(t, strings.Split(strings.TrimSpace(string(raw)), "\n"), 1, "dead-lettered once")
		})
	}
}

// TestBrazeCohortDeadLetterFailureHidesPaths: a dead-letter output that
// fails nacks the change with an error naming no local file (a webhook
// answers the error text in its 502 body).
func TestBrazeCohortDeadLetterFailureHidesPaths(t *testing.T) {
	braze := cohorttest.NewBraze(t, restKey, partnerKey, clientSecret)
	blocked := filepath.Join(t.TempDir(), "not-a-dir")
	require.NoError(t, os.WriteFile(blocked, nil, 0o600))
	dlq := filepath.Join(blocked, "dlq.jsonl")
	out, _ := newTestOutput(t, braze, "dead_letter:\n  file: { path: "+dlq+", codec: lines }\n")
	braze.Script(cohorttest.Response{Status: 400, Body: `{"message":"bad ids"}`})
	err := out.WriteBatch(t.Context(), service.MessageBatch{changeMsg(Change{CohortID: "c1", CohortName: "N", Added: []string{"a"}})})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), blocked)
	assert.NotContains(t, err.Error(), "/")
}
