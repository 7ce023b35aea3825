// Package avroscantest writes Avro object container files shaped like the
// ones Braze Currents storage connectors write, for the tests of the
// currents_avro scanner and of the pipelines that read them (the backfill):
// a cut-down users.behaviors.Purchase schema, its records numbered from 0,
// encoded by hamba/avro's OCF encoder (not by the code under test).
//
// Typical use:
//
//	data, _, blockEnds := avroscantest.File(t, ocf.Snappy, 400, 50)
//	p := avroscantest.Record(3) // what record 3 holds
package avroscantest

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hamba/avro/v2/ocf"
	"github.com/stretchr/testify/require"
)

// PurchaseSchema is a cut-down users.behaviors.Purchase, as Braze names it.
const PurchaseSchema = `{"type":"record","name":"Purchase","namespace":"dataexport.S3.inner.users.behaviors","fields":[
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

// Purchase is one record of PurchaseSchema.
type Purchase struct {
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

// Record returns record i of the files File writes; odd records leave the
// optional fields null (braze_to_amplitude drops them: no user id, no device
// id), and records i%10 == 4 have the user id "x", too short for Amplitude
// (the amplitude output refuses them).
func Record(i int) Purchase {
	p := Purchase{
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

// Identified is Record with a user id on every record (ext-<i>), so that
// every record is sent to Amplitude.
func Identified(i int) Purchase {
	p := Record(i)
	ext := fmt.Sprintf("customer-%06d", i)
	p.External = &ext
	return p
}

// File writes records 0 to n-1 (Record) with codec, perBlock records per
// block, and returns the file, the offset where block 0 starts and the
// offset where each block ends.
func File(t testing.TB, codec ocf.CodecName, n, perBlock int) (data []byte, headerEnd int, blockEnds []int) {
	t.Helper()
	return Records(t, codec, n, perBlock, func(i int) any { return Record(i) })
}

// Records is File with the records given by rec.
func Records(t testing.TB, codec ocf.CodecName, n, perBlock int, rec func(i int) any) (data []byte, headerEnd int, blockEnds []int) {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(PurchaseSchema, &buf, ocf.WithCodec(codec), ocf.WithBlockLength(perBlock+1),
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
