package amplitude

import (
	"context"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/internal/jsonw"
)

// stateKey is the key, in the state_cache resource, of the ids Amplitude
// reported over their daily quota, with the end of their hold:
// {"quota":[{"user":false,"id":"...","until":<unix ms>},...]}.
const stateKey = "amplitude_daily_quota"

// quotaState persists the daily-quota holds in a cache resource, so that a
// restart does not re-send the events of ids Amplitude refuses until the
// next hourly step. It holds ids only, never events or secrets.
type quotaState struct {
	mgr   *service.Resources
	cache string // resource name; "" disables it
}

// load restores the holds saved by a previous run.
func (s quotaState) load(ctx context.Context, o *amplitudeOutput) error {
	if s.cache == "" {
		return nil
	}
	var raw []byte
	var getErr error
	if err := s.mgr.AccessCache(ctx, s.cache, func(c service.Cache) {
		raw, getErr = c.Get(ctx, stateKey)
	}); err != nil {
		return err
	}
	if getErr != nil || !gjson.ValidBytes(raw) {
		return nil // nothing saved yet (or unreadable: start afresh)
	}
	now := o.clock.Now()
	gjson.GetBytes(raw, "quota").ForEach(func(_, v gjson.Result) bool {
		until := time.UnixMilli(v.Get("until").Int())
		k := idKey{user: v.Get("user").Bool(), id: v.Get("id").Str}
		if k.id != "" && until.After(now) {
			o.holds.hold([]idKey{k}, now, until, true)
		}
		return true
	})
	return nil
}

// save writes the current daily-quota holds, to expire with the last one.
func (s quotaState) save(ctx context.Context, o *amplitudeOutput) {
	if s.cache == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	now := o.clock.Now()
	snap := o.holds.snapshot(now)
	b := []byte(`{"quota":[`)
	var last time.Time
	first := true
	for k, until := range snap {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"user":`...)
		if k.user {
			b = append(b, "true"...)
		} else {
			b = append(b, "false"...)
		}
		b = append(b, `,"id":`...)
		b = jsonw.AppendString(b, k.id)
		b = append(b, `,"until":`...)
		b = jsonw.AppendInt(b, until.UnixMilli())
		b = append(b, '}')
		if until.After(last) {
			last = until
		}
	}
	b = append(b, "]}"...)
	ttl := max(last.Sub(now), time.Second)
	var setErr error
	if err := s.mgr.AccessCache(ctx, s.cache, func(c service.Cache) {
		setErr = c.Set(ctx, stateKey, b, &ttl)
	}); err != nil || setErr != nil {
		o.log.Warnf("Cannot save the daily-quota ids to state_cache %q: %v %v", s.cache, err, setErr)
	}
}
