package replay

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
)

// scanAll reads src with a currents_lines scanner configured by yaml and
// returns its batches and the error that ended it (nil at io.EOF).
func scanAll(t *testing.T, yaml string, src io.Reader) ([]service.MessageBatch, error) {
	t.Helper()
	conf, err := currentsLinesScannerSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	c, err := newCurrentsLinesFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	acked := false
	sc, err := c.Create(io.NopCloser(src), func(context.Context, error) error { acked = true; return nil }, nil)
	require.NoError(t, err)
	var out []service.MessageBatch
	for {
		b, ack, err := sc.NextBatch(context.Background())
		if err != nil {
			require.NoError(t, sc.Close(context.Background()))
			if errors.Is(err, io.EOF) {
				assert.True(t, acked, "the whole file is acknowledged once its batches are")
				return out, nil
			}
			return out, err
		}
		out = append(out, b)
		require.NoError(t, ack(context.Background(), nil))
	}
}

// line is what a test expects of one message.
type line struct {
	n      int64
	body   string
	reason deadletter.Reason
}

func flatten(t *testing.T, batches []service.MessageBatch) []line {
	t.Helper()
	var got []line
	for _, b := range batches {
		for _, m := range b {
			raw, err := m.AsBytes()
			require.NoError(t, err)
			n, _ := m.MetaGetMut(deadletter.MetaLine)
			l := line{n: n.(int64), body: string(raw)}
			if r, _, ok := deadletter.Of(m); ok {
				l.reason = r
			}
			got = append(got, l)
		}
	}
	return got
}

func TestLines(t *testing.T) {
	long := `{"id":"` + strings.Repeat("x", 100) + `"}`
	deep := strings.Repeat("[", 9) + strings.Repeat("]", 9)
	for _, tc := range []struct {
		name  string
		input string
		want  []line
	}{
		{"events", "{\"id\":1}\n{\"id\":2}\n", []line{{1, `{"id":1}`, ""}, {2, `{"id":2}`, ""}}},
		{"no final break", "{\"id\":1}\n{\"id\":2}", []line{{1, `{"id":1}`, ""}, {2, `{"id":2}`, ""}}},
		{"crlf", "{\"id\":1}\r\n{\"id\":2}\r\n", []line{{1, `{"id":1}`, ""}, {2, `{"id":2}`, ""}}},
		{"empty and blank lines skipped", "\n{\"id\":1}\n  \t\n\r\n{\"id\":2}\n\n", []line{{2, `{"id":1}`, ""}, {5, `{"id":2}`, ""}}},
		{"not JSON", "{\"id\":1}\nnot json\n{\"id\":3}\n", []line{{1, `{"id":1}`, ""}, {2, "not json", deadletter.ReasonUnreadable}, {3, `{"id":3}`, ""}}},
		{"too long", "{\"id\":1}\n" + long + "\n{\"id\":3}\n", []line{{1, `{"id":1}`, ""}, {2, long[:64], deadletter.ReasonTooLarge}, {3, `{"id":3}`, ""}}},
		{"exactly the limit", strings.Repeat(" ", 54) + `{"id":1}` + "\r\n", []line{{1, strings.Repeat(" ", 54) + `{"id":1}`, ""}}},
		{"too long without break", "{\"id\":1}\n" + long, []line{{1, `{"id":1}`, ""}, {2, long[:64], deadletter.ReasonTooLarge}}},
		{"too deep", deep + "\n", []line{{1, deep, deadletter.ReasonTooLarge}}},
		{"empty input", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batches, err := scanAll(t, "{max_line_bytes: 62, max_json_depth: 8, batch_size: 2}", strings.NewReader(tc.input))
			require.NoError(t, err)
			// A line over the limit keeps what was read of it: at most
			// max_line_bytes+2 bytes (here fewer than keptPrefix).
			assert.Equal(t, tc.want, flatten(t, batches))
			for _, b := range batches {
				assert.LessOrEqual(t, len(b), 2, "batch_size")
			}
		})
	}
}

// TestLongLineAmongBodies replays a 4.5 MB request body
// (the live input takes up to 10 MiB) among 119 other lines is replayed
// whole, and a line over 10 MiB costs one dead-letter message, not the rest
// of the file.
func TestLongLineAmongBodies(t *testing.T) {
	var in strings.Builder
	for i := range 120 {
		switch i {
		case 10:
			in.WriteString(`{"events":[{"id":"big","pad":"` + strings.Repeat("x", 4_500_000) + `"}]}` + "\n")
		case 20:
			in.WriteString(`{"id":"huge","pad":"` + strings.Repeat("y", DefaultMaxLineBytes) + `"}` + "\n")
		default:
			in.WriteString(`{"id":"e-` + strconv.Itoa(i) + `"}` + "\n")
		}
	}
	batches, err := scanAll(t, "{}", strings.NewReader(in.String()))
	require.NoError(t, err)
	got := flatten(t, batches)
	require.Len(t, got, 120)
	for i, l := range got {
		assert.Equal(t, int64(i+1), l.n)
		switch i {
		case 10:
			assert.Empty(t, l.reason)
			assert.Equal(t, 4_500_000+34, len(l.body))
		case 20:
			assert.Equal(t, deadletter.ReasonTooLarge, l.reason)
			assert.Equal(t, keptPrefix, len(l.body))
		default:
			assert.Empty(t, l.reason, "line %d", i+1)
		}
	}
}

// failingReader returns its data, then err.
type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestReadErrorEndsFileLoudly: the lines before a read error are handed
// over, then the error (the file input logs it and moves on, without
// acknowledging the file).
func TestReadErrorEndsFileLoudly(t *testing.T) {
	batches, err := scanAll(t, "{}", &failingReader{data: "{\"id\":1}\n{\"id\":2}\n{\"id\"", err: errors.New("unexpected EOF in gzip stream")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "read error after line 3: unexpected EOF in gzip stream")
	got := flatten(t, batches)
	require.Len(t, got, 3)
	assert.Equal(t, deadletter.ReasonUnreadable, got[2].reason, "the cut line is unreadable")
}

func TestLinesConfig(t *testing.T) {
	for _, yaml := range []string{"{batch_size: 0}", "{max_line_bytes: 0}", "{max_json_depth: -1}"} {
		conf, err := currentsLinesScannerSpec().ParseYAML(yaml, nil)
		require.NoError(t, err)
		_, err = newCurrentsLinesFromParsed(conf, service.MockResources())
		assert.Error(t, err, yaml)
	}
}

func BenchmarkLines(b *testing.B) {
	ev := `{"event_type":"users.messages.email.Open","id":"0f6b3c1e-1c1b-4c7e-9d1a","time":1700000000,"user":{"external_user_id":"usr_1","device_id":"dev_1"},"properties":{"campaign_name":"Winter sale","email_address":"a@b.c"}}` + "\n"
	data := strings.Repeat(ev, 10000)
	conf, _ := currentsLinesScannerSpec().ParseYAML("{}", nil)
	c, err := newCurrentsLinesFromParsed(conf, service.MockResources())
	require.NoError(b, err)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		sc, _ := c.Create(io.NopCloser(strings.NewReader(data)), func(context.Context, error) error { return nil }, nil)
		for {
			if _, _, err := sc.NextBatch(context.Background()); err != nil {
				break
			}
		}
	}
}

// BenchmarkBenthosLines is Benthos' own lines scanner (which neither
// validates lines nor numbers them) on the same data, for comparison.
func BenchmarkBenthosLines(b *testing.B) {
	ev := `{"event_type":"users.messages.email.Open","id":"0f6b3c1e-1c1b-4c7e-9d1a","time":1700000000,"user":{"external_user_id":"usr_1","device_id":"dev_1"},"properties":{"campaign_name":"Winter sale","email_address":"a@b.c"}}` + "\n"
	data := strings.Repeat(ev, 10000)
	conf, err := service.NewConfigSpec().Field(service.NewScannerField("s")).ParseYAML("s: {lines: {max_buffer_size: 10485760}}", nil)
	require.NoError(b, err)
	c, err := conf.FieldScanner("s")
	require.NoError(b, err)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		sc, err := c.Create(io.NopCloser(strings.NewReader(data)), func(context.Context, error) error { return nil }, service.NewScannerSourceDetails())
		require.NoError(b, err)
		for {
			if _, _, err := sc.NextBatch(context.Background()); err != nil {
				break
			}
		}
	}
}

// TestSlowSourceDoesNotHoldLines: lines already read are handed over
// without waiting for the batch to fill (standard input fed line by line).
func TestSlowSourceDoesNotHoldLines(t *testing.T) {
	pr, pw := io.Pipe()
	conf, err := currentsLinesScannerSpec().ParseYAML("{batch_size: 100}", nil)
	require.NoError(t, err)
	c, err := newCurrentsLinesFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	sc, err := c.Create(pr, func(context.Context, error) error { return nil }, nil)
	require.NoError(t, err)
	go func() { _, _ = pw.Write([]byte("{\"id\":1}\n{\"id\":2}\n")) }() // then nothing more for now
	done := make(chan service.MessageBatch, 1)
	go func() {
		b, _, _ := sc.NextBatch(context.Background())
		done <- b
	}()
	select {
	case b := <-done:
		assert.Len(t, b, 2)
	case <-time.After(10 * time.Second):
		t.Fatal("the two lines read wait for 98 more")
	}
	require.NoError(t, pw.Close())
	_ = sc.Close(context.Background())
}
