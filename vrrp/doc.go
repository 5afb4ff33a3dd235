// Package vrrp is garpd's data plane: a VRRP implementation (RFC 5798 VRRPv3
// over IPv4 and IPv6, RFC 3768 VRRPv2 over IPv4) that is wire-compatible with
// keepalived and FRR, and the announcing that keeps the router's ARP table on
// the master.
//
// Files follow the wire and one concern each:
//   - packet.go: the pure codec; hmac.go: keepalived's auth_hmac trailer;
//     vip.go: what a VIP may be; machine.go: the pure RFC 5798 state
//     machine, driven by explicit times, with the claim a backup makes
//     before it takes the VIPs of a master gone silent;
//   - engine.go: the loop that owns every machine of one interface, its tick
//     and the actions; send.go: adverts queued by a tick and sent in one
//     batch per socket; receive.go: the §7.1 checks of a received advert;
//     admission.go: which speakers count (the dynamic mode's members);
//     announce.go: the takeover burst, re-assertions, the rolling refresh and
//     waves; schedule.go: the refresh phase and cron waves; defend.go:
//     answering other MACs' gratuitous ARPs; hold.go: the VIPs on the
//     interface; update.go: commands that change the routers (and FAULT);
//     status.go; notify.go: the state changes the notify hooks hear;
//     seams.go: the engine's interfaces to the world; metrics.go: the
//     Prometheus collectors, series.go: the per-router and per-VIP series
//     (a map entry and a word each, exported at scrape time);
//   - stack.go: Stack, the one owner of an interface's data plane (start and
//     teardown order, link events, in-place GARP changes); stacks.go:
//     Stacks, an agent's Stacks over several interfaces driven as one;
//     dev.go: VIPs held and announced on another interface than their
//     router's;
//   - the host behind small interfaces with Linux implementations:
//     transport.go (raw VRRP sockets), addresses.go (netlink), announcer.go,
//     arp.go and ndp.go (gratuitous ARP, unsolicited NA), vmac.go (use_vmac),
//     linkwatch.go, pacer.go (the per-interface rate cap).
//
// Tests replace the interfaces with fakes and the clock with a fake clock.
//
// Imports: none of garpd's packages. The layers above (balancer, cmd) set
// priorities and admission through the engine's commands; VRRP alone decides
// who is master. Subpackage keepalived reads and writes keepalived's
// configuration.
package vrrp
