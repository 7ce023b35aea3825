#!/usr/bin/env bash
# Reproduces the figures of BENCHMARKS.md.
#
#   tests/bench/run.sh [output.md]
#
# 1. TestReport: every scenario on 100,000 generated Currents events over
#    10,000 devices (three rounds; each row is the median run), then the
#    scaling runs (1,000,000 events over 10^4, 10^5
#    and 10^6 devices, then 10^6 again under GOMEMLIMIT=128MiB), each in its
#    own child process so that CPU time and peak RSS are its own. Tables go
#    to the output file (default ./bench-results.md).
# 2. TestLiveReport: the live path (Braze-like HTTP posts, 16 in flight)
#    against the relay floor (http_server -> http_client), three rounds.
# 3. The in-process Go benchmarks (mapping, limiter, Avro decode, end to end).
#
# Environment knobs (see tests/bench/harness_test.go): CURRENTS_BENCH_EVENTS,
# CURRENTS_BENCH_DEVICES (comma-separated; the first is the main stream's),
# CURRENTS_BENCH_SCALE_EVENTS (0 skips scaling), CURRENTS_BENCH_SCALE_PLAIN=1,
# CURRENTS_BENCH_THREADS (pipeline.threads of every run, default one per CPU),
# CURRENTS_BENCH_REPEAT (rounds on the main stream, default 3),
# CURRENTS_BENCH_GROUPS, CURRENTS_BENCH_DATA (cache of generated data),
# CURRENTS_BENCH_PROFILES (folder for one pprof CPU profile per run),
# CURRENTS_BENCH_MEMLIMIT (GOMEMLIMIT of an extra 10^6-device run; "off" skips),
# BENCHTIME (Go benchmarks, default 2s).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:-bench-results.md}")

{
	echo "# Benchmark run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo
	echo "- command: tests/bench/run.sh"
	echo "- CPUs (nproc): $(nproc)"
	echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "- memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
	echo "- $(go version)"
	echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out"

CURRENTS_BENCH_FULL=1 CURRENTS_BENCH_OUT="$out.tables" \
	go test -count=1 -run '^TestReport$' -timeout 60m -v ./tests/bench/
cat "$out.tables" >> "$out"
rm -f "$out.tables"

CURRENTS_BENCH_LIVE=1 CURRENTS_BENCH_OUT="$out.live" \
	go test -count=1 -run '^TestLiveReport$' -timeout 20m -v ./tests/bench/
{
	echo
	echo "## Live path (16 concurrent posts of 100 events, fast fake Amplitude)"
	echo
	cat "$out.live"
} >> "$out"
rm -f "$out.live"

{
	echo
	echo "## Go benchmarks (in process)"
	echo
	echo '```'
	go test -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-2s}" ./tests/bench/ | grep -E '^(Benchmark|cpu|goos|goarch)'
	echo '```'
	echo
	echo "- load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} >> "$out"
echo "wrote $out"
