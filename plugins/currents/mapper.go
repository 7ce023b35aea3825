package currents

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonlimit"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonscan"
	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
	"github.com/opencurrents/currents-amplitude/plugins/internal/unsafestr"
)

// Policy says what happens to an event the mapper cannot send as is.
type Policy string

// Policies for Options.UnknownEvents and Options.UnidentifiedEvents.
const (
	// PolicyDrop drops the event (the caller counts and logs it).
	PolicyDrop Policy = "drop"
	// PolicyDerive (unknown events only) derives an Amplitude name from the
	// Currents type, e.g. users.messages.foo.BarSent -> "Foo Bar Sent".
	PolicyDerive Policy = "derive"
	// PolicyReject returns an error naming the reason.
	PolicyReject Policy = "reject"
)

// DropReason says why AppendEvent dropped an event; empty when mapped.
type DropReason string

// Drop reasons, used as the `reason` label of the drop metric.
const (
	// DropFiltered: the type is excluded by include_events/exclude_events.
	DropFiltered DropReason = "filtered"
	// DropUnknown: the type is not in the catalogue and unknown_events is drop.
	DropUnknown DropReason = "unknown_event"
	// DropUnidentified: neither external_user_id nor device_id is set.
	DropUnidentified DropReason = "unidentified"
)

// Braze's own prefixes (Amplitude for Currents page).
const (
	DefaultEventPrefix            = "[Appboy] "
	DefaultCustomEventPrefix      = "[Appboy] [Custom Event] "
	DefaultCustomPropertyPrefix   = "[Custom event property] "
	DefaultPurchasePropertyPrefix = "[Purchase property] "
)

// MaxIDLength is the longest id, user id, device id, event type or custom
// event name accepted, in bytes (Amplitude's string limit).
const MaxIDLength = 1024

// MaxDepth is the deepest nesting of JSON objects and arrays accepted in an
// event (or request body), JSON-encoded property strings included; deeper
// input fails with deadletter.ReasonTooLarge before it is parsed.
const MaxDepth = jsonlimit.DefaultMaxDepth

// replacementChar replaces invalid UTF-8 in events.
var replacementChar = []byte("\uFFFD")

// library is the Amplitude `library` value Braze sets.
const library = "Braze"

// DefaultExcludeEvents are the Currents types excluded by default: storage-only
// system records that Braze's own Amplitude connector never exports (user
// deletion and orphaning requests, A/B bucket reassignments, profile updates,
// AI agent logs). They are in the catalogue, so setting exclude_events to []
// sends them too.
var DefaultExcludeEvents = []string{
	"agentconsole.*",
	"users.RandomBucketNumberUpdate",
	"users.UserDeleteRequest",
	"users.UserOrphan",
	"users.profile.Update",
}

// Options configures a Mapper. The zero value is not valid: start from
// DefaultOptions.
type Options struct {
	// IncludeEvents lists Currents types (path.Match globs) to send; empty
	// means all.
	IncludeEvents []string
	// ExcludeEvents lists Currents types (globs) never sent; it wins over
	// IncludeEvents.
	ExcludeEvents []string
	// UnknownEvents is the policy for types missing from the catalogue and
	// from EventNames: PolicyDrop, PolicyDerive or PolicyReject.
	UnknownEvents Policy
	// UnidentifiedEvents is the policy for events with neither
	// external_user_id nor device_id: PolicyDrop or PolicyReject.
	UnidentifiedEvents Policy
	// Naming picks the spelling where Braze's documents disagree:
	// NamingGlossary (the default) or NamingAmplitudePage. EventNames wins
	// over it.
	Naming Naming
	// EventNames overrides (or adds) Amplitude base names by Currents type.
	EventNames map[string]string
	// Prefixes put before base names, custom event names, custom event
	// property keys and purchase property keys.
	EventPrefix, CustomEventPrefix, CustomPropertyPrefix, PurchasePropertyPrefix string
	// DeviceFields also fills Amplitude's top-level platform, os_version,
	// device_model, location_lat and location_lng.
	DeviceFields bool
}

// DefaultOptions returns the options that reproduce Braze's own connector.
func DefaultOptions() Options {
	return Options{
		ExcludeEvents:          append([]string(nil), DefaultExcludeEvents...),
		UnknownEvents:          PolicyDrop,
		UnidentifiedEvents:     PolicyDrop,
		Naming:                 NamingGlossary,
		EventPrefix:            DefaultEventPrefix,
		CustomEventPrefix:      DefaultCustomEventPrefix,
		CustomPropertyPrefix:   DefaultCustomPropertyPrefix,
		PurchasePropertyPrefix: DefaultPurchasePropertyPrefix,
	}
}

// typeInfo is a catalogue entry resolved against the options.
type typeInfo struct {
	typ     string // the Currents type
	kind    Kind
	rules   rule
	allowed bool   // passes include/exclude
	name    []byte // JSON string: prefix + base name
}

// Mapper turns Braze Currents events into Amplitude HTTP API event objects.
// It is safe for concurrent use.
type Mapper struct {
	opts  Options
	types map[string]*typeInfo
	// scratch pools the buffers an event is walked with (*scratch).
	scratch sync.Pool
	// JSON-escaped prefixes without quotes, ready to splice into keys.
	customEventPrefix, customPropPrefix, purchasePropPrefix []byte
}

// NewMapper validates opts and builds a Mapper.
func NewMapper(opts Options) (*Mapper, error) {
	for _, list := range [][]string{opts.IncludeEvents, opts.ExcludeEvents} {
		for _, p := range list {
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("invalid event type pattern %q: %w", p, err)
			}
		}
	}
	switch opts.UnknownEvents {
	case PolicyDrop, PolicyDerive, PolicyReject:
	default:
		return nil, fmt.Errorf("unknown_events must be drop, derive or reject, got %q", opts.UnknownEvents)
	}
	switch opts.UnidentifiedEvents {
	case PolicyDrop, PolicyReject:
	default:
		return nil, fmt.Errorf("unidentified_events must be drop or reject, got %q", opts.UnidentifiedEvents)
	}
	switch opts.Naming {
	case NamingGlossary, NamingAmplitudePage:
	default:
		return nil, fmt.Errorf("naming must be %s or %s, got %q", NamingGlossary, NamingAmplitudePage, opts.Naming)
	}
	m := &Mapper{
		opts:               opts,
		types:              make(map[string]*typeInfo, len(catalogue)+len(opts.EventNames)),
		customEventPrefix:  escapeInner(opts.CustomEventPrefix),
		customPropPrefix:   escapeInner(opts.CustomPropertyPrefix),
		purchasePropPrefix: escapeInner(opts.PurchasePropertyPrefix),
	}
	m.scratch.New = func() any { return new(scratch) }
	for _, et := range catalogue {
		m.types[et.Type] = m.resolve(et.Type, et.NameFor(opts.Naming), et.Kind, et.rules)
	}
	for typ, name := range opts.EventNames {
		if typ == TypeCustomEvent {
			return nil, fmt.Errorf("event_names cannot rename %s: custom events are named after their name field (see custom_event_prefix)", typ)
		}
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("event_names: empty Amplitude name for %q", typ)
		}
		var kind Kind
		var rules rule
		if old, ok := m.types[typ]; ok {
			kind, rules = old.kind, old.rules
		}
		m.types[typ] = m.resolve(typ, name, kind, rules)
	}
	return m, nil
}

func (m *Mapper) resolve(typ, name string, kind Kind, rules rule) *typeInfo {
	return &typeInfo{
		typ:     typ,
		kind:    kind,
		rules:   rules,
		allowed: m.allowed(typ),
		name:    jsonw.AppendString(nil, m.opts.EventPrefix+name),
	}
}

// allowed applies include_events and exclude_events to a Currents type.
func (m *Mapper) allowed(typ string) bool {
	ok := len(m.opts.IncludeEvents) == 0
	for _, p := range m.opts.IncludeEvents {
		if match, _ := path.Match(p, typ); match {
			ok = true
			break
		}
	}
	for _, p := range m.opts.ExcludeEvents {
		if match, _ := path.Match(p, typ); match {
			return false
		}
	}
	return ok
}

// Result describes one AppendEvent call.
type Result struct {
	// EventType is the Currents event type (empty when it could not be read).
	EventType string
	// Dropped is set when the event was dropped instead of mapped.
	Dropped DropReason
}

// fields holds what the mapper collects while walking an event.
type fields struct {
	id, time, timeMS, extUserID, deviceID, name gjson.Result
	productID, price, quantity, adID, adIDType  gjson.Result
	platform, osVersion, deviceModel, lat, lng  gjson.Result
	props                                       int // number of event_properties written
}

// AppendEvent maps one Currents event, in the HTTP connector shape or the
// flat storage shape, and appends the Amplitude event JSON object to dst.
// typeHint names the Currents type of flat records that carry no
// event_type field (the currents_event_type metadata); an event_type field
// wins over it. When the event is dropped, dst is returned unchanged and
// Result.Dropped says why; bad input and rejected events return an error
// (a deadletter.Error with ReasonTooLarge for JSON nested deeper than
// MaxDepth). Invalid UTF-8 is replaced by U+FFFD, as the dead-letter record
// of the event does.
func (m *Mapper) AppendEvent(dst, event []byte, typeHint string) ([]byte, Result, error) {
	if out, res, err, ok := m.appendUnchecked(dst, event, typeHint); ok {
		return out, res, err
	}
	if err := jsonlimit.Check(event, MaxDepth); err != nil {
		return dst, Result{}, deadletter.Wrap(deadletter.ReasonTooLarge, err)
	}
	return m.appendDepthChecked(dst, event, typeHint)
}

// appendDepthChecked is AppendEvent for an event whose nesting is known to
// be within MaxDepth: it validates the JSON only.
func (m *Mapper) appendDepthChecked(dst, event []byte, typeHint string) ([]byte, Result, error) {
	if !gjson.ValidBytes(event) {
		return dst, Result{}, errors.New("event is not valid JSON")
	}
	return m.AppendValidEvent(dst, event, typeHint)
}

// AppendValidEvent is AppendEvent for an event already known to be valid
// JSON nested at most MaxDepth levels deep, such as one of the events
// SplitEvents returns from a request body checked with jsonlimit: it skips
// the validation pass. On invalid JSON its output is undefined.
func (m *Mapper) AppendValidEvent(dst, event []byte, typeHint string) ([]byte, Result, error) {
	if !utf8.Valid(event) {
		event = bytes.ToValidUTF8(event, replacementChar)
	}
	out, res, err, _ := m.appendEvent(dst, event, typeHint, false)
	return out, res, err
}

// appendUnchecked is the fast path of AppendEvent for an event not known to
// be valid: it validates the event in the walk that maps it. It returns
// ok = false, with dst unchanged, unless the event is valid JSON holding
// valid UTF-8, nested at most MaxDepth levels deep, holds no "events" list
// (it may be a request body) and maps without an error of the walk; then
// the caller takes the slow path (AppendEvent's checks, then
// AppendValidEvent), which gives the same result for every event this one
// accepts, and says what is wrong with the others.
func (m *Mapper) appendUnchecked(dst, event []byte, typeHint string) ([]byte, Result, error, bool) {
	return m.appendEvent(dst, event, typeHint, true)
}

// appendEvent is AppendValidEvent for valid UTF-8 when check is false, and
// appendUnchecked when it is true.
func (m *Mapper) appendEvent(dst, event []byte, typeHint string, check bool) ([]byte, Result, error, bool) {
	raw := unsafestr.FromBytes(event)
	out, res, how, err := m.scanEvent(dst, raw, typeHint, check, false)
	if how == scanRetype {
		out, res, how, err = m.scanEvent(dst, raw, typeHint, check, true)
	}
	switch {
	case how == scanDone:
		return out, res, err, true
	case check:
		return dst, Result{}, nil, false
	}
	// Valid JSON that the scanner does not follow (descents deeper than
	// jsonscan.MaxDescend): the plain walk.
	out, res, err = m.walkEvent(dst, raw, typeHint)
	return out, res, err, true
}

// scanHow is how scanEvent ended.
type scanHow int

const (
	// scanDone: the event is mapped, dropped or rejected.
	scanDone scanHow = iota
	// scanRetype: the type hint was taken for the event's type, but the
	// event's event_type field may say otherwise: scan it again, looking
	// the field up first.
	scanRetype
	// scanDecline: the event is left to the slow path (see appendUnchecked)
	// or, known valid, to the plain walk.
	scanDecline
)

// scanEvent maps the event raw in one pass of a jsonscan.Scanner, which
// validates it when check is set. The type comes from an event_type field
// leading the event (the HTTP shape), else from typeHint unless lookup is
// set (the flat shape: the scan checks that no event_type field says
// otherwise), else from looking the field up.
func (m *Mapper) scanEvent(dst []byte, raw, typeHint string, check, lookup bool) ([]byte, Result, scanHow, error) {
	name, hinted, err := eventTypeName(raw, typeHint, lookup)
	var info *typeInfo
	var res Result
	if err == nil {
		info, res, err = m.resolveType(name)
	}
	if err != nil || res.Dropped != "" {
		switch {
		case hinted:
			return dst, Result{}, scanRetype, nil
		case check && !validEvent(raw):
			// Bad input is told apart the slow way; a drop or an error is
			// final only for an event known to be valid.
			return dst, Result{}, scanDecline, nil
		}
		return dst, res, scanDone, err
	}

	// event_properties are written aside, then placed after the top-level
	// fields, so that readers of the ids (the rate limiter, the output) find
	// them without scanning the properties.
	sc := m.scratch.Get().(*scratch)
	defer m.putScratch(sc)
	w := sc.walker(m, info)
	typed := !hinted // the first event_type field, if any, was checked
	var s jsonscan.Scanner
	s.Reset(raw, MaxDepth)
	s.Unescaped = w.text
	for s.Next(w.descend) {
		if !typed && s.Depth() == 1 && s.Key.Str == "event_type" {
			typed = true
			if v := &s.Value; v.Type != gjson.Null && (v.Type != gjson.String || v.Str != name) {
				sc.props = w.dst
				return dst, Result{}, scanRetype, nil
			}
		}
		if !w.visit(&s.Key, &s.Value) {
			break
		}
	}
	sc.props = w.dst
	switch {
	case w.err != nil && check:
		return dst, Result{}, scanDecline, nil
	case w.err != nil && !typed:
		return dst, Result{}, scanRetype, nil
	case w.err != nil:
		return dst, res, scanDone, w.err
	case !s.Valid(), check && w.body:
		return dst, Result{}, scanDecline, nil
	}
	out, res, err := m.complete(dst, info, res, &w)
	return out, res, scanDone, err
}

// walkEvent is scanEvent for valid JSON, with jsonscan.ForEachFlat.
func (m *Mapper) walkEvent(dst []byte, raw, typeHint string) ([]byte, Result, error) {
	name, _, err := eventTypeName(raw, typeHint, true)
	if err != nil {
		return dst, Result{}, err
	}
	info, res, err := m.resolveType(name)
	if err != nil || res.Dropped != "" {
		return dst, res, err
	}
	sc := m.scratch.Get().(*scratch)
	defer m.putScratch(sc)
	w := sc.walker(m, info)
	jsonscan.ForEachFlat(raw, flattened, func(k, v gjson.Result) bool { return w.visit(&k, &v) })
	sc.props = w.dst
	if w.err != nil {
		return dst, res, w.err
	}
	return m.complete(dst, info, res, &w)
}

// complete appends the event whose members w walked to dst (unchanged when
// it is dropped or fails).
func (m *Mapper) complete(dst []byte, info *typeInfo, res Result, w *walker) ([]byte, Result, error) {
	out, err := m.finish(dst, info, &w.f, w.dst)
	switch {
	case err != nil:
		return dst, res, err
	case out != nil:
		return out, res, nil
	case m.opts.UnidentifiedEvents == PolicyReject:
		return dst, res, errors.New("event has neither external_user_id nor device_id: Amplitude needs one of them")
	}
	res.Dropped = DropUnidentified
	return dst, res, nil
}

// validEvent reports whether raw is a valid event that appendUnchecked may
// map: valid JSON holding valid UTF-8, nested within MaxDepth, with no
// "events" list.
func validEvent(raw string) bool {
	var b bodyCheck
	var s jsonscan.Scanner
	for s.Reset(raw, MaxDepth); s.Next(b.descend); {
	}
	return s.Valid() && !b.body
}

// leadingType opens an event whose first member is event_type, written as
// Braze's HTTP connector writes it.
const leadingType = `{"event_type":"`

// eventTypeName returns the Currents type of the event raw: its event_type
// field, else typeHint. A leading event_type field (without escapes) is read
// in place; hinted says the type is typeHint, taken without looking the
// field up (unless lookup), which the caller must then check. raw need not
// be valid JSON (the caller validates it before trusting the outcome).
func eventTypeName(raw, typeHint string, lookup bool) (name string, hinted bool, err error) {
	if rest, ok := strings.CutPrefix(raw, leadingType); ok {
		if j := strings.IndexByte(rest, '"'); j > 0 && strings.IndexByte(rest[:j], '\\') < 0 {
			return rest[:j], false, nil
		}
	}
	root := gjson.Parse(raw)
	if !root.IsObject() {
		return "", false, fmt.Errorf("event must be a JSON object, got %s", typeName(root))
	}
	if !lookup && typeHint != "" {
		return typeHint, true, nil
	}
	typ := root.Get("event_type")
	switch {
	case typ.Type == gjson.String && typ.Str != "":
		return typ.Str, false, nil
	case typ.Exists() && typ.Type != gjson.Null:
		return "", false, fmt.Errorf("field event_type must be a string, got %s", typeName(typ))
	case typeHint != "":
		return typeHint, false, nil
	}
	return "", false, errors.New("missing event type: no event_type field and no currents_event_type metadata")
}

// resolveType resolves a Currents type against the options: an error for a
// rejected type, Result.Dropped for a dropped one.
func (m *Mapper) resolveType(name string) (*typeInfo, Result, error) {
	var res Result
	if len(name) > MaxIDLength {
		return nil, res, fmt.Errorf("event type is %d bytes long, over the %d-byte limit", len(name), MaxIDLength)
	}
	info, ok := m.types[name]
	if ok {
		res.EventType = info.typ // never an alias of event, which the caller may reuse
	} else {
		res.EventType = strings.Clone(name)
		switch m.opts.UnknownEvents {
		case PolicyDerive:
			info = m.resolve(res.EventType, DeriveName(name), KindRegular, 0)
		case PolicyReject:
			return nil, res, fmt.Errorf("unknown Currents event type %q (add it to event_names or set unknown_events: derive)", name)
		default:
			res.Dropped = DropUnknown
			return nil, res, nil
		}
	}
	if !info.allowed {
		res.Dropped = DropFiltered
		return nil, res, nil
	}
	return info, res, nil
}

// scratch holds the buffers an event is walked with: the event_properties,
// written before the event is assembled, and the text of the strings that
// hold escapes (see jsonscan.Scanner.Unescaped), which lives as long as
// the walk.
type scratch struct{ props, text []byte }

// walker returns a walker of an event of type info writing into sc's
// buffers, emptied: the walk copies what it keeps into the mapped event, so
// the unescaped strings of one event may share the buffer the next reuses.
func (sc *scratch) walker(m *Mapper, info *typeInfo) walker {
	sc.text = sc.text[:0]
	return walker{m: m, info: info, dst: sc.props[:0], text: &sc.text}
}

// putScratch returns walk buffers to the pool, unless an outsized event
// grew them.
func (m *Mapper) putScratch(sc *scratch) {
	if cap(sc.props) <= maxPooledScratch && cap(sc.text) <= maxPooledScratch {
		m.scratch.Put(sc)
	}
}

// maxPooledScratch bounds each walk buffer kept for reuse.
const maxPooledScratch = 64 << 10

// finish writes the event: its top-level fields, then event_properties
// (props, the properties already written without braces). It returns nil,
// nil when the event has no identity.
func (m *Mapper) finish(dst []byte, info *typeInfo, f *fields, props []byte) ([]byte, error) {
	id, err := requiredString(&f.id, "id")
	if err != nil {
		return nil, err
	}
	ms, err := eventTime(f)
	if err != nil {
		return nil, err
	}
	ext, err := optionalString(&f.extUserID, "external_user_id")
	if err != nil {
		return nil, err
	}
	dev, err := optionalString(&f.deviceID, "device_id")
	if err != nil {
		return nil, err
	}
	dst = append(dst, `{"event_type":`...)
	if info.kind == KindCustom {
		name, err := requiredString(&f.name, "name")
		if err != nil {
			return nil, err
		}
		dst = append(dst, '"')
		dst = append(dst, m.customEventPrefix...)
		dst = append(dst, name[1:]...)
	} else {
		dst = append(dst, info.name...)
	}
	if ext == "" && dev == "" {
		return nil, nil
	}
	if ext != "" {
		dst = append(append(dst, `,"user_id":`...), ext...)
	}
	if dev != "" {
		dst = append(append(dst, `,"device_id":`...), dev...)
	}
	dst = append(append(dst, `,"insert_id":`...), id...)
	dst = jsonw.AppendInt(append(dst, `,"time":`...), ms)
	dst = append(dst, `,"library":"`+library+`"`...)
	if ad, err := optionalString(&f.adID, "ad_id"); err == nil && ad != "" {
		switch f.adIDType.Str {
		case "ios_idfa":
			dst = append(append(dst, `,"idfa":`...), ad...)
		case "google_ad_id":
			dst = append(append(dst, `,"adid":`...), ad...)
		}
	}
	switch {
	case info.kind == KindPurchase:
		if dst, err = appendPurchase(dst, f); err != nil {
			return nil, err
		}
	case info.rules&topProductID != 0:
		pid, err := optionalString(&f.productID, "product_id")
		if err != nil {
			return nil, err
		}
		if pid != "" {
			dst = append(append(dst, `,"productId":`...), pid...)
		}
	}
	if m.opts.DeviceFields {
		dst = appendDeviceFields(dst, f)
	}
	dst = append(dst, `,"event_properties":{`...)
	dst = append(dst, props...)
	return append(dst, '}', '}'), nil
}

func appendPurchase(dst []byte, f *fields) ([]byte, error) {
	pid, err := requiredString(&f.productID, "product_id")
	if err != nil {
		return nil, err
	}
	if f.price.Type != gjson.Number {
		return nil, fmt.Errorf("field price must be a number, got %s", typeName(f.price))
	}
	dst = append(append(dst, `,"productId":`...), pid...)
	dst = appendNumber(append(dst, `,"price":`...), &f.price, true)
	switch f.quantity.Type {
	case gjson.Null:
	case gjson.Number:
		dst = append(append(dst, `,"quantity":`...), f.quantity.Raw...)
	default:
		return nil, fmt.Errorf("field quantity must be a number, got %s", typeName(f.quantity))
	}
	return dst, nil
}

func appendDeviceFields(dst []byte, f *fields) []byte {
	for _, kv := range [...]struct {
		key string
		v   gjson.Result
	}{{`,"platform":`, f.platform}, {`,"os_version":`, f.osVersion}, {`,"device_model":`, f.deviceModel}} {
		if kv.v.Type == gjson.String {
			dst = append(append(dst, kv.key...), kv.v.Raw...)
		}
	}
	if f.lat.Type == gjson.Number && f.lng.Type == gjson.Number {
		dst = appendNumber(append(dst, `,"location_lat":`...), &f.lat, true)
		dst = appendNumber(append(dst, `,"location_lng":`...), &f.lng, true)
	}
	return dst
}

// eventTime returns the event time in milliseconds: time_ms when present,
// else time (seconds) × 1000.
func eventTime(f *fields) (int64, error) {
	if f.timeMS.Type != gjson.Null {
		return positiveInt(&f.timeMS, "time_ms")
	}
	if !f.time.Exists() {
		return 0, errors.New("missing field time")
	}
	s, err := positiveInt(&f.time, "time")
	if err != nil {
		return 0, err
	}
	if s > 1<<53/1000 {
		return 0, fmt.Errorf("field time %d is out of range", s)
	}
	return s * 1000, nil
}

func positiveInt(v *gjson.Result, name string) (int64, error) {
	if v.Type != gjson.Number {
		return 0, fmt.Errorf("field %s must be an integer, got %s", name, typeName(*v))
	}
	n, err := strconv.ParseInt(v.Raw, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("field %s must be a positive integer, got %.40s", name, v.Raw)
	}
	return n, nil
}

// requiredString checks a string field that must be set and returns it as
// written (quoted).
func requiredString(v *gjson.Result, name string) (string, error) {
	if !v.Exists() || v.Type == gjson.Null {
		return "", fmt.Errorf("missing field %s", name)
	}
	raw, err := optionalString(v, name)
	if err == nil && raw == "" {
		err = fmt.Errorf("field %s is empty", name)
	}
	return raw, err
}

// optionalString checks a string field and returns it as written (quoted);
// absent, null and "" all come back "".
func optionalString(v *gjson.Result, name string) (string, error) {
	switch v.Type {
	case gjson.Null:
		return "", nil
	case gjson.String:
		if len(v.Raw) > MaxIDLength+2 {
			return "", fmt.Errorf("field %s is %d bytes long, over the %d-byte limit", name, len(v.Raw)-2, MaxIDLength)
		}
		if v.Str == "" {
			return "", nil
		}
		return v.Raw, nil
	}
	return "", fmt.Errorf("field %s must be a string, got %s", name, typeName(*v))
}

// DeriveName builds an Amplitude base name for a Currents type the catalogue
// does not know: the segments after "users." and "messages."/"behaviors.",
// each capitalised and split at case changes, e.g.
// "users.messages.pigeon.DeliveryFailure" -> "Pigeon Delivery Failure".
func DeriveName(typ string) string {
	rest := strings.TrimPrefix(typ, "users.")
	for _, p := range []string{"messages.", "behaviors."} {
		rest = strings.TrimPrefix(rest, p)
	}
	var b strings.Builder
	for i, seg := range strings.Split(rest, ".") {
		if i > 0 {
			b.WriteByte(' ')
		}
		for j, r := range seg {
			switch {
			case j == 0:
				r = unicode.ToUpper(r)
			case unicode.IsUpper(r) && !unicode.IsUpper(rune(seg[j-1])):
				b.WriteByte(' ')
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// escapeInner returns s as JSON string content, without the quotes.
func escapeInner(s string) []byte {
	q := jsonw.AppendString(nil, s)
	return q[1 : len(q)-1]
}

func typeName(v gjson.Result) string {
	switch {
	case !v.Exists():
		return "nothing"
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.Number:
		return "a number"
	case v.Type == gjson.True, v.Type == gjson.False:
		return "a boolean"
	}
	return "null"
}
