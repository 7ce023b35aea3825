package avroscan

import (
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/refdata"
)

func TestEventTypeFromSchema(t *testing.T) {
	tests := map[string]string{
		"dataexport.S3.inner.users.behaviors.Purchase":          "users.behaviors.Purchase",
		"dataexport.GCS.inner.users.messages.email.Open":        "users.messages.email.Open",
		"dataexport.AzureBlob.inner.agentconsole.AgentExecuted": "agentconsole.AgentExecuted",
		"dataexport.prod-01.S3.inner.users.canvas.Entry":        "users.canvas.Entry",
		"users.behaviors.UpgradedApp":                           "users.behaviors.UpgradedApp",
		"users.messages.pushnotification.InfluencedOpen":        "users.messages.pushnotification.InfluencedOpen",
		"dataexport.S3.users.behaviors.CustomEvent":             "users.behaviors.CustomEvent",
		"Purchase": "Purchase",
		"":         "",
	}
	for in, want := range tests {
		assert.Equal(t, want, eventTypeFromSchema(in), in)
	}
}

// TestEventTypeOfEveryBrazeSchema checks the derivation against the name of
// every current and retired Braze schema (each file is named after its
// event type).
func TestEventTypeOfEveryBrazeSchema(t *testing.T) {
	n := 0
	for _, sub := range []string{"avsc", "avsc-removed"} {
		for _, f := range refdata.Samples(t, sub, ".avsc") {
			s, err := avro.ParseBytesWithCache(f.Data, "", &avro.SchemaCache{})
			require.NoError(t, err, f.Path)
			named := s.(avro.NamedSchema)
			assert.Equal(t, f.Name, eventTypeFromSchema(named.FullName()), f.Path)
			assert.True(t, sameEventType(f.Name, named.FullName()), f.Path)
			n++
		}
	}
	assert.GreaterOrEqual(t, n, 100)
}

func TestEventTypeFromPath(t *testing.T) {
	tests := map[string]string{
		"":             "",
		"file.avro":    "",
		"/data/a.avro": "",
		"s3://bucket/currents/dataexport.prod-03.S3.integration.5f3/event_type=users.messages.email.Open/date=2026-11-29-13/61/4/dataexport.prod-03.S3.integration.5f3+0+0000123.avro": "users.messages.email.Open",
		`C:\currents\event_type=users.behaviors.Purchase\date=2026-11-29-13\x.avro`:                                                                                                    "users.behaviors.Purchase",
		"x/event_type=users%2Ebehaviors%2EPurchase/y.avro":                                                                                                                             "users.behaviors.Purchase",
		"event_type=a/sub/event_type=b/f.avro":                                                                                                                                         "b",
	}
	for in, want := range tests {
		assert.Equal(t, want, eventTypeFromPath(in), in)
	}
}

func TestSameEventType(t *testing.T) {
	assert.True(t, sameEventType("users.behaviors.Purchase", "dataexport.S3.inner.users.behaviors.Purchase"))
	assert.True(t, sameEventType("users.behaviors.Purchase", "com.example.future.users.behaviors.Purchase"))
	assert.True(t, sameEventType("users.behaviors.UpgradedApp", "users.behaviors.UpgradedApp"))
	assert.False(t, sameEventType("users.messages.email.Open", "dataexport.S3.inner.users.behaviors.Purchase"))
	assert.False(t, sameEventType("Purchase2", "dataexport.S3.inner.users.behaviors.Purchase"))
	assert.False(t, sameEventType("behaviors.Purchase", "dataexport.S3.inner.users.xbehaviors.Purchase"))
}
