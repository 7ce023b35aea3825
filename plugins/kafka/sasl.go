package kafka

import (
	"fmt"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/opencurrents/currents-amplitude/plugins/internal/speclint"
)

// SASL field names (Redpanda Connect's).
const (
	kfFieldSASL            = "sasl"
	kfFieldSASLMech        = "mechanism"
	kfFieldSASLUser        = "username"
	kfFieldSASLPassword    = "password"
	kfFieldSASLToken       = "token"
	kfFieldSASLExtensions  = "extensions"
	kfFieldSASLAWS         = "aws"
	kfFieldAWSRegion       = "region"
	kfFieldAWSEndpoint     = "endpoint"
	kfFieldAWSCredentials  = "credentials"
	kfFieldAWSCredID       = "id"
	kfFieldAWSCredSecret   = "secret"
	kfFieldAWSCredToken    = "token"
	kfFieldAWSCredProfile  = "profile"
	kfFieldAWSCredRole     = "role"
	kfFieldAWSCredRoleExt  = "role_external_id"
	kfFieldAWSCredFromEC2  = "from_ec2_role"
	kfFieldSASLAWSUserAgnt = "user_agent"
)

// SASL mechanisms accepted by the sasl field.
const (
	saslNone        = "none"
	saslPlain       = "PLAIN"
	saslOAuthBearer = "OAUTHBEARER"
	saslScramSHA256 = "SCRAM-SHA-256"
	saslScramSHA512 = "SCRAM-SHA-512"
	saslAWSMSKIAM   = "AWS_MSK_IAM"
)

// saslLintRule is appended to the lint rules of the kafka_franz input and
// output: an entry's mechanism needs its credentials, which pipelines
// interpolate from the environment with an empty default.
var saslLintRule = speclint.Append(
	speclint.Check{
		If:      saslEntryLacks([]string{saslPlain, saslScramSHA256, saslScramSHA512}, `s.username.or("") == "" || s.password.or("") == ""`),
		Message: "sasl: mechanisms " + saslPlain + ", " + saslScramSHA256 + " and " + saslScramSHA512 + " need a username and a password, and one is empty",
	},
	speclint.Check{
		If:      saslEntryLacks([]string{saslOAuthBearer}, `s.token.or("") == ""`),
		Message: "sasl: mechanism " + saslOAuthBearer + " needs a token, and it is empty",
	},
	speclint.Check{
		If:      saslEntryLacks([]string{saslAWSMSKIAM}, `s.aws.credentials.id.or("") == "" || s.aws.credentials.secret.or("") == ""`),
		Message: "sasl: mechanism " + saslAWSMSKIAM + " needs aws.credentials.id and aws.credentials.secret, and one is empty",
	},
)

// saslEntryLacks is the Bloblang query true when a sasl entry `s` with one
// of mechs satisfies lacks.
func saslEntryLacks(mechs []string, lacks string) string {
	return `this.sasl.or([]).any(s -> ["` + strings.Join(mechs, `", "`) + `"].contains(s.mechanism.or("")) && (` + lacks + `))`
}

// saslField is the sasl list field.
func saslField() *service.ConfigField {
	return service.NewObjectListField(kfFieldSASL,
		service.NewStringAnnotatedEnumField(kfFieldSASLMech, map[string]string{
			saslNone:        "Skips the entry, so that one config can switch SASL on and off through an environment variable.",
			saslPlain:       "Plain user name and password (use it with TLS).",
			saslOAuthBearer: "A static OAuth bearer token (`token`) with optional `extensions`.",
			saslScramSHA256: "SCRAM (RFC 5802) with SHA-256.",
			saslScramSHA512: "SCRAM (RFC 5802) with SHA-512.",
			saslAWSMSKIAM:   "AWS IAM for Amazon MSK, signed with the static credentials of `aws.credentials`.",
		}).
			Description("The SASL mechanism to use.").
			Example(saslScramSHA512),
		service.NewStringField(kfFieldSASLUser).
			Description("The user name for PLAIN and SCRAM.").
			Default("").
			Example("${KAFKA_USER}"),
		service.NewStringField(kfFieldSASLPassword).
			Description("The password for PLAIN and SCRAM.").
			Default("").
			Example("${KAFKA_PASSWORD}").
			Secret(),
		service.NewStringField(kfFieldSASLToken).
			Description("The bearer token of an OAUTHBEARER session.").
			Default("").
			Example("${KAFKA_OAUTH_TOKEN}").
			Secret(),
		service.NewStringMapField(kfFieldSASLExtensions).
			Description("Key/value pairs sent with OAUTHBEARER authentication requests.").
			Optional().
			Example(map[string]any{"logicalCluster": "lkc-123"}),
		service.NewObjectField(kfFieldSASLAWS,
			service.NewStringField(kfFieldAWSRegion).
				Description("Accepted for compatibility; the region is derived from the broker host name, as MSK's signer requires.").
				Default("").
				Example("eu-west-1"),
			service.NewStringField(kfFieldAWSEndpoint).
				Description("Accepted for compatibility and ignored: MSK IAM authenticates against the brokers themselves.").
				Default("").
				Advanced(),
			service.NewObjectField(kfFieldAWSCredentials,
				service.NewStringField(kfFieldAWSCredID).
					Description("The access key id.").
					Default("").
					Example("${AWS_ACCESS_KEY_ID}"),
				service.NewStringField(kfFieldAWSCredSecret).
					Description("The secret access key.").
					Default("").
					Example("${AWS_SECRET_ACCESS_KEY}").
					Secret(),
				service.NewStringField(kfFieldAWSCredToken).
					Description("The session token of temporary credentials.").
					Default("").
					Example("${AWS_SESSION_TOKEN}").
					Secret(),
				service.NewStringField(kfFieldAWSCredProfile).
					Description("Not supported (no AWS SDK in this binary): must stay empty.").
					Default("").
					Advanced(),
				service.NewStringField(kfFieldAWSCredRole).
					Description("Not supported (no AWS SDK in this binary): must stay empty.").
					Default("").
					Advanced(),
				service.NewStringField(kfFieldAWSCredRoleExt).
					Description("Not supported (no AWS SDK in this binary): must stay empty.").
					Default("").
					Advanced(),
				service.NewBoolField(kfFieldAWSCredFromEC2).
					Description("Not supported (no AWS SDK in this binary): must stay false.").
					Default(false).
					Advanced(),
			).
				Description("Static AWS credentials. Unlike Redpanda Connect, there is no AWS SDK chain (profiles, roles, instance metadata): set the key id and secret, for example from the `AWS_*` environment variables."),
			service.NewStringField(kfFieldSASLAWSUserAgnt).
				Description("The user agent sent with the signed request.").
				Default("").
				Advanced(),
		).
			Description("AWS fields of the AWS_MSK_IAM mechanism.").
			Optional(),
	).
		Description("SASL authentication mechanisms, tried in the order listed: the first one the broker supports is used.").
		Optional().
		Advanced().
		Example([]any{map[string]any{
			kfFieldSASLMech:     saslScramSHA512,
			kfFieldSASLUser:     "${KAFKA_USER}",
			kfFieldSASLPassword: "${KAFKA_PASSWORD}",
		}})
}

// parseSASL builds the SASL mechanisms of the sasl field. Secrets never
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
		if mech == saslNone || mech == "" {
			continue
		}
		m, err := saslMechanism(sc, mech)
		if err != nil {
			return nil, fmt.Errorf("field sasl[%d]: %w", i, err)
		}
		mechs = append(mechs, m)
	}
	return mechs, nil
}

// saslMechanism builds one mechanism from its entry.
func saslMechanism(sc *service.ParsedConfig, mech string) (sasl.Mechanism, error) {
	str := func(path ...string) string {
		s, _ := sc.FieldString(path...)
		return s
	}
	switch mech {
	case saslPlain, saslScramSHA256, saslScramSHA512:
		user, pass := str(kfFieldSASLUser), str(kfFieldSASLPassword)
		if user == "" {
			return nil, fmt.Errorf("username is required for %s", mech)
		}
		switch mech {
		case saslPlain:
			return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
		case saslScramSHA256:
			return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
		default:
			return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
		}
	case saslOAuthBearer:
		a := oauth.Auth{Token: str(kfFieldSASLToken)}
		if a.Token == "" {
			return nil, fmt.Errorf("token is required for %s", mech)
		}
		if sc.Contains(kfFieldSASLExtensions) {
			ext, err := sc.FieldStringMap(kfFieldSASLExtensions)
			if err != nil {
				return nil, err
			}
			a.Extensions = ext
		}
		return a.AsMechanism(), nil
	case saslAWSMSKIAM:
		return awsMechanism(sc)
	default:
		return nil, fmt.Errorf("unsupported mechanism %q", mech)
	}
}

// awsMechanism builds AWS_MSK_IAM from static credentials. Credential
// sources that need the AWS SDK are refused rather than silently ignored.
func awsMechanism(sc *service.ParsedConfig) (sasl.Mechanism, error) {
	if !sc.Contains(kfFieldSASLAWS) {
		return nil, fmt.Errorf("%s needs aws.credentials.id and aws.credentials.secret", saslAWSMSKIAM)
	}
	ac := sc.Namespace(kfFieldSASLAWS)
	cc := ac.Namespace(kfFieldAWSCredentials)
	for _, f := range []string{kfFieldAWSCredProfile, kfFieldAWSCredRole, kfFieldAWSCredRoleExt} {
		if s, _ := cc.FieldString(f); s != "" {
			return nil, fmt.Errorf("aws.credentials.%s is not supported: this binary has no AWS SDK, give static credentials", f)
		}
	}
	if ec2, _ := cc.FieldBool(kfFieldAWSCredFromEC2); ec2 {
		return nil, fmt.Errorf("aws.credentials.%s is not supported: this binary has no AWS SDK, give static credentials", kfFieldAWSCredFromEC2)
	}
	var a aws.Auth
	a.AccessKey, _ = cc.FieldString(kfFieldAWSCredID)
	a.SecretKey, _ = cc.FieldString(kfFieldAWSCredSecret)
	a.SessionToken, _ = cc.FieldString(kfFieldAWSCredToken)
	a.UserAgent, _ = ac.FieldString(kfFieldSASLAWSUserAgnt)
	if a.AccessKey == "" || a.SecretKey == "" {
		return nil, fmt.Errorf("%s needs aws.credentials.id and aws.credentials.secret", saslAWSMSKIAM)
	}
	return a.AsManagedStreamingIAMMechanism(), nil
}
