package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// selfSigned returns a certificate for 127.0.0.1 and its PEM encoding.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kfake"},
		NotBefore:             time.Unix(1_700_000_000, 0),
		NotAfter:              time.Unix(4_000_000_000, 0),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestTLSWithTCPOptions checks the dialer built from tls and tcp: the
// broker's certificate is verified against root_cas, through the socket
// options of tcp.
func TestTLSWithTCPOptions(t *testing.T) {
	cert, caPEM := selfSigned(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "tls"), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	brokers := strings.Join(c.ListenAddrs(), ",")
	indent := strings.ReplaceAll(strings.TrimSpace(caPEM), "\n", "\n    ")
	yaml := fmt.Sprintf(`
seed_brokers: [ %q ]
topic: tls
tls:
  enabled: true
  root_cas: |
    %s
tcp:
  connect_timeout: 5s
  keep_alive: { idle: 30s, interval: 10s, count: 3 }
  tcp_user_timeout: 20s
`, brokers, indent)
	o := newOutput(t, yaml)
	require.NoError(t, o.WriteBatch(context.Background(), service.MessageBatch{service.NewMessage([]byte("over tls"))}))

	// Without the CA the broker's certificate is refused.
	conf, err := kafkaFranzOutputSpec().ParseYAML(fmt.Sprintf("seed_brokers: [ %q ]\ntopic: tls\ntls: {enabled: true}\n", brokers), nil)
	require.NoError(t, err)
	bad, err := newFranzOutputFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.Error(t, bad.Connect(ctx), "an unknown certificate was accepted")
}
