package cohort

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"
)

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
