// Package balancer decides who should hold which VIP, and owns the dynamic
// mode. Its core is pure: VRID allocation (vips.go), the deterministic
// balanced ranking of nodes per VIP and the VRRP priorities that express it
// (rank.go), and Decide, the controller's logic as a function
// (controller.go). Dynamic (dynamic.go) owns membership, health checks, the
// Kubernetes watch and the controller, which is the only writer of this
// node's member metadata; its Stop performs the hand-over order. Static
// (static.go) runs the static mode's checks with keepalived's track_script
// semantics (FAULT, weights); Notifier (notify.go) runs the notify hooks
// outside the VRRP loop. VRRP, not
// the balancer, then arbitrates: the balancer only sets priorities and
// admission, so failover never waits on it.
//
// Imports: gossip, gossip/kube and vrrp (downwards); cmd imports it.
package balancer
