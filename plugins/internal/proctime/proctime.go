// Package proctime reads what this process has used so far (CPU time, peak
// resident memory), for benchmarks and scale tests: on a shared, loaded
// machine CPU time measures work better than the wall clock does. On
// platforms without getrusage the figures are 0.
package proctime
