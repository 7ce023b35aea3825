package reconcile

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/klauspost/compress/s2"
)

// Sides of a record. Expected sorts before present for the same insert id.
const (
	sideExpected byte = 'E'
	sidePresent  byte = 'P'
)

// maxFanIn bounds the runs merged at once (open files, read buffers); more
// runs are merged in several passes.
const maxFanIn = 64

// runBlockSize is the compression block of run files: small, since a merge
// holds the buffers of up to maxFanIn readers at once.
const runBlockSize = 128 << 10

// record is one event of one side. Its slices are valid until the next
// record is read from the same source.
type record struct {
	id   []byte
	side byte
	time int64 // Unix milliseconds
	typ  []byte
	body []byte // the expected event as delivery sends it, when kept
}

// appendRecord encodes r: uvarint id length, id, side, varint time, uvarint
// type length, type, uvarint body length, body.
func appendRecord(dst []byte, id string, side byte, t int64, typ string, body []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	dst = append(dst, id...)
	dst = append(dst, side)
	dst = binary.AppendVarint(dst, t)
	dst = binary.AppendUvarint(dst, uint64(len(typ)))
	dst = append(dst, typ...)
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

// decodeRecord decodes the record at the start of b and returns its length.
func decodeRecord(b []byte, r *record) (int, error) {
	n := 0
	field := func() ([]byte, error) {
		l, k := binary.Uvarint(b[n:])
		if k <= 0 || l > uint64(len(b)-n-k) {
			return nil, errors.New("damaged spill record")
		}
		n += k
		v := b[n : n+int(l)]
		n += int(l)
		return v, nil
	}
	var err error
	if r.id, err = field(); err != nil {
		return 0, err
	}
	if n >= len(b) {
		return 0, errors.New("damaged spill record")
	}
	r.side = b[n]
	n++
	t, k := binary.Varint(b[n:])
	if k <= 0 {
		return 0, errors.New("damaged spill record")
	}
	r.time = t
	n += k
	if r.typ, err = field(); err != nil {
		return 0, err
	}
	if r.body, err = field(); err != nil {
		return 0, err
	}
	return n, nil
}

// entry locates one record of the in-memory buffer.
type entry struct {
	off, idOff, idLen, end uint32
}

// sorter is an external sort of records by (insert id, side): records are
// buffered up to a memory limit, sorted and written to compressed run files
// in a folder, then merged.
type sorter struct {
	dir   string
	limit int
	name  string

	arena []byte
	idx   []entry
	runs  []string

	records      int64
	spilledBytes int64
	free         func() // releases the buffer

	// runCount counts the runs of every sorter sharing it, for progress
	// reports read from other goroutines.
	runCount *atomic.Int64
}

func newSorter(dir, name string, limit int, runCount *atomic.Int64) *sorter {
	return &sorter{dir: dir, name: name, limit: limit, runCount: runCount}
}

// add buffers one record, spilling the buffer first when the record does
// not fit. The buffer is allocated once, at its full size (three quarters of
// the limit for the records, a quarter for their index), and never grown,
// so that memory stays within the limit instead of doubling on growth.
func (s *sorter) add(id string, side byte, t int64, typ string, body []byte) error {
	if s.arena == nil {
		s.alloc()
	}
	if bound := len(id) + len(typ) + len(body) + 4*binary.MaxVarintLen64 + 1; len(s.idx) == cap(s.idx) || len(s.arena)+bound > cap(s.arena) {
		if err := s.spill(); err != nil {
			return err
		}
	}
	off := len(s.arena)
	s.arena = appendRecord(s.arena, id, side, t, typ, body)
	idOff := off + uvarintLen(uint64(len(id)))
	s.idx = append(s.idx, entry{off: uint32(off), idOff: uint32(idOff), idLen: uint32(len(id)), end: uint32(len(s.arena))})
	s.records++
	return nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func (s *sorter) key(e entry) []byte { return s.arena[e.idOff : e.idOff+e.idLen] }

// spill sorts the buffer and writes it as one run.
func (s *sorter) spill() error {
	if len(s.idx) == 0 {
		return nil
	}
	slices.SortFunc(s.idx, func(a, b entry) int {
		if c := bytes.Compare(s.key(a), s.key(b)); c != 0 {
			return c
		}
		// The side byte follows the id.
		return int(s.arena[a.idOff+a.idLen]) - int(s.arena[b.idOff+b.idLen])
	})
	w, err := newRunWriter(s.dir, s.name)
	if err != nil {
		return err
	}
	for _, e := range s.idx {
		if err := w.write(s.arena[e.off:e.end]); err != nil {
			w.abort()
			return err
		}
	}
	path, n, err := w.finish()
	if err != nil {
		return err
	}
	s.runs = append(s.runs, path)
	s.runCount.Add(1)
	s.spilledBytes += n
	s.arena, s.idx = s.arena[:0], s.idx[:0]
	return nil
}

// alloc allocates the buffer: three quarters of the limit for the records,
// a quarter for their index, in one block outside the Go heap.
func (s *sorter) alloc() {
	entries := max(s.limit/4/int(unsafe.Sizeof(entry{})), 16)
	arena := max(s.limit-entries*int(unsafe.Sizeof(entry{})), 1<<10) &^ 15
	buf, free := allocBuffer(arena + entries*int(unsafe.Sizeof(entry{})))
	s.free = free
	s.arena = buf[:0:arena]
	// The mapping is page aligned, and arena a multiple of 16 below.
	s.idx = unsafe.Slice((*entry)(unsafe.Pointer(&buf[arena])), entries)[:0]
}

// release frees the buffer (after the final spill).
func (s *sorter) release() {
	s.arena, s.idx = nil, nil
	if s.free != nil {
		s.free()
		s.free = nil
	}
}

// runWriter writes one sorted run.
type runWriter struct {
	f *os.File
	z *s2.Writer
	n int64
}

func newRunWriter(dir, name string) (*runWriter, error) {
	f, err := os.CreateTemp(dir, name+"-run-*.s2")
	if err != nil {
		return nil, fmt.Errorf("spill run: %w", err)
	}
	return &runWriter{f: f, z: s2.NewWriter(f, s2.WriterConcurrency(1), s2.WriterBlockSize(runBlockSize))}, nil
}

func (w *runWriter) write(rec []byte) error {
	w.n += int64(len(rec))
	_, err := w.z.Write(rec)
	return err
}

func (w *runWriter) finish() (string, int64, error) {
	err := w.z.Close()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(w.f.Name())
		return "", 0, fmt.Errorf("spill run: %w", err)
	}
	return w.f.Name(), w.n, nil
}

func (w *runWriter) abort() {
	w.z.Close()
	w.f.Close()
	os.Remove(w.f.Name())
}

// runReader reads the records of one run in order.
type runReader struct {
	f   *os.File
	br  *bufio.Reader
	buf []byte
	cur record
}

func openRun(path string) (*runReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &runReader{f: f, br: bufio.NewReaderSize(s2.NewReader(f, s2.ReaderMaxBlockSize(runBlockSize)), 32<<10)}, nil
}

// next reads the next record into cur; io.EOF at the end.
func (r *runReader) next() error {
	r.buf = r.buf[:0]
	var err error
	if r.buf, err = r.readField(r.buf); err != nil {
		return err // io.EOF at a record boundary
	}
	side, err := r.br.ReadByte()
	if err != nil {
		return unexpected(err)
	}
	r.buf = append(r.buf, side)
	t, err := binary.ReadVarint(r.br)
	if err != nil {
		return unexpected(err)
	}
	r.buf = binary.AppendVarint(r.buf, t)
	for range 2 {
		if r.buf, err = r.readField(r.buf); err != nil {
			return unexpected(err)
		}
	}
	_, err = decodeRecord(r.buf, &r.cur)
	return err
}

// readField appends one length-prefixed field, prefix included.
func (r *runReader) readField(dst []byte) ([]byte, error) {
	l, err := binary.ReadUvarint(r.br)
	if err != nil {
		return dst, err
	}
	if l > 64<<20 {
		return dst, errors.New("damaged spill record")
	}
	dst = binary.AppendUvarint(dst, l)
	start := len(dst)
	dst = slices.Grow(dst, int(l))[:start+int(l)]
	if _, err := io.ReadFull(r.br, dst[start:]); err != nil {
		return dst, unexpected(err)
	}
	return dst, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// mergeHeap orders run readers by their current record.
type mergeHeap []*runReader

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].cur.id, h[j].cur.id); c != 0 {
		return c < 0
	}
	return h[i].cur.side < h[j].cur.side
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeRuns calls fn with every record of the runs in (id, side) order.
// Over maxFanIn runs, groups of runs are first merged into new runs (in dir),
// and the merged ones removed.
func mergeRuns(dir string, runs []string, fn func(*record) error) error {
	for len(runs) > maxFanIn {
		var next []string
		for i := 0; i < len(runs); i += maxFanIn {
			group := runs[i:min(i+maxFanIn, len(runs))]
			w, err := newRunWriter(dir, "merge")
			if err != nil {
				return err
			}
			var buf []byte
			err = mergeOnce(group, func(r *record) error {
				buf = appendRecord(buf[:0], string(r.id), r.side, r.time, string(r.typ), r.body)
				return w.write(buf)
			})
			if err != nil {
				w.abort()
				return err
			}
			path, _, err := w.finish()
			if err != nil {
				return err
			}
			for _, p := range group {
				os.Remove(p)
			}
			next = append(next, path)
		}
		runs = next
	}
	return mergeOnce(runs, fn)
}

func mergeOnce(runs []string, fn func(*record) error) error {
	h := make(mergeHeap, 0, len(runs))
	defer func() {
		for _, r := range h {
			r.f.Close()
		}
	}()
	for _, p := range runs {
		r, err := openRun(p)
		if err != nil {
			return err
		}
		if err := r.next(); err != nil {
			r.f.Close()
			if err == io.EOF {
				continue
			}
			return fmt.Errorf("spill run %s: %w", p, err)
		}
		h = append(h, r)
	}
	heap.Init(&h)
	for len(h) > 0 {
		top := h[0]
		if err := fn(&top.cur); err != nil {
			return err
		}
		if err := top.next(); err != nil {
			if err != io.EOF {
				return fmt.Errorf("spill run %s: %w", top.f.Name(), err)
			}
			top.f.Close()
			heap.Pop(&h)
			continue
		}
		heap.Fix(&h, 0)
	}
	return nil
}
