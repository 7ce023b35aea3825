// Package prometheus registers the prometheus metrics exporter, built on
// github.com/prometheus/client_golang, with Benthos' global environment.
//
// Benthos serves the exporter's handler at /metrics (and /stats) of its
// service-wide HTTP server, so every metric of the pipeline, our plugins'
// counters and latencies included, can be scraped. Field names follow
// Redpanda Connect's prometheus exporter. The package is not part of
// plugins/all because Redpanda Connect registers an exporter of the same
// name; this distribution's main package imports it.
package prometheus
