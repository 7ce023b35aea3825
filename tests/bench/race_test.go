//go:build race

package bench

// raceEnabled is set when the test binary is built with -race, whose
// numbers would be meaningless.
const raceEnabled = true
