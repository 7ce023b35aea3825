package store

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// crashChildEnv makes the test binary act as the writer killed by
// TestCrashKillAtEveryWritePoint.
const crashChildEnv = "STORE_CRASH_CHILD"

// TestMain lets the test binary run as a crash child.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild commits transactions for ever, each writing the counter n into
// two keys and a 64 KiB value derived from n (so that a transaction spans
// several pages), and prints n once committed.
func crashChild(path string) {
	db, err := Open(path, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var n uint64
	_ = db.View(func(tx *Tx) error {
		if v, ok := tx.Get("c", "a"); ok {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	w := bufio.NewWriter(os.Stdout)
	for {
		n++
		err := db.Update(func(tx *Tx) error {
			v := binary.BigEndian.AppendUint64(nil, n)
			if err := tx.Put("c", "a", v, 0); err != nil {
				return err
			}
			if err := tx.Put("big", strconv.FormatUint(n%8, 10), bigValue(n), 0); err != nil {
				return err
			}
			return tx.Put("c", "b", v, 0)
		})
		if err != nil {
			fmt.Println("update:", err)
			os.Exit(3)
		}
		fmt.Fprintln(w, n)
		w.Flush()
	}
}

func bigValue(n uint64) []byte {
	b := make([]byte, 64<<10)
	for i := 0; i < len(b); i += 8 {
		binary.BigEndian.PutUint64(b[i:], n^uint64(i))
	}
	return b
}

// TestCrashKillAtEveryWritePoint kills a writer with SIGKILL after each of
// its first commits (and then at growing counts, so the kill lands at every
// stage of a commit: page writes, fsync, meta page), reopens the file and
// checks the invariants: it opens, both counters are equal (one transaction
// is never half applied), no committed transaction is lost (the counter is
// at least the last one the child reported), and the big value matches its
// counter.
func TestCrashKillAtEveryWritePoint(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: runs a subprocess")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "crash.db")
	var committed uint64
	for round := 1; round <= 40; round++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		// Let the child commit `round` more transactions (round 1 kills
		// right after its first commit), then kill it while it is writing
		// the next one.
		for seen := 0; seen < round && sc.Scan(); seen++ {
			n, err := strconv.ParseUint(sc.Text(), 10, 64)
			require.NoError(t, err, "child said %q", sc.Text())
			committed = n
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()

		db, err := Open(path, Options{})
		require.NoError(t, err, "round %d: the file opens after kill -9", round)
		require.NoError(t, db.View(func(tx *Tx) error {
			a, okA := tx.Get("c", "a")
			b, okB := tx.Get("c", "b")
			require.True(t, okA && okB, "round %d: counters present", round)
			na, nb := binary.BigEndian.Uint64(a), binary.BigEndian.Uint64(b)
			require.Equal(t, na, nb, "round %d: a transaction was half applied", round)
			require.GreaterOrEqual(t, na, committed, "round %d: a committed transaction was lost", round)
			big, ok := tx.Get("big", strconv.FormatUint(na%8, 10))
			require.True(t, ok)
			require.Equal(t, bigValue(na), big, "round %d: torn value", round)
			return nil
		}))
		require.NoError(t, db.Close())
	}
}
