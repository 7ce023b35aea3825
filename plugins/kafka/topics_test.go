package kafka

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseTopics(t *testing.T) {
	start := kgo.NewOffset().AtStart()
	tests := []struct {
		items      []string
		wantTopics []string
		wantParts  map[string]map[int32]int64
		wantErr    string
	}{
		{items: []string{"a", "b,c"}, wantTopics: []string{"a", "b", "c"}},
		{items: []string{"a:0", "a:2-3", "b:1:42"}, wantParts: map[string]map[int32]int64{"a": {0: -2, 2: -2, 3: -2}, "b": {1: 42}}},
		{items: []string{"a:0,b:1"}, wantParts: map[string]map[int32]int64{"a": {0: -2}, "b": {1: -2}}},
		{items: []string{":0"}, wantErr: "empty topic"},
		{items: []string{"a:"}, wantErr: "partition"},
		{items: []string{"a:1-"}, wantErr: "partition"},
		{items: []string{"a:0-70000"}, wantErr: "larger than"},
		{items: []string{"a:0:x"}, wantErr: "offset"},
		{items: []string{"a", "b:0"}, wantErr: "cannot be mixed"},
	}
	for _, tt := range tests {
		topics, parts, err := parseTopics(tt.items, start)
		if tt.wantErr != "" {
			assert.ErrorContains(t, err, tt.wantErr, tt.items)
			continue
		}
		require.NoError(t, err, tt.items)
		assert.Equal(t, tt.wantTopics, topics, tt.items)
		got := map[string]map[int32]int64{}
		for topic, ps := range parts {
			got[topic] = map[int32]int64{}
			for p, o := range ps {
				got[topic][p] = o.EpochOffset().Offset
			}
		}
		if tt.wantParts == nil {
			assert.Empty(t, got, tt.items)
		} else {
			assert.Equal(t, tt.wantParts, got, tt.items)
		}
	}
}

// FuzzParseTopics: any topics item either parses into at most
// maxPartitionRange non-negative partitions per item, or fails; never a
// panic.
func FuzzParseTopics(f *testing.F) {
	for _, s := range []string{"a", "a:0", "a:0-5", "a:1:100", "a:0,b:1", "::", "a:-1", "a:9999999999", "a:0-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, item string) {
		topics, parts, err := parseTopics([]string{item}, kgo.NewOffset().AtEnd())
		if err != nil {
			return
		}
		n := 0
		for topic, ps := range parts {
			assert.NotEmpty(t, topic)
			assert.NotContains(t, topic, ":")
			for p := range ps {
				assert.GreaterOrEqual(t, p, int32(0))
				n++
			}
		}
		assert.LessOrEqual(t, n, maxPartitionRange*(strings.Count(item, ",")+1))
		for _, topic := range topics {
			assert.NotEmpty(t, topic)
		}
	})
}
