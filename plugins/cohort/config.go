package cohort

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/opencurrents/currents-amplitude/plugins/internal/clock"
)

// testClock, when a test sets it, is the clock of the components built while
// it is set (streams built from YAML cannot be handed one).
var testClock clock.Clock

// clockOf returns the clock of a new component.
func clockOf() clock.Clock { return clock.OrSystem(testClock) }

// stringFields returns a getter of string fields. Every string field of this
// package has a default, so FieldString cannot fail on a parsed config.
func stringFields(conf *service.ParsedConfig) func(name string) string {
	return func(name string) string {
		s, _ := conf.FieldString(name)
		return s
	}
}

// baseURL returns the override URL without a trailing slash, or the URL that
// table gives for key.
func baseURL(override string, table map[string]string, key string) (string, error) {
	if u := strings.TrimRight(override, "/"); u != "" {
		return u, nil
	}
	if u, ok := table[key]; ok {
		return u, nil
	}
	return "", fmt.Errorf("unknown endpoint %q: set url", key)
}

// transportFromParsed returns an HTTP transport with the TLS settings of the
// toggled TLS field name.
func transportFromParsed(conf *service.ParsedConfig, name string) (*http.Transport, error) {
	tlsConf, tlsOn, err := conf.FieldTLSToggled(name)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if tlsOn {
		transport.TLSClientConfig = tlsConf
	}
	return transport, nil
}
