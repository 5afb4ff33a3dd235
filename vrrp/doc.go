// Package vrrp is garpd's data plane: a VRRP implementation (RFC 5798 VRRPv3
// over IPv4 and IPv6, RFC 3768 VRRPv2 over IPv4) that is wire-compatible with
// keepalived and FRR.
//
// It is split the way the protocol is: a pure packet codec (packet.go), a
// pure per-virtual-router state machine driven by explicit times
// (machine.go), an engine that owns all machines of one interface from one
// goroutine (engine.go), and the operating-system side behind small
// interfaces with Linux implementations (transport.go for the raw sockets,
// kernel.go for VIPs, gratuitous ARP and neighbour advertisements, vmac.go
// for the virtual MAC interfaces of use_vmac). Tests
// replace the interfaces with fakes and the clock with a fake clock.
//
// VRRP alone decides who is master. Higher layers (the balancer) only choose
// the priorities.
package vrrp
