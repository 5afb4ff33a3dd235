// Package balancer decides who should hold which VIP. Its core is pure:
// VRID allocation (vips.go), the deterministic balanced ranking of nodes per
// VIP and the VRRP priorities that express it (rank.go). VRRP, not the
// balancer, then arbitrates: the balancer only sets priorities, so failover
// never waits on it.
package balancer
