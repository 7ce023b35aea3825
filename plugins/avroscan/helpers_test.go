package avroscan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/avroscan/avroscantest"
)

// wantJSON is the JSON the scanner must emit for avroscantest.Record(i), written by
// hand (not with the code under test).
func wantJSON(i int) string {
	p := avroscantest.Record(i)
	ext, qty, ad := "null", "null", "null"
	if p.External != nil {
		ext = strconv.Quote(*p.External)
		qty = strconv.Itoa(int(*p.Quantity))
		ad = strconv.FormatBool(*p.AdTracking)
	}
	return fmt.Sprintf(`{"id":%q,"user_id":%q,"external_user_id":%s,"time":%d,"product_id":%q,"price":%s,"quantity":%s,"properties":%s,"ad_tracking_enabled":%s}`,
		p.ID, p.UserID, ext, p.Time, p.ProductID, strconv.FormatFloat(float64(p.Price), 'f', -1, 32), qty,
		strconv.Quote(p.Properties), ad)
}

// newTestCreator parses a currents_avro scanner config.
func newTestCreator(t testing.TB, yaml string) *service.OwnedScannerCreator {
	t.Helper()
	pConf, err := service.NewConfigSpec().Field(service.NewScannerField("s")).
		ParseYAML("s:\n  currents_avro:\n"+yaml, nil)
	require.NoError(t, err)
	c, err := pConf.FieldScanner("s")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// scanResult is what a scanner produced from one source.
type scanResult struct {
	msgs    []*service.Message
	batches int
	err     error // the error that ended the scan, nil at io.EOF
	ackErr  error // what the source's ack func received
	acked   bool
}

// scan runs a currents_avro scanner (config yaml, indented by 4) over data
// named name, acknowledging every batch, until io.EOF or an error.
func scan(t testing.TB, yaml, name string, data []byte) scanResult {
	t.Helper()
	c := newTestCreator(t, yaml)
	var res scanResult
	details := service.NewScannerSourceDetails()
	details.SetName(name)
	s, err := c.Create(io.NopCloser(bytes.NewReader(data)), func(_ context.Context, err error) error {
		require.False(t, res.acked, "source acknowledged twice")
		res.acked, res.ackErr = true, err
		return nil
	}, details)
	require.NoError(t, err)
	ctx := context.Background()
	for {
		b, ack, err := s.NextBatch(ctx)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				res.err = err
			}
			break
		}
		res.batches++
		res.msgs = append(res.msgs, b...)
		require.NoError(t, ack(ctx, nil))
	}
	require.NoError(t, s.Close(ctx))
	return res
}

// bodies returns the message contents.
func bodies(t testing.TB, msgs []*service.Message) []string {
	t.Helper()
	out := make([]string, len(msgs))
	for i, m := range msgs {
		b, err := m.AsBytes()
		require.NoError(t, err)
		out[i] = string(b)
	}
	return out
}

// wantRange is wantJSON for records [from, to).
func wantRange(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, wantJSON(i))
	}
	return out
}
