package profile

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
	"github.com/opencurrents/currents-amplitude/plugins/internal/logthrottle"
	"github.com/opencurrents/currents-amplitude/plugins/internal/redact"
)

// Sources of an answer (metadata amplitude_profile_source, header
// X-Profile-Source, label source of amplitude_profile_answers_total).
const (
	srcCache     = "cache"     // fresh cached profile
	srcStale     = "stale"     // cached profile past its TTL (refresh running, or Amplitude failing)
	srcAmplitude = "amplitude" // fetched for this request
	srcEmpty     = "empty"     // Amplitude has not seen the id (cached): the default answer
	srcDefault   = "default"   // no data in time: the default answer
)

// Reasons of a default or stale-on-error answer.
const (
	reasonBudget       = "budget"         // no call left in the budget before the deadline
	reasonTimeout      = "timeout"        // Amplitude did not answer before the deadline
	reasonThrottled    = "throttled"      // Amplitude answered 429
	reasonUnauthorized = "unauthorized"   // Amplitude answered 401 (the key is wrong)
	reasonUpstream     = "upstream_error" // 5xx, transport error or an answer of no documented shape
	reasonPaused       = "paused"         // calls paused after a 429 or a 401
)

// Pauses after Amplitude refuses a call.
const (
	unauthorizedPause = time.Minute
	alarmEvery        = time.Minute
)

// answer is what a lookup serves.
type answer struct {
	body   []byte
	source string
	reason string
}

// engineConfig is everything an engine is built from.
type engineConfig struct {
	client               *client
	clock                clock.Clock
	ttl, emptyTTL        time.Duration
	staleWhileRevalidate time.Duration
	staleIfError         time.Duration
	timeout              time.Duration // longest wait for Amplitude by a serving lookup
	upstreamTimeout      time.Duration // longest call to Amplitude
	perMinute, burst     int
	prewarmKeep          int // calls of the burst prewarm leaves to serving lookups
	throttlePause        time.Duration
	maxEntries           int
	defaultBody          []byte // holds "source":"default"
	// redact removes the keys from what Amplitude answered before it is
	// logged.
	redact redact.Redactor
}

// engine answers profile lookups from its cache, calling Amplitude within the
// budget and coalescing identical calls.
type engine struct {
	cfg    engineConfig
	cache  *cache
	budget *budget
	log    *service.Logger

	answers, cacheDecisions, budgetDecisions, upstream, prewarm *service.MetricCounter
	upstreamLatency                                             *service.MetricTimer
	entries                                                     *service.MetricGauge

	warn      logthrottle.Warner
	lastAlarm atomic.Int64
	// flying counts the background calls, which Close (and tests) wait for.
	flying sync.WaitGroup
}

func newEngine(cfg engineConfig, res *service.Resources) *engine {
	m := res.Metrics()
	e := &engine{
		cfg:             cfg,
		budget:          newBudget(cfg.perMinute, cfg.burst),
		log:             res.Logger(),
		answers:         m.NewCounter("amplitude_profile_answers_total", "source", "reason"),
		cacheDecisions:  m.NewCounter("amplitude_profile_cache_total", "decision"),
		budgetDecisions: m.NewCounter("amplitude_profile_budget_total", "decision"),
		upstream:        m.NewCounter("amplitude_profile_upstream_total", "outcome"),
		prewarm:         m.NewCounter("amplitude_profile_prewarm_total", "outcome"),
		upstreamLatency: m.NewTimer("amplitude_profile_upstream_seconds"),
		entries:         m.NewGauge("amplitude_profile_cache_entries"),
	}
	e.cache = newCache(cfg.maxEntries, func(expired bool) {
		if expired {
			e.cacheDecisions.Incr(1, "evicted_expired")
		} else {
			e.cacheDecisions.Incr(1, "evicted")
		}
	})
	return e
}

// serve answers q before ctx's deadline and at most cfg.timeout from now:
// from the cache when it can, else from Amplitude within the budget, else
// with a stale profile or the default answer.
func (e *engine) serve(ctx context.Context, q Query) answer {
	key := q
	now := e.cfg.clock.Now()
	old := e.cache.get(key)
	if old != nil {
		if now.Before(old.fresh) {
			e.cacheDecisions.Incr(1, "hit")
			return e.count(e.fromEntry(old, srcCache))
		}
		if now.Before(old.stale) {
			e.cacheDecisions.Incr(1, "stale_hit")
			e.revalidate(key, q, now)
			return e.count(e.fromEntry(old, srcStale))
		}
	}
	deadline := now.Add(e.cfg.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	f, leader := e.cache.join(key)
	if leader {
		e.cacheDecisions.Incr(1, "miss")
		at, ok := e.reserve(now, deadline, 0)
		if !ok {
			f.reason = reasonBudget
			if e.budget.paused(now) {
				f.reason = reasonPaused
			}
			e.cache.land(key, f, now)
		} else {
			e.goFly(key, q, f, at)
		}
	} else {
		e.cacheDecisions.Incr(1, "coalesced")
	}
	t := e.cfg.clock.NewTimer(deadline.Sub(now))
	defer t.Stop()
	select {
	case <-f.done:
		if f.ent != nil {
			return e.count(e.fromEntry(f.ent, srcAmplitude))
		}
		return e.count(e.fallback(old, f.reason))
	case <-t.C():
		return e.count(e.fallback(old, reasonTimeout))
	case <-ctx.Done():
		return e.count(e.fallback(old, reasonTimeout))
	}
}

// reserve takes one call from the budget, counting the decision.
func (e *engine) reserve(now, by time.Time, keep int) (time.Time, bool) {
	at, ok := e.budget.reserve(now, by, keep)
	switch {
	case ok:
		e.budgetDecisions.Incr(1, "granted")
	case e.budget.paused(now):
		e.budgetDecisions.Incr(1, "paused")
	default:
		e.budgetDecisions.Incr(1, "denied")
	}
	return at, ok
}

// revalidate refreshes a stale entry in the background when a call is
// available right now; otherwise the stale entry keeps being served and a
// later lookup tries again.
func (e *engine) revalidate(key, q Query, now time.Time) {
	f, leader := e.cache.join(key)
	if !leader {
		return
	}
	at, ok := e.reserve(now, now, 0)
	if !ok {
		e.cache.land(key, f, now)
		return
	}
	e.goFly(key, q, f, at)
}

// goFly runs fly in the background.
func (e *engine) goFly(key, q Query, f *flight, at time.Time) {
	e.flying.Add(1)
	go func() {
		defer e.flying.Done()
		e.fly(key, q, f, at)
	}()
}

// fly calls Amplitude for q at at, stores what it answers and lands f.
func (e *engine) fly(key, q Query, f *flight, at time.Time) {
	c := e.cfg.clock
	_ = clock.Sleep(context.Background(), c, at.Sub(c.Now()))
	start := c.Now()
	if e.budget.paused(start) {
		f.reason = reasonPaused
		e.cache.land(key, f, start)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.upstreamTimeout)
	r := e.cfg.client.fetch(ctx, q)
	cancel()
	now := c.Now()
	e.upstreamLatency.Timing(now.Sub(start).Nanoseconds())
	e.upstream.Incr(1, r.out.String())
	f.out = r.out
	r.detail = e.cfg.redact.String(r.detail)
	switch r.out {
	case outOK:
		f.ent = &entry{body: r.body, fresh: now.Add(e.cfg.ttl),
			stale: now.Add(e.cfg.ttl + e.cfg.staleWhileRevalidate),
			keep:  now.Add(e.cfg.ttl + max(e.cfg.staleIfError, e.cfg.staleWhileRevalidate))}
	case outNotSeen:
		f.ent = &entry{body: e.cfg.defaultBody, empty: true, fresh: now.Add(e.cfg.emptyTTL),
			stale: now.Add(e.cfg.emptyTTL), keep: now.Add(e.cfg.emptyTTL)}
	case outUnauthorized:
		f.reason = reasonUnauthorized
		e.budget.pause(now.Add(unauthorizedPause))
		e.alarm(now, r.detail)
	case outThrottled:
		f.reason = reasonThrottled
		e.budget.pause(now.Add(max(r.retryAfter, e.cfg.throttlePause)))
		e.warn.Warn(e.log, now.UnixNano(), "amplitude_profile: %d calls answered 429 by Amplitude (organisation limit of 600 requests per minute spent, other clients share it?): pausing calls for %v, serving stale profiles or the default answer; last: %s",
			max(r.retryAfter, e.cfg.throttlePause), r.detail)
	default:
		f.reason = reasonUpstream
		e.warn.Warn(e.log, now.UnixNano(), "amplitude_profile: %d calls to Amplitude failed, serving stale profiles or the default answer; last: %s", r.detail)
	}
	e.cache.land(key, f, now)
	if f.ent != nil {
		e.entries.Set(int64(e.cache.len()))
	}
}

// alarm logs a configuration error at error level, at most once a minute.
func (e *engine) alarm(now time.Time, detail string) {
	last := e.lastAlarm.Load()
	if now.UnixNano()-last < int64(alarmEvery) || !e.lastAlarm.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	e.log.Errorf("amplitude_profile: Amplitude refused the secret key (%s): check secret_key (and api_key) of the project; calls paused for %v, every lookup gets the default answer until the key is fixed", detail, unauthorizedPause)
}

// fromEntry answers from a cached entry.
func (e *engine) fromEntry(ent *entry, src string) answer {
	if ent.empty {
		return answer{body: ent.body, source: srcEmpty}
	}
	return answer{body: ent.body, source: src}
}

// fallback answers when no fresh data came in time: the old entry while it is
// kept, else the default answer.
func (e *engine) fallback(old *entry, reason string) answer {
	if old != nil && e.cfg.clock.Now().Before(old.keep) {
		if old.empty {
			return answer{body: old.body, source: srcEmpty, reason: reason}
		}
		return answer{body: old.body, source: srcStale, reason: reason}
	}
	return answer{body: e.cfg.defaultBody, source: srcDefault, reason: reason}
}

// count records an answer in amplitude_profile_answers_total.
func (e *engine) count(a answer) answer {
	e.answers.Incr(1, a.source, a.reason)
	return a
}

// warmOutcome is what prewarming one profile did.
type warmOutcome string

const (
	warmFetched warmOutcome = "fetched" // Amplitude answered (a profile or a known-empty one)
	warmFresh   warmOutcome = "fresh"   // already fresh in the cache: no call
	warmFailed  warmOutcome = "failed"  // Amplitude failed; counted, not retried
)

// warm fetches q into the cache unless it is fresh, waiting as long as needed
// for a call of the budget that leaves cfg.prewarmKeep calls to serving
// lookups: a list of users is thereby fetched at the budget's steady rate,
// evenly, without starving the live traffic. It returns ctx's error when ctx
// ends first.
func (e *engine) warm(ctx context.Context, q Query) (warmOutcome, error) {
	key := q
	c := e.cfg.clock
	for {
		now := c.Now()
		if ent := e.cache.get(key); ent != nil && now.Before(ent.fresh) {
			e.prewarm.Incr(1, string(warmFresh))
			return warmFresh, nil
		}
		f, leader := e.cache.join(key)
		if !leader {
			select {
			case <-f.done:
				continue // look at what it stored
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		at, ok := e.budget.reserve(now, now, e.cfg.prewarmKeep)
		if !ok {
			// Wait for the next call without holding the flight, so that
			// serving lookups of this key are not held behind prewarm.
			e.budgetDecisions.Incr(1, "prewarm_waited")
			e.cache.land(key, f, now)
			if err := clock.Sleep(ctx, c, max(at.Sub(now), time.Millisecond)); err != nil {
				return "", err
			}
			continue
		}
		e.budgetDecisions.Incr(1, "granted_prewarm")
		e.fly(key, q, f, at)
		if f.ent == nil {
			e.prewarm.Incr(1, string(warmFailed))
			return warmFailed, nil
		}
		e.prewarm.Incr(1, string(warmFetched))
		return warmFetched, nil
	}
}
