package ingest

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	// The core components the stream tests need (tracer, logger, metrics).
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// waitListening polls url until a server answers.
func waitListening(t *testing.T, url string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Post(url, "application/json", strings.NewReader(""))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, 20*time.Second, 20*time.Millisecond)
}
