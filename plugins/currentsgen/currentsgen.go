// Package currentsgen generates realistic, deterministic Braze Currents
// events for tests and benchmarks.
//
// A [Generator] is seeded: the same [Config] always yields the same stream,
// byte for byte. The stream mixes the event types a typical Braze customer
// exports (email, push, in-app and content-card messaging, SMS, sessions,
// custom events with custom properties, purchases with purchase properties,
// conversions, canvas entries, ...) in realistic proportions and sizes, spread
// over a configurable population of devices and users, some of them
// anonymous (a device id and a Braze id, no external id). Event ids are
// unique and times increase at a configurable rate. Every event carries an
// external_user_id ("usr_" and nine digits) or a device_id, or both, so
// every event maps to a valid Amplitude event; email, SMS and webhook
// events carry no device_id unless the user is anonymous.
//
// Each event can be written in the two shapes Braze delivers:
//
//   - the HTTP connector shape ([Event.AppendHTTP]): event_type, id, time,
//     a nested user object and a nested properties object, custom and
//     purchase properties as JSON objects;
//   - the flat storage shape ([Event.AppendFlat]): the Avro record decoded to
//     JSON with unions unwrapped, every field at the top level, custom and
//     purchase properties as a JSON-encoded string under "properties", plus
//     an "event_type" field naming the Currents type.
//
// Helpers wrap events into an HTTP connector request body
// ([Generator.AppendBody]) or write them as JSON lines
// ([Generator.WriteLines]). Devices are derived from their index by hashing,
// so a population of millions of devices costs no memory.
//
// Typical use:
//
//	g := currentsgen.New(currentsgen.Config{Seed: 1, Devices: 10000})
//	var buf []byte
//	for i := 0; i < n; i++ {
//		buf = g.Next().AppendHTTP(buf[:0])
//		// use buf
//	}
package currentsgen

import (
	"bufio"
	"io"
	"math/rand/v2"
	"strconv"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// Shape selects how an event is written.
type Shape int

const (
	// HTTP is the HTTP connector shape (nested user and properties).
	HTTP Shape = iota
	// Flat is the storage (Avro record) shape with an event_type field.
	Flat
)

// Config describes the generated stream. The zero value is usable: every
// zero field takes the default documented on it.
type Config struct {
	// Seed makes the stream reproducible. Default 0 is a valid seed.
	Seed uint64
	// Devices is the number of distinct devices. Default 10,000.
	Devices int
	// Users is the number of distinct Braze users the devices belong to.
	// Default two thirds of Devices (about 1.5 devices per user), at least 1.
	Users int
	// AnonymousPercent is the share of users, in percent, with no
	// external_user_id (device id only). Default 15; negative means none.
	AnonymousPercent int
	// StartTime is the Unix time, in seconds, of the first event.
	// Default 1767225600 (2026-01-01T00:00:00Z).
	StartTime int64
	// EventsPerSecond is the rate at which event times advance. Default 1000.
	EventsPerSecond int
	// Skew, when above 1, draws devices from a Zipf distribution with this
	// exponent (a few hot devices, a long tail) instead of uniformly.
	Skew float64
	// Mix overrides the event type proportions. Default [DefaultMix].
	Mix []Weight
}

// Weight is the relative frequency of one Currents event type in a stream.
type Weight struct {
	// Type is the Currents event type, such as "users.messages.email.Open".
	// It must be one of [Types].
	Type string
	// Weight is relative to the other weights of the mix.
	Weight int
}

// DefaultMix approximates the event volume of a typical mobile and email
// Braze customer: sessions, custom events and message sends dominate;
// clicks, purchases and conversions are rarer. Weights are per 1,000 events.
var DefaultMix = []Weight{
	{"users.behaviors.CustomEvent", 190},
	{"users.behaviors.app.SessionStart", 140},
	{"users.behaviors.app.SessionEnd", 130},
	{"users.messages.pushnotification.Send", 110},
	{"users.messages.email.Send", 80},
	{"users.messages.email.Delivery", 75},
	{"users.messages.email.Open", 60},
	{"users.messages.inappmessage.Impression", 45},
	{"users.messages.contentcard.Impression", 30},
	{"users.behaviors.Purchase", 20},
	{"users.messages.pushnotification.Open", 18},
	{"users.messages.email.Click", 15},
	{"users.canvas.Entry", 15},
	{"users.messages.sms.Send", 15},
	{"users.messages.sms.Delivery", 12},
	{"users.campaigns.Conversion", 8},
	{"users.messages.inappmessage.Click", 6},
	{"users.behaviors.app.FirstSession", 5},
	{"users.behaviors.Location", 5},
	{"users.messages.webhook.Send", 5},
	{"users.messages.email.Unsubscribe", 2},
	{"users.messages.email.Bounce", 2},
	{"users.messages.pushnotification.Bounce", 2},
	{"users.behaviors.Uninstall", 2},
	{"users.behaviors.subscription.GlobalStateChange", 2},
}

// Field is one property of an event: its name and its value already
// encoded as JSON.
type Field struct {
	// Key is the property name.
	Key string
	// Value is the property's JSON value (a string with its quotes, a
	// number, a boolean, an array).
	Value []byte
}

// Event is one generated Currents event. It is owned by the [Generator]
// and valid until the next call to [Generator.Next].
type Event struct {
	// Type is the Currents event type.
	Type string
	// ID is the event id, unique within a stream.
	ID string
	// Time is the Unix time in seconds.
	Time int64
	// UserID is the Braze user id (24 hex digits).
	UserID string
	// ExternalUserID is the customer's user id; empty for anonymous users.
	ExternalUserID string
	// DeviceID is the device id; empty for events that carry none.
	DeviceID string
	// Timezone is the user's IANA time zone; empty when the type has none.
	Timezone string
	// Props are the event's other fields, in a fixed order per type.
	Props []Field
	// CustomKey is "custom_properties" or "purchase_properties" when the
	// event carries Custom, else empty.
	CustomKey string
	// Custom are the custom event or purchase properties.
	Custom []Field

	arena []byte
	strs  []byte
}

// AppendHTTP appends the event in the HTTP connector shape.
func (e *Event) AppendHTTP(dst []byte) []byte {
	dst = append(dst, `{"event_type":`...)
	dst = jsonw.AppendString(dst, e.Type)
	dst = append(dst, `,"id":`...)
	dst = jsonw.AppendString(dst, e.ID)
	dst = append(dst, `,"time":`...)
	dst = jsonw.AppendInt(dst, e.Time)
	dst = append(dst, `,"user":{"user_id":`...)
	dst = jsonw.AppendString(dst, e.UserID)
	dst = e.appendIdentity(dst)
	dst = append(dst, `},"properties":{`...)
	for i, f := range e.Props {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonw.AppendKey(dst, f.Key)
		dst = append(dst, f.Value...)
	}
	if e.CustomKey != "" {
		if len(e.Props) > 0 {
			dst = append(dst, ',')
		}
		dst = jsonw.AppendKey(dst, e.CustomKey)
		dst = appendObject(dst, e.Custom)
	}
	return append(dst, "}}"...)
}

// AppendFlat appends the event in the flat storage shape, with an
// "event_type" field first.
func (e *Event) AppendFlat(dst []byte) []byte {
	dst = append(dst, `{"event_type":`...)
	dst = jsonw.AppendString(dst, e.Type)
	dst = append(dst, `,"id":`...)
	dst = jsonw.AppendString(dst, e.ID)
	dst = append(dst, `,"user_id":`...)
	dst = jsonw.AppendString(dst, e.UserID)
	dst = append(dst, `,"time":`...)
	dst = jsonw.AppendInt(dst, e.Time)
	dst = e.appendIdentity(dst)
	for _, f := range e.Props {
		dst = append(dst, ',')
		dst = jsonw.AppendKey(dst, f.Key)
		dst = append(dst, f.Value...)
	}
	if e.CustomKey != "" {
		dst = append(dst, `,"properties":`...)
		e.strs = appendObject(e.strs[:0], e.Custom)
		dst = jsonw.AppendString(dst, string(e.strs))
	}
	return append(dst, '}')
}

// Append appends the event in the given shape.
func (e *Event) Append(dst []byte, s Shape) []byte {
	if s == Flat {
		return e.AppendFlat(dst)
	}
	return e.AppendHTTP(dst)
}

func (e *Event) appendIdentity(dst []byte) []byte {
	if e.ExternalUserID != "" {
		dst = append(dst, `,"external_user_id":`...)
		dst = jsonw.AppendString(dst, e.ExternalUserID)
	}
	if e.DeviceID != "" {
		dst = append(dst, `,"device_id":`...)
		dst = jsonw.AppendString(dst, e.DeviceID)
	}
	if e.Timezone != "" {
		dst = append(dst, `,"timezone":`...)
		dst = jsonw.AppendString(dst, e.Timezone)
	}
	return dst
}

func appendObject(dst []byte, fs []Field) []byte {
	dst = append(dst, '{')
	for i, f := range fs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonw.AppendKey(dst, f.Key)
		dst = append(dst, f.Value...)
	}
	return append(dst, '}')
}

// Generator produces a deterministic stream of events. It is not safe for
// concurrent use; create one per goroutine (with distinct seeds if the
// streams must differ).
type Generator struct {
	cfg    Config
	rng    *rand.Rand
	zipf   *rand.Zipf
	key    uint64
	n      uint64
	kinds  []kind
	cum    []int
	total  int
	camps  []campaign
	canvs  []canvas
	ev     Event
	lineBf []byte
	// appGroupID and appIDs (one per platform) are quoted JSON strings.
	appGroupID []byte
	appIDs     [3][]byte
}

// New returns a generator for cfg, with defaults applied.
func New(cfg Config) *Generator {
	if cfg.Devices <= 0 {
		cfg.Devices = 10000
	}
	if cfg.Users <= 0 {
		cfg.Users = max(1, cfg.Devices*2/3)
	}
	if cfg.AnonymousPercent == 0 {
		cfg.AnonymousPercent = 15
	}
	if cfg.StartTime == 0 {
		cfg.StartTime = 1767225600
	}
	if cfg.EventsPerSecond <= 0 {
		cfg.EventsPerSecond = 1000
	}
	if len(cfg.Mix) == 0 {
		cfg.Mix = DefaultMix
	}
	g := &Generator{
		cfg: cfg,
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)),
		key: mix(cfg.Seed ^ 0xc2b2ae3d27d4eb4f),
	}
	if cfg.Skew > 1 {
		g.zipf = rand.NewZipf(g.rng, cfg.Skew, 1, uint64(cfg.Devices-1))
	}
	for _, w := range cfg.Mix {
		k, ok := kindByType[w.Type]
		if !ok {
			panic("currentsgen: unknown event type " + strconv.Quote(w.Type))
		}
		if w.Weight <= 0 {
			continue
		}
		g.total += w.Weight
		g.kinds = append(g.kinds, k)
		g.cum = append(g.cum, g.total)
	}
	if g.total == 0 {
		panic("currentsgen: empty event mix")
	}
	g.camps, g.canvs = newCatalogue(g.key)
	quoted := func(hi, lo uint64) []byte { return append(appendUUID([]byte{'"'}, hi, lo), '"') }
	g.appGroupID = quoted(mix(g.key^0x8ebc6af09c88c6e3), mix(g.key^0x589965cc75374cc3))
	for i := range g.appIDs {
		g.appIDs[i] = quoted(mix(g.key^0xa0761d6478bd642f+uint64(i)), mix(g.key^0xe7037ed1a0b428db+uint64(i)))
	}
	g.ev.arena = make([]byte, 0, 4096)
	return g
}

// Config returns the generator's configuration with defaults applied.
func (g *Generator) Config() Config { return g.cfg }

// Count returns the number of events generated so far.
func (g *Generator) Count() int { return int(g.n) }

// Next generates the next event. The returned event is reused by the
// following call.
func (g *Generator) Next() *Event {
	e := &g.ev
	e.arena = e.arena[:0]
	e.Props = e.Props[:0]
	e.Custom = e.Custom[:0]
	e.CustomKey = ""

	n := g.n
	g.n++
	k := g.pickKind()
	d := g.device()

	e.Type = k.typ
	hi := mix(n ^ g.key) // unique per n: mix is a bijection
	e.ID = g.str(appendUUID(g.scratch(), hi, mix(hi^0x6a09e667f3bcc908)))
	e.Time = g.cfg.StartTime + int64(n)/int64(g.cfg.EventsPerSecond)
	e.UserID = g.str(appendHex(appendHex(g.scratch(), d.brazeID, 16), mix(d.brazeID), 8))
	e.ExternalUserID = ""
	if !d.anonymous {
		e.ExternalUserID = g.str(strconv.AppendUint(append(g.scratch(), "usr_"...), 100000000+d.user, 10))
	}
	e.DeviceID = ""
	if k.flags&noDevice == 0 || d.anonymous {
		e.DeviceID = g.str(appendUUID(g.scratch(), d.hash, mix(d.hash)))
	}
	e.Timezone = ""
	if k.flags&noTimezone == 0 {
		e.Timezone = timezones[d.user%uint64(len(timezones))]
	}
	k.build(g, e, &d)
	return e
}

// Append generates the next event and appends it in shape s.
func (g *Generator) Append(dst []byte, s Shape) []byte {
	return g.Next().Append(dst, s)
}

// AppendBody appends an HTTP connector request body {"events":[...]} holding
// the next n events in the HTTP shape.
func (g *Generator) AppendBody(dst []byte, n int) []byte {
	dst = append(dst, `{"events":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = g.Next().AppendHTTP(dst)
	}
	return append(dst, "]}"...)
}

// WriteLines writes the next n events to w as JSON lines in shape s.
func (g *Generator) WriteLines(w io.Writer, n int, s Shape) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for i := 0; i < n; i++ {
		g.lineBf = append(g.Next().Append(g.lineBf[:0], s), '\n')
		if _, err := bw.Write(g.lineBf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Generate returns the next n events of a new generator for cfg, each in its
// own slice, in shape s.
func Generate(cfg Config, n int, s Shape) [][]byte {
	g := New(cfg)
	out := make([][]byte, n)
	for i := range out {
		out[i] = g.Append(nil, s)
	}
	return out
}

func (g *Generator) pickKind() kind {
	r := g.rng.IntN(g.total)
	lo, hi := 0, len(g.cum)
	for lo < hi {
		m := (lo + hi) / 2
		if g.cum[m] <= r {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return g.kinds[lo]
}

// device describes one device, derived from its index.
type device struct {
	hash      uint64
	user      uint64
	brazeID   uint64
	anonymous bool
	platform  int
}

const (
	platIOS = iota
	platAndroid
	platWeb
)

func (g *Generator) device() device {
	var idx uint64
	if g.zipf != nil {
		idx = g.zipf.Uint64()
	} else {
		idx = g.rng.Uint64N(uint64(g.cfg.Devices))
	}
	h := mix(idx ^ g.key)
	user := mix(h^0x5bd1e995) % uint64(g.cfg.Users)
	uh := mix(user ^ g.key ^ 0x27d4eb2f165667c5)
	d := device{hash: h, user: user, brazeID: uh, anonymous: int(uh>>40%100) < g.cfg.AnonymousPercent}
	switch p := h >> 32 % 100; {
	case p < 47:
		d.platform = platIOS
	case p < 92:
		d.platform = platAndroid
	default:
		d.platform = platWeb
	}
	return d
}

// scratch returns the empty tail of the arena, to append a value to and
// then pass to str or val.
func (g *Generator) scratch() []byte { return g.ev.arena[len(g.ev.arena):] }

// commit adds b (appended to scratch) to the arena and returns it.
func (g *Generator) commit(b []byte) []byte {
	e := &g.ev
	if len(b) <= cap(e.arena)-len(e.arena) {
		// append did not reallocate: b lies in the arena's spare capacity.
		e.arena = e.arena[:len(e.arena)+len(b)]
		return b
	}
	// b outgrew the arena: continue in a larger one. Values already handed
	// out keep pointing at the old array, which is never written again.
	e.arena = append(make([]byte, 0, max(2*cap(e.arena), len(b))), b...)
	return e.arena
}

// str returns b, appended to scratch, as a string. Strings are copied so
// that callers may keep them.
func (g *Generator) str(b []byte) string { return string(b) }

// prop adds a property whose JSON value has been appended to scratch.
func (g *Generator) prop(key string, b []byte) {
	g.ev.Props = append(g.ev.Props, Field{Key: key, Value: g.commit(b)})
}

func (g *Generator) propStr(key, s string) {
	g.prop(key, jsonw.AppendString(g.scratch(), s))
}

func (g *Generator) custom(key string, b []byte) {
	g.ev.Custom = append(g.ev.Custom, Field{Key: key, Value: g.commit(b)})
}

// mix is the splitmix64 finaliser: a bijection of uint64 with good
// avalanche, so distinct inputs give distinct outputs.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

const hexDigits = "0123456789abcdef"

// appendHex appends the low 4*n bits of v (n <= 16) as n hex digits.
func appendHex(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[v>>(4*i)&0xF])
	}
	return dst
}

// appendUUID appends hi and lo as a version-4 style UUID string.
func appendUUID(dst []byte, hi, lo uint64) []byte {
	var b [36]byte
	j := 0
	for i := 0; i < 32; i++ {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b[j] = '-'
			j++
		}
		var nib uint64
		if i < 16 {
			nib = hi >> (60 - 4*i) & 0xF
		} else {
			nib = lo >> (60 - 4*(i-16)) & 0xF
		}
		b[j] = hexDigits[nib]
		j++
	}
	return append(dst, b[:]...)
}
