// Package progress provides the `progress` output: a wrapper around the
// output of a replay or backfill that reports, at a steady cadence, how many
// events its child output has acknowledged, the rate and (when the total is
// known) the time left, exports them as metrics, and logs a summary when the
// run ends: delivered, dead-lettered and dropped, by reason.
package progress
