// Package currents turns Braze Currents events into Amplitude events.
//
// It holds the event catalogue (every Currents event type and the Amplitude
// name Braze's own "Amplitude for Currents" connector gives it), a
// reflection-free Mapper that reads one Currents event with gjson, in either
// the HTTP connector shape or the flat storage (Avro) shape, and appends the
// Amplitude HTTP API event object, and the braze_to_amplitude Benthos
// processor built on it.
package currents
