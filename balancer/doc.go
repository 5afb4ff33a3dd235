// Package balancer decides who should hold which VIP, and owns the dynamic
// mode. Its core is pure: VRID allocation (vips.go), the deterministic
// balanced ranking of nodes per VIP and the VRRP priorities that express it
// (rank.go), and Decide, the controller's logic as a function
// (controller.go). Dynamic (dynamic.go) owns membership, the health
// checks' verdict, the Kubernetes watch and the controller, which is the
// only writer of this node's member metadata; its Stop performs the
// hand-over order. StaticRouters (static.go) turns the allocation and the
// configured priorities into the static mode's routers. VRRP, not the
// balancer, then arbitrates: the balancer only sets priorities and
// admission, so failover never waits on it. The checks, keepalived's
// track_script semantics and the notify hooks are in balancer/health.
//
// Imports: balancer/health, gossip, gossip/kube and vrrp (downwards); cmd
// imports it.
package balancer
