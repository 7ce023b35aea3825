package avroscan

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/golang/snappy"
	"github.com/hamba/avro/v2"
	"github.com/klauspost/compress/zstd"
)

// magic opens every Avro object container file.
var magic = [4]byte{'O', 'b', 'j', 1}

// Bounds of a file header: its metadata entries and their total size (a
// Braze schema takes a few tens of kilobytes).
const (
	maxHeaderEntries = 1 << 10
	maxHeaderBytes   = 16 << 20
)

// limits bound the memory one file may take, whatever its content claims.
type limits struct {
	// blockBytes caps a block's stored and decompressed size.
	blockBytes int
	// blockRecords caps the record count a block may declare.
	blockRecords int
	// jsonBytes caps the JSON decoded from one block.
	jsonBytes int
}

// ocfReader reads an Avro object container file block by block: the header
// first, then one block per call to next, each checked whole (size, codec,
// every record, sync marker) before any of its records is returned. A fault
// therefore never yields part of a block, and every earlier block is intact.
type ocfReader struct {
	r      *bufio.Reader
	off    int64 // bytes consumed so far, for error messages
	lim    limits
	schema avro.Schema
	root   node
	codec  string
	sync   [16]byte

	block int    // index of the next block
	raw   []byte // reused: the stored block
	plain []byte // reused: the decompressed block
	flate io.ReadCloser
	zstd  *zstd.Decoder
	// jsonPerByte is the JSON size per decompressed Avro byte of the last
	// block, to size the next block's buffer in one allocation.
	jsonPerByte float64
}

// block is one decoded block: record i is json[offs[i]:offs[i+1]].
type block struct {
	index  int
	offset int64
	json   []byte
	offs   []int
	// declared is the record count of the block's header, -1 until read;
	// framed is set once the whole block was read.
	declared int64
	framed   bool
}

func (b *block) len() int { return len(b.offs) - 1 }

// record returns record i, capped so that appending to it cannot overwrite
// its neighbour.
func (b *block) record(i int) []byte {
	return b.json[b.offs[i]:b.offs[i+1]:b.offs[i+1]]
}

// formatError describes where in a file decoding failed.
type formatError struct {
	block  int // -1 for the header
	offset int64
	err    error
	// records is the record count the block declared, -1 when unknown.
	records int64
	// framed says the block was read whole (count, size, data, sync
	// marker): the reader is at the next block. Otherwise the framing is
	// lost and resync must find the next block.
	framed bool
	// raw is the stored block of a framed block (valid until the next
	// read).
	raw []byte
}

func (e *formatError) Error() string {
	if e.block < 0 {
		return fmt.Sprintf("header: %v", e.err)
	}
	return fmt.Sprintf("block %d (byte offset %d): %v", e.block, e.offset, e.err)
}

func (e *formatError) Unwrap() error { return e.err }

// newOCFReader reads and checks the header of the file r.
func newOCFReader(r io.Reader, lim limits) (*ocfReader, error) {
	o := &ocfReader{r: bufio.NewReaderSize(r, 64<<10), lim: lim}
	if err := o.readHeader(); err != nil {
		o.close()
		return nil, &formatError{block: -1, offset: o.off, err: err}
	}
	return o, nil
}

func (o *ocfReader) readHeader() error {
	var m [4]byte
	if err := o.readFull(m[:]); err != nil {
		return err
	}
	if m != magic {
		return fmt.Errorf("not an Avro object container file: starts with %q, want %q", m[:], magic[:])
	}
	meta := map[string][]byte{}
	size := 0
	for {
		count, err := o.readLong()
		if err != nil {
			return err
		}
		if count == 0 {
			break
		}
		if count < 0 {
			count = -count
			if _, err := o.readLong(); err != nil {
				return err
			}
		}
		if count < 0 || count > maxHeaderEntries || len(meta)+int(count) > maxHeaderEntries {
			return fmt.Errorf("metadata declares too many entries (%d)", count)
		}
		for ; count > 0; count-- {
			k, err := o.readBytes(maxHeaderBytes - size)
			if err != nil {
				return fmt.Errorf("metadata key: %w", err)
			}
			v, err := o.readBytes(maxHeaderBytes - size - len(k))
			if err != nil {
				return fmt.Errorf("metadata %q: %w", k, err)
			}
			size += len(k) + len(v)
			meta[string(k)] = v
		}
	}
	if err := o.readFull(o.sync[:]); err != nil {
		return err
	}

	o.codec = string(meta["avro.codec"])
	switch o.codec {
	case "":
		o.codec = "null"
	case "null", "deflate", "snappy", "zstandard":
	default:
		return fmt.Errorf("unsupported codec %q (supported: null, deflate, snappy, zstandard)", o.codec)
	}
	schemaJSON, ok := meta["avro.schema"]
	if !ok {
		return errors.New("no avro.schema in the file metadata")
	}
	var err error
	if o.schema, err = parseSchema(schemaJSON); err != nil {
		return fmt.Errorf("invalid avro.schema: %w", err)
	}
	if o.root, err = compile(o.schema); err != nil {
		return fmt.Errorf("avro.schema: %w", err)
	}
	return nil
}

// parseSchema parses a writer schema in a cache of its own, so that files
// with different versions of one record name do not clash, and turns a panic
// of the parser on hostile input into an error.
func parseSchema(b []byte) (s avro.Schema, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("schema parser failed: %v", r)
		}
	}()
	return avro.ParseBytesWithCache(b, "", &avro.SchemaCache{})
}

// next decodes the next block. It returns io.EOF after the last block, and
// a *formatError for anything else that goes wrong.
func (o *ocfReader) next() (*block, error) {
	for {
		if _, err := o.r.Peek(1); errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		b := &block{index: o.block, offset: o.off, declared: -1}
		err := o.readBlock(b)
		o.block++
		if err != nil {
			fe := &formatError{block: b.index, offset: b.offset, err: err, records: b.declared, framed: b.framed}
			if b.framed {
				fe.raw = o.raw
			}
			return nil, fe
		}
		if b.len() > 0 {
			return b, nil
		}
	}
}

func (o *ocfReader) readBlock(b *block) error {
	count, err := o.readLong()
	if err != nil {
		return err
	}
	if count < 0 || count > int64(o.lim.blockRecords) {
		return fmt.Errorf("invalid record count %d (limit %d)", count, o.lim.blockRecords)
	}
	b.declared = count
	size, err := o.readLong()
	if err != nil {
		return err
	}
	if size < 0 || size > int64(o.lim.blockBytes) {
		return fmt.Errorf("invalid block size %d bytes (limit %d)", size, o.lim.blockBytes)
	}
	if cap(o.raw) < int(size) {
		o.raw = make([]byte, size)
	}
	o.raw = o.raw[:size]
	if err := o.readFull(o.raw); err != nil {
		return fmt.Errorf("block of %d bytes: %w", size, err)
	}
	var sync [16]byte
	if err := o.readFull(sync[:]); err != nil {
		return fmt.Errorf("sync marker: %w", err)
	}
	// The block was read whole: whatever is wrong with it, the next block
	// starts here.
	b.framed = true
	if sync != o.sync {
		return errors.New("sync marker does not match the header's: the block is corrupt")
	}
	data, err := o.decompress(o.raw)
	if err != nil {
		return fmt.Errorf("%s codec: %w", o.codec, err)
	}
	return o.decodeRecords(b, data, int(count))
}

// decodeRecords decodes count records from data, which they must fill
// exactly: bytes left over mean the data does not match the schema.
func (o *ocfReader) decodeRecords(b *block, data []byte, count int) error {
	r := binReader{b: data, outLimit: o.lim.jsonBytes}
	if o.jsonPerByte == 0 {
		o.jsonPerByte = 3
	}
	b.json = make([]byte, 0, min(int(o.jsonPerByte*float64(len(data)))+64, o.lim.jsonBytes))
	b.offs = make([]int, 1, count+1)
	var err error
	for i := range count {
		if b.json, err = o.root.decode(&r, b.json, 0); err != nil {
			return fmt.Errorf("record %d of %d: %w (does the data match the file's schema?)", i, count, err)
		}
		if err := r.checkOut(b.json); err != nil {
			return err
		}
		b.offs = append(b.offs, len(b.json))
	}
	if r.p != len(data) {
		return fmt.Errorf("%d bytes left after the block's %d records: the data does not match the file's schema", len(data)-r.p, count)
	}
	if len(data) > 0 {
		o.jsonPerByte = 1.05 * float64(len(b.json)) / float64(len(data))
	}
	return nil
}

func (o *ocfReader) decompress(src []byte) ([]byte, error) {
	limit := o.lim.blockBytes
	switch o.codec {
	case "deflate":
		if o.flate == nil {
			o.flate = flate.NewReader(bytes.NewReader(src))
		} else if err := o.flate.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
			return nil, err
		}
		return readAllLimited(o.flate, o.plain[:0], limit, &o.plain)
	case "snappy":
		if len(src) < 4 {
			return nil, errors.New("block too short for its CRC-32 checksum")
		}
		body := src[:len(src)-4]
		n, err := snappy.DecodedLen(body)
		if err != nil {
			return nil, err
		}
		if n > limit {
			return nil, fmt.Errorf("decompressed block of %d bytes exceeds the limit of %d", n, limit)
		}
		if cap(o.plain) < n {
			o.plain = make([]byte, n)
		}
		out, err := snappy.Decode(o.plain[:cap(o.plain)], body)
		if err != nil {
			return nil, err
		}
		if crc32.ChecksumIEEE(out) != binary.BigEndian.Uint32(src[len(src)-4:]) {
			return nil, errors.New("checksum mismatch (CRC-32 of the decompressed block)")
		}
		return out, nil
	case "zstandard":
		if o.zstd == nil {
			d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)))
			if err != nil {
				return nil, err
			}
			o.zstd = d
		}
		if err := o.zstd.Reset(bytes.NewReader(src)); err != nil {
			return nil, err
		}
		return readAllLimited(o.zstd, o.plain[:0], limit, &o.plain)
	}
	return src, nil
}

// readAllLimited reads r to its end into buf, failing past limit bytes, and
// keeps the grown buffer in *keep for reuse.
func readAllLimited(r io.Reader, buf []byte, limit int, keep *[]byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		*keep = buf
		if len(buf) > limit {
			return nil, fmt.Errorf("decompressed block exceeds the limit of %d bytes", limit)
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// skip passes over the next block without decoding it (a block already
// delivered) and returns its record count. The block is checked only for
// its framing (count, size, sync marker).
func (o *ocfReader) skip() (int64, error) {
	b := &block{index: o.block, offset: o.off, declared: -1}
	o.block++
	fail := func(err error) (int64, error) {
		return 0, &formatError{block: b.index, offset: b.offset, err: err, records: b.declared, framed: b.framed}
	}
	count, err := o.readLong()
	if err != nil {
		return fail(err)
	}
	if count < 0 || count > int64(o.lim.blockRecords) {
		return fail(fmt.Errorf("invalid record count %d (limit %d)", count, o.lim.blockRecords))
	}
	b.declared = count
	size, err := o.readLong()
	if err != nil {
		return fail(err)
	}
	if size < 0 || size > int64(o.lim.blockBytes) {
		return fail(fmt.Errorf("invalid block size %d bytes (limit %d)", size, o.lim.blockBytes))
	}
	n, err := io.CopyN(io.Discard, o.r, size)
	o.off += n
	if err != nil {
		return fail(fmt.Errorf("block of %d bytes: file truncated", size))
	}
	var sync [16]byte
	if err := o.readFull(sync[:]); err != nil {
		return fail(fmt.Errorf("sync marker: %w", err))
	}
	b.framed = true
	if sync != o.sync {
		return fail(errors.New("sync marker does not match the header's: the block is corrupt"))
	}
	return count, nil
}

// resync reads up to and including the next sync marker, after a block whose
// framing was lost, and returns the bytes passed over (at most keep of them,
// and their total count). At the end of the file it returns io.EOF.
func (o *ocfReader) resync(keep int) (skipped []byte, total int64, err error) {
	var win [16]byte
	for {
		c, err := o.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return skipped, total, io.EOF
			}
			return skipped, total, err
		}
		total++
		if len(skipped) < keep {
			skipped = append(skipped, c)
		}
		copy(win[:], win[1:])
		win[15] = c
		if total >= 16 && win == o.sync {
			if n := int64(len(skipped)); n == total {
				skipped = skipped[:n-16]
			}
			return skipped, total - 16, nil
		}
	}
}

func (o *ocfReader) close() {
	if o.zstd != nil {
		o.zstd.Close()
		o.zstd = nil
	}
	if o.flate != nil {
		_ = o.flate.Close()
		o.flate = nil
	}
}

//------------------------------------------------------------------------------

func (o *ocfReader) readFull(p []byte) error {
	n, err := io.ReadFull(o.r, p)
	o.off += int64(n)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("file truncated: wanted %d bytes, got %d", len(p), n)
	}
	return err
}

// ReadByte makes the reader an io.ByteReader that counts its offset.
func (o *ocfReader) ReadByte() (byte, error) {
	c, err := o.r.ReadByte()
	if err == nil {
		o.off++
	}
	return c, err
}

func (o *ocfReader) readLong() (int64, error) {
	u, err := binary.ReadUvarint(o)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return 0, errors.New("file truncated inside a number")
	case err != nil:
		return 0, errVarint
	}
	return unzigzag(u), nil
}

func (o *ocfReader) readBytes(limit int) ([]byte, error) {
	n, err := o.readLong()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > int64(limit) {
		return nil, fmt.Errorf("invalid length %d (header limit %d bytes)", n, maxHeaderBytes)
	}
	b := make([]byte, n)
	return b, o.readFull(b)
}
