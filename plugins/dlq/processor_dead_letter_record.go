package dlq

import (
	"context"
	"errors"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
)

const (
	dlrFieldComponent = "component"

	// metaFallbackError is the metadata key in which Benthos' fallback
	// output gives the next output the error of the previous one.
	metaFallbackError = "fallback_error"
)

func deadLetterRecordSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Version("0.1.0").
		Categories("Utility").
		Summary("Turns a failed message into the dead-letter record the `amplitude` output's `dead_letter` writes, for pipelines that route failures themselves.").
		Description(`
The record is one JSON object `+"`{\"reason\", \"error\", \"failed_at\", \"component\", \"currents_event_type\", \"source\", \"event\"}`"+`, exactly as a `+"`dead_letter`"+` child output receives it: `+"`source`"+` holds the request id, file, line, Avro block and record, or Kafka coordinates found in the metadata; `+"`event`"+` is the message (JSON embedded, other bytes as a string, invalid UTF-8 replaced by U+FFFD). The record keeps the message's metadata and is not errored.

- A message failed upstream gets its dead-letter reason (`+"`unmappable`"+`, `+"`unreadable`"+`, `+"`too_large`"+`... or `+"`processing_failed`"+` for an error without one).
- A message with the `+"`fallback_error`"+` metadata of a `+"`fallback`"+` output gets the reason `+"`delivery_failed`"+` and that error. (Mind that with a plain `+"`fallback`"+` an outage is a delivery failure too: prefer the `+"`amplitude`"+` output's `+"`dead_letter`"+` field, which never dead-letters outages.)
- Any other message passes unchanged.

No error text is parsed: the reason is the typed one the failing component set.`).
		Fields(
			service.NewStringField(dlrFieldComponent).
				Description("The `component` named in the records.").
				Default("pipeline").
				Example("quickstart"),
		).
		Example("Failed events to a file, the rest to stdout", "", `
output:
  switch:
    cases:
      - check: errored()
        output:
          file: { path: ./dlq.jsonl, codec: lines }
          processors:
            - dead_letter_record: {}
      - output:
          stdout: {}
`)
}

func init() {
	service.MustRegisterBatchProcessor("dead_letter_record", deadLetterRecordSpec(),
		func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchProcessor, error) {
			component, err := conf.FieldString(dlrFieldComponent)
			if err != nil {
				return nil, err
			}
			return &deadLetterRecord{component: component, clock: clock.System}, nil
		})
}

// ReasonDeliveryFailed is the reason of a message an output refused, as a
// fallback output reports it.
const ReasonDeliveryFailed deadletter.Reason = "delivery_failed"

type deadLetterRecord struct {
	component string
	clock     clock.Clock
}

// ProcessBatch replaces each failed message by its record.
func (p *deadLetterRecord) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	out := make(service.MessageBatch, len(batch))
	now := p.clock.Now()
	for i, msg := range batch {
		out[i] = msg
		e := deadletter.Entry{Msg: msg}
		var ok bool
		if e.Reason, e.Err, ok = deadletter.Of(msg); !ok {
			text, found := msg.MetaGet(metaFallbackError)
			if !found {
				continue
			}
			e.Reason, e.Err = ReasonDeliveryFailed, errors.New(text)
		}
		out[i] = deadletter.RecordMessage(e, p.component, now)
	}
	return []service.MessageBatch{out}, nil
}

// Close releases nothing.
func (*deadLetterRecord) Close(context.Context) error { return nil }
