// Package amplitudehost holds the base URLs of Amplitude's REST APIs (the
// Dashboard REST API: cohorts, export), shared by the components that call
// them. See https://amplitude.com/docs/apis/analytics/export and
// https://amplitude.com/docs/apis/analytics/behavioral-cohorts.
package amplitudehost

const (
	// US is the REST base of projects in the US data centre (the default).
	US = "https://amplitude.com"
	// EU is the REST base of projects with EU data residency.
	EU = "https://analytics.eu.amplitude.com"
)
