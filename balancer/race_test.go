//go:build race

package balancer

// raceEnabled: the race detector slows 64 in-process members too much.
const raceEnabled = true
