package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/logthrottle"
	"github.com/opencurrents/currents-amplitude/plugins/internal/unsafestr"
)

const (
	drlFieldKeys      = "keys"
	drlFieldPreset    = "preset"
	drlFieldPerSecond = "per_second"
	drlFieldPerDay    = "per_day"
	drlFieldOnLimit   = "on_limit"
	drlFieldCache     = "cache"
	drlFieldCachePfx  = "cache_key_prefix"

	// Metadata set on messages held back in reject mode.
	metaKey     = "rate_limit_key"
	metaReason  = "rate_limit_reason"
	metaRetryAt = "rate_limit_retry_at"

	modeDelay  = "delay"
	modeReject = "reject"
	modeDrop   = "drop"

	presetHTTPV2 = "http_v2"
	presetBatch  = "batch"

	// sweepEvery is how often idle keys are compressed or forgotten: the
	// full state of a key lives at most this long after its last event, which
	// bounds the memory of a burst of many distinct devices.
	sweepEvery = time.Second
	// maintainEvery is how often dirty daily counts are written to the cache
	// (a multiple of sweepEvery).
	maintainEvery = 10 * time.Second
)

// presets holds the per-second and per-day limits of each Amplitude endpoint.
var presets = map[string][2]int{
	presetHTTPV2: {30, 500000},
	presetBatch:  {1000, 500000},
}

func deviceRateLimitSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Utility").
		Version("0.1.0").
		Summary("Enforces Amplitude's per-device and per-user event rate limits before events leave: at most `per_second` events in any one second and `per_day` in any 24 hours for each key.").
		Description(`
### When to use it

The `+"`amplitude`"+` output paces itself: it keeps Amplitude's per-device and per-user budgets and charges every send attempt to them (retries, 413 splits, bisections and hedges included), which a processor before the output cannot see. It also bounds what arrives at Amplitude however requests bunch on the way (its arrival guard). Pipelines that end in the `+"`amplitude`"+` output, the shipped ones included (the Kafka delivery tier too), therefore do not need this processor for Amplitude's limits, and should not put it in `+"`delay`"+` mode in front of the output (a delayed message holds a pipeline thread; the output's pacing does not).

It stays useful where there is no `+"`amplitude`"+` output to pace: before a Kafka topic or another queue that will be delivered to Amplitude later, to keep what goes in within Amplitude's limits; in front of another output that reaches Amplitude (an `+"`http_client`"+`, a proxy); and where the wanted behaviour is to reject (`+"`reject`"+`, routed by a `+"`switch`"+` to a deferred lane or dead letter) or drop events of busy devices rather than wait for them.

### How it limits

Every message is limited by each of its `+"`keys`"+` (by default the `+"`device_id`"+` and the `+"`user_id`"+` of an Amplitude event), each counted on its own: a message passes only when every non-empty key has room under both limits, and then it counts against all of them. A key that evaluates to an empty string or `+"`null`"+` is not limited.

The windows slide: no interval of one second ever holds more than `+"`per_second`"+` passed events of one key, and no 24 hours more than `+"`per_day`"+`. To guarantee it with one 64-byte slot per active key (see Memory), counts are kept in 100 ms buckets over the last 1.1 s and hourly buckets over the last 25 hours; a key sending steadily therefore passes up to `+"`per_second`"+`/1.1 events per second. A key whose daily count is at most `+"`per_day`"+`/64 keeps it as one number dated to its latest hour (stricter, never looser, by at most `+"`per_day`"+`/64 events); only keys past that get the hourly buckets.

### Memory

Sizing rule (checked by the package's tests at 10^5 to 3×10^6 keys): 85 to 128 bytes per key (a device id or a user id) seen in the last seconds (one 64-byte slot, with the table's fill; about 120 at 10^6 keys), 20 to 31 bytes per idle key that still has events in its 24 hours (about 25), nothing once they are out. On Linux the tables live outside the Go heap, so the garbage collector does not double them: these bytes are resident memory. For example 10^6 devices with 10^6 users: about 240 MB while all of them send at once, about 50 MB for a day's worth of them of which 10,000 send at a time, on top of the pipeline's own memory.

### What happens to an event over the limit (`+"`on_limit`"+`)

- `+"`delay`"+`: the message is held until its keys have room (at most about a second), then passes: back-pressure, nothing is lost. Only the batch holding it waits; other batches and threads are not slowed. Over the daily limit a message is rejected instead (it would wait for hours).
- `+"`reject`"+`: the message continues flagged with an error and the metadata `+"`rate_limit_key`"+`, `+"`rate_limit_reason`"+` (`+"`per_second`"+` or `+"`per_day`"+`) and `+"`rate_limit_retry_at`"+` (RFC 3339 time at which it may pass), for a `+"`switch`"+` output to route it to a deferred lane or a dead letter.
- `+"`drop`"+`: the message is removed, counted in `+"`device_rate_limit_dropped_total`"+` and logged.

### Metrics

`+"`device_rate_limit_passed_total`"+`, `+"`device_rate_limit_delayed_total`"+` with the timer `+"`device_rate_limit_delay_seconds`"+`, `+"`device_rate_limit_rejected_total`"+` and `+"`device_rate_limit_dropped_total`"+` (label `+"`reason`"+`), the gauge `+"`device_rate_limit_keys_tracked`"+` and `+"`device_rate_limit_cache_errors_total`"+`.

### Scaling out

State is per process (shared by all `+"`pipeline.threads`"+`). Run several instances with the input partitioned by device id (for example Kafka keyed by `+"`device_id`"+`), so that each device is limited by one instance.`).
		Fields(
			service.NewInterpolatedStringListField(drlFieldKeys).
				Description("What is limited: one interpolated string per key, each counted on its own. A key that is a plain `json(\"path\")` or `this.path` is read straight from the raw JSON (fast path).").
				Default([]any{`${! json("device_id") }`, `${! json("user_id") }`}).
				Example([]any{`${! json("device_id") }`}).
				Example([]any{`${! json("device_id") }`, `${! json("user_id") }`, `${! meta("kafka_key") }`}),
			service.NewStringAnnotatedEnumField(drlFieldPreset, map[string]string{
				presetHTTPV2: "HTTP V2 API: 30 events per second, 500,000 per day.",
				presetBatch:  "Batch API: 1000 events per second (Amplitude averages over 30 s; this is enforced over every single second, which is stricter), 500,000 per day.",
			}).
				Description("The limits of an Amplitude endpoint; `per_second` and `per_day` override them.").
				Default(presetHTTPV2).
				Example(presetBatch),
			service.NewIntField(drlFieldPerSecond).
				Description("Most events a key may pass in any one second (1 to 65535). Defaults to the preset's (30 for `http_v2`).").
				Optional().
				Example(10),
			service.NewIntField(drlFieldPerDay).
				Description("Most events a key may pass in any 24 hours. Defaults to the preset's (500000).").
				Optional().
				Example(100000),
			service.NewStringAnnotatedEnumField(drlFieldOnLimit, map[string]string{
				modeDelay:  "Hold the message until it may pass (over the daily limit: reject).",
				modeReject: "Flag the message with an error and `rate_limit_*` metadata.",
				modeDrop:   "Remove the message (counted and logged).",
			}).
				Description("What to do with a message over a limit.").
				Default(modeDelay).
				Example(modeReject),
			service.NewStringField(drlFieldCache).
				Description("Optional cache resource in which daily counts are kept (written every 10 s and on shutdown, read when a key is first seen), so that they survive restarts and follow a key to another instance after a rebalance. Best-effort: see the documentation.").
				Default("").
				Example("rate_limit_counts"),
			service.NewStringField(drlFieldCachePfx).
				Description("Prefix of the cache keys, which are `<prefix><key index>:<key>`.").
				Default("device_rate_limit:").
				Example("amplitude_prod:"),
		).
		Example("Reject what is over the HTTP V2 limits", "Events over a limit are sent, with the reason, to a Kafka topic for later replay.", `
pipeline:
  processors:
    - braze_to_amplitude: {}
    - device_rate_limit:
        preset: http_v2
        on_limit: reject
output:
  switch:
    cases:
      - check: '@rate_limit_reason != null'
        output:
          kafka_franz:
            seed_brokers: [ localhost:9092 ]
            topic: amplitude_deferred
      - output:
          amplitude:
            api_key: ${AMPLITUDE_API_KEY}
`)
}

func init() {
	service.MustRegisterBatchProcessor("device_rate_limit", deviceRateLimitSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchProcessor, error) {
			p, err := newDeviceRateLimitFromParsed(conf, mgr, clock.System)
			if err != nil {
				return nil, err
			}
			p.start()
			return p, nil
		})
}

// keyField extracts one key from a message: straight from the raw JSON with
// gjson when path is set, otherwise by evaluating the interpolated string.
type keyField struct {
	path   string
	interp *service.InterpolatedString
	seed   maphash.Seed
}

// fastKeyRe matches the keys that can be read with gjson: `${! json("a.b") }`
// and `${! this.a.b }`.
var fastKeyRe = regexp.MustCompile(`^\$\{!\s*(?:json\("([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"\)|this\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*))\s*\}$`)

// fastPath returns the gjson path of a plain json("path") or this.path key.
func fastPath(raw string) (string, bool) {
	m := fastKeyRe.FindStringSubmatch(raw)
	if m == nil {
		return "", false
	}
	return m[1] + m[2], true
}

// msgKeys are the keys of one message: their values (which may point into
// the message's bytes: clone before keeping) and hashes.
type msgKeys struct {
	n    int            // -1: the message is not limited (see ProcessBatch)
	idx  [maxKeys]uint8 // index in the keys field
	vals [maxKeys]string
	hs   [maxKeys]uint64
	// slots are where the limiter's prefetch found the keys (idtable's
	// FindHinted hints), for the take that follows it.
	slots [maxKeys]uint32
}

type deviceRateLimit struct {
	keys   []keyField
	lim    *limiter
	mode   string
	clk    clock.Clock
	log    *service.Logger
	cache  *countCache
	closed chan struct{}
	once   sync.Once
	done   sync.WaitGroup

	mPassed, mDelayed, mRejected, mDropped, mCacheErr *service.MetricCounter
	mDelay                                            *service.MetricTimer
	mKeys                                             *service.MetricGauge

	dropWarn, cacheWarn logthrottle.Warner
}

func newDeviceRateLimitFromParsed(conf *service.ParsedConfig, mgr *service.Resources, clk clock.Clock) (*deviceRateLimit, error) {
	perSec, perDay, err := parseLimits(conf)
	if err != nil {
		return nil, err
	}
	keys, err := parseKeys(conf)
	if err != nil {
		return nil, err
	}
	mode, err := conf.FieldString(drlFieldOnLimit)
	if err != nil {
		return nil, err
	}
	p := &deviceRateLimit{
		keys:      keys,
		lim:       newLimiter(uint32(perSec), uint32(perDay), clk.Now().UnixNano()),
		mode:      mode,
		clk:       clk,
		log:       mgr.Logger(),
		closed:    make(chan struct{}),
		mPassed:   mgr.Metrics().NewCounter("device_rate_limit_passed_total"),
		mDelayed:  mgr.Metrics().NewCounter("device_rate_limit_delayed_total"),
		mRejected: mgr.Metrics().NewCounter("device_rate_limit_rejected_total", "reason"),
		mDropped:  mgr.Metrics().NewCounter("device_rate_limit_dropped_total", "reason"),
		mCacheErr: mgr.Metrics().NewCounter("device_rate_limit_cache_errors_total"),
		mDelay:    mgr.Metrics().NewTimer("device_rate_limit_delay_seconds"),
		mKeys:     mgr.Metrics().NewGauge("device_rate_limit_keys_tracked"),
	}
	if p.cache, err = parseCache(conf, mgr, p.lim); err != nil {
		return nil, err
	}
	return p, nil
}

func parseLimits(conf *service.ParsedConfig) (perSec, perDay int, err error) {
	preset, err := conf.FieldString(drlFieldPreset)
	if err != nil {
		return 0, 0, err
	}
	limits, ok := presets[preset]
	if !ok {
		return 0, 0, fmt.Errorf("unknown preset %q: use %s or %s", preset, presetHTTPV2, presetBatch)
	}
	perSec, perDay = limits[0], limits[1]
	if conf.Contains(drlFieldPerSecond) {
		if perSec, err = conf.FieldInt(drlFieldPerSecond); err != nil {
			return 0, 0, err
		}
	}
	if conf.Contains(drlFieldPerDay) {
		if perDay, err = conf.FieldInt(drlFieldPerDay); err != nil {
			return 0, 0, err
		}
	}
	if perSec < 1 || perSec > 65535 {
		return 0, 0, fmt.Errorf("%s must be between 1 and 65535, got %d", drlFieldPerSecond, perSec)
	}
	if perDay < 1 || int64(perDay) > 1<<31 { // int64: 1<<31 overflows a 32-bit int
		return 0, 0, fmt.Errorf("%s must be between 1 and %d, got %d", drlFieldPerDay, int64(1<<31), perDay)
	}
	return perSec, perDay, nil
}

func parseKeys(conf *service.ParsedConfig) ([]keyField, error) {
	raws, err := conf.FieldStringList(drlFieldKeys)
	if err != nil {
		return nil, err
	}
	interps, err := conf.FieldInterpolatedStringList(drlFieldKeys)
	if err != nil {
		return nil, err
	}
	if len(raws) == 0 || len(raws) > maxKeys {
		return nil, fmt.Errorf("%s must list between 1 and %d keys, got %d", drlFieldKeys, maxKeys, len(raws))
	}
	keys := make([]keyField, len(raws))
	for i, raw := range raws {
		keys[i] = keyField{interp: interps[i], seed: maphash.MakeSeed()}
		keys[i].path, _ = fastPath(strings.TrimSpace(raw))
	}
	return keys, nil
}

// extract reads the keys of msg. Keys that are absent, empty or null are left
// out.
func (p *deviceRateLimit) extract(msg *service.Message) (msgKeys, error) {
	var k msgKeys
	var raw string
	for i, f := range p.keys {
		var v string
		if f.path != "" {
			if raw == "" {
				b, err := msg.AsBytes()
				if err != nil {
					return k, err
				}
				raw = unsafestr.FromBytes(b)
				if !isObject(raw) {
					return k, errors.New("message is not a JSON object")
				}
			}
			r := gjson.Get(raw, f.path)
			switch r.Type {
			case gjson.Null:
				continue
			case gjson.String:
				v = r.Str
			default:
				v = r.Raw
			}
		} else {
			s, err := f.interp.TryString(msg)
			if err != nil {
				return k, fmt.Errorf("evaluating key %d: %w", i, err)
			}
			if s == "null" {
				continue
			}
			v = s
		}
		if v == "" {
			continue
		}
		k.idx[k.n], k.vals[k.n] = uint8(i), v
		k.hs[k.n] = maphash.String(f.seed, v)
		k.n++
	}
	return k, nil
}

// isObject reports whether the first non-space byte of raw opens an object.
func isObject(raw string) bool {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case ' ', '\t', '\r', '\n':
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// batchScratch holds the keys and verdicts of a batch's messages.
type batchScratch struct {
	keys []msgKeys
	vs   []verdict
}

// scratchPool holds the batchScratch ProcessBatch fills for a batch.
var scratchPool = sync.Pool{New: func() any { return new(batchScratch) }}

// pending is a message of a batch waiting for room in delay mode.
type pending struct {
	i    int
	keys msgKeys
	v    verdict // the latest refusal
}

// ProcessBatch limits each message of the batch on its own.
func (p *deviceRateLimit) ProcessBatch(ctx context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	var passed int64
	var waiting []pending
	dropped := false
	// The messages of a batch are taken at one instant.
	now := p.clk.Now().UnixNano()
	if p.mode == modeDrop {
		// Dropping removes messages: work on a copy of the slice, never on
		// the caller's.
		batch = append(service.MessageBatch(nil), batch...)
	}
	// Every message's keys first, so that the limiter takes them all
	// together (takeBatch).
	sc := scratchPool.Get().(*batchScratch)
	if cap(sc.keys) < len(batch) {
		sc.keys, sc.vs = make([]msgKeys, len(batch)), make([]verdict, len(batch))
	}
	keys, vs := sc.keys[:len(batch)], sc.vs[:len(batch)]
	defer func() {
		clear(keys) // the values point into the messages
		scratchPool.Put(sc)
	}()
	for i, msg := range batch {
		keys[i].n = -1 // not limited
		if msg.GetError() != nil {
			// Already failed upstream (e.g. unmappable): pass it on untouched
			// so the dead-letter output sees the original reason. It will not
			// be sent, so it does not count against any limit.
			continue
		}
		k, err := p.extract(msg)
		if err != nil {
			msg.SetError(fmt.Errorf("device rate limit: %w", err))
			continue
		}
		keys[i] = k
	}
	p.cache.load(ctx, now, keys, p.cacheFailed)
	p.lim.takeBatch(now, keys, vs)
	for i, msg := range batch {
		k, v := &keys[i], vs[i]
		if k.n < 0 {
			continue
		}
		if v.reason == reasonNone {
			passed++
			p.cache.touch(k)
			continue
		}
		switch {
		case p.mode == modeDrop:
			p.drop(batch, i, k, v)
			dropped = true
		case p.mode == modeReject || v.reason == reasonPerDay:
			p.reject(msg, k, v)
		default:
			waiting = append(waiting, pending{i: i, keys: *k, v: v})
		}
	}
	p.mPassed.Incr(passed)
	if len(waiting) > 0 {
		p.delay(ctx, batch, waiting)
	}
	if dropped {
		kept := make(service.MessageBatch, 0, len(batch))
		for _, m := range batch {
			if m != nil {
				kept = append(kept, m)
			}
		}
		if len(kept) == 0 {
			return nil, nil
		}
		batch = kept
	}
	return []service.MessageBatch{batch}, nil
}

// delay holds the waiting messages until their keys have room; messages
// that reach the daily limit meanwhile, or are still waiting when ctx ends
// or the processor closes, are rejected.
func (p *deviceRateLimit) delay(ctx context.Context, batch service.MessageBatch, waiting []pending) {
	start := p.clk.Now()
	p.mDelayed.Incr(int64(len(waiting)))
	for len(waiting) > 0 {
		wake := waiting[0].v.retryAt
		for _, w := range waiting[1:] {
			wake = min(wake, w.v.retryAt)
		}
		var stop error
		t := p.clk.NewTimer(time.Duration(wake - p.clk.Now().UnixNano()))
		select {
		case <-t.C():
		case <-ctx.Done():
			stop = ctx.Err()
		case <-p.closed:
			stop = errors.New("processor closed")
		}
		t.Stop()
		now := p.clk.Now()
		still := waiting[:0]
		for _, w := range waiting {
			v := w.v
			if stop == nil {
				v = p.lim.take(now.UnixNano(), w.keys.hs[:w.keys.n])
			}
			switch {
			case v.reason == reasonNone:
				p.mPassed.Incr(1)
				p.mDelay.Timing(now.Sub(start).Nanoseconds())
				p.cache.touch(&w.keys)
			case v.reason == reasonPerDay || stop != nil:
				p.reject(batch[w.i], &w.keys, v)
			default:
				w.v = v
				still = append(still, w)
			}
		}
		waiting = still
	}
}

// reject flags msg as held back by the limit of verdict v.
func (p *deviceRateLimit) reject(msg *service.Message, k *msgKeys, v verdict) {
	key := strings.Clone(k.vals[v.key])
	at := time.Unix(0, v.retryAt).UTC().Format(time.RFC3339Nano)
	msg.MetaSetMut(metaKey, key)
	msg.MetaSetMut(metaReason, v.reason.String())
	msg.MetaSetMut(metaRetryAt, at)
	msg.SetError(fmt.Errorf("rate limit %s exceeded for key %q: retry at %s", v.reason, key, at))
	p.mRejected.Incr(1, v.reason.String())
}

// drop removes message i from batch (setting it to nil), counts and logs it:
// every drop at debug level, and a warning at most every 10 s.
func (p *deviceRateLimit) drop(batch service.MessageBatch, i int, k *msgKeys, v verdict) {
	batch[i] = nil
	p.mDropped.Incr(1, v.reason.String())
	p.log.Debugf("Dropped a message over the %s rate limit of key %q", v.reason, k.vals[v.key])
	p.dropWarn.Warn(p.log, p.clk.Now().UnixNano(), "Dropped %d messages over rate limits (last: key %q over %s)", k.vals[v.key], v.reason)
}

// cacheFailed counts a cache error and logs it (at most every 10 s).
func (p *deviceRateLimit) cacheFailed(err error) {
	p.mCacheErr.Incr(1)
	p.cacheWarn.Warn(p.log, p.clk.Now().UnixNano(), "Rate limit cache: %d errors (last: %v)", err)
}

// start runs the periodic maintenance until Close.
func (p *deviceRateLimit) start() {
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		for tick := 1; ; tick++ {
			t := p.clk.NewTimer(sweepEvery)
			select {
			case <-t.C():
			case <-p.closed:
				t.Stop()
				return
			}
			if tick%int(maintainEvery/sweepEvery) != 0 {
				p.sweep()
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), maintainEvery)
			p.maintain(ctx)
			cancel()
		}
	}()
}

// sweep compresses or forgets idle keys and publishes the number of keys
// tracked.
func (p *deviceRateLimit) sweep() {
	p.mKeys.Set(int64(p.lim.sweep(p.clk.Now().UnixNano())))
}

// maintain sweeps, then writes dirty daily counts to the cache.
func (p *deviceRateLimit) maintain(ctx context.Context) {
	p.sweep()
	if err := p.cache.flush(ctx, p.clk.Now().UnixNano()); err != nil {
		p.cacheFailed(err)
	}
}

// Close stops the maintenance, releases delayed messages (rejecting them)
// and writes the daily counts to the cache a last time.
func (p *deviceRateLimit) Close(ctx context.Context) error {
	p.once.Do(func() { close(p.closed) })
	p.done.Wait()
	return p.cache.flush(ctx, p.clk.Now().UnixNano())
}
