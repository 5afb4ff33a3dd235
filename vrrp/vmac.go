package vrrp

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VirtualMAC is a virtual router's MAC address (RFC 5798 §7.3):
// 00-00-5E-00-01-{VRID} for IPv4 and 00-00-5E-00-02-{VRID} for IPv6. Every
// master of the router uses it, so the router's neighbour entry for a VIP
// never changes on failover; only the switch learns a new port.
func VirtualMAC(vrid uint8, v6 bool) net.HardwareAddr {
	family := byte(1)
	if v6 {
		family = 2
	}
	return net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, family, vrid}
}

// VMACName is the name of a virtual router's macvlan interface:
// keepalived's vrrp.{VRID} for IPv4, and vrrp6.{VRID} for IPv6 so both
// families of one VRID can be master on one node.
func VMACName(vrid uint8, v6 bool) string {
	if v6 {
		return fmt.Sprintf("vrrp6.%d", vrid)
	}
	return fmt.Sprintf("vrrp.%d", vrid)
}

var vmacNamePattern = regexp.MustCompile(`^vrrp6?\.[0-9]{1,3}$`)

// VirtualMACs is the kernel side of use_vmac: while a node is master of a
// virtual router, the router's VIPs live on a macvlan interface with the
// virtual MAC, and leave with it. Tests use a fake that records calls.
type VirtualMACs interface {
	// Up makes sure the router's virtual MAC interface exists and carries
	// vips; on an interface that exists it adds only what is missing.
	Up(vrid uint8, v6 bool, vips []netip.Prefix) error
	// Down removes the router's virtual MAC interface, and with it its
	// VIPs; removing an absent one is not an error.
	Down(vrid uint8, v6 bool) error
}

// LinuxVMACs is VirtualMACs for a Linux interface, built the way
// keepalived's use_vmac builds it, so the two interoperate: a private-mode
// macvlan named by VMACName, with no addresses of its own but the VIPs (and,
// for IPv6, the base interface's link-local address, deprecated, as the
// source of adverts and neighbour advertisements).
//
// It is also the announcements' Sender: a VIP is announced from the
// interface that holds it, so the gratuitous ARP carries the virtual MAC
// in both the Ethernet and the ARP header. A VIP no virtual MAC holds is
// not announced at all.
type LinuxVMACs struct {
	parent netlink.Link
	base   interface{ Mode() AnnounceMode } // whose mode the virtual MACs' announcements follow
	log    zerolog.Logger

	mu    sync.Mutex
	up    map[routerKey]*vmacLink
	saved []savedSysctl // the base interface's settings, restored on Close
}

type vmacLink struct {
	link netlink.Link
	ann  *LinuxAnnouncer
	vips []netip.Prefix
}

type savedSysctl struct{ path, value, now string }

// NewLinuxVMACs prepares virtual MACs on ifname. It removes virtual MAC
// interfaces an earlier run left on it, and makes the base interface
// answer ARP only for its own addresses (arp_ignore=1, arp_filter=1, as
// keepalived does), so that it never answers for a VIP with its own MAC,
// and relaxes a strict rp_filter (relaxRPFilter); it logs each setting it
// changes, and Close restores them. The engine opens the sockets adverts leave from
// (Transport.OpenVia).
func NewLinuxVMACs(ifname string, base interface{ Mode() AnnounceMode }, log zerolog.Logger) (*LinuxVMACs, error) {
	parent, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	v := &LinuxVMACs{parent: parent, base: base, log: log,
		up: map[routerKey]*vmacLink{}}
	if err := v.removeLeftovers(); err != nil {
		return nil, err
	}
	if err := v.probe(); err != nil {
		return nil, err
	}
	for _, s := range baseSysctls {
		if err := v.setBase(ipv4Conf(ifname, s.key), s.value); err != nil {
			v.restore()
			return nil, fmt.Errorf("use_vmac: %s must not answer ARP for the VIPs on its virtual MACs, nor name them in its own ARP requests: %w "+
				"(set net.ipv4.conf.%s.%s=%s on the host, e.g. in /etc/sysctl.d, or let garpd write /proc/sys)", ifname, err, ifname, s.key, s.value)
		}
	}
	if err := v.relaxRPFilter(); err != nil {
		v.restore()
		return nil, err
	}
	for _, s := range v.saved {
		log.Info().Str("sysctl", s.path).Str("was", s.value).Str("now", s.now).Msg("use_vmac: changed a host setting, restored on exit")
	}
	return v, nil
}

// relaxRPFilter lets traffic for an IPv4 VIP in through its virtual MAC
// interface, although the route back leaves through the base interface.
// The kernel applies the larger of net.ipv4.conf.all.rp_filter and the
// interface's own value, so a strict "all" (1) drops that traffic whatever
// the virtual MAC interface says. As keepalived does, "all" goes to 0, and
// every other interface whose own value is lower takes "all"'s 1, so each
// stays exactly as strict as it was; Close puts both back.
func (v *LinuxVMACs) relaxRPFilter() error {
	all := ipv4Conf("all", "rp_filter")
	b, err := os.ReadFile(all)
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		return nil // 0 or 2 (loose) let the traffic in; no IPv4: nothing to do
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("use_vmac: list interfaces: %w", err)
	}
	hint := " (or set net.ipv4.conf.all.rp_filter=2 on the host: strict reverse-path filtering drops traffic for a VIP that arrives on its virtual MAC interface)"
	for _, l := range links {
		path := ipv4Conf(l.Attrs().Name, "rp_filter")
		cur, err := os.ReadFile(path)
		if v.ours(l) || err != nil || strings.TrimSpace(string(cur)) != "0" {
			continue // no IPv4 on it, or already as strict as "all"
		}
		if err := v.set(path, "1"); err != nil {
			return fmt.Errorf("use_vmac: %w%s", err, hint)
		}
	}
	if err := v.set(all, "0"); err != nil {
		return fmt.Errorf("use_vmac: %w%s", err, hint)
	}
	return nil
}

// baseSysctls keep the base interface's MAC away from the VIPs: it answers
// ARP only for addresses it holds itself (arp_ignore, arp_filter, as
// keepalived sets them), and its ARP requests name its own address, never
// a VIP a reply leaves from (arp_announce), which would teach the router
// the base MAC for the VIP.
var baseSysctls = []struct{ key, value string }{
	{"arp_ignore", "1"}, {"arp_filter", "1"}, {"arp_announce", "2"},
}

// probe creates and deletes a macvlan (down, so it sends nothing), so that
// a kernel or container that cannot make one stops the agent at start, not
// at its first takeover.
func (v *LinuxVMACs) probe() error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.ParentIndex = fmt.Sprintf("garpd%d", os.Getpid()%1000000000), v.parent.Attrs().Index
	mv := &netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_PRIVATE}
	if err := netlink.LinkAdd(mv); err != nil {
		return fmt.Errorf("use_vmac: cannot create a macvlan on %s: %w (garpd needs CAP_NET_ADMIN and a kernel with macvlan)", v.parent.Attrs().Name, err)
	}
	if err := netlink.LinkDel(mv); err != nil {
		return fmt.Errorf("use_vmac: remove the probe macvlan %s: %w", attrs.Name, err)
	}
	return nil
}

func ipv4Conf(ifname, key string) string {
	return filepath.Join("/proc/sys/net/ipv4/conf", ifname, key)
}

// setBase sets a sysctl of the base interface, remembering the old value.
// A setting already in force is not written (it may be read-only): the
// kernel applies the larger of the interface's value and "all"'s, so
// net.ipv4.conf.all.KEY set on the host does as well.
func (v *LinuxVMACs) setBase(path, value string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	want, _ := strconv.Atoi(value)
	cur, _ := strconv.Atoi(strings.TrimSpace(string(old)))
	all, _ := os.ReadFile(filepath.Join("/proc/sys/net/ipv4/conf/all", filepath.Base(path)))
	allValue, _ := strconv.Atoi(strings.TrimSpace(string(all)))
	if max(cur, allValue) >= want {
		return nil
	}
	return v.set(path, value)
}

// set writes a sysctl, remembering the old value for restore.
func (v *LinuxVMACs) set(path, value string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s to %s: %w", path, value, err)
	}
	v.saved = append(v.saved, savedSysctl{path: path, value: strings.TrimSpace(string(old)), now: value})
	return nil
}

// restore puts the host's settings back, last changed first.
func (v *LinuxVMACs) restore() {
	for _, s := range slices.Backward(v.saved) {
		if err := os.WriteFile(s.path, []byte(s.value), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			v.log.Warn().Err(err).Str("sysctl", s.path).Msg("cannot restore an interface setting use_vmac changed")
		}
	}
	v.saved = nil
}

// ours reports whether l is a virtual MAC interface of the parent.
func (v *LinuxVMACs) ours(l netlink.Link) bool { return virtualMACOf(l, v.parent.Attrs().Index) }

// virtualMACOf reports whether l is a virtual MAC interface garpd (or
// keepalived) made on the interface with index parent: a macvlan named
// vrrp.N or vrrp6.N with a virtual router MAC.
func virtualMACOf(l netlink.Link, parent int) bool {
	mv, ok := l.(*netlink.Macvlan)
	if !ok || mv.Attrs().ParentIndex != parent || !vmacNamePattern.MatchString(mv.Attrs().Name) {
		return false
	}
	mac := mv.Attrs().HardwareAddr
	return len(mac) == 6 && mac[0] == 0 && mac[1] == 0 && mac[2] == 0x5e && mac[3] == 0 && (mac[4] == 1 || mac[4] == 2)
}

// VirtualMACInterfaces lists the virtual MAC interfaces on ifname, where a
// use_vmac master holds its VIPs.
func VirtualMACInterfaces(ifname string) ([]string, error) {
	parent, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	links, err := virtualMACLinks(parent.Attrs().Index)
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out, err
}

// virtualMACLinks are the virtual MAC interfaces on the interface with
// index parent.
func virtualMACLinks(parent int) ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	return slices.DeleteFunc(links, func(l netlink.Link) bool { return !virtualMACOf(l, parent) }), nil
}

func (v *LinuxVMACs) removeLeftovers() error {
	links, err := virtualMACLinks(v.parent.Attrs().Index)
	for _, l := range links {
		v.log.Warn().Str("interface", l.Attrs().Name).Msg("virtual MAC interface was left by an earlier run; removing it before the first advert")
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("remove leftover virtual MAC interface %s: %w", l.Attrs().Name, err)
		}
	}
	return err
}

// Up implements VirtualMACs. A new interface is removed again if any step
// fails: nothing half-applied.
func (v *LinuxVMACs) Up(vrid uint8, v6 bool, vips []netip.Prefix) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	k := routerKey{v6: v6, vrid: vrid}
	vl := v.up[k]
	created := false
	if vl == nil {
		link, err := v.create(vrid, v6)
		if err != nil {
			return err
		}
		vl, created = &vmacLink{link: link}, true
	}
	fail := func(err error) error {
		if created {
			if vl.ann != nil {
				vl.ann.Close()
			}
			_ = netlink.LinkDel(vl.link)
		}
		return err
	}
	name := vl.link.Attrs().Name
	for _, p := range vips {
		a := nlAddr(p)
		a.Flags |= unix.IFA_F_NOPREFIXROUTE // the base interface keeps the subnet's route
		if err := netlink.AddrAdd(vl.link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fail(fmt.Errorf("add VIP %s to %s: %w", p, name, err))
		}
	}
	if created {
		ann, err := NewLinuxAnnouncer(name, v.base.Mode())
		if err != nil {
			return fail(err)
		}
		vl.ann = ann
		v.up[k] = vl
		v.log.Info().Str("interface", name).Str("mac", VirtualMAC(vrid, v6).String()).Msg("virtual MAC up")
	}
	vl.vips = vips
	return nil
}

// create adds and brings up the macvlan of one virtual router.
func (v *LinuxVMACs) create(vrid uint8, v6 bool) (netlink.Link, error) {
	name := VMACName(vrid, v6)
	if old, err := netlink.LinkByName(name); err == nil {
		if !v.ours(old) {
			return nil, fmt.Errorf("use_vmac: interface %s exists and is not a virtual MAC of %s: rename or remove it", name, v.parent.Attrs().Name)
		}
		if err := netlink.LinkDel(old); err != nil {
			return nil, fmt.Errorf("remove stale %s: %w", name, err)
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.ParentIndex, attrs.HardwareAddr = name, v.parent.Attrs().Index, VirtualMAC(vrid, v6)
	mv := &netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_PRIVATE}
	if err := netlink.LinkAdd(mv); err != nil {
		return nil, fmt.Errorf("create virtual MAC interface %s on %s: %w", name, v.parent.Attrs().Name, err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		netlink.LinkDel(mv)
		return nil, fmt.Errorf("find the new %s: %w", name, err)
	}
	if err := v.prepare(link, v6); err != nil {
		netlink.LinkDel(link)
		return nil, err
	}
	return link, nil
}

// prepare sets a new macvlan up: it answers ARP only for its own IPv4
// addresses (so an IPv6 one, none; and arp_filter stays off, for the
// replies route through the base interface), takes traffic that routes
// back through the base interface, and for IPv6 gets no address of its own
// but the base interface's link-local one.
func (v *LinuxVMACs) prepare(link netlink.Link, v6 bool) error {
	name := link.Attrs().Name
	// No address of its own: an IPv4 virtual MAC would otherwise send
	// IPv6 traffic (DAD, MLD) of a link-local address.
	if err := netlink.LinkSetIP6AddrGenMode(link, 1); err != nil { // IN6_ADDR_GEN_MODE_NONE
		return fmt.Errorf("turn off address generation on %s: %w", name, err)
	}
	if v6 {
		ll, err := v.parentLinkLocal()
		if err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: ll, Flags: unix.IFA_F_NODAD, ValidLft: math.MaxUint32, PreferedLft: 0}
		if err := netlink.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", ll, name, err)
		}
	}
	for _, s := range []struct{ key, value string }{{"arp_ignore", "1"}, {"rp_filter", "0"}} {
		if err := os.WriteFile(ipv4Conf(name, s.key), []byte(s.value), 0o644); err != nil {
			v.log.Warn().Err(err).Str("interface", name).Msg("cannot tune the virtual MAC interface; set net.ipv4.conf.all.arp_ignore=1 on the host so it answers ARP only for its VIPs")
			break
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

func (v *LinuxVMACs) parentLinkLocal() (*net.IPNet, error) {
	addrs, err := netlink.AddrList(v.parent, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", v.parent.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			return a.IPNet, nil
		}
	}
	return nil, fmt.Errorf("use_vmac: %s has no IPv6 link-local address to send from", v.parent.Attrs().Name)
}

// Down implements VirtualMACs.
func (v *LinuxVMACs) Down(vrid uint8, v6 bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.down(routerKey{v6: v6, vrid: vrid})
}

func (v *LinuxVMACs) down(k routerKey) error {
	vl := v.up[k]
	if vl == nil {
		return nil
	}
	delete(v.up, k)
	errs := []error{vl.ann.Close()}
	if err := netlink.LinkDel(vl.link); err != nil && !errors.Is(err, unix.ENODEV) {
		errs = append(errs, fmt.Errorf("remove virtual MAC interface %s: %w", vl.link.Attrs().Name, err))
	} else {
		v.log.Info().Str("interface", vl.link.Attrs().Name).Msg("virtual MAC down")
	}
	return errors.Join(errs...)
}

// Send implements Sender: the VIP is announced from the virtual MAC that
// holds it, with the base announcer's current mode.
func (v *LinuxVMACs) Send(a netip.Addr, part Part) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, vl := range v.up { // at most 510: one per virtual router
		if slices.ContainsFunc(vl.vips, func(p netip.Prefix) bool { return p.Addr() == a }) {
			vl.ann.SetMode(v.base.Mode())
			if t, ok := v.base.(interface{ Targets() []netip.Addr }); ok {
				vl.ann.SetTargets(t.Targets())
			}
			return vl.ann.Send(a, part)
		}
	}
	return 0, nil // released meanwhile: a backup announces nothing
}

// Close removes every virtual MAC interface still up and restores the base
// interface's settings.
func (v *LinuxVMACs) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var errs []error
	for k := range v.up {
		errs = append(errs, v.down(k))
	}
	v.restore()
	return errors.Join(errs...)
}

// VMACRefusesDev says why a VIP cannot have a dev with use_vmac: the one
// wording of the config check, the data plane and the import.
func VMACRefusesDev(vip netip.Addr, iface string) string {
	return fmt.Sprintf("use_vmac holds a master's VIPs on its virtual MAC interface on %s, not on another interface: leave out dev for %s, or use_vmac", iface, vip)
}
