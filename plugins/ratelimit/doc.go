// Package ratelimit provides the device_rate_limit processor, which enforces
// Amplitude's per-device and per-user event limits (events per second and
// per rolling 24 hours) before events leave the pipeline, so that one noisy
// device neither gets throttled by Amplitude nor delays every other device.
//
// The limiter keeps, per key (a 64-bit hash of the key's value), counts in
// 100 ms buckets over the last 1.1 s and in hourly buckets over the last 25
// hours (a small daily count as one number dated to its newest hour). An event passes only when every one of its keys stays within both
// limits, which guarantees that no one-second interval holds more than
// per_second events of a key and no 24 hours more than per_day. Keys are
// sharded over 64 locks, their states inline in idtable slots (one cache
// line per active key, outside the Go heap on Linux); idle keys are
// compressed to a 16-byte slot, and forgotten once their daily window is
// empty.
package ratelimit
