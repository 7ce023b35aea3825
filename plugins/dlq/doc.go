// Package dlq provides the dead_letter_record processor: it turns failed
// messages into the project's one dead-letter record
// (deadletter.RecordMessage), for pipelines that route failures with plain
// Benthos outputs (switch, fallback, reject_errored) instead of a delivering
// output's dead_letter child.
package dlq
