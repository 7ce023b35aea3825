// Package redact removes secrets from text that quotes a remote answer or an
// error, before it reaches a log line, an error or a metric.
package redact

import "strings"

// Marker replaces every secret.
const Marker = "[redacted]"

// Redactor replaces a fixed set of secrets. The zero value replaces nothing.
type Redactor struct {
	r *strings.Replacer
}

// New returns a Redactor of the non-empty secrets.
func New(secrets ...string) Redactor {
	var pairs []string
	for _, s := range secrets {
		if s != "" {
			pairs = append(pairs, s, Marker)
		}
	}
	if len(pairs) == 0 {
		return Redactor{}
	}
	return Redactor{r: strings.NewReplacer(pairs...)}
}

// String returns s with every secret replaced by Marker.
func (r Redactor) String(s string) string {
	if r.r == nil {
		return s
	}
	return r.r.Replace(s)
}
