package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/redpanda-data/benthos/v4/public/utils/netutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Field names shared by the input and the output (Redpanda Connect's
// kafka_franz names, so existing YAML carries over).
const (
	kfFieldSeedBrokers            = "seed_brokers"
	kfFieldClientID               = "client_id"
	kfFieldRackID                 = "rack_id"
	kfFieldTLS                    = "tls"
	kfFieldMetadataMaxAge         = "metadata_max_age"
	kfFieldRequestTimeoutOverhead = "request_timeout_overhead"
	kfFieldConnIdleTimeout        = "conn_idle_timeout"
	kfFieldTCP                    = "tcp"
)

const defaultClientID = "currents-amplitude"

// clientFields returns the connection fields common to kafka_franz inputs and
// outputs: brokers, client identity, TLS, SASL, metadata and socket options.
func clientFields() []*service.ConfigField {
	return []*service.ConfigField{
		service.NewStringListField(kfFieldSeedBrokers).
			Description("A list of broker addresses to connect to in order to discover the cluster. Items that contain commas are split into several addresses.").
			Example([]string{"localhost:9092"}).
			Example([]string{"foo:9092", "bar:9092"}).
			Example([]string{"foo:9092,bar:9092"}),
		service.NewStringField(kfFieldClientID).
			Description("An identifier for the client connection, visible in broker logs and quotas. (Redpanda Connect's default is `redpanda-connect`.)").
			Default(defaultClientID).
			Example("currents-delivery").
			Advanced(),
		service.NewStringField(kfFieldRackID).
			Description("A rack identifier for this client. On the input it enables fetching from the closest replica (KIP-392); on the output it prefers partitions led in this rack.").
			Default("").
			Example("eu-west-1a").
			Advanced(),
		service.NewTLSToggledField(kfFieldTLS),
		saslField(),
		service.NewDurationField(kfFieldMetadataMaxAge).
			Description("The maximum age of cluster metadata before it is refreshed. It also bounds how long a new topic matching `regexp_topics_include` waits to be consumed.").
			Default("1m").
			Example("30s").
			Advanced(),
		service.NewDurationField(kfFieldRequestTimeoutOverhead).
			Description("Time granted to every request on top of its own timeout before it is cut, roughly Kafka's `request.timeout.ms`.").
			Default("10s").
			Example("30s").
			Advanced(),
		service.NewDurationField(kfFieldConnIdleTimeout).
			Description("How long a connection to a broker may stay idle before it is closed.").
			Default("20s").
			Example("1m").
			Advanced(),
		netutil.DialerConfigSpec(),
	}
}

// clientConf holds the parsed connection fields.
type clientConf struct {
	seedBrokers []string
	clientID    string
	rackID      string
	opts        []kgo.Opt
}

// parseClientConf reads and validates the connection fields and turns them
// into franz-go client options.
func parseClientConf(conf *service.ParsedConfig) (*clientConf, error) {
	rawBrokers, err := conf.FieldStringList(kfFieldSeedBrokers)
	if err != nil {
		return nil, err
	}
	brokers := splitList(rawBrokers)
	if len(brokers) == 0 {
		return nil, errors.New("field seed_brokers: at least one broker address is required")
	}
	c := &clientConf{seedBrokers: brokers}
	if c.clientID, err = conf.FieldString(kfFieldClientID); err != nil {
		return nil, err
	}
	if c.rackID, err = conf.FieldString(kfFieldRackID); err != nil {
		return nil, err
	}
	durs, err := durationFields(conf, []durationLimit{
		// The bounds kgo's own validation enforces.
		{kfFieldMetadataMaxAge, 10 * time.Millisecond, time.Hour},
		{kfFieldRequestTimeoutOverhead, 100 * time.Millisecond, 15 * time.Minute},
		{kfFieldConnIdleTimeout, 100 * time.Millisecond, 15 * time.Minute},
	})
	if err != nil {
		return nil, err
	}
	c.opts = append(c.opts,
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(c.clientID),
		kgo.MetadataMaxAge(durs[kfFieldMetadataMaxAge]),
		kgo.RequestTimeoutOverhead(durs[kfFieldRequestTimeoutOverhead]),
		kgo.ConnIdleTimeout(durs[kfFieldConnIdleTimeout]),
	)

	tlsConf, tlsOn, err := conf.FieldTLSToggled(kfFieldTLS)
	if err != nil {
		return nil, err
	}
	if !tlsOn {
		tlsConf = nil
	}
	dial, err := parseDialer(conf, tlsConf)
	if err != nil {
		return nil, err
	}
	c.opts = append(c.opts, kgo.Dialer(dial))

	mechs, err := parseSASL(conf)
	if err != nil {
		return nil, err
	}
	if len(mechs) > 0 {
		c.opts = append(c.opts, kgo.SASL(mechs...))
	}
	return c, nil
}

// parseDialer builds the dial function of the tcp field (timeouts,
// keep-alive, TCP_USER_TIMEOUT), wrapped in TLS when tlsConf is not nil.
func parseDialer(conf *service.ParsedConfig, tlsConf *tls.Config) (func(ctx context.Context, network, host string) (net.Conn, error), error) {
	d := &net.Dialer{}
	if conf.Contains(kfFieldTCP) {
		dc, err := netutil.DialerConfigFromParsed(conf.Namespace(kfFieldTCP))
		if err != nil {
			return nil, err
		}
		if err := dc.Validate(); err != nil {
			return nil, fmt.Errorf("field tcp: %w", err)
		}
		if err := netutil.DecorateDialer(d, dc); err != nil {
			return nil, fmt.Errorf("field tcp: %w", err)
		}
	}
	if tlsConf == nil {
		return d.DialContext, nil
	}
	td := &tls.Dialer{NetDialer: d, Config: tlsConf}
	return td.DialContext, nil
}

// durationLimit bounds a duration field, in the manner of the limit table
// that kgo's config validation walks: a value below min or above max (when
// max is positive) is refused with the field's name.
type durationLimit struct {
	field    string
	min, max time.Duration
}

// durationFields reads and checks the named duration fields.
func durationFields(conf *service.ParsedConfig, limits []durationLimit) (map[string]time.Duration, error) {
	out := make(map[string]time.Duration, len(limits))
	for _, l := range limits {
		d, err := conf.FieldDuration(l.field)
		if err != nil {
			return nil, err
		}
		if d < l.min || (l.max > 0 && d > l.max) {
			if l.max > 0 {
				return nil, fmt.Errorf("field %s: %s is outside [%s, %s]", l.field, d, l.min, l.max)
			}
			return nil, fmt.Errorf("field %s: %s is below the minimum %s", l.field, d, l.min)
		}
		out[l.field] = d
	}
	return out, nil
}

// newClient creates a franz-go client and checks that a broker answers, so
// that Connect reports unreachable clusters instead of failing later.
func newClient(ctx context.Context, opts []kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("ping kafka brokers: %w", err)
	}
	return cl, nil
}

// splitList trims the items of a list and splits those containing commas,
// dropping empty items.
func splitList(items []string) []string {
	var out []string
	for _, it := range items {
		for _, s := range strings.Split(it, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
