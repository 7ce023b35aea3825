package currents

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/outcome"
	"github.com/opencurrents/currents-amplitude/plugins/internal/trusted"
)

const (
	btaFieldIncludeEvents          = "include_events"
	btaFieldExcludeEvents          = "exclude_events"
	btaFieldUnknownEvents          = "unknown_events"
	btaFieldUnidentifiedEvents     = "unidentified_events"
	btaFieldNaming                 = "naming"
	btaFieldEventNames             = "event_names"
	btaFieldEventPrefix            = "event_prefix"
	btaFieldCustomEventPrefix      = "custom_event_prefix"
	btaFieldCustomPropertyPrefix   = "custom_property_prefix"
	btaFieldPurchasePropertyPrefix = "purchase_property_prefix"
	btaFieldDeviceFields           = "device_fields"

	// btaMetricDropped counts dropped events by reason and is exported by
	// every metrics exporter of the stream.
	btaMetricDropped = "braze_to_amplitude_dropped_total"
	// btaMaxWarnedTypes bounds the set of (reason, type) pairs logged at warn
	// level; later drops are logged at debug level.
	btaMaxWarnedTypes = 1000
	// btaMaxPooledBuffer is the largest batch arena kept for reuse.
	btaMaxPooledBuffer = 1 << 20
)

func brazeToAmplitudeSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Mapping").
		Version("0.1.0").
		Summary("Turns one Braze Currents event into one Amplitude HTTP API event, as Braze's own Amplitude connector does.").
		Description(`
Accepts, without further configuration:

- the HTTP connector shape `+"`{\"event_type\", \"id\", \"time\", \"user\": {...}, \"properties\": {...}}`"+`, and a whole
  request body `+"`{\"events\": [...]}`"+`, which expands into one message per event;
- the flat storage (Avro) shape decoded to JSON, with custom and purchase `+"`properties`"+` as a JSON-encoded string and
  the event type in an `+"`event_type`"+` field or in the metadata key `+"`currents_event_type`"+`.

Each output message is one Amplitude event object: `+"`event_type`"+` is the event prefix plus the Amplitude name of the
Currents type (custom events: the custom event prefix plus their name), `+"`user_id`"+` is `+"`external_user_id`"+`,
`+"`device_id`"+` is `+"`device_id`"+`, `+"`insert_id`"+` is the Currents `+"`id`"+`, `+"`time`"+` is in milliseconds and
`+"`library`"+` is `+"`Braze`"+`. Braze fields go to `+"`event_properties`"+` (nulls left out), custom event and purchase
properties too, with their prefixes. Purchases set `+"`productId`"+`, `+"`price`"+` and `+"`quantity`"+`; ad ids set
`+"`idfa`"+` (`+"`ios_idfa`"+`) or `+"`adid`"+` (`+"`google_ad_id`"+`). Avro float artefacts are removed
(3.140000104904175 becomes 3.14).

Every output carries the metadata `+"`currents_event_type`"+`, and a mark (the metadata key `+"`currents_trusted`"+` when `+"`currents_event_type`"+` was written here, else a value of the message's context, which spares Benthos a copy of the message's whole metadata), which only this distribution's code can make, that lets the `+"`amplitude`"+` output skip validating the event (it vouches only for the bytes written here: after a `+"`mapping`"+` the event is validated again). Events marked by `+"`braze_currents_http`"+` are not validated again here. Dropped events (filtered, unknown or unidentified) are
counted in the metric `+"`braze_to_amplitude_dropped_total`"+` (label `+"`reason`"+`) and logged. Bad input and rejected
events keep flowing as errored messages carrying their dead-letter reason (`+"`unmappable`"+`; `+"`unreadable`"+` for a
request body that is not valid JSON; `+"`too_large`"+` for JSON nested deeper than 64 levels) as a typed error and in
the metadata key `+"`dead_letter_reason`"+`: the `+"`amplitude`"+` output's `+"`dead_letter`"+` writes them once, and plain
`+"`switch`"+`, `+"`fallback`"+` or `+"`reject_errored`"+` routing works too. Invalid UTF-8 in an event is replaced by
U+FFFD, in the Amplitude event as in the dead-letter copy.

`+namingDoc()).
		Fields(
			service.NewStringListField(btaFieldIncludeEvents).
				Description("Currents event types to send, glob patterns allowed (`*` matches any run of characters, dots included). Empty sends every type.").
				Default([]any{}).
				Example([]any{"users.messages.*", "users.behaviors.CustomEvent", "users.behaviors.Purchase"}),
			service.NewStringListField(btaFieldExcludeEvents).
				Description("Currents event types never sent, glob patterns allowed. Wins over `include_events`. The default leaves out the storage-only system records that Braze's own Amplitude connector never exports (user deletion and orphaning requests, bucket reassignments, profile updates, AI agent logs); set `[]` to send every type.").
				Default(defaultExcludeEventsAny()).
				Example([]any{"users.messages.*.Retry", "agentconsole.*", "users.UserDeleteRequest"}),
			service.NewStringAnnotatedEnumField(btaFieldUnknownEvents, map[string]string{
				string(PolicyDrop):   "Drop events whose type is neither in the catalogue nor in `event_names` (counted and logged).",
				string(PolicyDerive): "Send them under a name derived from the type, e.g. `users.messages.pigeon.Send` becomes `Pigeon Send`.",
				string(PolicyReject): "Flag them with an error for dead-letter routing.",
			}).
				Description("What to do with Currents event types this processor does not know.").
				Default(string(PolicyDrop)).
				Example(string(PolicyDerive)),
			service.NewStringAnnotatedEnumField(btaFieldUnidentifiedEvents, map[string]string{
				string(PolicyDrop):   "Drop events with neither `external_user_id` nor `device_id`, as Braze does (counted and logged).",
				string(PolicyReject): "Flag them with an error for dead-letter routing.",
			}).
				Description("What to do with events Amplitude cannot attribute to a user or device.").
				Default(string(PolicyDrop)).
				Example(string(PolicyReject)),
			service.NewStringAnnotatedEnumField(btaFieldNaming, map[string]string{
				string(NamingGlossary):      "The names of the Amplitude tabs of Braze's Currents event glossary: what Braze's connector sends today.",
				string(NamingAmplitudePage): "Braze's older Amplitude for Currents page's spelling where it differs (see the table above), for dashboards built on it.",
			}).
				Description("Which of Braze's documents names the events where they disagree. `event_names` wins over it.").
				Default(string(NamingGlossary)).
				Example(string(NamingAmplitudePage)),
			service.NewStringMapField(btaFieldEventNames).
				Description("Amplitude base names by Currents event type, overriding the catalogue or adding types to it. The event prefix is still added.").
				Default(map[string]any{}).
				Example(map[string]any{"users.messages.sms.CarrierSend": "SMS Send To Carrier", "users.messages.pigeon.Send": "Pigeon Send"}),
			service.NewStringField(btaFieldEventPrefix).
				Description("Prefix of the Amplitude `event_type` of regular events (include the joining space).").
				Default(DefaultEventPrefix).
				Example("[Braze] "),
			service.NewStringField(btaFieldCustomEventPrefix).
				Description("Prefix of the Amplitude `event_type` of custom events, followed by the custom event name.").
				Default(DefaultCustomEventPrefix).
				Example("[Braze Custom Event] "),
			service.NewStringField(btaFieldCustomPropertyPrefix).
				Description("Prefix of each custom event property key in `event_properties`.").
				Default(DefaultCustomPropertyPrefix).
				Example(""),
			service.NewStringField(btaFieldPurchasePropertyPrefix).
				Description("Prefix of each purchase property key in `event_properties`.").
				Default(DefaultPurchasePropertyPrefix).
				Example(""),
			service.NewBoolField(btaFieldDeviceFields).
				Description("Also fill Amplitude's top-level `platform`, `os_version`, `device_model`, `location_lat` and `location_lng` (they stay in `event_properties` too), so that Amplitude's device and location charts work. Braze's connector does not.").
				Default(false).
				Example(true),
		).
		Example("Storage files to Amplitude events", "Maps the records of Currents Avro files, keeping only message engagement events.", `
pipeline:
  processors:
    - braze_to_amplitude:
        include_events: [ "users.messages.*" ]
        exclude_events: [ "users.messages.*.Retry" ]
        unidentified_events: reject
`)
}

func init() {
	service.MustRegisterBatchProcessor("braze_to_amplitude", brazeToAmplitudeSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchProcessor, error) {
			return newBrazeToAmplitudeFromParsed(conf, mgr)
		})
}

// optionsFromParsed reads the processor fields into mapper Options.
func optionsFromParsed(conf *service.ParsedConfig) (opts Options, err error) {
	if opts.IncludeEvents, err = conf.FieldStringList(btaFieldIncludeEvents); err != nil {
		return opts, err
	}
	if opts.ExcludeEvents, err = conf.FieldStringList(btaFieldExcludeEvents); err != nil {
		return opts, err
	}
	naming, err := conf.FieldString(btaFieldNaming)
	if err != nil {
		return opts, err
	}
	opts.Naming = Naming(naming)
	for field, dst := range map[string]*Policy{
		btaFieldUnknownEvents:      &opts.UnknownEvents,
		btaFieldUnidentifiedEvents: &opts.UnidentifiedEvents,
	} {
		s, err := conf.FieldString(field)
		if err != nil {
			return opts, err
		}
		*dst = Policy(s)
	}
	if opts.EventNames, err = conf.FieldStringMap(btaFieldEventNames); err != nil {
		return opts, err
	}
	for field, dst := range map[string]*string{
		btaFieldEventPrefix:            &opts.EventPrefix,
		btaFieldCustomEventPrefix:      &opts.CustomEventPrefix,
		btaFieldCustomPropertyPrefix:   &opts.CustomPropertyPrefix,
		btaFieldPurchasePropertyPrefix: &opts.PurchasePropertyPrefix,
	} {
		if *dst, err = conf.FieldString(field); err != nil {
			return opts, err
		}
	}
	opts.DeviceFields, err = conf.FieldBool(btaFieldDeviceFields)
	return opts, err
}

type brazeToAmplitude struct {
	mapper *Mapper
	log    *service.Logger
	// typeMeta holds the known event types already boxed for MetaSetMut,
	// saving an allocation per message.
	typeMeta map[string]any
	dropped  *service.MetricCounter
	scratch  sync.Pool // *batchScratch

	mu     sync.Mutex
	warned map[[2]string]struct{}
}

// batchScratch is what one ProcessBatch call maps into: the Amplitude events
// of the whole batch, one after the other, copied at the end into a single
// allocation that their messages share.
type batchScratch struct {
	arena  []byte
	mapped []mappedEvent
	marks  trusted.Builder
}

// mappedEvent is a message, at index pos of the output batch, whose
// Amplitude event is arena[start:end]; metaSet says the processor wrote its
// metadata (currents_event_type).
type mappedEvent struct {
	msg             *service.Message
	pos, start, end int
	metaSet         bool
}

func newBrazeToAmplitudeFromParsed(conf *service.ParsedConfig, mgr *service.Resources) (*brazeToAmplitude, error) {
	opts, err := optionsFromParsed(conf)
	if err != nil {
		return nil, err
	}
	mapper, err := NewMapper(opts)
	if err != nil {
		return nil, err
	}
	typeMeta := make(map[string]any, len(catalogue)+len(opts.EventNames))
	for _, et := range catalogue {
		typeMeta[et.Type] = et.Type
	}
	for typ := range opts.EventNames {
		typeMeta[typ] = typ
	}
	return &brazeToAmplitude{
		mapper:   mapper,
		typeMeta: typeMeta,
		log:      mgr.Logger(),
		dropped:  mgr.Metrics().NewCounter(btaMetricDropped, "reason"),
		scratch:  sync.Pool{New: func() any { return &batchScratch{arena: make([]byte, 0, 64<<10)} }},
		warned:   map[[2]string]struct{}{},
	}, nil
}

// ProcessBatch maps every message of the batch: a single Currents event, or
// a request body whose events each become a message. Messages that cannot be
// mapped stay in the batch, flagged with the reason; dropped events leave it.
// The Amplitude events of a batch share one buffer and carry a trusted mark,
// so that the amplitude output does not validate them again.
func (p *brazeToAmplitude) ProcessBatch(_ context.Context, in service.MessageBatch) ([]service.MessageBatch, error) {
	bs := p.scratch.Get().(*batchScratch)
	defer p.putScratch(bs)
	out := make(service.MessageBatch, 0, len(in))
	for _, msg := range in {
		out = p.appendMapped(out, bs, msg)
	}
	bs.finish(out)
	if len(out) == 0 {
		return nil, nil
	}
	return []service.MessageBatch{out}, nil
}

// finish copies the batch's Amplitude events into one allocation, sets each
// as its message's bytes and marks them. The first metadata write of a
// message in a processor copies its whole metadata map (shared with the
// input's copy): the mark goes in the metadata of a message whose
// currents_event_type was written (the copy is made), else in the context
// of the message of out (trusted.With: a context value and a wrapper, where
// a copy of the eight keys of a backfill's messages is a hash table).
func (bs *batchScratch) finish(out service.MessageBatch) {
	if len(bs.mapped) == 0 {
		return
	}
	data := bytes.Clone(bs.arena) // allocated without being zeroed first
	bs.marks.Reset()
	for _, m := range bs.mapped {
		m.msg.SetBytes(data[m.start:m.end:m.end])
		bs.marks.Add(m.start, m.end)
	}
	mark := bs.marks.AmplitudeMark(data, 0)
	for _, m := range bs.mapped {
		if m.metaSet {
			trusted.Set(m.msg, mark)
		} else {
			out[m.pos] = trusted.With(m.msg, mark)
		}
	}
}

// putScratch returns bs to the pool, unless an outsized batch grew it.
func (p *brazeToAmplitude) putScratch(bs *batchScratch) {
	clear(bs.mapped) // do not retain the messages
	bs.arena, bs.mapped = bs.arena[:0], bs.mapped[:0]
	if cap(bs.arena) <= btaMaxPooledBuffer {
		p.scratch.Put(bs)
	}
}

func (p *brazeToAmplitude) appendMapped(out service.MessageBatch, bs *batchScratch, msg *service.Message) service.MessageBatch {
	if msg.GetError() != nil {
		return append(out, msg) // failed upstream (an input's own reason): kept as it is
	}
	raw, err := msg.AsBytes()
	if err != nil {
		deadletter.Fail(msg, deadletter.ReasonUnreadable, err)
		return append(out, msg)
	}
	hint, _ := msg.MetaGet(currentsbody.MetaEventType)
	// Bytes our input validated (trusted) skip the validation pass, and the
	// depth check when their nesting was bounded within MaxDepth. Others
	// are validated in the walk that maps them; only those it does not
	// accept (invalid, too deep, a request body, an error) are checked
	// first, the slow way, which says what is wrong.
	mark := trusted.Of(msg, raw)
	if mark == nil {
		if mapped, done := p.appendEvent(out, bs, msg, raw, hint, mapUnchecked, false); done {
			return mapped
		}
	}
	if mark == nil || mark.Depth() == 0 || mark.Depth() > MaxDepth {
		if err := jsonlimit.Check(raw, MaxDepth); err != nil {
			deadletter.Fail(msg, deadletter.ReasonTooLarge, err)
			return append(out, msg)
		}
	}
	events, isBody, err := currentsbody.SplitEvents(raw)
	if err != nil {
		deadletter.Fail(msg, deadletter.ReasonUnreadable, err)
		return append(out, msg)
	}
	if !isBody {
		mode := mapDepthChecked
		if mark != nil {
			mode = mapValid
		}
		out, _ = p.appendEvent(out, bs, msg, raw, hint, mode, false)
		return out
	}
	for _, ev := range events {
		out, _ = p.appendEvent(out, bs, msg.Copy(), ev, hint, mapValid, true)
	}
	return out
}

// mapMode says what is known of an event's bytes.
type mapMode int

const (
	// mapUnchecked: nothing; the mapper's fast path validates it in its
	// walk, or leaves it to the slow path (see Mapper.appendUnchecked).
	mapUnchecked mapMode = iota
	// mapDepthChecked: nested within MaxDepth; validated before the walk.
	mapDepthChecked
	// mapValid: valid JSON nested within MaxDepth.
	mapValid
)

// appendEvent maps event into msg (which it owns) and appends msg to out,
// unless the event is dropped. A failing event is flagged; when it was split
// from a request body, msg is set to that event alone, so that a dead-letter
// output receives it with its reason. done is false, with out and msg
// unchanged, when mode is mapUnchecked and the fast path left the event to
// the slow one.
func (p *brazeToAmplitude) appendEvent(out service.MessageBatch, bs *batchScratch, msg *service.Message, event []byte, hint string, mode mapMode, split bool) (service.MessageBatch, bool) {
	mapped, err, done := p.mapOne(bs, msg, event, hint, mode)
	if !done {
		return out, false
	}
	if err != nil {
		if split {
			msg.SetBytes(append([]byte(nil), event...))
		}
		reason := deadletter.ReasonUnmappable
		var typed *deadletter.Error
		if errors.As(err, &typed) { // the mapper's own reason (too_large)
			reason, err = typed.Reason, typed.Err
		}
		deadletter.Fail(msg, reason, err)
		return append(out, msg), true
	}
	if !mapped {
		return out, true
	}
	bs.mapped[len(bs.mapped)-1].pos = len(out)
	return append(out, msg), true
}

// mapOne maps event into the batch's arena for msg (which it owns; its
// bytes are set by finish). It returns false, nil when the event is
// dropped, and done = false, having changed nothing, when mode is
// mapUnchecked and the fast path left the event to the slow one.
func (p *brazeToAmplitude) mapOne(bs *batchScratch, msg *service.Message, event []byte, hint string, mode mapMode) (mapped bool, err error, done bool) {
	start := len(bs.arena)
	var buf []byte
	var res Result
	switch mode {
	case mapUnchecked:
		if buf, res, err, done = p.mapper.appendUnchecked(bs.arena, event, hint); !done {
			return false, nil, false
		}
	case mapDepthChecked:
		buf, res, err = p.mapper.appendDepthChecked(bs.arena, event, hint)
	default:
		buf, res, err = p.mapper.AppendValidEvent(bs.arena, event, hint)
	}
	metaSet := p.setEventType(msg, res.EventType)
	if err != nil {
		return false, err, true
	}
	if res.Dropped != "" {
		p.drop(res)
		return false, nil, true
	}
	bs.arena = buf
	bs.mapped = append(bs.mapped, mappedEvent{msg: msg, start: start, end: len(buf), metaSet: metaSet})
	return true, nil, true
}

// setEventType sets the currents_event_type metadata of msg to typ, unless
// it holds typ already (as currents_avro sets it), saving a map assignment
// (and the copy of the map) per event. It reports whether it wrote.
func (p *brazeToAmplitude) setEventType(msg *service.Message, typ string) bool {
	if typ == "" {
		return false
	}
	if v, ok := msg.MetaGetMut(currentsbody.MetaEventType); ok {
		if s, ok := v.(string); ok && s == typ {
			return false
		}
	}
	if boxed, ok := p.typeMeta[typ]; ok {
		msg.MetaSetMut(currentsbody.MetaEventType, boxed)
		return true
	}
	msg.MetaSetMut(currentsbody.MetaEventType, typ)
	return true
}

// drop counts a dropped event and logs it: at warn level the first time a
// (reason, type) pair is seen, at debug level afterwards.
func (p *brazeToAmplitude) drop(res Result) {
	p.dropped.Incr(1, string(res.Dropped))
	outcome.Add(outcome.Dropped, string(res.Dropped), 1)
	key := [2]string{string(res.Dropped), res.EventType}
	p.mu.Lock()
	_, seen := p.warned[key]
	if !seen && len(p.warned) < btaMaxWarnedTypes {
		p.warned[key] = struct{}{}
	}
	p.mu.Unlock()
	if seen {
		p.log.Debugf("Dropped Currents event of type %q: %s", res.EventType, res.Dropped)
		return
	}
	p.log.Warnf("Dropped Currents event of type %q: %s (counted in %s; further drops of this type are logged at debug level)", res.EventType, res.Dropped, btaMetricDropped)
}

// Close releases nothing: the processor holds no resources.
func (*brazeToAmplitude) Close(context.Context) error {
	return nil
}

// defaultExcludeEventsAny is DefaultExcludeEvents as a config default.
func defaultExcludeEventsAny() []any {
	out := make([]any, len(DefaultExcludeEvents))
	for i, t := range DefaultExcludeEvents {
		out[i] = t
	}
	return out
}

// namingDoc documents, from the catalogue, where each Amplitude name comes
// from: the types whose name Braze's documents spell differently, and the
// names this processor derives because Braze documents none.
func namingDoc() string {
	var b strings.Builder
	b.WriteString("### Event names\n\nNames follow the Amplitude tabs of Braze's Currents event glossary " +
		"(https://www.braze.com/docs/user_guide/data/distribution/braze_currents/event_glossary/message_engagement_events/). " +
		"Where Braze's older Amplitude for Currents page (https://www.braze.com/docs/partners/amplitude_for_currents/) " +
		"spells a name differently, `naming: amplitude_page` sends its spelling:\n\n" +
		"| Currents type | glossary (default) | amplitude_page |\n|---|---|---|\n")
	for _, et := range catalogue {
		if et.PageName != "" {
			fmt.Fprintf(&b, "| `%s` | `%s` | `%s` |\n", et.Type, et.Name, et.PageName)
		}
	}
	b.WriteString("\nCustom events keep the page's rule, `[Appboy] [Custom Event] <name>` (the glossary shows a placeholder, " +
		"`[Braze Custom Event]`). Braze documents no usable name for these types; the names are derived in the same style " +
		"(override them with `event_names`):\n\n| Currents type | derived name | why |\n|---|---|---|\n")
	for _, et := range catalogue {
		if et.Source == SourceDerived {
			fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", et.Type, et.Name, et.Note)
		}
	}
	return b.String()
}
