package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/garpd/garpd/test/lab"
)

var vips3 = []netip.Addr{
	netip.MustParseAddr("192.0.2.101"),
	netip.MustParseAddr("192.0.2.102"),
	netip.MustParseAddr("192.0.2.103"),
}

// Each node owns one VIP and backs up the others in a different order.
var priorities = map[string][]int{
	"n1": {200, 150, 50},
	"n2": {50, 200, 150},
	"n3": {150, 50, 200},
}

// runStatic is the static-mode walk-through: each node owns one VIP by
// hand-set priorities; the owner of the first is killed and its backup takes
// over.
func runStatic(ctx context.Context, s *session, _ string) error {
	l, bin := s.lab, s.bin
	step("starting garpd on every node (VRRPv3, 100 ms adverts, VIPs %s)", joinAddrs(vips3))
	procs := map[string]*lab.Proc{}
	for _, n := range l.Nodes {
		p, err := n.StartGarpd(bin, staticConfig(n.Name))
		if err != nil {
			return err
		}
		procs[n.Name] = p
	}
	want := map[netip.Addr]string{}
	for i, v := range vips3 {
		want[v] = l.Nodes[i].MAC.String()
	}
	table, err := waitFor(ctx, l, vips3, 10*time.Second, "one VIP per node", func(_ map[string]int, t map[netip.Addr]string) bool {
		for a, mac := range want {
			if t[a] != mac {
				return false
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	step("the router's ARP table: every VIP on a different node")
	printTable(l, vips3, table)

	events, err := l.WatchNeighbours(ctx)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	for len(events) > 0 {
		<-events
	}
	step("killing n1 (SIGKILL), the owner of %s; n3 is its backup", vips3[0])
	start := time.Now()
	procs["n1"].Signal(syscall.SIGKILL)
	n3 := l.Node("n3").MAC.String()
	timeout := time.After(5 * time.Second)
wait:
	for {
		select {
		case ev := <-events:
			if ev.Addr == vips3[0] && ev.MAC == n3 {
				fmt.Printf("    router moved %s to n3 after %s (VRRP master-down interval at 100 ms adverts: 340 ms)\n",
					vips3[0], ev.At.Sub(start).Round(time.Millisecond))
				break wait
			}
		case <-timeout:
			return fmt.Errorf("router did not move %s to n3 within 5s", vips3[0])
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	step("the router's ARP table after the failover")
	table, err = l.Neighbours()
	if err != nil {
		return err
	}
	printTable(l, vips3, table)
	return nil
}

func staticConfig(node string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\ninterface: eth0\nvips:\n", node)
	for _, v := range vips3 {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	b.WriteString("vrrp:\n  version: 3\n  advert_interval: 100ms\npriorities:\n")
	for i, v := range vips3 {
		fmt.Fprintf(&b, "  %s: %d\n", v, priorities[node][i])
	}
	return b.String()
}
