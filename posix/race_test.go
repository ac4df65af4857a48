//go:build race

package posix_test

// raceEnabled: the race detector allocates on its own, so allocation
// counts of paths that reach gVisor are not checked under it.
const raceEnabled = true
