// Package reconcile proves that Braze Currents events reached Amplitude.
//
// A Reconciler matches the events delivery sends (expected) with the events
// Amplitude holds (present) by insert id, with memory bounded by an external
// sort: records are buffered up to a limit, sorted, spilled to compressed
// run files and merged. It reports, per UTC hour and Amplitude event type,
// expected, present, missing and extra events and duplicates on either
// side, as JSON and as a readable summary, and can write the missing events.
//
// The amplitude_reconcile Benthos input runs it on two child inputs: the
// Currents side, mapped by the delivery processors (braze_to_amplitude), and
// the Amplitude side (the amplitude_export input of package export). The
// shipped pipeline is config/reconcile.yaml; see docs/reconcile.md.
package reconcile
