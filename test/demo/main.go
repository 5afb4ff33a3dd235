// Command demo shows garpd's main job on the built-in lab: three nodes
// share three VIPs, the router's ARP table spreads them over three MACs, an
// owner is killed, and the demo prints how long the router took to follow.
// It needs root (network namespaces) and removes everything it made on exit.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/garpd/garpd/test/lab"
)

var vips = []netip.Addr{
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

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("==> "+format+"\n", a...) }

func run() error {
	if err := lab.Available(); err != nil {
		return fmt.Errorf("%w; run it as: sudo make demo", err)
	}
	dir, err := os.MkdirTemp("", "garpd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("building garpd")
	bin, err := lab.BuildGarpd(dir)
	if err != nil {
		return err
	}
	step("creating the lab: a router namespace with a bridge, and nodes n1, n2, n3 on it")
	l, err := lab.New(3, dir)
	if err != nil {
		return err
	}
	defer func() {
		step("cleaning up: stopping garpd and deleting the lab namespaces")
		if err := l.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	for _, n := range l.Nodes {
		fmt.Printf("    %s  %s  %s\n", n.Name, n.MAC, n.IPv4)
	}
	step("starting garpd on every node (VRRPv3, 100 ms adverts, VIPs %s)", joinAddrs(vips))
	procs := map[string]*lab.Proc{}
	for _, n := range l.Nodes {
		p, err := n.StartGarpd(bin, config(n.Name))
		if err != nil {
			return err
		}
		procs[n.Name] = p
	}
	want := map[netip.Addr]string{}
	for i, v := range vips {
		want[v] = l.Nodes[i].MAC.String()
	}
	if err := waitTable(ctx, l, want, 10*time.Second); err != nil {
		return err
	}
	step("the router's ARP table: every VIP on a different node")
	if err := printTable(l); err != nil {
		return err
	}

	events, err := l.WatchNeighbours(ctx)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	for len(events) > 0 {
		<-events
	}
	step("killing n1 (SIGKILL), the owner of %s; n3 is its backup", vips[0])
	start := time.Now()
	procs["n1"].Signal(syscall.SIGKILL)
	n3 := l.Node("n3").MAC.String()
	timeout := time.After(5 * time.Second)
wait:
	for {
		select {
		case ev := <-events:
			if ev.Addr == vips[0] && ev.MAC == n3 {
				fmt.Printf("    router moved %s to n3 after %s (VRRP master-down interval at 100 ms adverts: 340 ms)\n",
					vips[0], ev.At.Sub(start).Round(time.Millisecond))
				break wait
			}
		case <-timeout:
			return fmt.Errorf("router did not move %s to n3 within 5s", vips[0])
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	step("the router's ARP table after the failover")
	return printTable(l)
}

func config(node string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\ninterface: eth0\nvips:\n", node)
	for _, v := range vips {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	b.WriteString("vrrp:\n  version: 3\n  advert_interval: 100ms\npriorities:\n")
	for i, v := range vips {
		fmt.Fprintf(&b, "  %s: %d\n", v, priorities[node][i])
	}
	return b.String()
}

func waitTable(ctx context.Context, l *lab.Lab, want map[netip.Addr]string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		got, err := l.Neighbours()
		if err != nil {
			return err
		}
		ok := true
		for a, mac := range want {
			ok = ok && got[a] == mac
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("the router's table did not converge within %s", timeout)
}

func printTable(l *lab.Lab) error {
	got, err := l.Neighbours()
	if err != nil {
		return err
	}
	var addrs []netip.Addr
	for a := range got {
		if a.Is4() && strings.HasPrefix(a.String(), "192.0.2.10") {
			addrs = append(addrs, a)
		}
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	fmt.Println("    VIP            MAC                NODE")
	for _, a := range addrs {
		node := "?"
		if n := l.NodeByMAC(got[a]); n != nil {
			node = n.Name
		}
		fmt.Printf("    %-14s %-18s %s\n", a, got[a], node)
	}
	return nil
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
