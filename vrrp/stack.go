package vrrp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// StackConfig is the data plane of one interface: its virtual routers and
// how they advertise and announce.
type StackConfig struct {
	Interface string
	VRRP      Config
	GARP      GARPConfig
	Routers   []RouterSpec
	// Dev holds these VIPs on other interfaces than Interface, and
	// announces them there (keepalived's "dev"): VRRP on one interface,
	// the VIP on another.
	Dev map[netip.Addr]string
	// IPv4 opens the IPv4 socket even without IPv4 routers, if the
	// interface has an IPv4 address: the dynamic mode gossips the node's
	// IPv4 VRRP source. IPv6-only nodes open no IPv4 socket.
	IPv4 bool
	// OnLinkPeers sends unicast adverts only to the peers on the
	// interface's own subnets (an agent's second interface).
	OnLinkPeers bool
	// DefendClaims answers other MACs' gratuitous ARPs for the VIPs this
	// node is master of. Only the dynamic mode knows the members, so only
	// it answers; the static mode, like keepalived, does not.
	DefendClaims bool
	// Auth signs and checks adverts (vrrp.auth_hmac, or the dynamic
	// mode's key derived from the gossip key); the zero value is off.
	Auth AuthKeys
	// Notify, when set, hears every state change (the notify hooks); it
	// must not block.
	Notify  func(StateChange)
	Metrics *Metrics
	Log     zerolog.Logger
}

// ErrInterfaceReplaced ends a Stack whose interface was deleted and
// created again under its name: its sockets are bound to the old one, so
// the caller starts a new Stack.
var ErrInterfaceReplaced = errors.New("the interface was recreated")

// Stack owns the data plane of one interface: the transport, the VIP
// addresses, the announcer and its pacer, the virtual MACs, the engine,
// the link watch and the answers to foreign claims. It starts them in one
// order and tears them down in the reverse one, so that nothing is left
// open whatever fails. Its embedded Engine takes the commands.
type Stack struct {
	*Engine
	cfg   StackConfig
	tr    Transport
	ann   LinkAnnouncer
	devs  []LinkAnnouncer // the announcers of the Dev interfaces
	pacer *Pacer
	// hosts are the address managers that keep the host's own address
	// first, per dev ("": the interface's).
	hosts  map[string]hostFirst
	kernel Kernel
	ctx    context.Context // the stack's lifetime
	// verifyMu guards the running verification: its config, its end and
	// when it has ended.
	verifyMu     sync.Mutex
	verifyCfg    VerifyConfig
	verifyCancel context.CancelFunc
	verifyDone   chan struct{}
	cancel       context.CancelFunc
	done         chan struct{} // closed after the teardown; err says why
	err          error
	events       atomic.Pointer[EventSink]
}

// Kernel opens the parts of a Stack on the host. LinuxKernel is the real
// one; tests pass fakes, so the order is tested without root.
type Kernel struct {
	CheckInterface     func(ifname string, routers []RouterSpec) error
	Listen             func(cfg TransportConfig) (Transport, error)
	Addresses          func(ifname string) (AddressManager, error)
	Announcer          func(ifname string, mode AnnounceMode) (LinkAnnouncer, error)
	VirtualMACs        func(ifname string, base LinkAnnouncer, log zerolog.Logger) (LinkVMACs, error)
	WatchLink          func(ctx context.Context, ifname string, resynced func(error)) (<-chan LinkEvent, error)
	WatchForeignClaims func(ctx context.Context, ifname string) (<-chan ForeignClaim, error)
	// Prober, when set, verifies announcements (garp.verify).
	Prober func(ifname string) (Prober, error)
}

// LinuxKernel is the Kernel of a Linux host.
func LinuxKernel() Kernel {
	return Kernel{
		CheckInterface: CheckInterface,
		Listen:         func(cfg TransportConfig) (Transport, error) { return ListenTransport(cfg) },
		Addresses:      func(ifname string) (AddressManager, error) { return NewNetlinkAddresses(ifname) },
		Announcer:      func(ifname string, mode AnnounceMode) (LinkAnnouncer, error) { return NewLinuxAnnouncer(ifname, mode) },
		VirtualMACs: func(ifname string, base LinkAnnouncer, log zerolog.Logger) (LinkVMACs, error) {
			return NewLinuxVMACs(ifname, base, log)
		},
		WatchLink:          WatchLink,
		WatchForeignClaims: WatchForeignClaims,
		Prober:             func(ifname string) (Prober, error) { return NewLinuxProber(ifname) },
	}
}

// LinkAnnouncer sends a VIP's announcements on one interface in a mode a
// reload may change.
type LinkAnnouncer interface {
	Sender
	Mode() AnnounceMode
	SetMode(AnnounceMode)
	Close() error
}

// LinkVMACs holds and announces VIPs on virtual MAC interfaces.
type LinkVMACs interface {
	VirtualMACs
	Sender
	Close() error
}

// StartStack opens the data plane of cfg in this order: the interface
// check, the transport, the addresses, the announcer, the virtual MACs,
// the engine with its pacer, the link watch and the claim watch. A step
// that fails closes what the steps before it opened.
//
// It stays one function of over 100 lines so that the start order and its
// undo list read top to bottom in one place (stack_test.go asserts both).
func StartStack(cfg StackConfig, k Kernel) (*Stack, error) {
	if err := k.CheckInterface(cfg.Interface, cfg.Routers); err != nil {
		return nil, &ConfigError{err}
	}
	if len(cfg.Dev) > 0 && cfg.VRRP.UseVMAC {
		vip := slices.MinFunc(slices.Collect(maps.Keys(cfg.Dev)), netip.Addr.Compare)
		return nil, &ConfigError{fmt.Errorf("vips: dev: %s", VMACRefusesDev(vip, cfg.Interface))}
	}
	devs := devNames(cfg.Dev)
	for _, dev := range devs {
		var on []netip.Prefix
		for _, r := range cfg.Routers {
			on = append(on, slices.DeleteFunc(slices.Clone(r.VIPs), func(p netip.Prefix) bool { return cfg.Dev[p.Addr()] != dev })...)
		}
		if err := k.CheckInterface(dev, []RouterSpec{{VIPs: on}}); err != nil {
			return nil, &ConfigError{fmt.Errorf("vips: dev: %w", err)}
		}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	cfg.Metrics = cfg.Metrics.On(cfg.Interface)
	var has4, has6 bool
	for _, r := range cfg.Routers {
		has4, has6 = has4 || !r.V6(), has6 || r.V6()
	}
	if err := cfg.GARP.Validate(); err != nil {
		return nil, &ConfigError{fmt.Errorf("garp.%w", err)}
	}
	peers, err := cfg.VRRP.Peers()
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("vrrp.%w", err)}
	}
	var undo []func()
	closeAll := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	fail := func(err error) (*Stack, error) { closeAll(); return nil, err }
	s := &Stack{cfg: cfg, done: make(chan struct{})}
	src4, src6, err := cfg.VRRP.Sources()
	if err != nil {
		return fail(&ConfigError{fmt.Errorf("vrrp.%w", err)})
	}
	var vips []netip.Addr
	for _, r := range cfg.Routers {
		for _, p := range r.VIPs {
			vips = append(vips, p.Addr())
		}
	}
	if s.tr, err = k.Listen(TransportConfig{Interface: cfg.Interface, UnicastPeers: peers, Unicast: cfg.VRRP.UnicastAuto(), Source4: src4, Source6: src6, VIPs: vips,
		Metrics: cfg.Metrics, IPv4: has4, MaybeIPv4: cfg.IPv4, IPv6: has6, Log: cfg.Log, OnLinkPeers: cfg.OnLinkPeers}); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { s.tr.Close() })
	base, err := k.Addresses(cfg.Interface)
	if err != nil {
		return fail(err)
	}
	mode, err := cfg.GARP.AnnounceMode()
	if err != nil {
		return fail(&ConfigError{fmt.Errorf("garp.%w", err)})
	}
	if s.ann, err = k.Announcer(cfg.Interface, mode); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { s.ann.Close() })
	addrs := byDev{AddressManager: base, Sender: s.ann}
	s.hosts = map[string]hostFirst{}
	if h, ok := base.(hostFirst); ok {
		s.hosts[""] = h
	}
	for _, dev := range devs {
		d, err := k.Addresses(dev)
		if err != nil {
			return fail(err)
		}
		if h, ok := d.(hostFirst); ok {
			s.hosts[dev] = h
		}
		a, err := k.Announcer(dev, mode)
		if err != nil {
			return fail(err)
		}
		undo = append(undo, func() { a.Close() })
		s.devs = append(s.devs, a)
		for vip, name := range cfg.Dev {
			if name == dev {
				addrs.set(vip, d, a)
			}
		}
	}
	deps := Deps{Transport: s.tr, Addresses: addrs, Log: cfg.Log, Metrics: cfg.Metrics, Events: s.event, Auth: cfg.Auth, Notify: cfg.Notify}
	var sender Sender = addrs
	if cfg.VRRP.UseVMAC {
		vmacs, err := k.VirtualMACs(cfg.Interface, s.ann, cfg.Log)
		if err != nil {
			return fail(err)
		}
		undo = append(undo, func() {
			if err := vmacs.Close(); err != nil {
				cfg.Log.Warn().Err(err).Msg("cannot remove every virtual MAC interface")
			}
		})
		sender, deps.VMACs = vmacs, vmacs
	}
	if deps.Refresh, err = cfg.GARP.Scheduler(); err != nil {
		return fail(&ConfigError{fmt.Errorf("garp.%w", err)})
	}
	s.pacer = NewPacer(sender, cfg.GARP.Budget(), nil, cfg.Metrics, cfg.Log)
	deps.Announcer = s.pacer
	if s.Engine, err = NewEngine(cfg.VRRP, cfg.GARP, cfg.Routers, deps); err != nil {
		return fail(&ConfigError{err})
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.ctx, s.kernel = cancel, ctx, k
	replaced := make(chan struct{}, 1)
	// The link watch, and where other MACs' claims are answered, of the
	// interface and each dev.
	for _, dev := range append([]string{""}, devs...) {
		ifname := cmp.Or(dev, cfg.Interface)
		if events, err := k.WatchLink(ctx, ifname, s.resynced); err != nil {
			cfg.Log.Warn().Err(err).Str("interface", ifname).Msg("interface changes are not watched: a link flap, a recreated interface or VIPs removed by hand need a restart")
		} else {
			go s.follow(ctx, dev, events, replaced)
		}
		if !cfg.DefendClaims || !has4 {
			continue
		}
		if claims, err := k.WatchForeignClaims(ctx, ifname); err != nil {
			cfg.Log.Warn().Err(err).Str("interface", ifname).Msg("other MACs' announcements of our VIPs are not watched")
		} else {
			go func() {
				for cl := range claims {
					s.Engine.ForeignClaim(ctx, cl.Addr, cl.MAC)
				}
			}()
		}
	}
	pacerDone := make(chan struct{})
	go func() { s.pacer.Run(ctx); close(pacerDone) }()
	s.startVerify(cfg.GARP.Verify)
	go func() {
		err := s.Engine.Run(ctx)
		if len(replaced) > 0 {
			err = ErrInterfaceReplaced
		}
		cancel()
		<-pacerDone
		s.stopVerify()
		closeAll()
		s.err = err
		close(s.done)
	}()
	return s, nil
}

// follow hands the engine an interface's changes until the watch ends:
// dev is "" for the stack's own interface, whose link state is the
// virtual routers'; a dev interface's is not (they advertise on the
// stack's), only its VIPs are. A recreated interface ends the stack: its
// sockets are deaf.
func (s *Stack) follow(ctx context.Context, dev string, events <-chan LinkEvent, replaced chan<- struct{}) {
	log := s.cfg.Log
	if dev != "" {
		log = log.With().Str("dev", dev).Logger()
	}
	for ev := range events {
		var err error
		switch ev.Kind {
		case LinkUp, LinkDown:
			if dev == "" {
				err = s.Engine.SetLink(ctx, ev.Kind == LinkUp)
			}
		case AddressRemoved:
			if h := s.hosts[dev]; h != nil && h.Moved(ev.Addr) {
				continue // put behind the host's address, not removed
			}
			err = s.Engine.AddressRemoved(ctx, ev.Addr)
		case AddressAdded:
			if h := s.hosts[dev]; h != nil {
				var moved []netip.Addr
				if moved, err = h.KeepHostFirst(ev.Addr); len(moved) > 0 {
					log.Info().Str("address", ev.Addr.String()).Int("vips", len(moved)).
						Msg("the host's own address came back behind VIPs (a re-plug, a DHCP renewal): VIPs added again behind it, so it is the interface's first address and never a VIP")
				}
			}
		case Resynced:
			err = s.Engine.Resync(ctx)
		case LinkReplaced:
			log.Warn().Msg("the interface was recreated: starting the data plane again, with new sockets")
			select {
			case replaced <- struct{}{}:
			default: // the stack ends already
			}
			s.cancel()
			return
		}
		if err != nil && ctx.Err() == nil {
			log.Error().Err(err).Str("event", ev.Kind.String()).Msg("cannot follow an interface change")
		}
	}
}

// startVerify starts verifying the announcements with v, where it is on
// and there are targets (v's, or the interface's default gateways).
func (s *Stack) startVerify(v VerifyConfig) {
	s.verifyMu.Lock()
	defer s.verifyMu.Unlock()
	s.verifyCfg = v
	log := s.cfg.Log
	if !v.On() || s.kernel.Prober == nil {
		return
	}
	targets, _ := v.targets() // validated
	if len(targets) == 0 {
		var err error
		if targets, err = defaultGateways(s.cfg.Interface); err != nil {
			log.Warn().Err(err).Msg("announcements are not verified: cannot read the default gateways")
			return
		}
	}
	if len(targets) == 0 {
		log.Info().Msg("announcements are not verified: the interface has no default gateway; name the router in garp.verify.targets")
		return
	}
	prober, err := s.kernel.Prober(s.cfg.Interface)
	if err != nil {
		log.Warn().Err(err).Msg("announcements are not verified")
		return
	}
	for _, a := range append([]LinkAnnouncer{s.ann}, s.devs...) {
		if t, ok := a.(interface{ SetTargets([]netip.Addr) }); ok {
			t.SetTargets(targets)
		}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.verifyCancel, s.verifyDone = cancel, done
	vf := &verifier{cfg: v, targets: targets, prober: prober, held: s.Engine.Held, repair: s.pacer.Repair,
		event: s.event, metrics: s.cfg.Metrics, log: log}
	go func() {
		defer close(done)
		vf.run(ctx)
		prober.Close()
	}()
	strs := make([]string, len(targets))
	for i, t := range targets {
		strs[i] = t.String()
	}
	log.Info().Strs("targets", strs).Dur("interval", cmp.Or(v.Interval, defaultVerifyInterval)).
		Msg("verifying that the router sends each held VIP to this node (an echo from the VIP); re-announcing those it does not")
}

// stopVerify ends verification and waits for it.
func (s *Stack) stopVerify() {
	s.verifyMu.Lock()
	cancel, done := s.verifyCancel, s.verifyDone
	s.verifyCancel, s.verifyDone = nil, nil
	s.verifyMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// hostFirst is the part of an AddressManager that keeps the host's own
// IPv4 address ahead of the VIPs (NetlinkAddresses).
type hostFirst interface {
	KeepHostFirst(added netip.Addr) ([]netip.Addr, error)
	Moved(a netip.Addr) bool
}

// resynced logs and counts a lost netlink subscription, and each attempt
// to subscribe again.
func (s *Stack) resynced(cause error) {
	s.cfg.Metrics.NetlinkResyncs.Inc()
	s.cfg.Log.Warn().Err(cause).Msg("the netlink watch of the interface lost events (a busy host?): subscribing again, then checking the link and every master's VIPs")
}

// Done is closed when the stack has ended and closed everything: after
// Stop, or on its own (Err says why).
func (s *Stack) Done() <-chan struct{} { return s.done }

// Err is why the stack ended once Done is closed: nil after Stop,
// ErrInterfaceReplaced, or the engine's failure.
func (s *Stack) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Source is the address adverts of a family leave from.
func (s *Stack) Source(v6 bool) netip.Addr { return s.tr.Source(v6) }

// SetEvents sets where the engine's events go (Kubernetes Events); nil
// drops them.
func (s *Stack) SetEvents(sink EventSink) {
	if sink == nil {
		s.events.Store(nil)
		return
	}
	s.events.Store(&sink)
}

func (s *Stack) event(warning bool, reason, message string) {
	if sink := s.events.Load(); sink != nil {
		(*sink)(warning, reason, message)
	}
}

// SetGARP applies a new garp section in place: the takeover burst and the
// refresh schedule, the announcement mode and the budget.
func (s *Stack) SetGARP(ctx context.Context, g GARPConfig) error {
	refresh, err := g.Scheduler()
	if err != nil {
		return fmt.Errorf("garp.%w", err)
	}
	mode, err := g.AnnounceMode()
	if err != nil {
		return fmt.Errorf("garp.%w", err)
	}
	if err := s.Engine.SetGARP(ctx, g, refresh); err != nil {
		return err
	}
	s.verifyMu.Lock()
	changed := !reflect.DeepEqual(s.verifyCfg, g.Verify)
	s.verifyMu.Unlock()
	if changed {
		s.stopVerify()
		s.startVerify(g.Verify)
	}
	s.ann.SetMode(mode)
	for _, a := range s.devs {
		a.SetMode(mode)
	}
	s.pacer.SetBudget(g.Budget())
	return nil
}

// stopWait bounds how long Stop waits for the engine to resign and the
// parts to close.
const stopWait = 2 * time.Second

// Stop resigns every master (priority-0 adverts, so a backup takes over
// within skew time), removes the VIPs, and closes the parts in the
// reverse order of StartStack. It returns the engine's error, if any.
func (s *Stack) Stop() error {
	s.cancel()
	select {
	case <-s.done:
		if errors.Is(s.err, ErrInterfaceReplaced) {
			return nil
		}
		return s.err
	case <-time.After(stopWait):
		return fmt.Errorf("VRRP engine did not stop within %s", stopWait)
	}
}

// ConfigError is a Stack that cannot start because of what it was asked
// to run, not because of the host: the agent exits 2 for it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }
