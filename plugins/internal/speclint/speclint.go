// Package speclint builds the lint rules of this distribution's component
// specs (service.ConfigSpec.LintRule), so that a missing key or token is
// reported by `currents-amplitude lint` (and at start) with a clear message
// instead of failing, or worse authenticating nothing, at run time.
//
// A pipeline usually interpolates a key from the environment with an empty
// default (`api_key: ${AMPLITUDE_API_KEY:}`), which Benthos' lint accepts
// when the variable is unset: the field is present but empty. Marking the
// field required (no Default) is therefore not enough; the rules here also
// refuse an empty value.
package speclint

import (
	"strconv"
	"strings"
)

// Check is one condition of a lint rule.
type Check struct {
	// If is a Bloblang query over the component's config (`this`), true
	// when Message applies.
	If string
	// Message is the lint error reported when If is true.
	Message string
}

// Rule returns a Bloblang lint rule that reports the Message of every check
// whose If is true.
func Rule(checks ...Check) string {
	return "root = " + list(checks)
}

// Append returns Bloblang that adds the messages of checks to those of the
// rule it follows, for a spec whose rule is written by hand:
// LintRule(handWritten + speclint.Append(...)).
func Append(checks ...Check) string {
	return "\nroot = root.or([]).merge(" + list(checks) + ")"
}

// list is the Bloblang array of the messages of checks whose If holds.
func list(checks []Check) string {
	var b strings.Builder
	b.WriteString("[\n")
	for _, c := range checks {
		b.WriteString("  if ")
		b.WriteString(c.If)
		b.WriteString(" { ")
		b.WriteString(strconv.Quote(c.Message))
		b.WriteString(" },\n")
	}
	b.WriteString("]")
	return b.String()
}

// Empty returns the query that is true when the string field at path
// (dot-separated, relative to `this`) is missing, null or empty.
func Empty(path string) string {
	return `this.` + path + `.or("") == ""`
}

// Required returns the check that the field at path holds a non-empty
// value; what says what it is ("the Amplitude project's API key").
func Required(path, what string) Check {
	return Check{If: Empty(path), Message: path + " is empty: set " + what}
}

// RequiredWhen is Required only when the query cond holds; why says when
// the field is needed ("with method partner_cohort").
func RequiredWhen(cond, path, what, why string) Check {
	return Check{If: "(" + cond + ") && " + Empty(path), Message: path + " is empty: set " + what + " " + why}
}
