// Command currentsgen writes a deterministic stream of realistic Braze
// Currents events, for load tests and benchmarks (see package currentsgen).
//
// Usage:
//
//	go run ./plugins/currentsgen/cmd/currentsgen -n 100000 -devices 10000 -o events.jsonl
//
// Flags select the number of events, the device and user populations, the
// seed and the shape: "http" (one HTTP connector event per line, the
// default), "flat" (one storage-shaped event per line) or "body" (one
// {"events":[...]} request body of -batch events per line), or "avro"
// (Avro object container files, one per event type, in the storage layout
// under the folder -o, with block codec -codec).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/opencurrents/currents-amplitude/plugins/currentsgen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "currentsgen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("currentsgen", flag.ContinueOnError)
	var (
		cfg   currentsgen.Config
		n     = fs.Int("n", 100000, "number of events")
		shape = fs.String("shape", "http", `"http", "flat", "body" or "avro"`)
		codec = fs.String("codec", "null", `Avro block codec with -shape avro: "null", "deflate" or "snappy"`)
		batch = fs.Int("batch", 100, `events per request body with -shape body`)
		out   = fs.String("o", "", "output file (default stdout)")
	)
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	fs.IntVar(&cfg.Devices, "devices", 10000, "distinct devices")
	fs.IntVar(&cfg.Users, "users", 0, "distinct users (default two thirds of -devices)")
	fs.IntVar(&cfg.AnonymousPercent, "anonymous", 0, "percent of anonymous users (default 15, negative for none)")
	fs.IntVar(&cfg.EventsPerSecond, "rate", 0, "events per second of event time (default 1000)")
	fs.Float64Var(&cfg.Skew, "skew", 0, "Zipf exponent (> 1) for hot devices; 0 draws devices uniformly")
	if err := fs.Parse(args); err != nil {
		return err
	}
	g := currentsgen.New(cfg)
	if *shape == "avro" {
		if *out == "" {
			return fmt.Errorf("-shape avro needs -o <folder>")
		}
		_, err := currentsgen.WriteAvro(*out, g, *n, currentsgen.AvroOptions{Codec: *codec})
		return err
	}
	w := stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	switch *shape {
	case "http":
		return g.WriteLines(w, *n, currentsgen.HTTP)
	case "flat":
		return g.WriteLines(w, *n, currentsgen.Flat)
	case "body":
		if *batch <= 0 {
			return fmt.Errorf("-batch must be positive, got %d", *batch)
		}
		bw := bufio.NewWriterSize(w, 1<<20)
		var buf []byte
		for left := *n; left > 0; left -= *batch {
			buf = append(g.AppendBody(buf[:0], min(left, *batch)), '\n')
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
		return bw.Flush()
	default:
		return fmt.Errorf("unknown -shape %q: want http, flat, body or avro", *shape)
	}
}
