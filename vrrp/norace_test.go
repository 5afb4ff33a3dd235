//go:build !race

package vrrp

const raceEnabled = false
