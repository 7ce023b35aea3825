package cohort

import (
	"bufio"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Members are stored as strings tagged by their id type: 'u' + external id
// or 'd' + device id, so one sorted list holds both kinds.
const (
	tagExternal = 'u'
	tagDevice   = 'd'
	// maxIDLen bounds one id; Amplitude and Braze ids are far shorter.
	maxIDLen = 1024
)

func idTypeOf(tag byte) string {
	if tag == tagDevice {
		return IDTypeDevice
	}
	return IDTypeExternal
}

// csvColumns says which columns of a cohort file carry the member ids.
type csvColumns struct {
	userID   string // external id column, usually "user_id"
	deviceID string // optional device id column for anonymous members
}

// memberStats counts the rows of a cohort file that yield no member.
type memberStats struct {
	rows      int
	anonymous int // no user id (and no device id, when configured)
	invalid   int // id longer than maxIDLen
}

// readMembers streams a cohort CSV (with a header row) and returns its
// members as a sorted, de-duplicated list of tagged ids. It fails when the
// file holds more than maxMembers members, so memory stays bounded.
func readMembers(r io.Reader, cols csvColumns, maxMembers int) ([]string, memberStats, error) {
	var st memberStats
	cr := csv.NewReader(bufio.NewReaderSize(r, 64<<10))
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, st, errors.New("cohort file is empty: no header row")
		}
		return nil, st, fmt.Errorf("reading cohort file header: %w", err)
	}
	userCol, devCol := -1, -1
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		switch {
		case h == cols.userID:
			userCol = i
		case cols.deviceID != "" && h == cols.deviceID:
			devCol = i
		}
	}
	if userCol < 0 {
		return nil, st, fmt.Errorf("cohort file has no %q column", cols.userID)
	}
	if cols.deviceID != "" && devCol < 0 {
		return nil, st, fmt.Errorf("cohort file has no %q column", cols.deviceID)
	}
	var members []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, st, fmt.Errorf("reading cohort file: %w", err)
		}
		st.rows++
		tag, id := byte(tagExternal), field(rec, userCol)
		if id == "" && devCol >= 0 {
			tag, id = tagDevice, field(rec, devCol)
		}
		switch {
		case id == "":
			st.anonymous++
			continue
		case len(id) > maxIDLen:
			st.invalid++
			continue
		}
		if len(members) >= maxMembers {
			return nil, st, fmt.Errorf("cohort has more than %d members (max_members)", maxMembers)
		}
		// Concatenation copies the id out of the CSV line buffer.
		members = append(members, string(tag)+id)
	}
	slices.Sort(members)
	return slices.Compact(members), st, nil
}

func field(rec []string, i int) string {
	if i >= len(rec) {
		return ""
	}
	return strings.TrimSpace(rec[i])
}

// state is what the input remembers about a cohort between syncs: the
// lastComputed it saw and the sorted, tagged member ids.
//
// Encoding: "acs1", then uvarint-length-prefixed lastComputed, uvarint member
// count, and each member as uvarint length + bytes, in sorted order. About
// (id length + 2) bytes per member: 100,000 members of 20 bytes take ~2 MB.
type state struct {
	lastComputed string
	count        int
	members      []byte // the encoded member list, iterated lazily
}

const stateMagic = "acs1"

func encodeState(lastComputed string, members []string) []byte {
	size := len(stateMagic) + 2*binary.MaxVarintLen64 + len(lastComputed)
	for _, m := range members {
		size += len(m) + binary.MaxVarintLen32
	}
	b := make([]byte, 0, size)
	b = append(b, stateMagic...)
	b = binary.AppendUvarint(b, uint64(len(lastComputed)))
	b = append(b, lastComputed...)
	b = binary.AppendUvarint(b, uint64(len(members)))
	for _, m := range members {
		b = binary.AppendUvarint(b, uint64(len(m)))
		b = append(b, m...)
	}
	return b
}

var errBadState = errors.New("stored cohort state is corrupt")

func decodeState(b []byte) (state, error) {
	var s state
	if !strings.HasPrefix(string(b), stateMagic) {
		return s, errBadState
	}
	b = b[len(stateMagic):]
	lc, b, ok := readChunk(b)
	if !ok {
		return s, errBadState
	}
	s.lastComputed = string(lc)
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return s, errBadState
	}
	s.count, s.members = int(n), b[w:]
	// Validate the member list once so iteration cannot fail later: every
	// entry must be well formed, tagged and strictly increasing.
	var prev []byte
	rest := s.members
	for i := 0; i < s.count; i++ {
		var m []byte
		if m, rest, ok = readChunk(rest); !ok || len(m) < 2 || (m[0] != tagExternal && m[0] != tagDevice) {
			return s, errBadState
		}
		if i > 0 && string(prev) >= string(m) {
			return s, errBadState
		}
		prev = m
	}
	if len(rest) != 0 {
		return s, errBadState
	}
	return s, nil
}

func readChunk(b []byte) (chunk, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}

// cursor walks the members of a state in sorted order.
type cursor struct {
	rest []byte
	left int
	cur  []byte // the current member, nil once exhausted
}

func (s state) cursor() *cursor {
	c := &cursor{rest: s.members, left: s.count}
	c.next()
	return c
}

func (c *cursor) next() {
	if c.left == 0 {
		c.cur = nil
		return
	}
	c.left--
	// decodeState validated every entry.
	c.cur, c.rest, _ = readChunk(c.rest)
}

// diff merges the old (delivered) and new (target) memberships and calls emit
// for each change in tagged-id order. The order depends only on the two
// memberships, so a resumed sync cuts the same messages.
func diff(old, cur state, emit func(tagged string, added bool) error) error {
	o, n := old.cursor(), cur.cursor()
	for o.cur != nil || n.cur != nil {
		var err error
		switch {
		case o.cur == nil || (n.cur != nil && string(n.cur) < string(o.cur)):
			err = emit(string(n.cur), true)
			n.next()
		case n.cur == nil || string(o.cur) < string(n.cur):
			err = emit(string(o.cur), false)
			o.next()
		default:
			o.next()
			n.next()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// chunker groups changes into [Change] values of at most max ids of one id
// type, handing each full one to flush.
type chunker struct {
	cohortID, cohortName string
	max                  int
	cur                  Change
	flush                func(Change) error
	added, removed       int
}

func (c *chunker) add(tagged string, added bool) error {
	idType := idTypeOf(tagged[0])
	if n := len(c.cur.Added) + len(c.cur.Removed); n > 0 && (n >= c.max || c.cur.IDType != idType) {
		if err := c.close(); err != nil {
			return err
		}
	}
	if c.cur.IDType == "" {
		c.cur = Change{CohortID: c.cohortID, CohortName: c.cohortName, IDType: idType}
	}
	if added {
		c.cur.Added = append(c.cur.Added, tagged[1:])
		c.added++
	} else {
		c.cur.Removed = append(c.cur.Removed, tagged[1:])
		c.removed++
	}
	return nil
}

// close flushes the pending change, if any.
func (c *chunker) close() error {
	if len(c.cur.Added)+len(c.cur.Removed) == 0 {
		return nil
	}
	ch := c.cur
	c.cur = Change{}
	return c.flush(ch)
}
