package avroscan

import (
	"net/url"
	"strings"
)

// eventTypeFromSchema derives the Currents event type from the full name of
// a file's record schema. Storage connectors name records
// dataexport.<connector>.inner.<event type> (for example
// dataexport.S3.inner.users.behaviors.Purchase); schemas from 2017-2021 used
// the bare event type as namespace (users.behaviors.UpgradedApp). So: the
// part after the last ".inner." when there is one, else the name without a
// leading "dataexport.<connector>." when there is one, else the name as is.
func eventTypeFromSchema(fullName string) string {
	if i := strings.LastIndex(fullName, ".inner."); i >= 0 {
		return fullName[i+len(".inner."):]
	}
	if rest, ok := strings.CutPrefix(fullName, "dataexport."); ok {
		if _, after, ok := strings.Cut(rest, "."); ok && after != "" {
			return after
		}
	}
	return fullName
}

// eventTypeFromPath returns the value of the event_type=<type> segment of a
// storage object path (Braze's layout:
// <prefix>/.../event_type=<type>/date=<date>/.../<file>.avro), or "" when
// the path has none. A URL-escaped value (event_type=users%2E...) is
// unescaped.
func eventTypeFromPath(path string) string {
	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '\\' })
	for i := len(segs) - 1; i >= 0; i-- {
		v, ok := strings.CutPrefix(segs[i], "event_type=")
		if !ok {
			continue
		}
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		return v
	}
	return ""
}

// sameEventType reports whether the event type of a path agrees with the
// full name of the schema: the path's type is the name derived from the
// schema, or a dot-separated suffix of the schema's full name (which
// tolerates namespace styles this package does not know).
func sameEventType(fromPath, schemaFullName string) bool {
	return fromPath == eventTypeFromSchema(schemaFullName) ||
		fromPath == schemaFullName ||
		strings.HasSuffix(schemaFullName, "."+fromPath)
}
