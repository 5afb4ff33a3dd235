package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

func newAgentCmd() *cobra.Command {
	var path string
	var check bool
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Run the VRRP agent: hold, fail over and announce this node's VIPs",
		Long: `Run the garpd agent on this node.

The agent runs one VRRP virtual router per VIP (or VIP group) on the
configured interface, adds the VIPs it is master for and announces them
with gratuitous ARP / unsolicited neighbour advertisements.

Signals: SIGHUP reloads the config (an invalid one is logged and ignored);
SIGTERM or SIGINT resigns every master with a priority-0 advert, removes
the VIPs and exits 0.

Environment: GOMAXPROCS, when unset, is 1. The agent's work is one VRRP
loop, a reader per address family, the announcer, gossip and HTTP; none
gains from parallel threads, and each idle extra thread is woken on every
advert burst (255 routers at 100 ms: a backup measured 1.3 % of a core
with one thread, 1.5 % with two).
Set GOMAXPROCS to use more.

--check validates the config, prints the virtual routers it defines and
exits, without touching the network.

Exit codes: 0 clean stop, 1 runtime failure, 2 invalid config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageError(errors.New("--config is required, e.g. garpd agent --config /etc/garpd/garpd.yaml"))
			}
			if check {
				return checkConfig(cmd.OutOrStdout(), path)
			}
			if os.Getenv("GOMAXPROCS") == "" {
				runtime.GOMAXPROCS(1)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return runAgent(ctx, path, hup, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "path of the YAML config file")
	cmd.Flags().BoolVar(&check, "check", false, "validate the config and print its virtual routers, then exit")
	return cmd
}

func parseLevel(s string) (zerolog.Level, error) {
	l, err := zerolog.ParseLevel(s)
	if err != nil || s == "" {
		return 0, fmt.Errorf("%q: use trace, debug, info, warn or error", s)
	}
	return l, nil
}

// logOutput is the agent's log writer. The logger passes every event
// through it, and it applies the level and format the config sets now, so
// a reload changes both in place, in every component that holds the logger.
type logOutput struct {
	out   io.Writer
	level atomic.Int32
	w     atomic.Pointer[io.Writer]
}

func newLogOutput(c logConfig, out io.Writer) *logOutput {
	o := &logOutput{out: out}
	o.set(c)
	return o
}

// set applies a validated log config.
func (o *logOutput) set(c logConfig) {
	lvl, _ := parseLevel(c.Level)
	w := o.out
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: o.out, TimeFormat: "15:04:05.000"}
	}
	o.w.Store(&w)
	o.level.Store(int32(lvl))
}

// enabled tells a logger's hook whether an event is kept: disabled events
// are not even formatted.
func (o *logOutput) enabled(l zerolog.Level) bool { return l >= zerolog.Level(o.level.Load()) }

func (o *logOutput) Write(p []byte) (int, error) { return (*o.w.Load()).Write(p) }

func (o *logOutput) logger() zerolog.Logger {
	return zerolog.New(o).Hook(levelHook{o}).With().Timestamp().Logger()
}

// levelHook discards events below the current level before they are written.
type levelHook struct{ o *logOutput }

func (h levelHook) Run(e *zerolog.Event, l zerolog.Level, _ string) {
	if l != zerolog.NoLevel && !h.o.enabled(l) {
		e.Discard()
	}
}

// agent holds the running pieces so a reload can swap them.
type agent struct {
	log     zerolog.Logger
	logOut  *logOutput
	reg     *prometheus.Registry
	metrics *vrrp.Metrics
	members *prometheus.GaugeVec
	checks  *prometheus.GaugeVec
	started time.Time
	mu      sync.Mutex
	cur     *loaded
	engine  *vrrp.Engine
	stopEng context.CancelFunc
	engDone chan error
	dyn     *dynamicMode // nil in static mode
	pacer   *vrrp.Pacer
	ann     *vrrp.LinuxAnnouncer
	// relink asks the main loop to restart the engine: the interface was
	// recreated.
	relink chan struct{}
	// pprof follows http.pprof; read per request, so a reload turns the
	// profiler on or off without a new listener.
	pprof atomic.Bool
	// kube records the engine's Events while the dynamic mode has a
	// Kubernetes section; nil otherwise.
	kube atomic.Pointer[gossip.Kube]
}

// kubeEvent is the engine's event sink: Events on the Node, when there
// is a Kubernetes section.
func (a *agent) kubeEvent(warning bool, reason, message string) {
	if k := a.kube.Load(); k != nil {
		k.Event(warning, reason, message)
	}
}

func runAgent(ctx context.Context, path string, hup <-chan os.Signal, stderr io.Writer) error {
	l, err := loadConfig(path)
	if err != nil {
		return err
	}
	logOut := newLogOutput(l.cfg.Log, stderr)
	a := &agent{log: logOut.logger(), logOut: logOut, reg: prometheus.NewRegistry(), started: time.Now(),
		relink: make(chan struct{}, 1)}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = vrrp.NewMetrics(a.reg)
	a.members = balancer.NewMembersGauge(a.reg)
	a.checks = gossip.NewHealthGauge(a.reg)
	// garpd_node_info names the node behind a scrape target, so
	// dashboards show node names rather than addresses.
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "garpd_node_info",
		Help: "Always 1: the node name, garpd version and mode (static or dynamic) of this agent.",
	}, []string{"node", "version", "mode"})
	a.reg.MustRegister(info)
	mode := "static"
	if l.dynamic() {
		mode = "dynamic"
	}
	info.WithLabelValues(l.cfg.Node, version, mode).Set(1)
	if err := a.startEngine(l); err != nil {
		return err
	}
	a.pprof.Store(l.cfg.HTTP.PProf)
	srv, err := a.serveHTTP(l.cfg.HTTP.Listen)
	if err != nil {
		a.stopEngine()
		return err
	}
	a.log.Info().Str("node", l.cfg.Node).Str("interface", l.cfg.Interface).Int("routers", len(l.routers)).
		Int("vrrp_version", l.cfg.VRRP.Version).Dur("advert_interval", l.cfg.VRRP.AdvertInterval).
		Str("http", l.cfg.HTTP.Listen).Int("gomaxprocs", runtime.GOMAXPROCS(0)).Msg("garpd agent started")
	for _, g := range l.alloc.Grouped {
		a.log.Warn().Msg(g)
	}
	for {
		select {
		case <-ctx.Done():
			a.log.Info().Msg("stopping: resigning masters and removing VIPs")
			err := a.stopEngine()
			shut, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			srv.Shutdown(shut)
			cancel()
			if err != nil {
				return err
			}
			a.log.Info().Msg("garpd agent stopped")
			return nil
		case err := <-a.engDone:
			srv.Close()
			return fmt.Errorf("VRRP engine stopped: %w", err)
		case <-a.relink:
			a.mu.Lock()
			cur := a.cur
			a.mu.Unlock()
			if err := a.restartEngine(cur); err != nil {
				srv.Close()
				return fmt.Errorf("restart on the recreated interface: %w", err)
			}
		case <-hup:
			if srv, err = a.reload(path, srv); err != nil {
				srv.Close()
				return err
			}
		}
	}
}

func (a *agent) startEngine(l *loaded) error {
	c := l.cfg
	if err := vrrp.CheckInterface(c.Interface, l.routers); err != nil {
		return &configError{err}
	}
	tr, err := vrrp.ListenTransport(vrrp.TransportConfig{
		Interface: c.Interface, UnicastPeers: l.peers, Unicast: c.VRRP.UnicastAuto(), Metrics: a.metrics,
		IPv4: hasFamily(l, false) || l.dynamic(), IPv6: hasFamily(l, true),
	})
	if err != nil {
		return err
	}
	addrs, err := vrrp.NewNetlinkAddresses(c.Interface)
	if err != nil {
		tr.Close()
		return err
	}
	mode, _ := vrrp.ParseAnnounceMode(c.GARP.Mode) // validated with the config
	ann, err := vrrp.NewLinuxAnnouncer(c.Interface, mode)
	if err != nil {
		tr.Close()
		return err
	}
	var sender vrrp.Sender = ann
	var vmacs vrrp.VirtualMACs
	closeVMACs := func() {}
	if c.VRRP.UseVMAC {
		adverts := tr
		if c.VRRP.VMACXmitBase {
			adverts = nil
		}
		vm, err := vrrp.NewLinuxVMACs(c.Interface, ann, adverts, a.log)
		if err != nil {
			tr.Close()
			ann.Close()
			return err
		}
		sender, vmacs = vm, vm
		closeVMACs = func() {
			if err := vm.Close(); err != nil {
				a.log.Warn().Err(err).Msg("cannot remove every virtual MAC interface")
			}
		}
	}
	sched, _ := balancer.NewScheduler(refreshConfig(c)) // validated with the config
	pacer := vrrp.NewPacer(sender, c.GARP.MaxRate, nil, a.metrics, a.log)
	eng, err := vrrp.NewEngine(c.VRRP, c.GARP, l.routers, vrrp.Deps{
		Transport: tr, Addresses: addrs, VMACs: vmacs, Announcer: pacer, Refresh: sched, Log: a.log, Metrics: a.metrics, Events: a.kubeEvent,
	})
	if err != nil {
		closeVMACs()
		tr.Close()
		ann.Close()
		return &configError{err}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if events, err := vrrp.WatchLink(ctx, c.Interface); err != nil {
		a.log.Warn().Err(err).Msg("interface changes are not watched: a link flap or a recreated interface needs a restart")
	} else {
		go a.followLink(ctx, events, eng)
	}
	// Only the dynamic mode knows the plan and the members, so only it
	// answers others' announcements of its VIPs.
	if l.dynamic() && hasFamily(l, false) {
		if claims, err := vrrp.WatchForeignClaims(ctx, c.Interface); err != nil {
			a.log.Warn().Err(err).Msg("other MACs' announcements of our VIPs are not watched")
		} else {
			go func() {
				for cl := range claims {
					eng.ForeignClaim(ctx, cl.Addr, cl.MAC)
				}
			}()
		}
	}
	done := make(chan error, 1)
	pacerCtx, stopPacer := context.WithCancel(context.Background())
	pacerDone := make(chan struct{})
	go func() { pacer.Run(pacerCtx); close(pacerDone) }()
	go func() {
		err := eng.Run(ctx)
		stopPacer()
		<-pacerDone
		closeVMACs()
		tr.Close()
		ann.Close()
		done <- err
	}()
	var dyn *dynamicMode
	if l.dynamic() {
		if dyn, err = startDynamic(l, eng, tr, a.log, a.members, a.checks); err != nil {
			cancel()
			<-done
			return err
		}
		a.kube.Store(dyn.kube)
	}
	a.mu.Lock()
	a.cur, a.engine, a.stopEng, a.engDone, a.dyn, a.pacer, a.ann = l, eng, cancel, done, dyn, pacer, ann
	a.mu.Unlock()
	return nil
}

// applyInPlace applies changed garp settings and health checks to the
// running engine and checks; sameEngine says nothing else changed.
func (a *agent) applyInPlace(cur, l *loaded) error {
	a.mu.Lock()
	eng, dyn, pacer, ann := a.engine, a.dyn, a.pacer, a.ann
	a.mu.Unlock()
	if !reflect.DeepEqual(cur.cfg.Health, l.cfg.Health) && dyn != nil {
		if err := dyn.setHealth(l.cfg.Health); err != nil {
			return err
		}
		a.log.Info().Int("checks", len(l.cfg.Health.Checks)).Msg("health checks replaced")
	}
	if cur.cfg.GARP != l.cfg.GARP {
		sched, err := balancer.NewScheduler(refreshConfig(l.cfg))
		if err != nil {
			return err
		}
		var refresh vrrp.RefreshScheduler
		if sched != nil {
			refresh = sched
		}
		if err := eng.SetGARP(context.Background(), l.cfg.GARP, refresh); err != nil {
			return err
		}
		mode, _ := vrrp.ParseAnnounceMode(l.cfg.GARP.Mode)
		ann.SetMode(mode)
		pacer.SetRate(l.cfg.GARP.MaxRate)
		a.log.Info().Msg("garp settings applied")
	}
	return nil
}

// followLink hands the interface's changes to the engine until the engine
// stops; a recreated interface restarts the engine on new sockets.
func (a *agent) followLink(ctx context.Context, events <-chan vrrp.LinkEvent, eng *vrrp.Engine) {
	for ev := range events {
		var err error
		switch ev.Kind {
		case vrrp.LinkUp, vrrp.LinkDown:
			err = eng.SetLink(ctx, ev.Kind == vrrp.LinkUp)
		case vrrp.AddressRemoved:
			err = eng.AddressRemoved(ctx, ev.Addr)
		case vrrp.LinkReplaced:
			a.log.Warn().Msg("the interface was recreated: reopening the VRRP sockets")
			select {
			case a.relink <- struct{}{}:
			default:
			}
		}
		if err != nil && ctx.Err() == nil {
			a.log.Error().Err(err).Str("event", ev.Kind.String()).Msg("cannot follow an interface change")
		}
	}
}

// restartEngine stops the running engine (resigning first) and starts one
// for l.
func (a *agent) restartEngine(l *loaded) error {
	if err := a.stopEngine(); err != nil {
		a.log.Error().Err(err).Msg("old engine stopped with an error")
	}
	return a.startEngine(l)
}

// stopEngine resigns and waits for the engine to release every VIP.
func (a *agent) stopEngine() error {
	a.mu.Lock()
	cancel, done, dyn := a.stopEng, a.engDone, a.dyn
	a.mu.Unlock()
	// Hand over first: the engine's priority-0 adverts let the next node
	// take the VIPs within a skew time. Leaving gossip and waiting for health
	// checks can block, so they come after; the controller only stops
	// changing priorities before.
	if dyn != nil {
		dyn.cancel()
	}
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Second):
		err = errors.New("VRRP engine did not stop within 2s")
	}
	if dyn != nil {
		a.kube.Store(nil)
		dyn.stop()
	}
	return err
}

func hasFamily(l *loaded, v6 bool) bool {
	for _, g := range l.alloc.Groups {
		if g.V6 == v6 {
			return true
		}
	}
	return false
}

// reload applies a new config. An unchanged file changes nothing; log and
// http settings apply in place; routers change in place when the transport
// settings are the same in static mode; anything else restarts the engine
// (and gossip). An invalid config changes nothing. The error is for the one
// case the agent cannot go on: neither the new config nor the running one
// would start again, and an agent with no engine must not look healthy.
func (a *agent) reload(path string, srv *http.Server) (*http.Server, error) {
	l, err := loadConfig(path)
	if err != nil {
		a.log.Error().Err(err).Msg("reload rejected; keeping the running config")
		return srv, nil
	}
	a.mu.Lock()
	cur, eng := a.cur, a.engine
	a.mu.Unlock()
	switch {
	case reflect.DeepEqual(cur.cfg, l.cfg):
		a.log.Info().Msg("reload: the config is unchanged; nothing to do")
		return srv, nil
	case sameEngine(cur.cfg, l.cfg):
		// Only settings that apply in place changed: the VRRP routers and
		// gossip keep running untouched.
		if err := a.applyInPlace(cur, l); err != nil {
			a.log.Error().Err(err).Msg("reload rejected; keeping the running config")
			return srv, nil
		}
	case sameTransport(cur.cfg, l.cfg) && !l.dynamic() && !cur.dynamic():
		if err := eng.Update(context.Background(), l.routers); err != nil {
			a.log.Error().Err(err).Msg("reload rejected; keeping the running config")
			return srv, nil
		}
	default:
		a.log.Warn().Msg("reload changes interface, vrrp or garp settings, or runs the dynamic mode: restarting the VRRP engine (and gossip)")
		if err := a.restartEngine(l); err != nil {
			a.log.Error().Err(err).Msg("new config cannot start; restarting with the previous one")
			if err2 := a.startEngine(cur); err2 != nil {
				return srv, fmt.Errorf("reload: the new config cannot start (%w) and the previous one cannot start again (%w): stopping so the supervisor restarts garpd", err, err2)
			}
			return srv, nil
		}
	}
	a.mu.Lock()
	a.cur = l
	a.mu.Unlock()
	if l.cfg.Log != cur.cfg.Log {
		a.logOut.set(l.cfg.Log)
		a.log.Info().Str("level", l.cfg.Log.Level).Str("format", l.cfg.Log.Format).Msg("log settings changed")
	}
	if l.cfg.HTTP.PProf != a.pprof.Swap(l.cfg.HTTP.PProf) {
		a.log.Info().Bool("pprof", l.cfg.HTTP.PProf).Msg("profiler at /debug/pprof/ switched")
	}
	if l.cfg.HTTP.Listen != cur.cfg.HTTP.Listen {
		nsrv, err := a.serveHTTP(l.cfg.HTTP.Listen)
		if err != nil {
			a.log.Error().Err(err).Msg("new http.listen cannot be used; keeping the old listener")
		} else {
			srv.Close()
			srv = nsrv
		}
	}
	a.log.Info().Int("routers", len(l.routers)).Msg("config reloaded")
	return srv, nil
}

type forgetRequest struct {
	Node string `json:"node"`
}

type announceRequest struct {
	VIPs []string `json:"vips"`
}

type announceResponse struct {
	Queued  []string `json:"queued"`
	NotHeld []string `json:"not_held"`
}

func parseAddrs(ss []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
		out = append(out, a)
	}
	return out, nil
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

type statusJSON struct {
	Node      string              `json:"node"`
	Interface string              `json:"interface"`
	Version   string              `json:"version"`
	Uptime    string              `json:"uptime"`
	Mode      string              `json:"mode"`
	Routers   []vrrp.RouterStatus `json:"routers"`
	Dynamic   *dynamicStatus      `json:"dynamic,omitempty"`
}

func (a *agent) serveHTTP(listen string) (*http.Server, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", listen, err)
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return srv, nil
}

// postOnly answers 405 with hint to anything but a POST.
func postOnly(w http.ResponseWriter, r *http.Request, hint string) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	http.Error(w, hint, http.StatusMethodNotAllowed)
	return false
}

// handler serves the agent's HTTP API.
func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		eng := a.engine
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if eng == nil || !eng.Responsive(ctx) {
			http.Error(w, "VRRP engine is not running or does not answer within 1s", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/announce", func(w http.ResponseWriter, r *http.Request) {
		if !postOnly(w, r, "POST to start an announcement wave") {
			return
		}
		var req announceRequest
		if r.ContentLength != 0 {
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
				http.Error(w, "body: want {\"vips\": [\"ADDR\", ...]}: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		only, err := parseAddrs(req.VIPs)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		eng := a.engine
		a.mu.Unlock()
		queued, notHeld, err := eng.Wave(r.Context(), only)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(announceResponse{Queued: addrStrings(queued), NotHeld: addrStrings(notHeld)})
	})
	mux.HandleFunc("/forget", func(w http.ResponseWriter, r *http.Request) {
		if !postOnly(w, r, "POST {\"node\": NAME} to forget a known member that is down") {
			return
		}
		var req forgetRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.Node == "" {
			http.Error(w, "body: want {\"node\": NAME}", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		dyn := a.dyn
		a.mu.Unlock()
		if dyn == nil {
			http.Error(w, "this agent runs the static mode: there are no known members to forget", http.StatusConflict)
			return
		}
		if err := dyn.members.Forget(req.Node); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintf(w, "forgot %s: every node re-plans without it\n", req.Node)
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		cur, eng, dyn := a.cur, a.engine, a.dyn
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		st := statusJSON{
			Node: cur.cfg.Node, Interface: cur.cfg.Interface, Version: version, Mode: "static",
			Uptime: time.Since(a.started).Round(time.Second).String(), Routers: eng.Status(ctx),
		}
		if dyn != nil {
			st.Mode, st.Dynamic = "dynamic", dyn.status(ctx)
		}
		w.Header().Set("Content-Type", "application/json")
		printJSON(w, st)
	})
	profiler := http.NewServeMux()
	profiler.HandleFunc("/debug/pprof/", pprof.Index)
	profiler.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	profiler.HandleFunc("/debug/pprof/profile", pprof.Profile)
	profiler.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	profiler.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		if !a.pprof.Load() {
			http.Error(w, "profiling is off: set http.pprof: true in the config and reload (SIGHUP)", http.StatusNotFound)
			return
		}
		profiler.ServeHTTP(w, r)
	})
	return mux
}

// checkConfig validates a config file and prints what it would run.
func checkConfig(w io.Writer, path string) error {
	l, err := loadConfig(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: valid. node %s, interface %s, VRRPv%d every %s\n", path, l.cfg.Node, l.cfg.Interface,
		l.cfg.VRRP.Version, l.cfg.VRRP.AdvertInterval)
	for _, r := range l.routers {
		fam := "ipv4"
		if r.V6() {
			fam = "ipv6"
		}
		fmt.Fprintf(w, "  %s VRID %3d  priority %3d  %v\n", fam, r.VRID, r.Priority, r.VIPs)
	}
	for _, g := range l.alloc.Grouped {
		fmt.Fprintf(w, "  note: %s\n", g)
	}
	return nil
}
