// Package lab builds garpd's network-namespace lab: a "router" namespace
// holding a bridge with an address (arp_accept=1, accept_untracked_na=1, so
// it learns IP→MAC from gratuitous ARP and unsolicited NA like a real
// router), and one namespace per node plugged into that bridge, each able to
// run the real garpd binary or keepalived.
//
// Every link and address lives inside namespaces the lab created; the root
// namespace only gains the namespaces themselves. Addresses come from
// 192.0.2.0/24 and 2001:db8::/64. Names carry the creating process's PID, so
// parallel runs never collide and a later run can sweep labs whose creator
// died without cleaning up.
package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Addresses of the lab segment.
var (
	RouterV4 = netip.MustParseAddr("192.0.2.1")
	RouterV6 = netip.MustParseAddr("2001:db8::1")
)

const nsPrefix = "garpdlab"

// Lab is one running lab. Close removes everything it created.
type Lab struct {
	ID     string // unique per run, part of every namespace name
	Router string // the router namespace
	Dir    string // configs and logs
	Nodes  []*Node

	mu       sync.Mutex
	procs    []*Proc
	cleanups []func() error // run after the namespaces are gone, last first
	closed   bool
}

// Node is one namespace on the lab segment.
type Node struct {
	Name string
	NS   string
	IPv4 netip.Addr
	IPv6 netip.Addr
	MAC  net.HardwareAddr
	// Second is the node's eth1 on the second segment (Lab.AddSegment);
	// nil without one.
	Second *Port
	lab    *Lab
	idx    int
}

// Available reports why the lab cannot run here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("the namespace lab needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the namespace lab needs iproute2's ip command (apt-get install iproute2)")
	}
	return nil
}

func run(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// New creates a lab with n nodes named n1..nN. dir holds configs and logs.
func New(n int, dir string) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	SweepStale()
	rb := make([]byte, 3)
	rand.Read(rb)
	l := &Lab{ID: fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(rb)), Dir: dir}
	l.Router = l.nsName("r")
	if err := l.setupRouter(); err != nil {
		l.Close()
		return nil, err
	}
	for i := 1; i <= n; i++ {
		if _, err := l.AddNode(fmt.Sprintf("n%d", i)); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

func (l *Lab) nsName(suffix string) string { return nsPrefix + "-" + l.ID + "-" + suffix }

func sysctls(ns string, kv ...string) error {
	args := []string{"ip", "netns", "exec", ns, "sysctl", "-qw"}
	return run(append(args, kv...)...)
}

func (l *Lab) setupRouter() error {
	r := l.Router
	steps := [][]string{
		{"ip", "netns", "add", r},
		{"ip", "-n", r, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	if err := sysctls(r,
		"net.ipv4.conf.all.arp_accept=1", "net.ipv4.conf.default.arp_accept=1",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.accept_untracked_na=1", "net.ipv6.conf.default.accept_untracked_na=1",
		"net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.forwarding=1", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	steps = [][]string{
		{"ip", "-n", r, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "stp_state", "0", "forward_delay", "0"},
		{"ip", "-n", r, "link", "set", "br0", "up"},
		{"ip", "-n", r, "addr", "add", RouterV4.String() + "/24", "dev", "br0"},
		{"ip", "-n", r, "addr", "add", RouterV6.String() + "/64", "dev", "br0", "nodad"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	if err := sysctls(r, "net.ipv4.conf.br0.arp_accept=1", "net.ipv6.conf.br0.accept_untracked_na=1"); err != nil {
		return err
	}
	// The bridge is the segment's switch: what it forwards skips netfilter.
	// Hosts that run containers load br_netfilter, which otherwise passes
	// every bridged frame through this namespace's iptables hooks; on veth
	// that work runs in the sending node's system call, a fifth of a
	// master's measured CPU at 510 virtual routers.
	if _, err := os.Stat("/proc/sys/net/bridge"); err == nil {
		return sysctls(r, "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0",
			"net.bridge.bridge-nf-call-arptables=0")
	}
	return nil
}

// AddNode adds a namespace named name with eth0 on the lab bridge.
func (l *Lab) AddNode(name string) (*Node, error) {
	i := len(l.Nodes) + 1
	n := &Node{
		Name: name, NS: l.nsName(name), lab: l, idx: i,
		IPv4: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}),
		IPv6: netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", 0x10+i)),
		MAC:  net.HardwareAddr{0x02, 0x67, 0x61, 0x72, 0x70, byte(i)},
	}
	port := "p" + strconv.Itoa(i)
	steps := [][]string{
		{"ip", "netns", "add", n.NS},
		{"ip", "-n", n.NS, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return nil, err
		}
	}
	if err := sysctls(n.NS, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		return nil, err
	}
	// Created from inside the router namespace, so no link ever exists in
	// the root namespace.
	steps = [][]string{
		{"ip", "-n", l.Router, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.NS},
		{"ip", "-n", l.Router, "link", "set", port, "master", "br0"},
		{"ip", "-n", l.Router, "link", "set", port, "up"},
		{"ip", "-n", n.NS, "link", "set", "eth0", "address", n.MAC.String()},
		{"ip", "-n", n.NS, "addr", "add", n.IPv4.String() + "/24", "dev", "eth0"},
		{"ip", "-n", n.NS, "addr", "add", n.IPv6.String() + "/64", "dev", "eth0", "nodad"},
		{"ip", "-n", n.NS, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return nil, err
		}
	}
	l.Nodes = append(l.Nodes, n)
	return n, nil
}

// Node returns the node called name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NodeByMAC returns the node owning mac (on either segment), or nil.
func (l *Lab) NodeByMAC(mac string) *Node {
	for _, n := range l.Nodes {
		if strings.EqualFold(n.MAC.String(), mac) || (n.Second != nil && strings.EqualFold(n.Second.MAC.String(), mac)) {
			return n
		}
	}
	return nil
}

// Port is a node's interface on the second segment.
type Port struct {
	Name string // eth1
	IPv4 netip.Addr
	IPv6 netip.Addr
	MAC  net.HardwareAddr
}

// Second segment addresses: the router's, on br1.
var (
	RouterV4Second = netip.MustParseAddr("198.51.100.1")
	RouterV6Second = netip.MustParseAddr("2001:db8:1::1")
)

// AddSegment adds a second L2 segment: a bridge br1 in the router
// namespace (198.51.100.1/24, 2001:db8:1::1/64, learning from gratuitous
// ARP like br0) and an eth1 on every node, so an agent can run on two
// interfaces. Neighbours then reads both bridges.
func (l *Lab) AddSegment() error {
	r := l.Router
	steps := [][]string{
		{"ip", "-n", r, "link", "add", "br1", "type", "bridge", "mcast_snooping", "0", "stp_state", "0", "forward_delay", "0"},
		{"ip", "-n", r, "link", "set", "br1", "up"},
		{"ip", "-n", r, "addr", "add", RouterV4Second.String() + "/24", "dev", "br1"},
		{"ip", "-n", r, "addr", "add", RouterV6Second.String() + "/64", "dev", "br1", "nodad"},
	}
	for _, n := range l.Nodes {
		n.Second = &Port{Name: "eth1",
			IPv4: netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + n.idx)}),
			IPv6: netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", 0x10+n.idx)),
			MAC:  net.HardwareAddr{0x02, 0x67, 0x61, 0x72, 0x71, byte(n.idx)},
		}
		port := "q" + strconv.Itoa(n.idx)
		steps = append(steps,
			[]string{"ip", "-n", r, "link", "add", port, "type", "veth", "peer", "name", "eth1", "netns", n.NS},
			[]string{"ip", "-n", r, "link", "set", port, "master", "br1"},
			[]string{"ip", "-n", r, "link", "set", port, "up"},
			[]string{"ip", "-n", n.NS, "link", "set", "eth1", "address", n.Second.MAC.String()},
			[]string{"ip", "-n", n.NS, "addr", "add", n.Second.IPv4.String() + "/24", "dev", "eth1"},
			[]string{"ip", "-n", n.NS, "addr", "add", n.Second.IPv6.String() + "/64", "dev", "eth1", "nodad"},
			[]string{"ip", "-n", n.NS, "link", "set", "eth1", "up"})
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	return sysctls(r, "net.ipv4.conf.br1.arp_accept=1", "net.ipv6.conf.br1.accept_untracked_na=1")
}

// Exec runs a short command inside ns and returns its combined output.
func Exec(ns string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	full := append([]string{"netns", "exec", ns}, args...)
	out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", ns, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Proc is a long-running process in a lab namespace.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // path of the combined stdout/stderr
	done chan struct{}
	err  error
}

// Start runs args inside ns, logging to Dir/name.log. `ip netns exec`
// execs in place, so the Proc's PID is the program's own.
func (l *Lab) Start(ns, name string, args ...string) (*Proc, error) {
	p, err := l.StartCommand(name, append([]string{"ip", "netns", "exec", ns}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", ns, err)
	}
	return p, nil
}

// StartCommand runs argv as it is (it enters any namespace itself), logging
// to Dir/name.log, and stops it when the lab closes.
func (l *Lab) StartCommand(name string, argv ...string) (*Proc, error) {
	logPath := filepath.Join(l.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	// Die with the test process even if it is killed before cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Cmd.Process == nil {
		return errors.New("not started")
	}
	return p.Cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the process to exit and returns its exit code.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		if p.Cmd.ProcessState != nil {
			return p.Cmd.ProcessState.ExitCode(), nil
		}
		return -1, p.err
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns what the process has logged so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Stop sends SIGTERM, then SIGKILL if the process has not ended in 3 s.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	p.Signal(syscall.SIGTERM)
	if _, err := p.Wait(3 * time.Second); err != nil {
		p.Signal(syscall.SIGKILL)
		p.Wait(2 * time.Second)
	}
}

// Close stops every process and deletes every namespace of the lab.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := l.procs
	l.mu.Unlock()
	for _, p := range procs {
		p.Stop()
	}
	var errs []error
	for _, n := range l.Nodes {
		errs = append(errs, deleteNS(n.NS))
	}
	errs = append(errs, deleteNS(l.Router))
	for i := len(l.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, l.cleanups[i]())
	}
	return errors.Join(errs...)
}

// OnClose registers f to run when the lab closes, after its processes and
// namespaces are gone: for what lives outside the namespaces (cgroups).
func (l *Lab) OnClose(f func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, f)
}

func deleteNS(ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
		return nil
	}
	// Anything still running inside (a forked keepalived child) goes first.
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return run("ip", "netns", "del", ns)
}

// SweepStale deletes lab namespaces whose creating process no longer runs,
// left behind by a run that was killed before it could clean up.
func SweepStale() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, nsPrefix+"-") {
			continue
		}
		rest := strings.TrimPrefix(name, nsPrefix+"-")
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // its creator is alive
		}
		deleteNS(name)
	}
}

// routerHandle opens a netlink handle inside the router namespace.
func (l *Lab) routerHandle() (*netlink.Handle, netns.NsHandle, error) { return nsHandle(l.Router) }

// nsHandle opens a netlink handle inside the named namespace.
func nsHandle(name string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, 0, fmt.Errorf("open namespace %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, 0, fmt.Errorf("netlink in %s: %w", name, err)
	}
	return h, ns, nil
}

// Neighbours returns the router's neighbour table on the lab bridges: VIP
// address → MAC, only for entries that hold a MAC. This is "where does the
// router send traffic for this address".
func (l *Lab) Neighbours() (map[netip.Addr]string, error) {
	h, ns, err := l.routerHandle()
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	defer h.Close()
	out := map[netip.Addr]string{}
	for _, name := range []string{"br0", "br1"} {
		br, err := h.LinkByName(name)
		if name == "br1" && err != nil {
			break // no second segment
		}
		if err != nil {
			return nil, err
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			neighs, err := h.NeighList(br.Attrs().Index, fam)
			if err != nil {
				return nil, err
			}
			for _, n := range neighs {
				if len(n.HardwareAddr) == 0 || n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) != 0 {
					continue
				}
				if a, ok := netip.AddrFromSlice(n.IP); ok {
					out[a.Unmap()] = n.HardwareAddr.String()
				}
			}
		}
	}
	return out, nil
}

// BehaveLikeHardware makes the router behave as the routers garpd's users
// run do: its ARP input is policed at rate packets a second with a burst
// of burst (nftables' arp family, as a switch's control-plane policer), and
// its neighbour entries are kept for an hour without re-probing, so an
// entry a dropped announcement left wrong stays wrong until something
// fixes it (a Cisco keeps them for 4 h).
func (l *Lab) BehaveLikeHardware(rate, burst int) error {
	if err := sysctls(l.Router, "net.ipv4.neigh.br0.base_reachable_time_ms=3600000", "net.ipv4.neigh.br0.gc_stale_time=3600",
		"net.ipv6.neigh.br0.base_reachable_time_ms=3600000", "net.ipv6.neigh.br0.gc_stale_time=3600"); err != nil {
		return err
	}
	rule := fmt.Sprintf("table arp lab_police { chain input { type filter hook input priority 0; policy accept; limit rate over %d/second burst %d packets counter drop; }; }", rate, burst)
	return run("ip", "netns", "exec", l.Router, "nft", rule)
}

// PolicedDrops is how many ARP packets the router's policer dropped.
func (l *Lab) PolicedDrops() (int, error) {
	out, err := Exec(l.Router, "nft", "list", "chain", "arp", "lab_police", "input")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out[strings.Index(out, "counter")+len("counter"):])
	if len(f) < 2 || f[0] != "packets" {
		return 0, fmt.Errorf("no counter in %q", out)
	}
	return strconv.Atoi(f[1])
}

// SetNeighbour overwrites the router's entry for addr, as a stale or
// poisoned ARP cache would hold it.
func (l *Lab) SetNeighbour(addr netip.Addr, mac string) error {
	_, err := Exec(l.Router, "ip", "neigh", "replace", addr.String(), "lladdr", mac, "dev", "br0", "nud", "stale")
	return err
}

// NeighEvent is one change of the router's neighbour table.
type NeighEvent struct {
	At   time.Time
	Addr netip.Addr
	MAC  string
}

// WatchNeighbours streams router neighbour changes until ctx ends. Times are
// taken when netlink delivers the change, which is what failover is
// measured against.
func (l *Lab) WatchNeighbours(ctx context.Context) (<-chan NeighEvent, error) {
	ns, err := netns.GetFromName(l.Router)
	if err != nil {
		return nil, err
	}
	updates := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	// A large buffer: on a busy machine the reader may lag, and an
	// overrun socket ends the subscription.
	err = netlink.NeighSubscribeWithOptions(updates, done, netlink.NeighSubscribeOptions{Namespace: &ns,
		ReceiveBufferSize: 4 << 20, ReceiveBufferForceSize: true, ErrorCallback: func(error) {}})
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("watch neighbours in %s: %w", l.Router, err)
	}
	out := make(chan NeighEvent, 256)
	go func() {
		defer ns.Close()
		defer close(out)
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				if u.Type != syscall.RTM_NEWNEIGH || len(u.HardwareAddr) == 0 {
					continue
				}
				a, ok := netip.AddrFromSlice(u.IP)
				if !ok {
					continue
				}
				select {
				case out <- NeighEvent{At: time.Now(), Addr: a.Unmap(), MAC: u.HardwareAddr.String()}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// LinkDown takes the node's eth0 down (a cut cable, from the node's side).
func (n *Node) LinkDown() error {
	return run("ip", "-n", n.NS, "link", "set", "eth0", "down")
}

// DropIPv4 removes the node's IPv4 address from eth0: an IPv6-only node.
func (n *Node) DropIPv4() error {
	return run("ip", "-n", n.NS, "addr", "del", n.IPv4.String()+"/24", "dev", "eth0")
}

// LinkUp brings the node's eth0 back.
func (n *Node) LinkUp() error {
	return run("ip", "-n", n.NS, "link", "set", "eth0", "up")
}

// Netem adds packet loss (percent) on the node's eth0; 0 removes it.
func (n *Node) Netem(lossPercent float64) error {
	if lossPercent <= 0 {
		return run("ip", "netns", "exec", n.NS, "tc", "qdisc", "del", "dev", "eth0", "root")
	}
	return run("ip", "netns", "exec", n.NS, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
		"loss", strconv.FormatFloat(lossPercent, 'f', -1, 64)+"%")
}

// Addresses lists the node's addresses on eth0.
func (n *Node) Addresses() ([]netip.Addr, error) { return n.AddressesOn("eth0") }

// AddressesOn lists the node's addresses on dev (a virtual MAC interface).
func (n *Node) AddressesOn(dev string) ([]netip.Addr, error) {
	// Over netlink, not `ip addr`: no process to start, which a machine
	// busy with thousands of adverts a second can delay for seconds.
	h, ns, err := nsHandle(n.NS)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	defer h.Close()
	link, err := h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", dev, n.NS, err)
	}
	list, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list the addresses of %s in %s: %w", dev, n.NS, err)
	}
	addrs := make([]netip.Addr, 0, len(list))
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			addrs = append(addrs, ip.Unmap())
		}
	}
	return addrs, nil
}

// SourceFor is the source address the node's kernel picks for its own
// traffic to dst (the netlink query of `ip route get`); the zero Addr when
// it has no route.
func (n *Node) SourceFor(dst netip.Addr) (netip.Addr, error) {
	h, ns, err := nsHandle(n.NS)
	if err != nil {
		return netip.Addr{}, err
	}
	defer ns.Close()
	defer h.Close()
	routes, err := h.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, nil // unreachable: no source at all
	}
	src, _ := netip.AddrFromSlice(routes[0].Src)
	return src.Unmap(), nil
}

// Replug does to the node's own addresses on dev what a cable re-plug, a
// DHCP renewal or a network manager re-applying its profile does: removes
// them, waits gap, and adds them back.
func (n *Node) Replug(dev string, gap time.Duration) error {
	v4, v6 := n.IPv4, n.IPv6
	if dev != "eth0" {
		v4, v6 = n.Second.IPv4, n.Second.IPv6
	}
	steps := [][]string{
		{"ip", "-n", n.NS, "addr", "del", v4.String() + "/24", "dev", dev},
		{"ip", "-n", n.NS, "addr", "del", v6.String() + "/64", "dev", dev},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	time.Sleep(gap)
	steps = [][]string{
		{"ip", "-n", n.NS, "addr", "add", v4.String() + "/24", "dev", dev},
		{"ip", "-n", n.NS, "addr", "add", v6.String() + "/64", "dev", dev, "nodad"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	return nil
}

// HasAddress reports whether the node has addr on eth0.
func (n *Node) HasAddress(addr netip.Addr) bool {
	as, err := n.Addresses()
	if err != nil {
		return false
	}
	for _, a := range as {
		if a == addr {
			return true
		}
	}
	return false
}

// Links lists the names of the node's interfaces.
func (n *Node) Links() ([]string, error) {
	out, err := Exec(n.NS, "ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// "3: vrrp.10@eth0: <...": the name ends at '@' or ':'.
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names, nil
}

// BridgePort returns the node on whose port the lab's switch (the bridge)
// has learnt mac, or nil when it has not learnt it.
func (l *Lab) BridgePort(mac string) (*Node, error) {
	out, err := Exec(l.Router, "bridge", "fdb", "show", "br", "br0")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		// "00:00:5e:00:01:0a dev p2 master br0"
		f := strings.Fields(line)
		if len(f) < 3 || !strings.EqualFold(f[0], mac) || f[1] != "dev" || !strings.HasPrefix(f[2], "p") {
			continue
		}
		i, err := strconv.Atoi(f[2][1:])
		if err != nil {
			continue
		}
		for _, n := range l.Nodes {
			if n.idx == i {
				return n, nil
			}
		}
	}
	return nil, nil
}

// Firewall loads an nftables ruleset (nft -f syntax) into the node's
// namespace, e.g. to block gossip or drop multicast; it is gone with the
// namespace.
func (n *Node) Firewall(ruleset string) error {
	path := filepath.Join(n.lab.Dir, n.Name+"-nft.conf")
	if err := os.WriteFile(path, []byte(ruleset), 0o644); err != nil {
		return err
	}
	_, err := Exec(n.NS, "nft", "-f", path)
	return err
}

// MoveCounter counts, per address, how often the router's neighbour entry
// changed MAC: the moves a failover, a return or a re-plan caused.
type MoveCounter struct {
	lab   *Lab
	mu    sync.Mutex
	last  map[netip.Addr]string
	moves map[netip.Addr]int
	seen  map[netip.Addr][]string // every MAC each address had, in order
}

// CountMoves counts moves from now until ctx ends. A watch that ends (an
// overrun netlink socket on a busy machine) is resubscribed, and a fresh
// dump is compared with what was last seen, so no move goes uncounted.
func (l *Lab) CountMoves(ctx context.Context) (*MoveCounter, error) {
	first, err := l.Neighbours()
	if err != nil {
		return nil, err
	}
	c := &MoveCounter{lab: l, last: first, moves: map[netip.Addr]int{}, seen: map[netip.Addr][]string{}}
	for a, mac := range first {
		c.seen[a] = []string{mac}
	}
	ev, err := l.WatchNeighbours(ctx)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			// Subscribed first, then the dump: nothing falls in between.
			if now, err := l.Neighbours(); err == nil {
				for a, mac := range now {
					c.see(a, mac)
				}
			}
			for e := range ev {
				c.see(e.Addr, e.MAC)
			}
			for {
				if ctx.Err() != nil {
					return
				}
				if ev, err = l.WatchNeighbours(ctx); err == nil {
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}()
	return c, nil
}

func (c *MoveCounter) see(a netip.Addr, mac string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.last[a]; prev != mac {
		if prev != "" {
			c.moves[a]++
		}
		c.last[a] = mac
		c.seen[a] = append(c.seen[a], mac)
	}
}

// Seen returns every MAC each address had since counting began, in order.
func (c *MoveCounter) Seen() map[netip.Addr][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[netip.Addr][]string{}
	for a, macs := range c.seen {
		out[a] = slices.Clone(macs)
	}
	return out
}

// Snapshot returns the moves counted so far.
func (c *MoveCounter) Snapshot() map[netip.Addr]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.moves)
}

// Reset starts counting from zero, once the counter has seen what the
// router's table holds now (for at most resetCatchUp): the events come
// in behind the table, and on a busy machine a move the test already
// waited for could otherwise be counted after the reset.
func (c *MoveCounter) Reset() {
	for deadline := time.Now().Add(resetCatchUp); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c.caughtUp() {
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.moves = map[netip.Addr]int{}
}

// resetCatchUp bounds how long Reset waits for the counter to catch up.
const resetCatchUp = 5 * time.Second

// caughtUp reports whether the counter's last MAC of every address is
// the router's now.
func (c *MoveCounter) caughtUp() bool {
	now, err := c.lab.Neighbours()
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, mac := range now {
		if c.last[a] != mac {
			return false
		}
	}
	return true
}

// PinNeighbours gives every node permanent neighbour entries for every
// other node's IPv4 address. The kernel's ARP table is one for all
// namespaces, and its limit (gc_thresh3, 1,024 by default) is the host's:
// a full gossip mesh of 32 nodes learns about 1,000 entries, after which
// the router could learn no VIP. Permanent entries do not count against
// it; the router's own entries stay learned, as the tests judge by them.
func (l *Lab) PinNeighbours() error {
	for _, n := range l.Nodes {
		var batch strings.Builder
		for _, o := range l.Nodes {
			if o != n {
				fmt.Fprintf(&batch, "neigh replace %s lladdr %s nud permanent dev eth0\n", o.IPv4, o.MAC)
			}
		}
		cmd := exec.Command("ip", "-n", n.NS, "-batch", "-")
		cmd.Stdin = strings.NewReader(batch.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pin %s's neighbours: %w: %s", n.Name, err, out)
		}
	}
	return nil
}
