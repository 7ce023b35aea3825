package avroscan

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/hamba/avro/v2/ocf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opencurrents/currents-amplitude/plugins/avroscan/avroscantest"
)

// repeatReader is a file of any size: a header, then one block repeated n
// times, produced on the fly.
type repeatReader struct {
	header, block []byte
	n             int
	cur           []byte
}

func (r *repeatReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		switch {
		case r.header != nil:
			r.cur, r.header = r.header, nil
		case r.n > 0:
			r.cur = r.block
			r.n--
		default:
			return 0, io.EOF
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// TestStreamingMemoryIsBounded reads a 64 MB file and checks that the heap
// never holds more than a few blocks of it.
func TestStreamingMemoryIsBounded(t *testing.T) {
	data, headerEnd, ends := avroscantest.File(t, ocf.Null, 250, 250)
	blk := data[headerEnd:ends[0]]
	n := (64 << 20) / len(blk)
	o, err := newOCFReader(&repeatReader{header: data[:headerEnd], block: blk, n: n},
		limits{blockBytes: 1 << 20, blockRecords: 1 << 10, jsonBytes: 4 << 20})
	require.NoError(t, err)
	defer o.close()

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	records := 0
	for i := 0; ; i++ {
		b, err := o.next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		records += b.len()
		if i%200 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	assert.Equal(t, n*250, records)
	assert.Equal(t, int64(headerEnd+n*len(blk)), o.off, "every byte read")
	t.Logf("read %d MB in %d blocks; heap peak %.1f MB above the start", o.off>>20, n, float64(peak-base)/(1<<20))
	assert.Less(t, peak-base, uint64(16<<20), "the heap grew with the file")
}

// TestBlockRecordsDoNotOverlap checks that a record cannot be grown into its
// neighbour (messages share the block's buffer).
func TestBlockRecordsDoNotOverlap(t *testing.T) {
	data, _, _ := avroscantest.File(t, ocf.Null, 3, 3)
	o, err := newOCFReader(bytes.NewReader(data), limits{blockBytes: 1 << 20, blockRecords: 1 << 10, jsonBytes: 1 << 20})
	require.NoError(t, err)
	b, err := o.next()
	require.NoError(t, err)
	first := b.record(0)
	_ = append(first, "garbage"...)
	assert.Equal(t, wantJSON(1), string(b.record(1)))
}
