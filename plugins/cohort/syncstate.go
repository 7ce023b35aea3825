package cohort

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/opencurrents/currents-amplitude/plugins/store"
)

// stateNS and membersNS are the store namespaces of the cohort components.
// The memberships (megabytes) have a namespace of their own, so that the
// small writes made while delivering never rewrite their pages. Keys (after
// the configurable key_prefix):
//
//	membersNS:
//	state/<cohort id>     the last delivered membership (encodeState)
//	pending/<cohort id>   the membership being delivered: uvarint
//	                      max_ids_per_message, then encodeState
//	stateNS:
//	progress/<cohort id>  bitmap of the pending change set's messages
//	                      already delivered (bit i = message i)
//	downloads/<YYYY-MM>   cohort downloads started that month (decimal)
//	partner_name/<id>     the cohort name last sent to Braze's partner API
const (
	stateNS   = "amplitude_cohort"
	membersNS = "amplitude_cohort_members"
)

// syncState reads and writes one input's keys in the store. Each method is
// one transaction.
type syncState struct {
	db     *store.DB
	prefix string
}

func (s syncState) key(kind, id string) string { return s.prefix + kind + "/" + id }

// stored is what the store holds about one cohort at the start of a sync.
type stored struct {
	committed     state
	haveCommitted bool
	// pending is the membership of an unfinished sync, with the message
	// size it was cut with and the messages already delivered.
	pending     state
	havePending bool
	maxIDs      int
	delivered   []byte
}

// load reads the state of cohort id in one snapshot.
func (s syncState) load(id string) (stored, error) {
	var st stored
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		if raw, ok := tx.Get(membersNS, s.key("state", id)); ok {
			if st.committed, err = decodeState(raw); err != nil {
				return fmt.Errorf("last delivered membership: %w", err)
			}
			st.haveCommitted = true
		}
		raw, ok := tx.Get(membersNS, s.key("pending", id))
		if !ok {
			return nil
		}
		n, w := binary.Uvarint(raw)
		if w <= 0 || n == 0 || n > 1<<20 {
			return fmt.Errorf("pending membership: %w", errBadState)
		}
		if st.pending, err = decodeState(raw[w:]); err != nil {
			return fmt.Errorf("pending membership: %w", err)
		}
		st.havePending, st.maxIDs = true, int(n)
		st.delivered, _ = tx.Get(stateNS, s.key("progress", id))
		return nil
	})
	return st, err
}

// begin records a downloaded membership as the change set to deliver, with
// no message delivered yet.
func (s syncState) begin(id string, maxIDs int, encoded []byte) error {
	v := binary.AppendUvarint(make([]byte, 0, len(encoded)+binary.MaxVarintLen32), uint64(maxIDs))
	v = append(v, encoded...)
	return s.db.Update(func(tx *store.Tx) error {
		if err := tx.Delete(stateNS, s.key("progress", id)); err != nil {
			return err
		}
		return tx.Put(membersNS, s.key("pending", id), v, 0)
	})
}

// delivered records that message i of the pending change set was delivered,
// in a transaction of its own (a fraction of a millisecond next to the Braze
// request that delivered it).
func (s syncState) delivered(id string, i int) error {
	return s.db.Update(func(tx *store.Tx) error {
		bm, _ := tx.Get(stateNS, s.key("progress", id))
		if need := i/8 + 1; len(bm) < need {
			bm = append(bm, make([]byte, need-len(bm))...)
		}
		bm[i/8] |= 1 << (i % 8)
		return tx.Put(stateNS, s.key("progress", id), bm, 0)
	})
}

// commit makes the pending membership the delivered one and forgets the
// progress, in one transaction.
func (s syncState) commit(id string) error {
	return s.db.Update(func(tx *store.Tx) error {
		raw, ok := tx.Get(membersNS, s.key("pending", id))
		if !ok {
			return errors.New("no pending membership to commit")
		}
		_, w := binary.Uvarint(raw)
		if err := tx.Put(membersNS, s.key("state", id), raw[w:], 0); err != nil {
			return err
		}
		if err := tx.Delete(membersNS, s.key("pending", id)); err != nil {
			return err
		}
		return tx.Delete(stateNS, s.key("progress", id))
	})
}

// isDelivered reports whether bit i of a progress bitmap is set.
func isDelivered(bm []byte, i int) bool {
	return i/8 < len(bm) && bm[i/8]&(1<<(i%8)) != 0
}

// countDownload adds one download to month's count unless it reached budget
// (0: no limit), and returns the count.
func (s syncState) countDownload(month string, budget int) (int, bool, error) {
	var n int
	var ok bool
	err := s.db.Update(func(tx *store.Tx) error {
		v, _ := tx.Get(stateNS, s.key("downloads", month))
		n, _ = strconv.Atoi(string(v))
		if budget > 0 && n >= budget {
			return nil
		}
		n, ok = n+1, true
		// Kept for 62 days: long enough for the month, then swept.
		return tx.Put(stateNS, s.key("downloads", month), []byte(strconv.Itoa(n)), 62*24*time.Hour)
	})
	return n, ok, err
}
