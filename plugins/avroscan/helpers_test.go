package avroscan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/hamba/avro/v2/ocf"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/require"
)

// purchaseSchema is a cut-down users.behaviors.Purchase, as Braze names it.
const purchaseSchema = `{"type":"record","name":"Purchase","namespace":"dataexport.S3.inner.users.behaviors","fields":[
 {"name":"id","type":"string"},
 {"name":"user_id","type":"string"},
 {"name":"external_user_id","type":["null","string"],"default":null},
 {"name":"time","type":"int"},
 {"name":"product_id","type":"string"},
 {"name":"price","type":"float"},
 {"name":"quantity","type":["null","int"],"default":null},
 {"name":"properties","type":"string"},
 {"name":"ad_tracking_enabled","type":["null","boolean"],"default":null}
]}`

// purchase is one record of purchaseSchema.
type purchase struct {
	ID         string  `avro:"id"`
	UserID     string  `avro:"user_id"`
	External   *string `avro:"external_user_id"`
	Time       int32   `avro:"time"`
	ProductID  string  `avro:"product_id"`
	Price      float32 `avro:"price"`
	Quantity   *int32  `avro:"quantity"`
	Properties string  `avro:"properties"`
	AdTracking *bool   `avro:"ad_tracking_enabled"`
}

// testPurchase returns record i of the generated files; odd records leave
// the optional fields null (braze_to_amplitude drops them: no user id, no
// device id), and records i%10 == 4 have a user id too short for Amplitude
// (the amplitude output refuses them).
func testPurchase(i int) purchase {
	p := purchase{
		ID:         fmt.Sprintf("evt-%06d", i),
		UserID:     fmt.Sprintf("user-%d", i%97),
		Time:       int32(1700000000 + i),
		ProductID:  fmt.Sprintf("sku-%d", i%13),
		Price:      float32(i%1000) + 0.25,
		Properties: fmt.Sprintf(`{"n":%d,"s":"a \"quoted\" é"}`, i),
	}
	if i%2 == 0 {
		ext, qty, ad := fmt.Sprintf("ext-%d", i), int32(i%7), i%4 == 0
		if i%10 == 4 {
			ext = "x"
		}
		p.External, p.Quantity, p.AdTracking = &ext, &qty, &ad
	}
	return p
}

// wantJSON is the JSON the scanner must emit for testPurchase(i), written by
// hand (not with the code under test).
func wantJSON(i int) string {
	p := testPurchase(i)
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

// genFile writes n records of purchaseSchema (testPurchase) with hamba's OCF
// encoder, perBlock records per block, and returns the file, the offset
// where block 0 starts and the offset where each block ends.
func genFile(t testing.TB, codec ocf.CodecName, n, perBlock int) (data []byte, headerEnd int, blockEnds []int) {
	t.Helper()
	return genRecords(t, codec, n, perBlock, func(i int) any { return testPurchase(i) })
}

// genRecords is genFile with the records given by rec.
func genRecords(t testing.TB, codec ocf.CodecName, n, perBlock int, rec func(i int) any) (data []byte, headerEnd int, blockEnds []int) {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(purchaseSchema, &buf, ocf.WithCodec(codec), ocf.WithBlockLength(perBlock+1),
		ocf.WithSyncBlock([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}))
	require.NoError(t, err)
	headerEnd = buf.Len() // NewEncoder writes the header
	for i := range n {
		require.NoError(t, enc.Encode(rec(i)))
		if (i+1)%perBlock == 0 || i == n-1 {
			require.NoError(t, enc.Flush())
			blockEnds = append(blockEnds, buf.Len())
		}
	}
	require.NoError(t, enc.Close())
	return buf.Bytes(), headerEnd, blockEnds
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
