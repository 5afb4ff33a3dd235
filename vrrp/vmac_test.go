package vrrp

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// RFC 5798 §7.3: 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID}
// for IPv6, over every VRID.
func TestVirtualMAC(t *testing.T) {
	for vrid := 1; vrid <= 255; vrid++ {
		for _, v6 := range []bool{false, true} {
			family := "01"
			if v6 {
				family = "02"
			}
			want := "00:00:5e:00:" + family + ":" + net.HardwareAddr{byte(vrid)}.String()
			if got := VirtualMAC(uint8(vrid), v6).String(); got != want {
				t.Fatalf("VirtualMAC(%d, v6=%v) = %s, want %s", vrid, v6, got, want)
			}
			name := VMACName(uint8(vrid), v6)
			if len(name) > 15 || !vmacNamePattern.MatchString(name) {
				t.Fatalf("VMACName(%d, %v) = %q: not a valid interface name garpd would recognise as its own", vrid, v6, name)
			}
		}
	}
	if VMACName(51, false) != "vrrp.51" {
		t.Fatalf("IPv4 name %q, want keepalived's vrrp.51", VMACName(51, false))
	}
}

// With use_vmac the VIPs come and go with the master's virtual MAC
// interface, never on the interface itself: each node in turn is master
// (a killed, then b stopped), and only the master has one.
func TestEngineVirtualMACFollowsMaster(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg(), vmac: true})
	b := s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg(), vmac: true})
	c := s.start("192.0.2.13", nodeOpts{prio: 50, cfg: v3cfg(), vmac: true})
	key := routerKey{vrid: 10}
	holder := func() []string {
		var out []string
		for _, n := range []*simNode{a, b, c} {
			if _, ok := n.vmacs.up[key]; ok {
				out = append(out, n.port.src.String())
			}
			if n.kernel.holds(testVIP.Addr()) {
				t.Fatalf("%s put the VIP on its interface with use_vmac", n.port.src)
			}
		}
		return out
	}
	s.run(time.Second)
	if h := holder(); !slices.Equal(h, []string{"192.0.2.11"}) {
		t.Fatalf("virtual MAC up on %v, want the master 192.0.2.11 alone", h)
	}
	if got := a.vmacs.up[key]; !slices.Equal(got, []netip.Prefix{testVIP}) {
		t.Fatalf("a's virtual MAC carries %v, want %v", got, testVIP)
	}
	if len(a.kernel.announced) == 0 {
		t.Fatal("a did not announce its takeover")
	}

	a.running, a.port.up = false, false // killed: no resign, no Down
	s.run(time.Second)
	if h := holder(); !slices.Equal(h, []string{"192.0.2.11", "192.0.2.12"}) {
		t.Fatalf("after a was killed: virtual MAC up on %v, want b (and a's dead leftover)", h)
	}
	s.stop(b)
	s.run(time.Second)
	if got := strings.Join(b.vmacs.calls, ","); got != "up ipv4/10,down ipv4/10" {
		t.Fatalf("b's calls %q, want up then down", got)
	}
	if _, ok := c.vmacs.up[key]; !ok {
		t.Fatal("c did not take over with its virtual MAC after b resigned")
	}
}

// A gratuitous ARP from the virtual router's own virtual MAC comes from
// another master of it (a split brain, or a backup's brief takeover): the
// router's entry is the same, but the switch learnt that master's port.
// It is answered as a member's claim is, once VRRP has had its say; a
// stranger's is answered after claimGrace.
func TestEngineAnswersVirtualMACClaimsAsMembers(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg(), vmac: true})
	s.run(5 * time.Second)
	adm := NewAdmission()
	adm.Allow(netip.MustParseAddr("192.0.2.12"), false, 10, 250)
	a.eng.setAdmission(adm)
	before := len(a.kernel.announced)
	at := s.clk.Now()
	a.eng.foreignClaim(testVIP.Addr(), VirtualMAC(10, false))
	s.run(time.Second)
	if n := len(a.kernel.announced) - before; n != 1 || a.kernel.announced[before].Sub(at) != 3*v3cfg().AdvertInterval {
		t.Fatalf("a claim from the router's own virtual MAC: %d answers (first after %v), want one after 3 advert intervals",
			len(a.kernel.announced)-before, a.kernel.announced[min(before, len(a.kernel.announced)-1)].Sub(at))
	}
	s.run(40 * time.Second) // past the back-off of answered claims
	before, at = len(a.kernel.announced), s.clk.Now()
	a.eng.foreignClaim(testVIP.Addr(), VirtualMAC(11, false)) // another router's MAC: a stranger
	s.run(time.Second)
	if n := len(a.kernel.announced) - before; n != 1 || a.kernel.announced[before].Sub(at) != claimGrace {
		t.Fatalf("another router's virtual MAC: %d answers, want one after claimGrace", n)
	}
}

// The engine chooses where a use_vmac master's adverts leave from: its
// virtual MAC interface, or with vmac_xmit_base the interface's own MAC.
// A backup's adverts (it sends none) and a released router's use no
// virtual MAC socket.
func TestEngineSendsAdvertsFromTheVirtualMAC(t *testing.T) {
	for _, xmitBase := range []bool{false, true} {
		s := newSim(t)
		cfg := v3cfg()
		cfg.UseVMAC, cfg.VMACXmitBase = true, xmitBase
		a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: cfg, vmac: true})
		s.run(time.Second)
		sent, via := len(a.port.sent), a.port.viaSent
		s.run(time.Second)
		got, want := a.port.viaSent-via, len(a.port.sent)-sent
		if xmitBase {
			want = 0
		}
		if want == 0 && !xmitBase || got != want {
			t.Fatalf("vmac_xmit_base %v: %d of the master's %d adverts from the virtual MAC, want %d", xmitBase, got, len(a.port.sent)-sent, want)
		}
	}
}

// A new master's first advert leaves from the interface's own MAC, before
// its virtual MAC is up: a node that is still master with that virtual MAC
// hears it there (Linux hands a multicast frame from a local macvlan's MAC
// to that macvlan alone), and steps down. Later adverts use the virtual MAC.
func TestNewMastersFirstAdvertLeavesFromTheInterface(t *testing.T) {
	s := newSim(t)
	cfg := v3cfg()
	cfg.UseVMAC = true
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: cfg, vmac: true})
	for i := 0; len(a.port.sent) == 0; i++ {
		if i > 1000 {
			t.Fatal("no advert within 10 s")
		}
		s.run(10 * time.Millisecond)
	}
	if a.port.viaSent != 0 {
		t.Fatalf("the new master's first advert left from its virtual MAC, want the interface")
	}
	s.run(time.Second)
	if a.port.viaSent == 0 {
		t.Fatal("no later advert left from the virtual MAC")
	}
}

func TestConfigVMACXmitBaseNeedsUseVMAC(t *testing.T) {
	c := v3cfg()
	c.VMACXmitBase = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "vmac_xmit_base") {
		t.Fatalf("vmac_xmit_base without use_vmac: %v, want an error naming it", err)
	}
	c.UseVMAC = true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
