package tests

import (
	"context"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opencurrents/currents-amplitude/plugins/amplitude/amplitudetest"
	"github.com/opencurrents/currents-amplitude/plugins/ingest/ingesttest"
)

// TestFaultSuite runs every shipped pipeline through the fault matrix
// (theMatrix) and checks the invariant (checkInvariant). FAULT_SUITE=long
// (tests/faults.sh) runs it at scale; see docs/fault-suite.md.
func TestFaultSuite(t *testing.T) {
	faultBinary(t) // build once, before the cases run in parallel
	for _, c := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"live_http", faultLiveHTTP},
		{"replay", faultReplay},
		{"kafka_ingest", faultKafkaIngest},
		{"kafka_delivery", faultKafkaDelivery},
		{"backfill", faultBackfill},
		{"cohorts", faultCohorts},
		{"cohort_webhook", faultCohortWebhook},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

// faultAmplitude starts a fake Amplitude behind a fault proxy.
func faultAmplitude(t *testing.T, seed uint64) (*amplitudetest.Server, *faultProxy) {
	t.Helper()
	amp := amplitudetest.NewServer(amplitudetest.Options{APIKey: "fault-amplitude-key"})
	t.Cleanup(amp.Close)
	return amp, newFaultProxy(t, amp.URL, seed)
}

// amplitudeEnv is the Amplitude side of every delivering pipeline's
// environment.
func amplitudeEnv(px *faultProxy, path string) map[string]string {
	return map[string]string{
		"AMPLITUDE_API_KEY":   "fault-amplitude-key",
		"AMPLITUDE_URL":       px.URL + path,
		"AMPLITUDE_TIMEOUT":   "1s",
		"AMPLITUDE_RETRY_FOR": retryFor.String(),
		"LOG_LEVEL":           "WARN",
	}
}

// amplitudeDest is the destination of the pipelines delivering to the fake
// Amplitude.
type amplitudeDest struct{ amp *amplitudetest.Server }

func (a amplitudeDest) delivered(id string) bool { _, ok := a.amp.Event(id); return ok }
func (a amplitudeDest) deliveredTotal() int      { return a.amp.Count() }

// brazeSource is the source of the pipelines behind braze_currents_http:
// Braze's connector posting the records, retrying and splitting as Braze
// does.
type brazeSource struct {
	config string
	env    map[string]string
	conn   *ingesttest.Connector
}

func newBrazeSource(config string, env map[string]string, onAcked func([]ingesttest.Event)) *brazeSource {
	c := ingesttest.NewConnector(currentsURL(env), e2eToken)
	c.MaxBackoff = 200 * time.Millisecond
	c.OnAcked = onAcked
	return &brazeSource{config: config, env: env, conn: c}
}

func (b *brazeSource) start(t *testing.T) *proc {
	p := startProc(t, b.config, b.env, false)
	waitListening(t, currentsURL(b.env))
	return p
}

func (b *brazeSource) feed(ctx context.Context, _ *testing.T, recs []record) error {
	events := make([]ingesttest.Event, len(recs))
	for i, r := range recs {
		events[i] = ingesttest.Event{ID: r.id, Raw: r.raw}
	}
	return b.conn.SendAll(ctx, events, 4)
}

// refused: Braze dropped the event alone after a 400.
func (b *brazeSource) refused(id string) bool {
	for _, ev := range b.conn.Dropped() {
		if ev.ID == id {
			return true
		}
	}
	return false
}

func (b *brazeSource) finish(t *testing.T, p *proc) { assert.Zero(t, p.term(t, 50*time.Second)) }

// ---------------------------------------------------------------------
// Live HTTP: Braze -> braze_currents_http -> amplitude.

type liveTarget struct {
	*brazeSource
	amplitudeDest
	px   *faultProxy
	dlq  dlqFile
	recs map[string]record

	mu         sync.Mutex
	violations []string
}

// liveEnv is the environment of the live pipeline delivering through px.
func liveEnv(t *testing.T, px *faultProxy) map[string]string {
	env := amplitudeEnv(px, amplitudetest.PathHTTPV2)
	env["BRAZE_CURRENTS_TOKEN"] = e2eToken
	env["CURRENTS_HTTP_ADDRESS"] = freeAddr(t)
	env["HTTP_ADDRESS"] = freeAddr(t)
	env["DLQ_PATH"] = t.TempDir() + "/dlq.jsonl"
	return env
}

func faultLiveHTTP(t *testing.T) {
	scale := faultScale()
	amp, px := faultAmplitude(t, 21)
	env := liveEnv(t, px)
	recs := faultRecords(31, scale.events, scale.invalidEvery, unmappableEvent, deepEvent(expectRefused))
	tgt := &liveTarget{amplitudeDest: amplitudeDest{amp}, px: px, dlq: dlqFile(env["DLQ_PATH"]), recs: map[string]record{}}
	for _, r := range recs {
		tgt.recs[r.id] = r
	}
	tgt.brazeSource = newBrazeSource(httpPipeline, env, tgt.onAcked)
	runFaultMatrix(t, tgt, recs, false)
	t.Logf("Braze saw: %v", tgt.conn.Statuses())
}

// onAcked checks, when Braze gets 2xx, that each event of the request is in
// Amplitude or in the dead-letter file.
func (l *liveTarget) onAcked(batch []ingesttest.Event) {
	var dl map[string][]string
	for _, ev := range batch {
		r := l.recs[ev.ID]
		ok := true
		switch r.expect {
		case expectDelivered:
			_, ok = l.amp.Event(ev.ID)
		case expectDeadLetter:
			if dl == nil {
				dl = deadLetteredQuiet(string(l.dlq))
			}
			ok = len(dl[ev.ID]) > 0
		}
		if !ok {
			l.mu.Lock()
			l.violations = append(l.violations, ev.ID)
			l.mu.Unlock()
		}
	}
}

// deadLetteredQuiet is deadLettered for a hook without a *testing.T: it
// reads the file as it is.
func deadLetteredQuiet(path string) map[string][]string {
	out := map[string][]string{}
	b, _ := readFileQuiet(path)
	for _, l := range strings.Split(string(b), "\n") {
		if gjson.Valid(l) && l != "" {
			r := gjson.Parse(l)
			out[dlqKey(r)] = append(out[dlqKey(r)], r.Get("reason").String())
		}
	}
	return out
}

func (l *liveTarget) checkAcked(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Empty(t, l.violations, "events answered 2xx to Braze that were neither in Amplitude nor dead-lettered")
}

func (l *liveTarget) deadLetters() deadLetters { return l.dlq }
func (l *liveTarget) proxies() []faultInjector { return []faultInjector{l.px} }

// TestFaultLiveResendWritesOnce: Braze re-sends a request after a 502 (an
// outage): its invalid events were dead-lettered on the first try and are
// not written again (the dead-letter writer keys them by their bytes, which
// a re-send repeats), while its valid events arrive once Amplitude is back.
func TestFaultLiveResendWritesOnce(t *testing.T) {
	amp, px := faultAmplitude(t, 5)
	env := liveEnv(t, px)
	startProc(t, httpPipeline, env, false)
	waitListening(t, currentsURL(env))

	recs := faultRecords(7, 90, 10, unmappableEvent)
	events := make([]ingesttest.Event, len(recs))
	invalid := 0
	for i, r := range recs {
		events[i] = ingesttest.Event{ID: r.id, Raw: r.raw}
		if r.expect == expectDeadLetter {
			invalid++
		}
	}
	body := ingesttest.Body(events)
	c := ingesttest.NewConnector(currentsURL(env), e2eToken)
	px.set(modeOutage)
	for range 3 {
		require.Equal(t, 502, c.Post(context.Background(), body), "Amplitude is down: Braze keeps the request")
	}
	px.set(modePass)
	require.Equal(t, 200, c.Post(context.Background(), body))
	require.Equal(t, 200, c.Post(context.Background(), body), "a re-send after success changes nothing")

	dl := deadLettered(t, dlqFile(env["DLQ_PATH"]))
	assert.Len(t, dl, invalid)
	for id, reasons := range dl {
		assert.Equal(t, []string{"unmappable"}, reasons, "%s: written once over 5 sends", id)
	}
	assert.Equal(t, len(recs)-invalid, amp.Count())
	for _, r := range dlqFile(env["DLQ_PATH"]).records(t) {
		assert.NotEmpty(t, r.Get("source.currents_request_id").String(), "the record names the request: %s", r.Raw)
	}
}

// ---------------------------------------------------------------------
// Replay: JSON lines on stdin -> currents_lines -> amplitude (Batch API).

type replayTarget struct {
	amplitudeDest
	px  *faultProxy
	env map[string]string
	dlq dlqFile

	mu   sync.Mutex
	p    *proc
	fed  [][]byte // every line handed so far, in order
	runs int
}

// replayKinds are the lines the replay cannot take, and an empty one.
func replayKinds() []invalidKind {
	return []invalidKind{
		unmappableEvent,
		deepEvent(expectDeadLetter),
		func(n int) record { // not JSON
			id := "junk-" + strconv.Itoa(n)
			return record{id: id, expect: expectDeadLetter, reason: "unreadable", raw: []byte(id + ` {"event_type": truncated`)}
		},
		func(n int) record { // over REPLAY_MAX_LINE_BYTES (4 KiB here)
			id := "long-" + strconv.Itoa(n)
			return record{id: id, expect: expectDeadLetter, reason: "too_large", raw: []byte(`{"id":"` + id + `","pad":"` + strings.Repeat("x", 5000) + `"}`)}
		},
		func(n int) record { // blank: skipped
			return record{id: "blank-" + strconv.Itoa(n), expect: expectSkipped, raw: []byte("  \t")}
		},
	}
}

func faultReplay(t *testing.T) {
	scale := faultScale()
	amp, px := faultAmplitude(t, 22)
	env := amplitudeEnv(px, amplitudetest.PathBatch)
	env["REPLAY_PATHS"] = "/dev/stdin"
	env["REPLAY_MAX_LINE_BYTES"] = "4096"
	env["REPLAY_BATCH_SIZE"] = "50"
	env["DLQ_PATH"] = t.TempDir() + "/dlq.jsonl"
	tgt := &replayTarget{amplitudeDest: amplitudeDest{amp}, px: px, env: env, dlq: dlqFile(env["DLQ_PATH"])}
	runFaultMatrix(t, tgt, faultRecords(32, scale.events, scale.invalidEvery, replayKinds()...), true)
}

// start runs a replay and hands it every line fed so far: replaying again
// is what an operator does after a crash (Amplitude de-duplicates).
func (r *replayTarget) start(t *testing.T) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p = startProc(t, "currents_replay_to_amplitude.yaml", r.env, true)
	r.runs++
	for _, l := range r.fed {
		if _, err := r.p.stdin.Write(l); err != nil {
			break
		}
	}
	return r.p
}

func (r *replayTarget) feed(ctx context.Context, _ *testing.T, recs []record) error {
	for _, rec := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		line := append(append([]byte(nil), rec.raw...), '\n')
		r.mu.Lock()
		r.fed = append(r.fed, line)
		_, _ = r.p.stdin.Write(line) // a process being replaced: start writes it again
		r.mu.Unlock()
	}
	return nil
}

func (r *replayTarget) refused(string) bool      { return false }
func (r *replayTarget) deadLetters() deadLetters { return r.dlq }
func (r *replayTarget) proxies() []faultInjector { return []faultInjector{r.px} }

// checkAcked: a replay acknowledges nothing to its source (standard input);
// what it owes is checked by finish: it exits 0 only once every line is
// delivered or dead-lettered.
func (r *replayTarget) checkAcked(*testing.T) {}

// finish ends the input: the replay stops by itself, exit code 0.
func (r *replayTarget) finish(t *testing.T, p *proc) {
	r.mu.Lock()
	require.NoError(t, p.stdin.Close())
	r.mu.Unlock()
	assert.Zero(t, p.wait(t, faultScale().settle), "the replay ends by itself with exit code 0")
	assert.Contains(t, p.output(), "dead-lettered", "dead letters are logged")
}

// ---------------------------------------------------------------------
// Kafka delivery: topic -> kafka_franz (consumer group) -> amplitude, dead
// letters to a topic.

type kafkaTarget struct {
	amplitudeDest
	px      *faultProxy
	env     map[string]string
	cl      *kgo.Client
	recs    map[string]record
	topic   string
	group   string
	dlqRecs *kafkaDLQ

	mu     sync.Mutex
	placed map[string][2]int64 // id -> partition, offset
}

// kafkaDLQ is the dead-letter topic as a background consumer reads it.
type kafkaDLQ struct {
	mu   sync.Mutex
	recs []gjson.Result
}

func (d *kafkaDLQ) records(*testing.T) []gjson.Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]gjson.Result(nil), d.recs...)
}

func faultKafkaDelivery(t *testing.T) {
	scale := faultScale()
	const topic, dlqTopic, group = "braze-currents", "braze-currents-dlq", "fault-delivery"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic), kfake.SeedTopics(1, dlqTopic),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "1000"}))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	amp, px := faultAmplitude(t, 23)
	env := amplitudeEnv(px, amplitudetest.PathHTTPV2)
	for k, v := range map[string]string{
		"KAFKA_BROKERS": brokers, "KAFKA_TOPIC": topic, "KAFKA_DLQ_TOPIC": dlqTopic, "KAFKA_CONSUMER_GROUP": group,
		"KAFKA_BATCH_SIZE": "100", "KAFKA_HEARTBEAT_INTERVAL": "200ms", "KAFKA_SESSION_TIMEOUT": "2s",
		"KAFKA_REBALANCE_TIMEOUT": "3s", "HTTP_ADDRESS": freeAddr(t),
		// dead_letters.db lives here across restarts: a record re-read
		// after kill -9 is not dead-lettered again.
		"STATE_DIR": t.TempDir(),
	} {
		env[k] = v
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ProducerLinger(0),
		kgo.ConsumeTopics(dlqTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	tgt := &kafkaTarget{amplitudeDest: amplitudeDest{amp}, px: px, env: env, cl: cl, recs: map[string]record{},
		topic: topic, group: group, dlqRecs: &kafkaDLQ{}, placed: map[string][2]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go tgt.consumeDLQ(ctx)

	recs := faultRecords(33, scale.events, scale.invalidEvery, unmappableEvent, deepEvent(expectDeadLetter))
	for _, r := range recs {
		tgt.recs[r.id] = r
	}
	runFaultMatrix(t, tgt, recs, false)
}

func (k *kafkaTarget) consumeDLQ(ctx context.Context) {
	for ctx.Err() == nil {
		fs := k.cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			k.dlqRecs.mu.Lock()
			k.dlqRecs.recs = append(k.dlqRecs.recs, gjson.ParseBytes(r.Value))
			k.dlqRecs.mu.Unlock()
		})
	}
}

func (k *kafkaTarget) start(t *testing.T) *proc {
	return startProc(t, "kafka_to_amplitude.yaml", k.env, false)
}

func (k *kafkaTarget) feed(ctx context.Context, _ *testing.T, recs []record) error {
	batch := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		key := r.event.DeviceID
		if key == "" {
			key = r.id
		}
		batch[i] = &kgo.Record{Topic: k.topic, Key: []byte(key), Value: r.raw}
	}
	res := k.cl.ProduceSync(ctx, batch...)
	if err := res.FirstErr(); err != nil {
		return err
	}
	// The results come in completion order (grouped by partition), not in
	// the order of batch: each record carries where it was written.
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, r := range batch {
		k.placed[recs[i].id] = [2]int64{int64(r.Partition), r.Offset}
	}
	return nil
}

// checkAcked: every record below a committed offset is in Amplitude or on
// the dead-letter topic (read by the background consumer, given a moment to
// catch up).
func (k *kafkaTarget) checkAcked(t *testing.T) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = k.group // up to v7
	g := kmsg.NewOffsetFetchRequestGroup()
	g.Group = k.group // v8 and later
	req.Groups = append(req.Groups, g)
	resp, err := req.RequestWith(context.Background(), k.cl)
	require.NoError(t, err)
	committed := map[int64]int64{}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if tp.Topic == k.topic {
				committed[int64(p.Partition)] = p.Offset
			}
		}
	}
	for _, rg := range resp.Groups {
		for _, tp := range rg.Topics {
			for _, p := range tp.Partitions {
				if tp.Topic == k.topic {
					committed[int64(p.Partition)] = p.Offset
				}
			}
		}
	}
	k.mu.Lock()
	placed := make(map[string][2]int64, len(k.placed))
	for id, po := range k.placed {
		placed[id] = po
	}
	k.mu.Unlock()
	var missing []string
	check := func() bool {
		missing = missing[:0]
		dl := deadLettered(t, k.dlqRecs)
		for id, po := range placed {
			if po[1] >= committed[po[0]] {
				continue
			}
			r := k.recs[id]
			if (r.expect == expectDelivered && !k.delivered(id)) || (r.expect == expectDeadLetter && len(dl[id]) == 0) {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	}
	deadline := time.Now().Add(3 * time.Second)
	for !check() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	assert.Empty(t, missing, "records below the committed offsets neither in Amplitude nor dead-lettered (committed: %v)", committed)
}

func (k *kafkaTarget) refused(string) bool      { return false }
func (k *kafkaTarget) deadLetters() deadLetters { return k.dlqRecs }
func (k *kafkaTarget) proxies() []faultInjector { return []faultInjector{k.px} }
func (k *kafkaTarget) finish(t *testing.T, p *proc) {
	assert.Zero(t, p.term(t, 50*time.Second))
	k.checkAcked(t)
}

// ---------------------------------------------------------------------
// Kafka ingest: Braze -> braze_currents_http -> kafka_franz (topic).

// kafkaProduceFaults fails the produce requests a kfake broker gets
// according to its mode: retriable errors (30% or all) for faults and
// outages, TOPIC_AUTHORIZATION_FAILED (Kafka's 403) for the forbidden phase.
type kafkaProduceFaults struct {
	mode faultModeBox
	mu   sync.Mutex
	rng  *rand.Rand
	n    map[string]int
}

// faultModeBox holds a faultMode for concurrent use.
type faultModeBox struct{ v atomic.Int32 }

func (b *faultModeBox) get() faultMode { return faultMode(b.v.Load()) }

func newKafkaProduceFaults(cluster *kfake.Cluster, seed uint64) *kafkaProduceFaults {
	f := &kafkaProduceFaults{rng: rand.New(rand.NewPCG(seed, seed+1)), n: map[string]int{}}
	cluster.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		var code int16
		switch f.mode.get() {
		case modeOutage:
			code = kerr.RequestTimedOut.Code
		case modeForbidden:
			code = kerr.TopicAuthorizationFailed.Code
		case modeFaulty:
			f.mu.Lock()
			if f.rng.Float64() < faultRate {
				code = [...]int16{kerr.NotLeaderForPartition.Code, kerr.NotEnoughReplicas.Code, kerr.UnknownServerError.Code}[f.rng.IntN(3)]
			}
			f.mu.Unlock()
		}
		f.mu.Lock()
		if code == 0 {
			f.n["handled"]++
			f.mu.Unlock()
			return nil, nil, false
		}
		f.n[kerr.ErrorForCode(code).Error()]++
		f.mu.Unlock()
		req := kr.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		resp.Version = req.Version
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return f
}

func (f *kafkaProduceFaults) set(m faultMode) { f.mode.v.Store(int32(m)) }

func (f *kafkaProduceFaults) Counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.n)
}

type ingestTarget struct {
	*brazeSource
	faults *kafkaProduceFaults
	none   dlqFile // the ingest tier has no dead letter: Braze keeps what it cannot take

	mu      sync.Mutex
	inTopic map[string]int
	acked   []string
}

func faultKafkaIngest(t *testing.T) {
	scale := faultScale()
	const topic = "braze-currents"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	tgt := &ingestTarget{faults: newKafkaProduceFaults(cluster, 25), inTopic: map[string]int{}, none: dlqFile(t.TempDir() + "/none.jsonl")}
	env := map[string]string{
		"KAFKA_BROKERS": strings.Join(cluster.ListenAddrs(), ","), "KAFKA_TOPIC": topic, "KAFKA_TIMEOUT": "2s",
		"BRAZE_CURRENTS_TOKEN": e2eToken, "CURRENTS_HTTP_ADDRESS": freeAddr(t), "HTTP_ADDRESS": freeAddr(t),
		"CURRENTS_HTTP_TIMEOUT": "5s", "LOG_LEVEL": "WARN",
	}
	tgt.brazeSource = newBrazeSource("currents_http_to_kafka.yaml", env, func(batch []ingesttest.Event) {
		tgt.mu.Lock()
		defer tgt.mu.Unlock()
		for _, ev := range batch {
			tgt.acked = append(tgt.acked, ev.ID)
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				tgt.mu.Lock()
				tgt.inTopic[gjson.GetBytes(r.Value, "id").String()]++
				tgt.mu.Unlock()
			})
		}
	}()
	// An event the mapper refuses is no concern of the ingest tier: it goes
	// to the topic like any other (the delivery tier dead-letters it).
	forward := func(n int) record { r := unmappableEvent(n); r.expect = expectDelivered; return r }
	runFaultMatrix(t, tgt, faultRecords(35, scale.events, scale.invalidEvery, forward, deepEvent(expectRefused)), false)
	t.Logf("Braze saw: %v", tgt.conn.Statuses())
}

// checkAcked: every event answered 2xx is in the topic (the consumer is
// given a moment to read it).
func (g *ingestTarget) checkAcked(t *testing.T) {
	var missing []string
	waitUntil := time.Now().Add(3 * time.Second)
	for {
		missing = missing[:0]
		g.mu.Lock()
		for _, id := range g.acked {
			if g.inTopic[id] == 0 {
				missing = append(missing, id)
			}
		}
		g.mu.Unlock()
		if len(missing) == 0 || time.Now().After(waitUntil) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	assert.Empty(t, missing, "events answered 2xx to Braze that are not in the topic")
}

func (g *ingestTarget) delivered(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inTopic[id] > 0
}

func (g *ingestTarget) deliveredTotal() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.inTopic)
}

func (g *ingestTarget) deadLetters() deadLetters { return g.none }
func (g *ingestTarget) proxies() []faultInjector { return []faultInjector{g.faults} }

// TestKafkaFeedPlacesRecords: the fault suite's Kafka delivery case knows
// the partition and offset of every record it fed, as a consumer of the
// topic reads them. checkAcked relies on it: a record placed at another
// record's offset is reported missing below the committed offset while it
// is not (ProduceSync's results come in completion order, grouped by
// partition, not in the order the records were given).
func TestKafkaFeedPlacesRecords(t *testing.T) {
	const topic = "placed"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ProducerLinger(0),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	tgt := &kafkaTarget{cl: cl, topic: topic, placed: map[string][2]int64{}}
	recs := faultRecords(7, 200, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, tgt.feed(ctx, t, recs))

	read := map[[2]int64]string{}
	for len(read) < len(recs) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			read[[2]int64{int64(r.Partition), r.Offset}] = gjson.GetBytes(r.Value, "id").Str
		})
	}
	require.Len(t, read, len(recs))
	parts := map[int64]bool{}
	for _, r := range recs {
		at, ok := tgt.placed[r.id]
		require.True(t, ok, "record %s placed", r.id)
		parts[at[0]] = true
		assert.Equal(t, r.id, read[at], "the record at partition %d offset %d", at[0], at[1])
	}
	assert.Len(t, parts, 4, "the records span every partition")
}
