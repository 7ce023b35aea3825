package kafka

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSASLMechanisms(t *testing.T) {
	const mskHost = "b-1.currents.abc123.c2.kafka.eu-west-1.amazonaws.com:9098"
	tests := []struct {
		name     string
		sasl     string
		wantMech string
		// wantFirst are substrings of the first client message.
		wantFirst []string
		wantErr   string
	}{
		{
			name:      "oauthbearer with extensions",
			sasl:      `[{mechanism: OAUTHBEARER, token: tok-3f9, extensions: {logicalCluster: lkc-1}}]`,
			wantMech:  "OAUTHBEARER",
			wantFirst: []string{"auth=Bearer tok-3f9", "logicalCluster=lkc-1"},
		},
		{name: "oauthbearer without token", sasl: `[{mechanism: OAUTHBEARER}]`, wantErr: "token is required"},
		{
			name:      "aws msk iam, static credentials",
			sasl:      `[{mechanism: AWS_MSK_IAM, aws: {region: eu-west-1, credentials: {id: AKIDEXAMPLE, secret: wJalrXUtnFEMI-secret, token: sess-tok}}}]`,
			wantMech:  "AWS_MSK_IAM",
			wantFirst: []string{"AKIDEXAMPLE", "eu-west-1", "kafka-cluster:Connect"},
		},
		{name: "aws without credentials", sasl: `[{mechanism: AWS_MSK_IAM, aws: {region: eu-west-1}}]`, wantErr: "aws.credentials.id"},
		{name: "aws without aws block", sasl: `[{mechanism: AWS_MSK_IAM}]`, wantErr: "aws.credentials.id"},
		{name: "aws profile refused", sasl: `[{mechanism: AWS_MSK_IAM, aws: {credentials: {profile: prod, secret: wJalrXUtnFEMI-secret}}}]`, wantErr: "no AWS SDK"},
		{name: "aws instance role refused", sasl: `[{mechanism: AWS_MSK_IAM, aws: {credentials: {from_ec2_role: true}}}]`, wantErr: "no AWS SDK"},
		{name: "scram without user", sasl: `[{mechanism: SCRAM-SHA-256, password: pw-secret}]`, wantErr: "username is required"},
		{name: "none skipped", sasl: `[{mechanism: none}, {mechanism: PLAIN, username: u, password: p}]`, wantMech: "PLAIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := kafkaFranzOutputSpec().ParseYAML("{seed_brokers: [b:9092], topic: t, sasl: "+tt.sasl+"}", nil)
			require.NoError(t, err)
			mechs, err := parseSASL(conf)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				for _, secret := range []string{"wJalrXUtnFEMI-secret", "pw-secret"} {
					assert.NotContains(t, err.Error(), secret, "a secret leaked into an error")
				}
				return
			}
			require.NoError(t, err)
			require.Len(t, mechs, 1)
			assert.Equal(t, tt.wantMech, mechs[0].Name())
			_, first, err := mechs[0].Authenticate(context.Background(), mskHost)
			require.NoError(t, err)
			for _, w := range tt.wantFirst {
				assert.Contains(t, string(first), w)
			}
			assert.NotContains(t, string(first), "wJalrXUtnFEMI-secret", "the secret key is sent, not only its signature")
		})
	}
}
