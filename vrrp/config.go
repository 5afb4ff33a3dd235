package vrrp

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Config is the `vrrp:` section of the agent's configuration: the settings
// every virtual router on the interface shares, and that every node of the
// cluster must agree on.
type Config struct {
	Version        int           `yaml:"version" json:"version"`
	AdvertInterval time.Duration `yaml:"advert_interval" json:"advert_interval"`
	VRIDBase       int           `yaml:"vrid_base" json:"vrid_base"`
	Preempt        *bool         `yaml:"preempt" json:"preempt"`
	PreemptDelay   time.Duration `yaml:"preempt_delay" json:"preempt_delay"`
	AuthPass       string        `yaml:"auth_pass" json:"-"`
	UnicastPeers   []string      `yaml:"unicast_peers" json:"unicast_peers"`
	// KeepalivedPeers are the addresses of keepalived nodes still running
	// while a cluster moves to the dynamic mode node by node: their adverts
	// count at any priority, as a member's would, so VRRP arbitrates
	// between garpd and keepalived. Remove it after the last node.
	KeepalivedPeers []string `yaml:"keepalived_peers" json:"keepalived_peers,omitempty"`
	// Source is the adverts' source address, at most one per family
	// (keepalived's unicast_src_ip): an address of the interface. Unset,
	// IPv4 adverts leave from the interface's first IPv4 address and IPv6
	// ones from its link-local address, as RFC 5798 asks.
	Source []string `yaml:"source" json:"source,omitempty"`
	// AcceptHopLimitFrom are unicast peers whose adverts count below hop
	// limit 255 although auth_hmac does not enforce: keepalived nodes
	// that send IPv6 unicast adverts with hop limit 64 and cannot sign
	// (before 2.4). RFC 5798's hop limit check is what keeps a forger off
	// the link out; without it, anyone who can route a packet here with
	// a listed source address can claim the VIPs. Where auth_hmac
	// enforces, every unicast peer is accepted below 255 without this:
	// the HMAC keeps forgers out instead.
	AcceptHopLimitFrom []string `yaml:"accept_hop_limit_from" json:"accept_hop_limit_from,omitempty"`
	// UseVMAC puts a master's VIPs on a macvlan with the virtual router's
	// MAC (RFC 5798 §7.3, keepalived's use_vmac), so the router's neighbour
	// entry survives a failover unchanged: for networks that cache ARP
	// answers and would keep sending to the old master's MAC.
	UseVMAC bool `yaml:"use_vmac" json:"use_vmac"`
	// VMACXmitBase sends the adverts from the base interface's MAC instead
	// of the virtual one, for switches whose port security drops a MAC
	// that appears on a second port.
	VMACXmitBase bool `yaml:"vmac_xmit_base" json:"vmac_xmit_base"`
	// AuthHMAC signs and checks adverts with keepalived 2.4's auth_hmac
	// trailer. The dynamic mode signs with a key derived from the gossip
	// key when this names no keys.
	AuthHMAC *AuthHMACConfig `yaml:"auth_hmac" json:"auth_hmac,omitempty"`
}

// AuthHMACConfig is vrrp.auth_hmac, keepalived's auth_hmac block.
type AuthHMACConfig struct {
	// Keys by id, 1..255: "hex:DIGITS", "file:PATH" (a file holding
	// either form) or the key's text, 32 to 64 bytes. Several keys let a
	// key rotate without a failover: every node accepts each of them.
	Keys map[int]string `yaml:"keys" json:"-"`
	// ActiveKey is the id adverts are signed with.
	ActiveKey int `yaml:"active_key" json:"active_key"`
	// Mode: enforce (the default), permissive, receive-only (a rolling
	// roll-out: receive-only everywhere, then permissive, then enforce),
	// or off.
	Mode string `yaml:"mode" json:"mode"`
	// AntiReplay: time (the default) refuses adverts older than
	// TimeWindow and replays; monotonic only replays, for nodes without a
	// shared clock.
	AntiReplay string `yaml:"anti_replay" json:"anti_replay"`
	// TimeWindow, 1s..300s; default max(3 advert intervals, 5s).
	TimeWindow time.Duration `yaml:"time_window" json:"time_window"`
}

// Auth resolves the auth_hmac section: the key material (files are read
// now), the mode and the window. A missing section is AuthOff. Errors
// start with the key they are about.
func (c Config) Auth() (AuthKeys, error) {
	h := c.AuthHMAC
	if h == nil {
		return AuthKeys{}, nil
	}
	mode := AuthEnforce
	if h.Mode != "" {
		m, err := ParseAuthMode(h.Mode)
		if err != nil {
			return AuthKeys{}, fmt.Errorf("auth_hmac.mode: %w", err)
		}
		mode = m
	}
	out := AuthKeys{Keys: map[uint8][]byte{}, Mode: mode}
	switch h.AntiReplay {
	case "", "time":
		out.Window = cmp.Or(h.TimeWindow, DefaultAuthWindow(c.AdvertInterval))
		if out.Window < time.Second || out.Window > 300*time.Second || out.Window%time.Second != 0 {
			return AuthKeys{}, fmt.Errorf("auth_hmac.time_window: %s: use whole seconds, 1s..300s", out.Window)
		}
	case "monotonic":
		if h.TimeWindow != 0 {
			return AuthKeys{}, errors.New("auth_hmac.time_window: only means something with anti_replay: time")
		}
	default:
		return AuthKeys{}, fmt.Errorf("auth_hmac.anti_replay: %q: use time or monotonic", h.AntiReplay)
	}
	for id, s := range h.Keys {
		if id < 1 || id > 255 {
			return AuthKeys{}, fmt.Errorf("auth_hmac.keys: id %d: use 1..255", id)
		}
		key, err := ParseAuthKey(s)
		if err != nil {
			return AuthKeys{}, fmt.Errorf("auth_hmac.keys.%d: %w", id, err)
		}
		out.Keys[uint8(id)] = key
	}
	if len(h.Keys) > 0 || h.ActiveKey != 0 {
		if _, ok := h.Keys[h.ActiveKey]; !ok {
			return AuthKeys{}, fmt.Errorf("auth_hmac.active_key: %d is not one of the keys: sign with one that every node has", h.ActiveKey)
		}
		out.Active = uint8(h.ActiveKey)
	}
	return out, nil
}

// DefaultAuthWindow is auth_hmac's time window when the config gives
// none, as keepalived 2.4 derives it: three advert intervals in whole
// seconds (the interval's fraction dropped first), at least 5 s and at
// most 300 s.
func DefaultAuthWindow(advert time.Duration) time.Duration {
	w := 3 * (advert / time.Second) * time.Second
	return min(max(w, 5*time.Second), 300*time.Second)
}

// Defaults for Config, chosen to interoperate with a default keepalived.
const (
	DefaultVersion        = 3
	DefaultAdvertInterval = time.Second
	DefaultVRIDBase       = 10
)

// WithDefaults returns c with unset fields filled in.
func (c Config) WithDefaults() Config {
	c.Version = cmp.Or(c.Version, DefaultVersion)
	c.AdvertInterval = cmp.Or(c.AdvertInterval, DefaultAdvertInterval)
	c.VRIDBase = cmp.Or(c.VRIDBase, DefaultVRIDBase)
	if c.Preempt == nil {
		t := true
		c.Preempt = &t
	}
	return c
}

// Validate checks c (after WithDefaults). Each error starts with the key it
// is about, relative to the section.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	switch c.Version {
	case 2:
		if c.AdvertInterval%time.Second != 0 || c.AdvertInterval < time.Second || c.AdvertInterval > 255*time.Second {
			bad("advert_interval", "%s: VRRPv2 carries whole seconds, use 1s..255s (or version: 3 for sub-second adverts)", c.AdvertInterval)
		}
		if len(c.AuthPass) > 8 {
			bad("auth_pass", "%d characters: VRRPv2 simple passwords are at most 8", len(c.AuthPass))
		}
	case 3:
		if c.AdvertInterval%(10*time.Millisecond) != 0 || c.AdvertInterval < 10*time.Millisecond || c.AdvertInterval > 40950*time.Millisecond {
			bad("advert_interval", "%s: VRRPv3 takes 10ms..40.95s in steps of 10ms", c.AdvertInterval)
		}
		if c.AuthPass != "" {
			bad("auth_pass", "VRRPv3 has no authentication (RFC 5798 §9); use auth_hmac, or set version: 2")
		}
	default:
		bad("version", "%d: use 2 or 3", c.Version)
	}
	if c.VRIDBase < 1 || c.VRIDBase > 255 {
		bad("vrid_base", "%d: VRIDs are 1..255", c.VRIDBase)
	}
	if c.PreemptDelay < 0 || c.PreemptDelay > time.Hour {
		bad("preempt_delay", "%s: use 0s..1h", c.PreemptDelay)
	}
	if c.VMACXmitBase && !c.UseVMAC {
		bad("vmac_xmit_base", "only means something with use_vmac: true; set both, or remove vmac_xmit_base")
	}
	if _, err := c.Peers(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.Auth(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.KeepalivedPeerAddrs(); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := c.Sources(); err != nil {
		errs = append(errs, err)
	}
	if lax, err := parseAddrs("accept_hop_limit_from", c.AcceptHopLimitFrom, "a unicast peer's address"); err != nil {
		errs = append(errs, err)
	} else if peers, _ := c.Peers(); len(lax) > 0 {
		for _, a := range lax {
			if !slices.Contains(peers, a) {
				bad("accept_hop_limit_from", "%s is not one of unicast_peers: only a unicast peer's adverts may come from off the link", a)
			}
		}
	}
	if h := c.AuthHMAC; h != nil && len(h.Keys) == 0 && c.AuthPass != "" && h.Mode != "off" && h.Mode != "receive-only" {
		bad("auth_pass", "auth_hmac replaces the VRRPv2 password (keepalived drops the password too): remove auth_pass, or keep it beside auth_hmac mode off or receive-only while keepalived nodes run")
	}
	return errors.Join(errs...)
}

// Password is the VRRPv2 password adverts carry and must carry: AuthPass,
// except beside an auth_hmac block with keys, which drops it as keepalived
// 2.4 does ("auth_hmac cannot be combined with authentication, dropping
// legacy auth"), so a garpd node and a keepalived node configured alike
// hear each other. Beside the dynamic mode's derived key (an auth_hmac of
// mode off or receive-only alone) the password stays: it is how a cluster
// moves from keepalived nodes that use one.
func (c Config) Password() string {
	if h := c.AuthHMAC; h != nil && len(h.Keys) > 0 {
		return ""
	}
	return c.AuthPass
}

// Notes says what an operator should know of c: a password that auth_hmac
// drops.
func (c Config) Notes() []string {
	if c.AuthPass != "" && c.Password() == "" {
		return []string{"vrrp.auth_pass: auth_hmac cannot be combined with a password: it is dropped, as keepalived 2.4 drops it (remove auth_pass)"}
	}
	return nil
}

// UnicastAuto reports unicast_peers: [auto]: the peers are the gossip members.
func (c Config) UnicastAuto() bool {
	return len(c.UnicastPeers) == 1 && c.UnicastPeers[0] == "auto"
}

// Peers parses UnicastPeers; an empty list means multicast, and "auto"
// means peers that gossip fills in (none here).
func (c Config) Peers() ([]netip.Addr, error) {
	if c.UnicastAuto() {
		return nil, nil
	}
	return parseAddrs("unicast_peers", c.UnicastPeers, "or use unicast_peers: [auto] alone, for the gossip members")
}

// Sources parses Source: the IPv4 and IPv6 advert source, each invalid
// when not set.
func (c Config) Sources() (v4, v6 netip.Addr, err error) {
	addrs, err := parseAddrs("source", c.Source, "an address of the interface, one per family")
	if err != nil {
		return v4, v6, err
	}
	for _, a := range addrs {
		at := &v4
		if a.Is6() {
			at = &v6
		}
		if at.IsValid() {
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("source: %s and %s: give at most one address per family", *at, a)
		}
		*at = a
	}
	return v4, v6, nil
}

// KeepalivedPeerAddrs parses KeepalivedPeers.
func (c Config) KeepalivedPeerAddrs() ([]netip.Addr, error) {
	return parseAddrs("keepalived_peers", c.KeepalivedPeers, "the keepalived node's VRRP source address")
}

// parseAddrs parses a list of addresses; an error names the key, the
// item and what the item should be.
func parseAddrs(key string, list []string, hint string) ([]netip.Addr, error) {
	out, err := ParseAddrs(list)
	if err != nil {
		return nil, fmt.Errorf("%s%w (%s)", key, err, hint)
	}
	return out, nil
}

// ParseAddrs reads a list of IP addresses (blanks around each ignored),
// naming the first that is none by its index and value.
func ParseAddrs(list []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(list))
	for i, s := range list {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("[%d]: %q is not an IP address", i, s)
		}
		out = append(out, a)
	}
	return out, nil
}

// IntervalCS is the advert interval in centiseconds, as the wire carries it.
func (c Config) IntervalCS() uint16 { return uint16(c.AdvertInterval / (10 * time.Millisecond)) }

// GARPConfig is the `garp:` section: how a master announces its VIPs, on
// takeover and then periodically.
type GARPConfig struct {
	Count    int           `yaml:"count" json:"count"`
	Interval time.Duration `yaml:"interval" json:"interval"`
	// Refresh re-announces every master VIP once per period (0s: off), each
	// at its own phase; Schedule (cron) replaces it when set.
	Refresh  time.Duration `yaml:"refresh" json:"refresh"`
	Schedule string        `yaml:"schedule" json:"schedule"`
	// Profile names the announcement budget that fits the segment's
	// switches: default, dai or open (see Budget).
	Profile string `yaml:"profile" json:"profile"`
	// MaxRate, when set, replaces the profile's packets per second.
	MaxRate int `yaml:"max_rate" json:"max_rate"`
	// TakeoverRate is what a takeover's first announcements once had as a
	// budget of their own. They share the one budget now, first in line;
	// a set value is accepted, and ignored with a warning.
	TakeoverRate int    `yaml:"takeover_rate" json:"takeover_rate"`
	Mode         string `yaml:"mode" json:"mode"`
	// First is the kind that goes first when mode is both: request or
	// reply. A takeover sends it for every VIP before the other kind.
	First string `yaml:"first" json:"first"`
	// Verify checks that the router holds each VIP on this node's MAC.
	Verify VerifyConfig `yaml:"verify" json:"verify"`
}

// DefaultGARPConfig is the garp section when the file says nothing. The
// takeover burst is three announcements spaced past the Linux 1 s ARP lock
// time, so each one can update a neighbour entry; stale router entries are
// repaired within a minute; the default budget (see Budget).
func DefaultGARPConfig() GARPConfig {
	return GARPConfig{Count: 3, Interval: 1100 * time.Millisecond, Refresh: 60 * time.Second, Profile: "default", Mode: "both", First: "request"}
}

// Budget is the one announcement budget of an interface: everything
// garpd sends that a switch's ARP/ND policer counts (takeovers, bursts,
// defence, waves, refreshes) shares it, and no sliding window of a
// second carries more than PerSecond packets, nor one of 100 ms more than
// PerTick.
type Budget struct {
	PerSecond int
	PerTick   int // per 100 ms
}

// Budget profiles. A per-box policer sees the sum over the nodes behind
// it, so the default leaves room for five: Juniper QFX/PTX pass 500 ARP
// packets a second for the whole box, SONiC's ARP+ND trap 600 a switch;
// 10 per 100 ms keeps a segment of two nodes under Wireshark's ARP storm
// heuristic (30 per 100 ms). Catalyst DAI err-disables an access port
// past 15 a second: dai keeps 3 a second of it for the kernel's own ARP.
// open is for routers that police nothing: a node's 255 VIPs in one go.
var budgets = map[string]Budget{
	"default": {PerSecond: 100, PerTick: 10},
	"dai":     {PerSecond: 12, PerTick: 2},
	"open":    {PerSecond: 1000, PerTick: 1000},
}

// Budget is g's announcement budget: the profile's, with max_rate in place
// of its packets per second when set (and a 100 ms share in proportion).
func (g GARPConfig) Budget() Budget {
	b, ok := budgets[cmp.Or(g.Profile, "default")]
	if !ok {
		b = budgets["default"]
	}
	if g.MaxRate > 0 && g.MaxRate != b.PerSecond {
		tick := b.PerTick * g.MaxRate / b.PerSecond
		b = Budget{PerSecond: g.MaxRate, PerTick: min(g.MaxRate, max(2, tick))}
	}
	return b
}

// AnnounceMode is the announcement mode of mode and first together.
func (g GARPConfig) AnnounceMode() (AnnounceMode, error) {
	m, err := ParseAnnounceMode(g.Mode)
	if err != nil {
		return 0, fmt.Errorf("mode: %w", err)
	}
	switch g.First {
	case "", "request":
	case "reply":
		if m == AnnounceBoth {
			m = AnnounceBothReplyFirst
		}
	default:
		return 0, fmt.Errorf("first: %q: use request or reply (the kind a takeover sends for every VIP before the other)", g.First)
	}
	return m, nil
}

// MoveTime is how long the first announcement of n VIPs takes at b: the
// floor of a takeover's time to move a router that polices at b.
func (b Budget) MoveTime(n int) time.Duration {
	if n <= b.PerTick || b.PerSecond <= 0 {
		return 0
	}
	return time.Duration(float64(n-min(n, b.PerTick)) / float64(min(b.PerSecond, 10*b.PerTick)) * float64(time.Second))
}

// Validate checks g, the refresh schedule included.
func (g GARPConfig) Validate() error {
	var errs []error
	if _, ok := budgets[cmp.Or(g.Profile, "default")]; !ok {
		errs = append(errs, fmt.Errorf("profile: %q: use default (switches that police ARP per box, such as Juniper QFX/PTX or SONiC), dai (Catalyst dynamic ARP inspection, 15 a second per port) or open (routers that police nothing)", g.Profile))
	}
	if g.MaxRate < 0 || g.MaxRate > 100000 {
		errs = append(errs, fmt.Errorf("max_rate: %d: use 1..100000 packets per second, or leave it out for the profile's", g.MaxRate))
	}
	if g.TakeoverRate < 0 || g.TakeoverRate > 100000 {
		errs = append(errs, fmt.Errorf("takeover_rate: %d: leave it out: takeovers share the profile's budget now, first in line", g.TakeoverRate))
	}
	if _, err := g.AnnounceMode(); err != nil {
		errs = append(errs, err)
	}
	if err := g.Verify.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("verify.%w", err))
	}
	if g.Count < 1 || g.Count > 100 {
		errs = append(errs, fmt.Errorf("count: %d: use 1..100", g.Count))
	}
	if g.Interval < 10*time.Millisecond || g.Interval > time.Minute {
		errs = append(errs, fmt.Errorf("interval: %s: use 10ms..1m (more than 1s lets every announcement pass the ARP lock time)", g.Interval))
	}
	if _, err := g.Scheduler(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// slowMove is how long the first announcements of a takeover may take
// before the configuration check says so: past it, a router that polices
// ARP sends some VIPs' traffic to the dead node for longer than VRRP took
// to notice.
const slowMove = 3 * time.Second

// Notes says what an operator should know of g for vips VIPs on one
// interface: a deprecated setting, and a budget too small to move them
// all in time (use_vmac moves them with one advert).
func (g GARPConfig) Notes(vips int, useVMAC bool) []string {
	var out []string
	if g.TakeoverRate > 0 {
		out = append(out, fmt.Sprintf("garp.takeover_rate (%d) is ignored: a takeover's first announcements share the one budget now (garp.profile, garp.max_rate), first in line; remove the setting", g.TakeoverRate))
	}
	b := g.Budget()
	if t := b.MoveTime(vips); t > slowMove && !useVMAC {
		out = append(out, fmt.Sprintf("garp: at %d packets a second (profile %s), the first announcement of all %d VIPs takes %.1fs after a takeover, and a router that polices ARP moves no faster: use_vmac moves them all with one advert (the router's ARP entries never change; the switch learns the virtual MAC's new port), or raise garp.max_rate if every switch on the path passes it",
			b.PerSecond, cmp.Or(g.Profile, "default"), vips, t.Seconds()))
	}
	return out
}
