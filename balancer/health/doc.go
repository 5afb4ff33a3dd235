// Package health is what the node's checks say and what runs when a
// virtual router changes state: the local health checks (HTTP, TCP, exec,
// interface, Kubernetes pod readiness through a PodProber) and the
// command runner they share with the hooks (health.go); keepalived's
// track_script semantics for the static mode, FAULT and weights, and
// Static, which runs the static mode's checks over the data plane
// (static.go); and the notify hooks, run outside the VRRP loop
// (notify.go).
//
// The static mode needs nothing else: it runs without gossip and without
// the dynamic mode, which uses the same Checker for the verdict it
// gossips.
//
// Imports: vrrp (router specs and state changes); balancer and cmd
// import it.
package health
