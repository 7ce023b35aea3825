package replay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"
)

// BenchmarkReplayNacks reads a file of benchLines lines in batches of 500
// into a drop output, through replay_nacks (what the shipped replay and
// backfill do) and through the file input alone with Benthos' own
// auto_replay_nacks (the plain-Benthos alternative, which loses nacked
// messages at the end of the input): the cost per message of keeping every
// message until it is acknowledged. One op is one run of the file;
// ns/message and allocs/message are reported.
//
//	go test -run '^$' -bench BenchmarkReplayNacks -benchmem ./plugins/replay
func BenchmarkReplayNacks(b *testing.B) {
	const benchLines = 50_000
	path := filepath.Join(b.TempDir(), "in.jsonl")
	var body strings.Builder
	for i := range benchLines {
		fmt.Fprintf(&body, `{"id":"l%06d","time":1700000000}`+"\n", i)
	}
	require.NoError(b, os.WriteFile(path, []byte(body.String()), 0o644))
	file := func(autoReplay bool) string {
		return fmt.Sprintf("file: { auto_replay_nacks: %v, paths: [ %q ], scanner: { currents_lines: { batch_size: 500 } } }", autoReplay, path)
	}
	for _, tc := range []struct{ name, input string }{
		{"file_auto_replay_nacks", file(true)},
		{"replay_nacks", "replay_nacks: { input: { " + file(true) + " } }"},
		{"replay_nacks_child_without_auto_replay", "replay_nacks: { input: { " + file(false) + " } }"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sb := service.NewStreamBuilder()
				require.NoError(b, sb.SetYAML(fmt.Sprintf("input: { %s }\noutput: { drop: {} }\nlogger: { level: none }\n", tc.input)))
				s, err := sb.Build()
				require.NoError(b, err)
				require.NoError(b, s.Run(context.Background()))
			}
			n := float64(b.N * benchLines)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/message")
			b.ReportMetric(0, "ns/op")
		})
	}
}
