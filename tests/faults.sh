#!/bin/sh
# The fault suite in long mode: every shipped pipeline of config/, run as
# the real binary against loopback fakes, through the one fault matrix at
# scale (60,000 events per pipeline). See docs/fault-suite.md.
#
#   tests/faults.sh                      # all pipelines
#   tests/faults.sh -run 'TestFaultSuite/replay'
#   FAULT_SUITE_LOGS=1 tests/faults.sh   # print each process's output
#
# Short mode (2,400 events per pipeline) runs with `go test ./tests/`.
set -eu
cd "$(dirname "$0")/.."
FAULT_SUITE=long exec go test -count=1 -timeout 90m -v -run 'TestFaultSuite|TestFaultLive' "$@" ./tests/
