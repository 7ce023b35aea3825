// Package ingest receives Braze Currents events over HTTP.
//
// It registers the braze_currents_http input, which implements the contract
// of Braze's "Custom Currents" HTTP connector: bearer-token authentication
// (checked even for empty requests), the Braze-Currents-Version header, body
// limits, gzip bodies, and, most importantly, status codes that follow
// Braze's retry rules. Each request's events become one message batch and
// the request is answered 2xx only once every event has been delivered (or
// routed to a dead-letter output), so Braze keeps and re-sends anything the
// pipeline could not handle.
//
// The pipelines that use it live in config/ (see README.md).
package ingest
