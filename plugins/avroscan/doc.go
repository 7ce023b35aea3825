// Package avroscan provides the currents_avro scanner: it decodes the Avro
// object container files that Braze Currents storage connectors (Amazon S3,
// Google Cloud Storage, Azure Blob Storage) write, one JSON message per
// record, for any Benthos input that takes a scanner (file, stdin, ...).
//
// Records are written as JSON without reflection, straight from Avro's
// binary encoding: unions unwrapped, floats in their shortest 32-bit form.
// Files are streamed one block at a time with bounded memory, and each block
// is checked whole before its records are emitted, so a damaged file yields
// the records before the damage exactly once and then an error naming the
// file and the block. Metadata currents_event_type carries the Currents event
// type, from the record schema's name or the path's event_type= segment.
package avroscan
