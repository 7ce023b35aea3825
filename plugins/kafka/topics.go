package kafka

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// topicSelection is what the input consumes: whole topics (by name or by
// regular expression) or explicit partitions, each from its own offset.
type topicSelection struct {
	topics     []string
	regex      bool
	exclude    []string
	partitions map[string]map[int32]kgo.Offset
}

// opts returns the franz-go consumer options of the selection.
func (s topicSelection) opts() []kgo.Opt {
	if len(s.partitions) > 0 {
		return []kgo.Opt{kgo.ConsumePartitions(s.partitions)}
	}
	opts := []kgo.Opt{kgo.ConsumeTopics(s.topics...)}
	if s.regex {
		opts = append(opts, kgo.ConsumeRegex())
	}
	if len(s.exclude) > 0 {
		opts = append(opts, kgo.ConsumeExcludeTopics(s.exclude...))
	}
	return opts
}

// parseTopics splits the topics list (commas allowed inside items) into
// whole topics and explicit partitions. An item `topic:p` consumes partition
// p from start, `topic:a-b` partitions a to b, `topic:p:offset` partition p
// from offset. Whole topics and explicit partitions cannot be mixed.
func parseTopics(items []string, start kgo.Offset) (topics []string, parts map[string]map[int32]kgo.Offset, err error) {
	for _, it := range splitList(items) {
		name, spec, hasSpec := strings.Cut(it, ":")
		if name == "" {
			return nil, nil, fmt.Errorf("topic %q: empty topic name", it)
		}
		if !hasSpec {
			topics = append(topics, name)
			continue
		}
		partSpec, offSpec, hasOff := strings.Cut(spec, ":")
		from, to, err := parsePartitionRange(partSpec)
		if err != nil {
			return nil, nil, fmt.Errorf("topic %q: %w", it, err)
		}
		off := start
		if hasOff {
			n, err := strconv.ParseInt(offSpec, 10, 64)
			if err != nil || n < 0 {
				return nil, nil, fmt.Errorf("topic %q: offset %q is not a non-negative integer", it, offSpec)
			}
			if from != to {
				return nil, nil, fmt.Errorf("topic %q: an offset needs a single partition, not a range", it)
			}
			off = kgo.NewOffset().At(n)
		}
		if parts == nil {
			parts = map[string]map[int32]kgo.Offset{}
		}
		if parts[name] == nil {
			parts[name] = map[int32]kgo.Offset{}
		}
		for p := from; p <= to; p++ {
			if _, dup := parts[name][p]; dup {
				return nil, nil, fmt.Errorf("topic %q: partition %d listed twice", it, p)
			}
			parts[name][p] = off
		}
	}
	if len(topics) > 0 && len(parts) > 0 {
		return nil, nil, fmt.Errorf("topics: whole topics %v and explicit partitions cannot be mixed", topics)
	}
	return topics, parts, nil
}

// maxPartitionRange bounds `topic:a-b` so that a typo cannot allocate
// millions of entries.
const maxPartitionRange = 1 << 16

// parsePartitionRange parses `p` or `a-b`.
func parsePartitionRange(s string) (from, to int32, err error) {
	a, b, isRange := strings.Cut(s, "-")
	parse := func(v string) (int32, error) {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("partition %q is not a non-negative integer", v)
		}
		return int32(n), nil
	}
	if from, err = parse(a); err != nil {
		return 0, 0, err
	}
	to = from
	if isRange {
		if to, err = parse(b); err != nil {
			return 0, 0, err
		}
		if to < from || to-from >= maxPartitionRange {
			return 0, 0, fmt.Errorf("partition range %q is empty or larger than %d", s, maxPartitionRange)
		}
	}
	return from, to, nil
}

// checkRegexps compiles each expression so that a bad one fails at
// construction with its field name, not later inside franz-go.
func checkRegexps(field string, exprs []string) error {
	for _, e := range exprs {
		if _, err := regexp.Compile(e); err != nil {
			return fmt.Errorf("field %s: invalid regular expression %q: %w", field, e, err)
		}
	}
	return nil
}
