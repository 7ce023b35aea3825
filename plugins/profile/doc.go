// Package profile serves Amplitude user profiles to Braze Connected Content:
// the amplitude_profile processor (a TTL cache with coalescing,
// stale-while-revalidate and a default answer in front of Amplitude's User
// Profile API, within a client-side share of the organisation's 600 requests
// per minute, with prewarming) and the connected_content_http input (the
// token-protected endpoint Braze calls). See docs/profiles.md.
package profile
