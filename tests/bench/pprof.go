package bench

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Shares of a CPU profile by owner, generated from the pprof file rather
// than counted by hand: every sample goes to exactly one share.
//
//   - GC: background marking (a runtime.gcBgMarkWorker frame);
//   - JSON: the first non-runtime frame from the leaf is gjson or one of our
//     JSON packages (jsonw, jsonlimit), whoever called it;
//   - ours, Benthos: the first frame from the leaf that belongs to this
//     module or to Benthos (so Benthos' message calls from our code count as
//     Benthos, and our code run by Benthos as ours);
//   - the rest: net/http, syscalls, the scheduler.
//
// Alloc is not a share of its own: the samples under runtime.mallocgc,
// whoever they count for.
type Shares struct {
	GC, JSON, Ours, Benthos, Rest, Alloc float64
}

// ProfileShares reads CPU profiles (pprof protobuf, gzip-compressed as
// runtime/pprof writes them) and returns their merged shares.
func ProfileShares(paths ...string) (Shares, error) {
	var sum [6]int64 // GC, JSON, Ours, Benthos, Rest, Alloc
	var total int64
	for _, path := range paths {
		p, err := readProfile(path)
		if err != nil {
			return Shares{}, fmt.Errorf("%s: %w", path, err)
		}
		for _, s := range p.samples {
			total += s.value
			frames := p.frames(s.locs)
			sum[classify(frames)] += s.value
			for _, f := range frames {
				if f == "runtime.mallocgc" {
					sum[5] += s.value
					break
				}
			}
		}
	}
	if total == 0 {
		return Shares{}, errors.New("no samples")
	}
	f := func(i int) float64 { return float64(sum[i]) / float64(total) }
	return Shares{GC: f(0), JSON: f(1), Ours: f(2), Benthos: f(3), Rest: f(4), Alloc: f(5)}, nil
}

const (
	modulePrefix  = "github.com/opencurrents/currents-amplitude/"
	benthosPrefix = "github.com/redpanda-data/benthos/"
)

// classify returns the share index of a stack (leaf first).
func classify(frames []string) int {
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.gcBgMarkWorker") {
			return 0
		}
	}
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "internal/runtime/") || strings.HasPrefix(f, "_") || !strings.Contains(f, ".") {
			continue // the runtime, and the race detector's C frames (__tsan_read, racecall)
		}
		if strings.HasPrefix(f, "github.com/tidwall/") || strings.HasPrefix(f, modulePrefix+"plugins/internal/jsonw.") ||
			strings.HasPrefix(f, modulePrefix+"plugins/internal/jsonlimit.") || strings.HasPrefix(f, modulePrefix+"plugins/internal/jsonscan.") {
			return 1
		}
		break
	}
	for _, f := range frames {
		switch {
		case strings.HasPrefix(f, modulePrefix) && !strings.HasPrefix(f, modulePrefix+"tests/"):
			return 2
		case strings.HasPrefix(f, benthosPrefix):
			return 3
		}
	}
	return 4
}

// SharesMarkdown renders the shares of each named profile set as a table.
func SharesMarkdown(names []string, shares []Shares) string {
	var b strings.Builder
	b.WriteString("| scenario | our code | JSON (gjson, jsonscan, jsonw, jsonlimit) | Benthos core | GC (background) | net/http, syscalls, runtime | allocation (inside the others) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	pc := func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
	for i, s := range shares {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", names[i], pc(s.Ours), pc(s.JSON), pc(s.Benthos), pc(s.GC), pc(s.Rest), pc(s.Alloc))
	}
	return b.String()
}

// profile is the part of a pprof profile the shares need.
type profile struct {
	samples   []sample
	locations map[uint64][]uint64 // location id -> function ids, innermost first
	functions map[uint64]int64    // function id -> name (string table index)
	strings   []string
}

type sample struct {
	locs  []uint64
	value int64 // the last value: CPU nanoseconds
}

// frames returns the function names of a stack, leaf first.
func (p *profile) frames(locs []uint64) []string {
	var out []string
	for _, l := range locs {
		for _, fn := range p.locations[l] {
			if i := p.functions[fn]; i >= 0 && int(i) < len(p.strings) {
				out = append(out, p.strings[i])
			}
		}
	}
	return out
}

func readProfile(path string) (*profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	p := &profile{locations: map[uint64][]uint64{}, functions: map[uint64]int64{}}
	err = protoFields(raw, func(field int, v uint64, b []byte) error {
		switch field {
		case 2: // sample
			var s sample
			err := protoFields(b, func(field int, v uint64, b []byte) error {
				switch field {
				case 1:
					s.locs = append(s.locs, packedOr(b, v)...)
				case 2:
					if vals := packedOr(b, v); len(vals) > 0 {
						s.value = int64(vals[len(vals)-1])
					}
				}
				return nil
			})
			p.samples = append(p.samples, s)
			return err
		case 4: // location
			var id uint64
			var fns []uint64
			err := protoFields(b, func(field int, v uint64, b []byte) error {
				switch field {
				case 1:
					id = v
				case 4: // line
					return protoFields(b, func(field int, v uint64, _ []byte) error {
						if field == 1 {
							fns = append(fns, v)
						}
						return nil
					})
				}
				return nil
			})
			p.locations[id] = fns
			return err
		case 5: // function
			var id uint64
			name := int64(-1)
			err := protoFields(b, func(field int, v uint64, _ []byte) error {
				switch field {
				case 1:
					id = v
				case 2:
					name = int64(v)
				}
				return nil
			})
			p.functions[id] = name
			return err
		case 6: // string table
			p.strings = append(p.strings, string(b))
		}
		return nil
	})
	return p, err
}

// protoFields calls f for each field of a protobuf message: v is a varint's
// value, b the bytes of a length-delimited field (nil otherwise).
func protoFields(m []byte, f func(field int, v uint64, b []byte) error) error {
	for len(m) > 0 {
		key, n := binary.Uvarint(m)
		if n <= 0 {
			return errors.New("bad protobuf key")
		}
		m = m[n:]
		field, wire := int(key>>3), key&7
		var v uint64
		var b []byte
		switch wire {
		case 0:
			v, n = binary.Uvarint(m)
			if n <= 0 {
				return errors.New("bad protobuf varint")
			}
			m = m[n:]
		case 1:
			if len(m) < 8 {
				return errors.New("short fixed64")
			}
			m = m[8:]
		case 2:
			l, n := binary.Uvarint(m)
			if n <= 0 || uint64(len(m)-n) < l {
				return errors.New("bad protobuf length")
			}
			b, m = m[n:n+int(l)], m[n+int(l):]
			if b == nil {
				b = []byte{}
			}
		case 5:
			if len(m) < 4 {
				return errors.New("short fixed32")
			}
			m = m[4:]
		default:
			return fmt.Errorf("protobuf wire type %d", wire)
		}
		if err := f(field, v, b); err != nil {
			return err
		}
	}
	return nil
}

// packedOr returns the varints of a packed repeated field, or the one
// unpacked value v when b is nil.
func packedOr(b []byte, v uint64) []uint64 {
	if b == nil {
		return []uint64{v}
	}
	var out []uint64
	for len(b) > 0 {
		x, n := binary.Uvarint(b)
		if n <= 0 {
			break
		}
		out = append(out, x)
		b = b[n:]
	}
	return out
}
