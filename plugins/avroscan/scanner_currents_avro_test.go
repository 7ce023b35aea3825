package avroscan

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/opencurrents/currents-amplitude/plugins/avroscan/avroscantest"
	"github.com/opencurrents/currents-amplitude/plugins/internal/currentsbody"
	"github.com/opencurrents/currents-amplitude/plugins/internal/deadletter"
	"github.com/opencurrents/currents-amplitude/plugins/internal/metricstest"
)

const purchasePath = "bucket/currents/dataexport.prod-01.S3.integration.abc/event_type=users.behaviors.Purchase/date=2026-11-29-13/7/0/dataexport.prod-01.S3.integration.abc+0+0000001.avro"

func TestScannerCodecsAndBlocks(t *testing.T) {
	tests := []struct {
		name     string
		codec    ocf.CodecName
		n        int
		perBlock int
	}{
		{"null one record", ocf.Null, 1, 1},
		{"null many blocks", ocf.Null, 1000, 7},
		{"deflate many blocks", ocf.Deflate, 1000, 64},
		{"snappy many blocks", ocf.Snappy, 1000, 64},
		{"zstandard", ocf.ZStandard, 300, 100},
		{"deflate one big block", ocf.Deflate, 5000, 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, _, blockEnds := avroscantest.File(t, tt.codec, tt.n, tt.perBlock)
			res := scan(t, "    batch_size: 0", purchasePath, data)
			require.NoError(t, res.err)
			assert.True(t, res.acked)
			require.NoError(t, res.ackErr)
			assert.Equal(t, len(blockEnds), res.batches, "one batch per block")
			require.Equal(t, wantRange(0, tt.n), bodies(t, res.msgs))

			for i, m := range res.msgs {
				et, _ := m.MetaGetMut(currentsbody.MetaEventType)
				assert.Equal(t, "users.behaviors.Purchase", et)
				schema, _ := m.MetaGetMut(MetaSchema)
				assert.Equal(t, "dataexport.S3.inner.users.behaviors.Purchase", schema)
				file, _ := m.MetaGetMut(MetaFile)
				assert.Equal(t, purchasePath, file)
				rec, _ := m.MetaGetMut(MetaRecord)
				assert.EqualValues(t, i, rec)
				blk, _ := m.MetaGetMut(MetaBlock)
				assert.EqualValues(t, i/tt.perBlock, blk)
			}
		})
	}
}

func TestScannerBatchSize(t *testing.T) {
	data, _, _ := avroscantest.File(t, ocf.Null, 25, 10) // blocks of 10, 10, 5
	tests := []struct {
		conf    string
		batches int
	}{
		{"    {}", 25},
		{"    batch_size: 1", 25},
		{"    batch_size: 4", 3 + 3 + 2},
		{"    batch_size: 10", 3},
		{"    batch_size: 0", 3},
	}
	for _, tt := range tests {
		t.Run(tt.conf, func(t *testing.T) {
			res := scan(t, tt.conf, "f.avro", data)
			require.NoError(t, res.err)
			require.NoError(t, res.ackErr)
			assert.Equal(t, tt.batches, res.batches)
			assert.Equal(t, wantRange(0, 25), bodies(t, res.msgs))
			for i, m := range res.msgs {
				rec, _ := m.MetaGetMut(MetaRecord)
				assert.EqualValues(t, i, rec)
				blk, _ := m.MetaGetMut(MetaBlock)
				assert.EqualValues(t, i/10, blk)
			}
		})
	}
}

// faultFiles generates the files the fault tests damage: 100 records in
// blocks of 10 per codec, with the offset where the null file's header ends
// and where each block ends.
func faultFiles(t *testing.T) (nullFile, snappyFile, deflateFile []byte, nullHeader int, nullEnds, snappyEnds, deflateEnds []int) {
	t.Helper()
	nullFile, nullHeader, nullEnds = avroscantest.File(t, ocf.Null, 100, 10)
	snappyFile, _, snappyEnds = avroscantest.File(t, ocf.Snappy, 100, 10)
	deflateFile, _, deflateEnds = avroscantest.File(t, ocf.Deflate, 100, 10)
	return
}

// flip returns data with the byte at inverted.
func flip(data []byte, at int) []byte {
	out := bytes.Clone(data)
	out[at] ^= 0xff
	return out
}

// TestScannerFaultsFail damages generated files in every way the issue
// lists: with on_damage: fail the records of the blocks before the damage
// come out exactly once, followed by an error naming the file and the block,
// and the file is not acknowledged as done.
func TestScannerFaultsFail(t *testing.T) {
	nullFile, snappyFile, deflateFile, nullHeader, nullEnds, snappyEnds, deflateEnds := faultFiles(t)
	tests := []struct {
		name      string
		data      []byte
		delivered int      // records emitted before the error
		wantErr   []string // substrings of the error
	}{
		{"empty file", nil, 0, []string{"header", "truncated"}},
		{"wrong magic", append([]byte("PK\x03\x04"), nullFile[4:]...), 0, []string{"header", "not an Avro object container file"}},
		{"truncated header", nullFile[:nullHeader-5], 0, []string{"header", "truncated"}},
		{"truncated in block 3", nullFile[:nullEnds[2]+20], 30, []string{"block 3", "truncated"}},
		{"truncated in sync marker of block 5", nullFile[:nullEnds[5]-3], 50, []string{"block 5", "sync marker", "truncated"}},
		{"truncated snappy block 0", snappyFile[:snappyEnds[0]-30], 0, []string{"block 0", "truncated"}},
		{"corrupt sync marker of block 4", flip(nullFile, nullEnds[4]-1), 40, []string{"block 4", "sync marker does not match"}},
		{"corrupt snappy data in block 6", flip(snappyFile, snappyEnds[6]-40), 60, []string{"block 6", "snappy codec"}},
		{"corrupt deflate data in block 2", flip(deflateFile, deflateEnds[1]+8), 20, []string{"block 2", "deflate codec"}},
		{"corrupt record count of block 1", flip(nullFile, nullEnds[0]), 10, []string{"block 1", "record count"}},
		{"schema mismatch in block 0", mismatchedFile(t, 5), 0, []string{"block 0", "schema"}},
		{"trailing garbage after the last block", append(bytes.Clone(nullFile), 0x02, 0x04, 'x'), 100, []string{"block 10", "truncated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := scan(t, "    on_damage: fail", purchasePath, tt.data)
			require.Error(t, res.err)
			for _, s := range append(tt.wantErr, purchasePath) {
				assert.Contains(t, res.err.Error(), s)
			}
			assert.Equal(t, wantRange(0, tt.delivered), bodies(t, res.msgs))
			assert.True(t, res.acked, "the source must be acknowledged")
			assert.Error(t, res.ackErr, "a damaged file must not be acknowledged as done")
		})
	}
}

// mismatchedFile returns a file whose header declares avroscantest.PurchaseSchema but
// whose one block holds n records of another schema.
func mismatchedFile(t testing.TB, n int) []byte {
	t.Helper()
	other := avro.MustParse(`{"type":"record","name":"Other","fields":[{"name":"a","type":"long"},{"name":"b","type":"long"}]}`)
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(avroscantest.PurchaseSchema, &buf, ocf.WithEncoderSchemaCache(&avro.SchemaCache{}))
	require.NoError(t, err)
	for i := range n {
		raw, err := avro.Marshal(other, map[string]any{"a": int64(i), "b": int64(-i)})
		require.NoError(t, err)
		_, err = enc.Write(raw)
		require.NoError(t, err)
	}
	require.NoError(t, enc.Close())
	return buf.Bytes()
}

func TestScannerEventType(t *testing.T) {
	data, _, _ := avroscantest.File(t, ocf.Null, 3, 10)
	tests := []struct {
		name    string
		conf    string
		path    string
		want    string
		wantErr string
	}{
		{"schema name without path", "    {}", "", "users.behaviors.Purchase", ""},
		{"schema name, path without event_type", "    {}", "/data/file.avro", "users.behaviors.Purchase", ""},
		{"path agrees", "    {}", purchasePath, "users.behaviors.Purchase", ""},
		{"path disagrees: error", "    {}", "x/event_type=users.messages.email.Open/f.avro", "", "event_type=users.messages.email.Open"},
		{"path disagrees: use_path", "    event_type_mismatch: use_path", "x/event_type=users.messages.email.Open/f.avro", "users.messages.email.Open", ""},
		{"path disagrees: use_schema", "    event_type_mismatch: use_schema", "x/event_type=users.messages.email.Open/f.avro", "users.behaviors.Purchase", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := scan(t, tt.conf, tt.path, data)
			if tt.wantErr != "" {
				require.Error(t, res.err)
				assert.Contains(t, res.err.Error(), tt.wantErr)
				assert.Empty(t, res.msgs, "a mismatched file emits nothing")
				return
			}
			require.NoError(t, res.err)
			require.Len(t, res.msgs, 3)
			for _, m := range res.msgs {
				et, _ := m.MetaGetMut(currentsbody.MetaEventType)
				assert.Equal(t, tt.want, et)
				_, hasFile := m.MetaGetMut(MetaFile)
				assert.Equal(t, tt.path != "", hasFile)
			}
		})
	}
}

func TestScannerConfigValidation(t *testing.T) {
	t.Run(caFieldBatchSize, func(t *testing.T) {
		pConf, err := currentsAvroScannerSpec().ParseYAML(caFieldBatchSize+": -1", nil)
		require.NoError(t, err)
		_, err = newCurrentsAvroFromParsed(pConf, service.MockResources())
		require.ErrorContains(t, err, "batch_size must be 0 (one batch per Avro block) or more, got -1")
	})
	for _, field := range []string{caFieldMaxBlockSize, caFieldMaxBlockRecords, caFieldMaxDecodedSize} {
		t.Run(field, func(t *testing.T) {
			pConf, err := currentsAvroScannerSpec().ParseYAML(field+": 0", nil)
			require.NoError(t, err)
			_, err = newCurrentsAvroFromParsed(pConf, service.MockResources())
			require.ErrorContains(t, err, field+" must be at least 1")
		})
	}
	t.Run(caFieldEventTypeMismatch, func(t *testing.T) {
		pConf, err := currentsAvroScannerSpec().ParseYAML(caFieldEventTypeMismatch+": maybe", nil)
		require.NoError(t, err)
		_, err = newCurrentsAvroFromParsed(pConf, service.MockResources())
		require.ErrorContains(t, err, `event_type_mismatch must be one of error, use_path, use_schema, got "maybe"`)
	})
}

// TestScannerLimits checks that a file cannot make the scanner allocate
// more than its limits, whatever its blocks claim.
func TestScannerLimits(t *testing.T) {
	data, _, _ := avroscantest.File(t, ocf.Null, 100, 100)
	tests := []struct {
		conf    string
		wantErr string
	}{
		{"    max_block_size: 1000", "invalid block size"},
		{"    max_block_records: 99", "invalid record count 100"},
		{"    max_decoded_block_size: 1000", "decoded JSON of the block exceeds 1000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.conf, func(t *testing.T) {
			res := scan(t, tt.conf+"\n    on_damage: fail", "f.avro", data)
			require.Error(t, res.err)
			assert.Contains(t, res.err.Error(), "block 0")
			assert.Contains(t, res.err.Error(), tt.wantErr)
		})
	}
}

// TestFileInputMovesOnAfterBadFile runs the scanner under Benthos' file
// input over a Braze-like folder holding a file that is not Avro, a good
// file, a damaged file and another good file: every good record arrives
// once, the damaged file's records before the damage too and its damage as
// one failed message, and the stream ends (is not stuck).
func TestFileInputMovesOnAfterBadFile(t *testing.T) {
	dir := t.TempDir()
	good, _, ends := avroscantest.File(t, ocf.Snappy, 50, 10)
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
	write("event_type=users.behaviors.Purchase/date=2026-11-29-09/0.avro", []byte("PK\x03\x04 not avro at all"))
	write("event_type=users.behaviors.Purchase/date=2026-11-29-10/a.avro", good)
	write("event_type=users.behaviors.Purchase/date=2026-11-29-11/b.avro", good[:ends[1]+5]) // 20 records survive
	write("event_type=users.behaviors.Purchase/date=2026-11-29-12/c.avro", good)
	write("event_type=users.behaviors.Purchase/date=2026-11-29-12/notes.txt", []byte("not avro"))

	metrics := metricstest.New(t)
	sb := service.NewStreamBuilder()
	require.NoError(t, sb.SetLoggerYAML("level: none"))
	require.NoError(t, sb.SetMetricsYAML(metrics.YAML()))
	require.NoError(t, sb.AddInputYAML(`
file:
  paths: [ "`+dir+`/**/*.avro" ]
  scanner:
    currents_avro: {}
`))
	var mu sync.Mutex
	perFile := map[string][]string{}
	damaged := 0
	require.NoError(t, sb.AddBatchConsumerFunc(func(_ context.Context, b service.MessageBatch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b {
			if m.GetError() != nil {
				damaged++
				continue
			}
			p, _ := m.MetaGetMut("path")
			et, _ := m.MetaGetMut(currentsbody.MetaEventType)
			assert.Equal(t, "users.behaviors.Purchase", et)
			body, _ := m.AsBytes()
			perFile[filepath.Base(p.(string))] = append(perFile[filepath.Base(p.(string))], string(body))
		}
		return nil
	}))
	strm, err := sb.Build()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, strm.Run(ctx))

	files := make([]string, 0, len(perFile))
	for f := range perFile {
		files = append(files, f)
	}
	sort.Strings(files)
	assert.Equal(t, []string{"a.avro", "b.avro", "c.avro"}, files)
	assert.Equal(t, wantRange(0, 50), perFile["a.avro"])
	assert.Equal(t, wantRange(0, 20), perFile["b.avro"])
	assert.Equal(t, wantRange(0, 50), perFile["c.avro"])
	for _, f := range files {
		assert.False(t, strings.HasSuffix(f, ".txt"))
	}
	assert.Equal(t, 1, damaged, "b.avro's truncated block is one dead-letter message")
	got := map[string]int64{}
	for _, k := range metrics.Keys() {
		if v := metrics.Get(k); strings.HasPrefix(k, "currents_avro_") && v != 0 {
			got[k] = v
		}
	}
	assert.Equal(t, map[string]int64{
		"currents_avro_records_decoded_total": 120,
		"currents_avro_blocks_decoded_total":  12,
		"currents_avro_files_completed_total": 2,
		"currents_avro_files_failed_total":    1,
		"currents_avro_blocks_damaged_total":  1,
		"currents_avro_files_delivered_total": 3,
	}, got)
}

// TestScannerFaultsDeadLetter: by default a damaged block becomes one
// message marked unreadable (with the block's file, index and bytes), the
// scanner goes on after it, and a file read to its end is acknowledged as
// done; only an unreadable header fails the file.
func TestScannerFaultsDeadLetter(t *testing.T) {
	nullFile, snappyFile, deflateFile, nullHeader, nullEnds, snappyEnds, deflateEnds := faultFiles(t)
	type r = [2]int
	tests := []struct {
		name    string
		data    []byte
		good    []r   // record ranges emitted
		damaged []int // blocks dead-lettered, in order
		fails   bool  // the header is unreadable: the file fails
	}{
		{"empty file", nil, nil, nil, true},
		{"truncated header", nullFile[:nullHeader-5], nil, nil, true},
		{"truncated in block 3", nullFile[:nullEnds[2]+20], []r{{0, 30}}, []int{3}, false},
		{"truncated in sync marker of block 5", nullFile[:nullEnds[5]-3], []r{{0, 50}}, []int{5}, false},
		{"truncated snappy block 0", snappyFile[:snappyEnds[0]-30], nil, []int{0}, false},
		{"corrupt sync marker of block 4", flip(nullFile, nullEnds[4]-1), []r{{0, 40}, {50, 100}}, []int{4}, false},
		{"corrupt snappy data in block 6", flip(snappyFile, snappyEnds[6]-40), []r{{0, 60}, {70, 100}}, []int{6}, false},
		{"corrupt deflate data in block 2", flip(deflateFile, deflateEnds[1]+8), []r{{0, 20}, {30, 100}}, []int{2}, false},
		{"corrupt record count of block 1", flip(nullFile, nullEnds[0]), []r{{0, 10}, {20, 100}}, []int{1}, false},
		{"schema mismatch in block 0", mismatchedFile(t, 5), nil, []int{0}, false},
		{"trailing garbage after the last block", append(bytes.Clone(nullFile), 0x02, 0x04, 'x'), []r{{0, 100}}, []int{10}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := scan(t, "    {}", purchasePath, tt.data)
			assert.True(t, res.acked, "the source must be acknowledged")
			if tt.fails {
				require.Error(t, res.err)
				assert.Error(t, res.ackErr)
				return
			}
			require.NoError(t, res.err)
			assert.NoError(t, res.ackErr, "a file read to its end with its damage dead-lettered is done")
			var want, got []string
			for _, g := range tt.good {
				want = append(want, wantRange(g[0], g[1])...)
			}
			var damaged []int
			for _, m := range res.msgs {
				if m.GetError() == nil {
					b, _ := m.AsBytes()
					got = append(got, string(b))
					continue
				}
				reason, _, _ := deadletter.Of(m)
				assert.Equal(t, deadletter.ReasonUnreadable, reason)
				blk, _ := m.MetaGetMut(MetaBlock)
				damaged = append(damaged, blk.(int))
				b, _ := m.AsBytes()
				assert.Equal(t, purchasePath, gjson.GetBytes(b, "file").String())
				assert.Equal(t, int64(blk.(int)), gjson.GetBytes(b, "block").Int())
				assert.Contains(t, m.GetError().Error(), purchasePath)
				assert.True(t, gjson.GetBytes(b, "data_base64").Exists())
			}
			assert.Equal(t, want, got)
			assert.Equal(t, tt.damaged, damaged)
		})
	}
}
