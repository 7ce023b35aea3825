package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// lintInput and lintOutput complete a config snippet that sets only the
// component under test.
const (
	lintInput  = "input:\n  generate:\n    mapping: 'root = {}'\n    count: 1\n"
	lintOutput = "output:\n  drop: {}\n"
)

// TestLintMissingKeys: a missing API key or token is a lint error with a
// clear message, also when the config interpolates it from an unset
// environment variable with an empty default (`${KEY:}`), as the shipped
// pipelines do; the same config with the variable set passes.
func TestLintMissingKeys(t *testing.T) {
	kafkaIn := func(sasl string) string {
		return "input:\n  kafka_franz:\n    seed_brokers: [ 127.0.0.1:9092 ]\n    topics: [ t ]\n    consumer_group: g\n    sasl:\n" + sasl + lintOutput
	}
	for _, tc := range []struct {
		name string
		conf string
		env  map[string]string
		want string // the lint message; empty when the config must pass
	}{
		{"amplitude without api_key", lintInput + "output:\n  amplitude:\n    api_key: ${K:}\n", nil,
			"api_key is empty: set the Amplitude project's API key"},
		{"amplitude without the field", lintInput + "output:\n  amplitude:\n    region: us\n", nil,
			"api_key is empty: set the Amplitude project's API key"},
		{"amplitude with api_key", lintInput + "output:\n  amplitude:\n    api_key: ${K:}\n", map[string]string{"K": "k"}, ""},

		{"amplitude_cohort without api_key", "input:\n  amplitude_cohort:\n    api_key: ${K:}\n    secret_key: s\n" + lintOutput, nil,
			"api_key is empty: set the Amplitude project's API key"},
		{"amplitude_cohort without secret_key", "input:\n  amplitude_cohort:\n    api_key: k\n    secret_key: ${S:}\n" + lintOutput, nil,
			"secret_key is empty: set the Amplitude project's secret key"},
		{"amplitude_cohort with both", "input:\n  amplitude_cohort:\n    api_key: ${K:}\n    secret_key: ${S:}\n" + lintOutput,
			map[string]string{"K": "k", "S": "s"}, ""},

		{"braze_cohort users_track without api_key", lintInput + "output:\n  braze_cohort:\n    api_key: ${K:}\n", nil,
			"api_key is empty: set a Braze REST API key with the users.track permission (method users_track)"},
		{"braze_cohort users_track with api_key", lintInput + "output:\n  braze_cohort:\n    api_key: ${K:}\n", map[string]string{"K": "k"}, ""},
		{"braze_cohort partner_cohort without partner_api_key", lintInput + "output:\n  braze_cohort:\n    method: partner_cohort\n    partner_api_key: ${P:}\n    client_secret: c\n", nil,
			"partner_api_key is empty: set the Braze-issued partner API key (method partner_cohort)"},
		{"braze_cohort partner_cohort without client_secret", lintInput + "output:\n  braze_cohort:\n    method: partner_cohort\n    partner_api_key: p\n", nil,
			"client_secret is empty: set the workspace's Data Import Key (method partner_cohort)"},
		{"braze_cohort partner_cohort with its keys", lintInput + "output:\n  braze_cohort:\n    method: partner_cohort\n    partner_api_key: p\n    client_secret: c\n", nil, ""},

		{"amplitude_profile without secret_key", lintInput + "pipeline:\n  processors:\n    - amplitude_profile:\n        secret_key: ${S:}\n" + lintOutput, nil,
			"secret_key is empty: set the Amplitude project's secret key"},
		{"amplitude_profile with secret_key", lintInput + "pipeline:\n  processors:\n    - amplitude_profile:\n        secret_key: ${S:}\n" + lintOutput, map[string]string{"S": "s"}, ""},

		{"connected_content_http without token", "input:\n  connected_content_http:\n    token: ${T:}\noutput:\n  sync_response: {}\n", nil,
			"token is empty: set the token Braze presents"},
		{"connected_content_http with token", "input:\n  connected_content_http:\n    token: ${T:}\noutput:\n  sync_response: {}\n", map[string]string{"T": "t"}, ""},

		{"amplitude_export without api_key", "input:\n  amplitude_export:\n    api_key: ${K:}\n    secret_key: s\n    start: 2026-11-29\n    end: 2026-11-30\n" + lintOutput, nil,
			"api_key is empty: set the Amplitude project's API key"},
		{"amplitude_export without secret_key", "input:\n  amplitude_export:\n    api_key: k\n    secret_key: ${S:}\n    start: 2026-11-29\n    end: 2026-11-30\n" + lintOutput, nil,
			"secret_key is empty: set the Amplitude project's secret key"},
		{"amplitude_export with both", "input:\n  amplitude_export:\n    api_key: k\n    secret_key: s\n    start: 2026-11-29\n    end: 2026-11-30\n" + lintOutput, nil, ""},

		{"kafka_franz SCRAM without password", kafkaIn("      - mechanism: SCRAM-SHA-512\n        username: u\n        password: ${KAFKA_PASSWORD:}\n"), nil,
			"sasl: mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 need a username and a password, and one is empty"},
		{"kafka_franz PLAIN without username", kafkaIn("      - mechanism: PLAIN\n        password: p\n"), nil,
			"sasl: mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 need a username and a password, and one is empty"},
		{"kafka_franz PLAIN with both", kafkaIn("      - mechanism: PLAIN\n        username: u\n        password: ${KAFKA_PASSWORD:}\n"), map[string]string{"KAFKA_PASSWORD": "p"}, ""},
		{"kafka_franz OAUTHBEARER without token", kafkaIn("      - mechanism: OAUTHBEARER\n"), nil,
			"sasl: mechanism OAUTHBEARER needs a token, and it is empty"},
		{"kafka_franz OAUTHBEARER with token", kafkaIn("      - mechanism: OAUTHBEARER\n        token: t\n"), nil, ""},
		{"kafka_franz AWS_MSK_IAM without secret", kafkaIn("      - mechanism: AWS_MSK_IAM\n        aws:\n          credentials:\n            id: i\n"), nil,
			"sasl: mechanism AWS_MSK_IAM needs aws.credentials.id and aws.credentials.secret, and one is empty"},
		{"kafka_franz AWS_MSK_IAM with credentials", kafkaIn("      - mechanism: AWS_MSK_IAM\n        aws:\n          credentials:\n            id: i\n            secret: s\n"), nil, ""},
		{"kafka_franz sasl switched off", kafkaIn("      - mechanism: ${KAFKA_SASL_MECHANISM:none}\n        username: ${KAFKA_USER:}\n        password: ${KAFKA_PASSWORD:}\n"), nil, ""},
		{"kafka_franz output SCRAM without password", lintInput + "output:\n  kafka_franz:\n    seed_brokers: [ 127.0.0.1:9092 ]\n    topic: t\n    sasl:\n      - mechanism: SCRAM-SHA-256\n        username: u\n", nil,
			"sasl: mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 need a username and a password, and one is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := service.NewStreamBuilder()
			sb.SetEnvVarLookupFunc(func(k string) (string, bool) {
				v, ok := tc.env[k]
				return v, ok
			})
			err := sb.SetYAML(tc.conf)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("config must pass lint, got: %v\n%s", err, tc.conf)
			case tc.want != "" && err == nil:
				t.Fatalf("config must fail lint with %q, it passed:\n%s", tc.want, tc.conf)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("lint error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestLintCLIMissingKey: `currents-amplitude lint` exits non-zero on a config
// whose key comes from an unset variable, and zero once it is set, which is
// why .ci/run lints the shipped pipelines with placeholder keys.
func TestLintCLIMissingKey(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pipeline.yaml")
	conf := lintInput + "output:\n  amplitude:\n    api_key: ${LINT_TEST_AMPLITUDE_API_KEY:}\n"
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	lint := func() int {
		code, err := service.RunCLIToCode(context.Background(), service.CLIOptSetArgs("currents-amplitude", "lint", f))
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	t.Setenv("LINT_TEST_AMPLITUDE_API_KEY", "")
	if code := lint(); code == 0 {
		t.Fatal("lint passed a config without api_key")
	}
	t.Setenv("LINT_TEST_AMPLITUDE_API_KEY", "placeholder")
	if code := lint(); code != 0 {
		t.Fatalf("lint failed (exit code %d) a config with api_key", code)
	}
}
