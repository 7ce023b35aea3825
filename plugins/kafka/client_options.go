package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Field names shared by the input and the output (Redpanda Connect's
// kafka_franz names, so existing YAML carries over).
const (
	kfFieldSeedBrokers  = "seed_brokers"
	kfFieldClientID     = "client_id"
	kfFieldRackID       = "rack_id"
	kfFieldTLS          = "tls"
	kfFieldSASL         = "sasl"
	kfFieldSASLMech     = "mechanism"
	kfFieldSASLUser     = "username"
	kfFieldSASLPassword = "password"
)

// SASL mechanisms accepted by the sasl field.
const (
	saslNone        = "none"
	saslPlain       = "PLAIN"
	saslScramSHA256 = "SCRAM-SHA-256"
	saslScramSHA512 = "SCRAM-SHA-512"
)

const defaultClientID = "currents-amplitude"

// clientFields returns the connection fields common to kafka_franz inputs and
// outputs: brokers, client identity, TLS and SASL.
func clientFields() []*service.ConfigField {
	return []*service.ConfigField{
		service.NewStringListField(kfFieldSeedBrokers).
			Description("A list of broker addresses to connect to in order to discover the cluster. Items that contain commas are split into several addresses.").
			Example([]string{"localhost:9092"}).
			Example([]string{"foo:9092", "bar:9092"}).
			Example([]string{"foo:9092,bar:9092"}),
		service.NewStringField(kfFieldClientID).
			Description("An identifier for the client connection, visible in broker logs and quotas.").
			Default(defaultClientID).
			Example("currents-delivery").
			Advanced(),
		service.NewStringField(kfFieldRackID).
			Description("A rack identifier for this client. On the input it enables fetching from the closest replica (KIP-392); on the output it prefers partitions led in this rack.").
			Default("").
			Example("eu-west-1a").
			Advanced(),
		service.NewTLSToggledField(kfFieldTLS),
		service.NewObjectListField(kfFieldSASL,
			service.NewStringEnumField(kfFieldSASLMech, saslNone, saslPlain, saslScramSHA256, saslScramSHA512).
				Description("The SASL mechanism to use; `none` skips the entry, so that one config can switch SASL on and off through an environment variable.").
				Example(saslScramSHA512),
			service.NewStringField(kfFieldSASLUser).
				Description("The user name to authenticate as.").
				Default("").
				Example("${KAFKA_USER}"),
			service.NewStringField(kfFieldSASLPassword).
				Description("The password of the user.").
				Default("").
				Example("${KAFKA_PASSWORD}").
				Secret(),
		).
			Description("SASL authentication mechanisms, tried in the order listed.").
			Optional().
			Advanced().
			Example([]any{map[string]any{
				kfFieldSASLMech:     saslScramSHA512,
				kfFieldSASLUser:     "${KAFKA_USER}",
				kfFieldSASLPassword: "${KAFKA_PASSWORD}",
			}}),
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
	c.opts = append(c.opts, kgo.SeedBrokers(brokers...), kgo.ClientID(c.clientID))

	tlsConf, tlsOn, err := conf.FieldTLSToggled(kfFieldTLS)
	if err != nil {
		return nil, err
	}
	if tlsOn {
		c.opts = append(c.opts, kgo.DialTLSConfig(tlsConf))
	}

	mechs, err := parseSASL(conf)
	if err != nil {
		return nil, err
	}
	if len(mechs) > 0 {
		c.opts = append(c.opts, kgo.SASL(mechs...))
	}
	return c, nil
}

// parseSASL builds the SASL mechanisms of the sasl field. Passwords never
// appear in errors.
func parseSASL(conf *service.ParsedConfig) ([]sasl.Mechanism, error) {
	if !conf.Contains(kfFieldSASL) {
		return nil, nil
	}
	list, err := conf.FieldObjectList(kfFieldSASL)
	if err != nil {
		return nil, err
	}
	mechs := make([]sasl.Mechanism, 0, len(list))
	for i, sc := range list {
		mech, err := sc.FieldString(kfFieldSASLMech)
		if err != nil {
			return nil, err
		}
		user, err := sc.FieldString(kfFieldSASLUser)
		if err != nil {
			return nil, err
		}
		pass, err := sc.FieldString(kfFieldSASLPassword)
		if err != nil {
			return nil, err
		}
		if mech == saslNone {
			continue
		}
		if user == "" {
			return nil, fmt.Errorf("field sasl[%d]: username is required for %s", i, mech)
		}
		switch mech {
		case saslPlain:
			mechs = append(mechs, plain.Auth{User: user, Pass: pass}.AsMechanism())
		case saslScramSHA256:
			mechs = append(mechs, scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())
		case saslScramSHA512:
			mechs = append(mechs, scram.Auth{User: user, Pass: pass}.AsSha512Mechanism())
		default:
			return nil, fmt.Errorf("field sasl[%d]: unsupported mechanism %q", i, mech)
		}
	}
	return mechs, nil
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
