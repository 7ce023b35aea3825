// Package replay reads recorded Currents events back: the currents_lines
// scanner, and the replay_nacks input that sends nacked messages again
// until they are delivered.
//
// The currents_lines scanner reads JSON-lines
// files of Braze Currents events (one event or one {"events": [...]}
// request body per line) for any Benthos input that takes a scanner (file,
// stdin, ...), with the live input's limits.
//
// A line the scanner cannot take (longer than max_line_bytes, nested deeper
// than max_json_depth, not JSON) becomes one message failed for its own
// reason with deadletter.Fail, so that a delivering output with a
// dead_letter child writes it once while the rest of the file goes on.
// Empty lines are skipped. Every message carries the file path (set by the
// file input) and its line number (deadletter.MetaLine).
package replay
