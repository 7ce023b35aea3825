// Package export reads Amplitude's Export API
// (https://amplitude.com/docs/apis/analytics/export): the amplitude_export
// Benthos input, the decoder of the exported event rows and the streaming
// reader of the archive the API answers with.
//
// The API answers GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH (both
// hours included, UTC, selected by server_upload_time) with a zip archive of
// JSON-lines files, several per hour, each gzipped in practice; 404 when the
// range holds no data; 400 when the archive would exceed 4 GB. Data is
// available about two hours after Amplitude received it. The archive is
// spilled to a temporary file (a zip is read from its end) and then read entry
// by entry, line by line, so memory does not grow with its size.
package export
