package gossip

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// Meta is what every node gossips about itself. It is kept small (memberlist
// allows 512 bytes) with short JSON keys.
type Meta struct {
	Healthy bool     `json:"h"`
	Failing []string `json:"f,omitempty"` // names of failing checks
	// Excluded says why the platform took this node out (a Kubernetes
	// Node's exclude label); empty while it is eligible.
	Excluded string `json:"x,omitempty"`
	// Settled: healthy for settle, so this node holds its share. Each node
	// decides that on its own clock; others only show it.
	Settled bool   `json:"s,omitempty"`
	Digest  string `json:"d"` // of the cluster-wide config: members must agree
	VRRP4   string `json:"a4,omitempty"`
	VRRP6   string `json:"a6,omitempty"`
	MAC     string `json:"m,omitempty"`
	Version string `json:"v,omitempty"`
	// Started is when this process started (Unix nanoseconds): of two
	// nodes running under one name, the later one resigns.
	Started int64 `json:"st,omitempty"`
	// Hold are the hold-downs this node imposes on members that keep
	// coming back (move damping): until when, in Unix seconds, by name.
	// A member settles only once every live member's hold on it is over.
	Hold map[string]int64 `json:"ho,omitempty"`
	// KeyID2: this node accepts a derived VRRP key under the id that
	// leaks nothing of it (vrrp.DeriveAuthKey), not only under garpd 0.1's.
	// Once every live member says so, the members sign with it.
	KeyID2 bool `json:"k2,omitempty"`
	// Standing is this node's soft-check standing per VIP group (the
	// balancer's StandingKey, "*" for the groups not named): the sum of
	// its weighted checks' weights that apply. The members' rankings
	// order by it.
	Standing map[string]int `json:"w,omitempty"`
}

// Member is one live member as this node sees it.
type Member struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
	Meta Meta       `json:"meta"`
	Self bool       `json:"self,omitempty"`
}

// Membership is this node's view of the cluster.
type Membership struct {
	ml      *memberlist.Memberlist
	addr    string // LocalAddr: fixed at start, read without memberlist's lock
	cfg     Config
	log     zerolog.Logger
	changes chan struct{}
	// updateMu serialises memberlist's UpdateNode, which is not safe to
	// call concurrently.
	updateMu sync.Mutex

	mu       sync.Mutex
	meta     Meta
	bad      map[string]bool // members whose meta did not decode, logged once
	nodes    map[string]Member
	local    string
	discover Discoverer // nil: nobody to join
	// known is the cluster's known member set (see Known); downSince is
	// when this node last saw each known member that is not alive leave
	// (or when it started, for those it never saw).
	known     KnownSet
	downSince map[string]time.Time
	// deleted are alive members whose Kubernetes Node was deleted: each is
	// forgotten the moment it goes down.
	deleted map[string]bool
	// Who may reach the gossip port (see sourceFilter): the members seen
	// while they stay known, the seeds, and gossip.allow_from.
	lastAddr  map[string]netip.Addr
	seeds     map[netip.Addr]bool
	allowFrom []netip.Prefix
	// subnet is gossip.admit_subnet's prefix (invalid: off).
	subnet   netip.Prefix
	seedKick chan struct{}
	filter   *sourceFilter
	// broadcasts queues known-set changes for memberlist's gossip.
	broadcasts *memberlist.TransmitLimitedQueue
	keyring    *memberlist.Keyring // nil: gossip.insecure
}

// KnownMember is one known member as this node sees it.
type KnownMember struct {
	Name string
	// DownSince is zero while the member is alive.
	DownSince time.Time
}

func (m *Membership) store(n *memberlist.Node) {
	var meta Meta
	err := json.Unmarshal(n.Meta, &meta)
	a, _ := netip.AddrFromSlice(n.Addr)
	m.mu.Lock()
	if err != nil {
		delete(m.nodes, n.Name)
		if !m.bad[n.Name] {
			m.bad[n.Name] = true
			m.log.Warn().Str("member", n.Name).Msg("member's metadata is not garpd's; ignoring it (another gossip cluster on this port?)")
		}
	} else {
		m.nodes[n.Name] = Member{Name: n.Name, Addr: a.Unmap(), Meta: meta, Self: n.Name == m.local}
		m.lastAddr[n.Name] = a.Unmap()
		delete(m.downSince, n.Name)
		if m.known.Join(n.Name, meta.Digest) {
			m.mu.Unlock()
			m.log.Info().Str("member", n.Name).Msg("new known member: re-planning with it")
			m.knownChanged()
			return
		}
	}
	m.mu.Unlock()
	m.notify()
}

// knownChanged saves the known set (with a state_dir) and tells the
// controller.
func (m *Membership) knownChanged() {
	if m.cfg.StateDir != "" {
		m.mu.Lock()
		k := m.known.Clone()
		m.mu.Unlock()
		if err := SaveKnown(m.cfg.StateDir, k); err != nil {
			m.log.Error().Err(err).Msg("cannot save the known members in gossip.state_dir")
		}
	}
	m.notify()
}

// Known returns the known members of this node's config (not forgotten),
// sorted by name, with since when each is down.
func (m *Membership) Known() []KnownMember {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []KnownMember
	for _, name := range m.known.Names(m.meta.Digest) {
		out = append(out, KnownMember{Name: name, DownSince: m.downSince[name]})
	}
	return out
}

// Forget drops a known member that is down from the ranking, on every node
// (the forget is gossiped). A live member cannot be forgotten.
func (m *Membership) Forget(name string) error {
	m.mu.Lock()
	if _, alive := m.nodes[name]; alive || name == m.local {
		m.mu.Unlock()
		return fmt.Errorf("%q is alive: stop it first, then forget it", name)
	}
	if !m.known.Forget(name) {
		m.mu.Unlock()
		return fmt.Errorf("%q is not a known member", name)
	}
	delete(m.downSince, name)
	m.mu.Unlock()
	m.log.Warn().Str("member", name).Msg("member forgotten: re-planning without it")
	m.broadcastKnown(name)
	m.knownChanged()
	return nil
}

// ForgetDeleted forgets a member whose Kubernetes Node was deleted: at
// once if it is down, or the moment it goes down, since a Node is often
// deleted before gossip has noticed its host is gone. Every member hears
// the deletion from the API, so all forget it within moments.
func (m *Membership) ForgetDeleted(name string) {
	m.mu.Lock()
	if name == m.local {
		m.mu.Unlock()
		return
	}
	if _, alive := m.nodes[name]; alive {
		m.deleted[name] = true
		m.mu.Unlock()
		m.log.Info().Str("member", name).Msg("its Node was deleted while it is alive: forgetting it when it goes down")
		return
	}
	forgot := m.known.Forget(name)
	delete(m.downSince, name)
	m.mu.Unlock()
	if forgot {
		m.log.Warn().Str("member", name).Msg("its Node was deleted: forgotten, re-planning without it")
		m.broadcastKnown(name)
		m.knownChanged()
	}
}

// forgetLoop forgets members that have been down for forget_after. Every
// node decides on its own clock; the forget is the same on every node, so
// merging converges even if they decide seconds apart. Each node wakes at
// the exact deadline rather than on a coarse tick: memberlist marks a
// member failed on every node within milliseconds, so the nodes re-plan
// within milliseconds of each other too, and none spends a second on the
// old plan ignoring the adverts of those already on the new one.
func (m *Membership) forgetLoop(ctx context.Context) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var gone []string
		// A member that goes down later has its deadline forget_after
		// (at least 1 s) ahead: a second's sleep at most never misses one.
		wait := time.Second
		m.mu.Lock()
		for name, since := range m.downSince {
			if _, alive := m.nodes[name]; alive {
				continue
			}
			if left := m.cfg.ForgetAfter - time.Since(since); left > 0 {
				wait = min(wait, left)
			} else if m.known.Forget(name) {
				delete(m.downSince, name)
				gone = append(gone, name)
			}
		}
		m.mu.Unlock()
		t.Reset(wait)
		for _, name := range gone {
			m.log.Warn().Str("member", name).Dur("forget_after", m.cfg.ForgetAfter).Msg("member down longer than forget_after: forgotten, re-planning without it")
		}
		if len(gone) > 0 {
			m.knownChanged()
		}
	}
}

func (m *Membership) notify() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// Options tune memberlist's timers; zero values keep the LAN defaults.
type Options struct {
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
	// PushPullInterval is the full state sync that heals any missed
	// update (LAN default 30s).
	PushPullInterval time.Duration
	// Discoverer replaces the config's join list as the source of seeds.
	Discoverer Discoverer
	// Duplicate hears that another node runs under this node's name
	// (a copied config, a cloned VM): why, when this node is the later of
	// the two and must stay out; "" when that is over.
	Duplicate func(why string)
}

// Start creates the member list and starts joining the seeds in the
// background: a node that cannot join works alone and keeps trying.
func Start(ctx context.Context, cfg Config, name string, meta Meta, opts Options, logger zerolog.Logger) (*Membership, error) {
	meta.Started = cmp.Or(meta.Started, time.Now().UnixNano())
	m := &Membership{cfg: cfg, log: logger, changes: make(chan struct{}, 1), meta: meta, bad: map[string]bool{},
		nodes: map[string]Member{}, local: name, known: KnownSet{}, downSince: map[string]time.Time{}, deleted: map[string]bool{},
		lastAddr: map[string]netip.Addr{}, seeds: map[netip.Addr]bool{}, seedKick: make(chan struct{}, 1)}
	allow, err := ParseAllowFrom(cfg.AllowFrom)
	if err != nil {
		return nil, fmt.Errorf("gossip.allow_from: %w", err)
	}
	m.allowFrom = allow
	if cfg.ForgetAfter <= 0 {
		m.cfg.ForgetAfter = DefaultConfig().ForgetAfter
	}
	if err := m.loadKnown(); err != nil {
		return nil, err
	}
	m.known.Join(name, meta.Digest)
	for _, n := range m.known.Names(meta.Digest) {
		if n != name {
			m.downSince[n] = time.Now() // until seen alive
		}
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	// Port 0 lets memberlist pick a port free for both UDP and TCP (tests);
	// the config's validation asks operators for a real one.
	h, p, err := net.SplitHostPort(cfg.Bind)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("gossip.bind: %q: want HOST:PORT", cfg.Bind)
	}
	bindIP := netip.IPv4Unspecified()
	if h != "" {
		if bindIP, err = netip.ParseAddr(h); err != nil {
			return nil, fmt.Errorf("gossip.bind: %q: want an IP address as HOST", cfg.Bind)
		}
	}
	mc.BindAddr, mc.BindPort = bindIP.String(), port
	if cfg.Advertise != "" {
		if a, err := netip.ParseAddr(cfg.Advertise); err == nil {
			mc.AdvertiseAddr, mc.AdvertisePort = a.String(), port
		} else if h, p, err := SplitHostPort(cfg.Advertise); err == nil {
			mc.AdvertiseAddr, mc.AdvertisePort = h, p
		}
	}
	mc.ProbeInterval = cmp.Or(opts.ProbeInterval, mc.ProbeInterval)
	mc.ProbeTimeout = cmp.Or(opts.ProbeTimeout, mc.ProbeTimeout)
	mc.GossipInterval = cmp.Or(opts.GossipInterval, mc.GossipInterval)
	mc.SuspicionMult = cmp.Or(opts.SuspicionMult, mc.SuspicionMult)
	// The known set travels in push-pull: sync more often than the LAN
	// default (30 s), so an operator's forget reaches every node soon.
	mc.PushPullInterval = cmp.Or(opts.PushPullInterval, 10*time.Second)
	if err := m.setKeyring(mc); err != nil {
		return nil, err
	}
	m.broadcasts = &memberlist.TransmitLimitedQueue{RetransmitMult: mc.RetransmitMult, NumNodes: func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return max(len(m.known), 1)
	}}
	d := delegate{m: m}
	mc.Delegate, mc.Events, mc.Conflict = d, d, conflictDelegate{m: m, notify: opts.Duplicate}
	mc.Logger = log.New(&memberlistLog{log: logger}, "", 0)
	nt, err := listenGossip(bindIP, port, mc.Logger)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	if port == 0 { // tests: the port the kernel picked
		mc.BindPort = nt.GetAutoBindPort()
		mc.AdvertisePort = cmp.Or(mc.AdvertisePort, mc.BindPort)
	}
	m.admitSubnet(cfg, mc.AdvertiseAddr, bindIP)
	m.filter = newSourceFilter(nt, bindIP, m.admitted, logger)
	mc.Transport = m.filter
	if opts.Discoverer != nil {
		m.discover = opts.Discoverer
	} else if len(cfg.Join) > 0 {
		m.discover = SeedList{Join: cfg.Join, Log: logger}
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		m.filter.Shutdown()
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	m.ml = ml
	m.addr = ml.LocalNode().Address()
	if cfg.StateDir != "" {
		m.knownChanged()
	}
	go m.joinLoop(ctx)
	go m.forgetLoop(ctx)
	go m.seedLoop(ctx)
	return m, nil
}

// loadKnown starts the known set from gossip.state_dir, if set.
func (m *Membership) loadKnown() error {
	if m.cfg.StateDir == "" {
		return nil
	}
	k, moved, err := LoadKnown(m.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("gossip.state_dir: %w", err)
	}
	if moved != "" {
		m.log.Warn().Str("moved_to", moved).Msg("the known members' file in gossip.state_dir does not parse: moved aside; starting from this node alone, gossip refills the set")
	}
	m.known = k
	if names := k.Names(m.meta.Digest); len(names) > 0 {
		m.log.Info().Strs("known", names).Msg("known members from gossip.state_dir")
	}
	return nil
}

// setKeyring gives memberlist the keys of gossip.secret_key_file, or
// warns that gossip is not encrypted.
func (m *Membership) setKeyring(mc *memberlist.Config) error {
	file := m.cfg.SecretKeyFile
	if file == "" {
		m.log.Warn().Msg("gossip is not encrypted (gossip.insecure: true): anyone who reaches the gossip port can join and steer VIPs; set gossip.secret_key_file")
		return nil
	}
	keys, err := LoadKeys(file)
	if err != nil {
		return fmt.Errorf("gossip.secret_key_file: %w", err)
	}
	if mc.Keyring, err = memberlist.NewKeyring(keys[1:], keys[0]); err != nil {
		return fmt.Errorf("gossip.secret_key_file: %w", err)
	}
	m.keyring = mc.Keyring
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
		m.log.Warn().Str("file", file).Str("mode", st.Mode().Perm().String()).
			Msg("the gossip key is readable by group or others on this host: chmod 600 it (in Kubernetes, defaultMode: 0400 on the secret volume)")
	}
	return nil
}

// listenGossip opens memberlist's UDP and TCP sockets; port 0 (tests)
// retries a few times, since the kernel picks a port for TCP that UDP
// may not have free.
func listenGossip(ip netip.Addr, port int, logger *log.Logger) (*memberlist.NetTransport, error) {
	var err error
	for range 10 {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{ip.String()}, BindPort: port, Logger: logger})
		if err == nil || port != 0 {
			return nt, err
		}
	}
	return nil, err
}

// admission is what the source filter makes of a source.
type admission int

const (
	refused  admission = iota
	admitted           // a member, a seed, gossip.allow_from
	stranger           // gossip.admit_subnet's: streams in their own slots
)

// admitSubnet sets the subnet gossip.admit_subnet admits: the advertised
// address's (else the bound one's), as the host's interfaces have it.
func (m *Membership) admitSubnet(cfg Config, advertise string, bind netip.Addr) {
	if !cfg.AdmitsSubnet() {
		return
	}
	a, err := netip.ParseAddr(advertise)
	if err != nil {
		a = bind
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil || !a.IsValid() || a.IsUnspecified() {
		m.log.Warn().Err(err).Str("address", a.String()).Msg("gossip.admit_subnet: no subnet for this node's gossip address: new nodes join through the seeds only when gossip.allow_from admits them")
		return
	}
	if p, ok := subnetOf(a, addrs); ok {
		m.subnet = p
		m.log.Info().Stringer("subnet", p).Msg("new nodes on this subnet may join through any seed with the cluster's key (gossip.admit_subnet); others need gossip.join or gossip.allow_from")
	}
}

// admitted says whether gossip from ip may reach memberlist: a member
// (alive, or down and still known), a seed, or gossip.allow_from; else,
// as a stranger, a source on gossip.admit_subnet's subnet. A miss asks
// for the seeds afresh, so a node that just became a seed (a new pod of
// the DaemonSet) is admitted on its next try.
func (m *Membership) admitted(ip netip.Addr) admission {
	for _, p := range m.allowFrom {
		if p.Contains(ip) {
			return admitted
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seeds[ip] {
		return admitted
	}
	for name, a := range m.lastAddr {
		if a != ip {
			continue
		}
		_, alive := m.nodes[name]
		_, down := m.downSince[name]
		if alive || down {
			return admitted
		}
	}
	select {
	case m.seedKick <- struct{}{}:
	default:
	}
	if m.subnet.IsValid() && m.subnet.Contains(ip) {
		return stranger
	}
	return refused
}

// seedRefresh is how often the seeds the filter admits are looked up
// again; seedRefreshMin spaces lookups that refused sources ask for.
const (
	seedRefresh    = 30 * time.Second
	seedRefreshMin = time.Second
)

// SetKeys installs a new set of gossip keys in place: keys[0] encrypts
// from now on, all are accepted, and keys no longer listed are dropped.
func (m *Membership) SetKeys(keys [][]byte) error {
	if m.keyring == nil {
		return errors.New("gossip runs without a key: adding one needs a restart")
	}
	if len(keys) == 0 {
		return errors.New("no gossip key")
	}
	for _, k := range keys {
		if err := m.keyring.AddKey(k); err != nil {
			return fmt.Errorf("install a gossip key: %w", err)
		}
	}
	if err := m.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("make the first gossip key primary: %w", err)
	}
	for _, k := range m.keyring.GetKeys() {
		if !slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			if err := m.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("remove an old gossip key: %w", err)
			}
		}
	}
	m.log.Info().Int("keys", len(keys)).Msg("gossip keys applied: the first encrypts, all are accepted")
	return nil
}

// Refused is how many gossip packets and streams were dropped unread
// because of their source.
func (m *Membership) Refused() uint64 { return m.filter.Refused() }

// logEvery is how often at most one kind of memberlist warning is logged;
// maxLogKinds bounds the kinds remembered.
const (
	logEvery    = 10 * time.Second
	maxLogKinds = 64
)

var _ io.Writer = (*memberlistLog)(nil)

// LocalAddr is the address other members reach this node at, HOST:PORT.
// memberlist rewrites its local node's fields on every metadata update, so
// reading them later would race with UpdateMeta.
func (m *Membership) LocalAddr() string { return m.addr }

// Changes signals (coalesced) that the member list or someone's metadata changed.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

// UpdateMeta changes this node's metadata under the lock, so the health
// checks and the controller, which write different fields, never undo each
// other's change; a change is gossiped at once.
func (m *Membership) UpdateMeta(change func(*Meta)) {
	m.mu.Lock()
	meta := m.meta
	meta.Failing = slices.Clone(meta.Failing)
	change(&meta)
	// Every field counts: one left out of the comparison would never be
	// gossiped on its own.
	same := reflect.DeepEqual(m.meta, meta)
	m.meta = meta
	m.mu.Unlock()
	if same {
		return
	}
	// memberlist's UpdateNode must not run twice at once.
	m.updateMu.Lock()
	err := m.ml.UpdateNode(time.Second)
	m.updateMu.Unlock()
	if err != nil {
		m.log.Warn().Err(err).Msg("cannot gossip new metadata")
	}
	m.notify()
}

// Meta returns this node's current metadata.
func (m *Membership) Meta() Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta
}

// Members returns the live members, this node included, sorted by name.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	out := make([]Member, 0, len(m.nodes))
	for _, n := range m.nodes {
		out = append(out, n)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close leaves the cluster politely (so the others mark this node down at
// once rather than after failure detection; it stays known) and stops
// gossiping.
func (m *Membership) Close() error {
	if err := m.ml.Leave(500 * time.Millisecond); err != nil {
		m.log.Debug().Err(err).Msg("leave")
	}
	return m.ml.Shutdown()
}

// Crash stops gossiping without leaving, as a crashed node would: the
// others must detect the failure. For tests and fault drills.
func (m *Membership) Crash() error { return m.ml.Shutdown() }
