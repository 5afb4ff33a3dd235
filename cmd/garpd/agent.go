package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/balancer/health"
	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

func newAgentCmd() *cobra.Command {
	var path string
	var check, offline bool
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
Set GOMAXPROCS to use more. GOGC, when unset, is 50: the agent's live
heap is about 2 MB and it allocates nothing per advert, so Go's default
(a heap twice the live one, 4 MB at least) was a fifth of its memory,
while a collection every few seconds costs well under 0.1 % of a core.

--check validates the config, checks that the interface exists on this
host and reads the gossip key (--offline skips those, for a config checked
on a workstation), prints the virtual routers it defines and exits,
without touching the network.

Exit codes: 0 clean stop, 1 runtime failure, 2 invalid config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageError(errors.New("--config is required, e.g. garpd agent --config /etc/garpd/garpd.yaml"))
			}
			if check {
				return checkConfig(cmd.OutOrStdout(), path, !offline)
			}
			if os.Getenv("GOMAXPROCS") == "" {
				runtime.GOMAXPROCS(1)
			}
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(agentGCPercent)
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
	cmd.Flags().BoolVar(&offline, "offline", false, "with --check: check the file alone, not this host's facts (the interface), e.g. on a workstation")
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

func (o *logOutput) Write(p []byte) (int, error) { return (*o.w.Load()).Write(p) }

func (o *logOutput) logger() zerolog.Logger {
	return zerolog.New(o).Hook(levelHook{o}).With().Timestamp().Logger()
}

// levelHook discards events below the current level before they are
// formatted.
type levelHook struct{ o *logOutput }

func (h levelHook) Run(e *zerolog.Event, l zerolog.Level, _ string) {
	if l != zerolog.NoLevel && l < zerolog.Level(h.o.level.Load()) {
		e.Discard()
	}
}

// agent is the running agent: the data plane, the dynamic mode over it
// (nil in the static mode), and what a reload may change in place.
type agent struct {
	log        zerolog.Logger
	logOut     *logOutput
	reg        *prometheus.Registry
	metrics    *vrrp.Metrics
	dynMetrics balancer.DynamicMetrics
	notifyM    health.NotifyMetrics
	kernel     vrrp.Kernel
	started    time.Time
	alive      liveness // /healthz
	// run is what runs now: the main loop replaces it whole, the HTTP
	// handlers read it.
	run atomic.Pointer[running]
	// pprof follows http.pprof; read per request, so a reload turns the
	// profiler on or off without a new listener.
	pprof atomic.Bool
}

// running is the agent's running config and the parts started from it.
type running struct {
	cur      *loaded
	stack    *vrrp.Stacks
	dyn      *balancer.Dynamic // the dynamic mode; nil in the static one
	static   *health.Static    // the static mode's checks; nil without
	notifier *health.Notifier  // runs the notify hooks
}

func newAgent(l *loaded, stderr io.Writer, kernel vrrp.Kernel) *agent {
	logOut := newLogOutput(l.cfg.Log, stderr)
	a := &agent{log: logOut.logger(), logOut: logOut, reg: prometheus.NewRegistry(), started: time.Now(), kernel: kernel}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = vrrp.NewMetrics(a.reg)
	a.dynMetrics = balancer.DynamicMetrics{Members: balancer.NewMembersGauge(a.reg), Checks: health.NewGauge(a.reg), PlanDigest: balancer.NewPlanDigestGauge(a.reg)}
	a.notifyM = health.NewNotifyMetrics(a.reg)
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
	a.pprof.Store(l.cfg.HTTP.PProf)
	return a
}

func runAgent(ctx context.Context, path string, hup <-chan os.Signal, stderr io.Writer) error {
	l, err := loadConfig(path)
	if err != nil {
		return err
	}
	a := newAgent(l, stderr, vrrp.LinuxKernel())
	if err := a.start(l); err != nil {
		return err
	}
	srv, err := a.serve(l)
	if err != nil {
		a.stop()
		return err
	}
	a.log.Info().Str("node", l.cfg.Node).Str("interface", l.cfg.Interface).Int("routers", len(l.routers)).
		Int("vrrp_version", l.cfg.VRRP.Version).Dur("advert_interval", l.cfg.VRRP.AdvertInterval).
		Str("http", l.cfg.HTTP.Listen).Str("control", l.cfg.Control.Listen).Int("gomaxprocs", runtime.GOMAXPROCS(0)).Msg("garpd agent started")
	for _, g := range l.alloc.Grouped {
		a.log.Warn().Msg(g)
	}
	for _, n := range slices.Concat(l.cfg.GARP.Notes(l.vipCount(), l.cfg.VRRP.UseVMAC), l.cfg.VRRP.Notes(), l.accessNotes(false)) {
		a.log.Warn().Msg(n)
	}
	watchdog, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		a.log.Warn().Err(err).Msg("systemd's watchdog settings do not parse: not feeding it")
	}
	sysCtx, stopSys := context.WithCancel(ctx)
	defer stopSys()
	go superviseSystemd(sysCtx, sdNotify, a.joined, a.engineAlive, watchdog, a.log)
	for {
		run := a.run.Load()
		stack := run.stack
		select {
		case <-ctx.Done():
			a.log.Info().Msg("stopping: resigning masters and removing VIPs")
			err := a.stop()
			shut, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			srv.shutdown(shut)
			cancel()
			if err != nil {
				return err
			}
			a.log.Info().Msg("garpd agent stopped")
			return nil
		case <-stack.Done():
			if !errors.Is(stack.Err(), vrrp.ErrInterfaceReplaced) {
				a.stop()
				srv.close()
				return fmt.Errorf("VRRP engine stopped: %w", stack.Err())
			}
			if err := a.restart(run.cur); err != nil {
				srv.close()
				return fmt.Errorf("restart on the recreated interface: %w", err)
			}
		case <-hup:
			if srv, err = a.reload(path, srv); err != nil {
				srv.close()
				return err
			}
		}
	}
}

// joined reports whether the running agent has found its cluster: in
// the static mode there is none to find.
func (a *agent) joined() bool {
	run := a.run.Load()
	return run != nil && (run.dyn == nil || run.dyn.Joined())
}

// engineAlive reports whether the running VRRP engines answer within ctx.
func (a *agent) engineAlive(ctx context.Context) bool {
	run := a.run.Load()
	return run != nil && run.stack.Responsive(ctx)
}

// start starts the data plane of l and, in the dynamic mode, the dynamic
// mode over it.
func (a *agent) start(l *loaded) error {
	notifier := health.StartNotifier(l.cfg.Notify, l.cfg.Interface, a.notifyM, a.log)
	sc := l.stackConfig(a.metrics, a.log)
	sc.Notify = notifier.Notify
	stack, err := vrrp.StartStacks(sc, a.kernel)
	if err != nil {
		notifier.Stop()
		return err
	}
	var dyn *balancer.Dynamic
	var static *health.Static
	if l.dynamic() {
		dyn, err = balancer.StartDynamic(l.dynamicConfig(), stack, a.log, a.dynMetrics)
	} else if l.staticChecks() {
		static, err = health.StartStatic(l.routers, l.cfg.Health, stack, a.log, a.dynMetrics.Checks)
	}
	if err != nil {
		stack.Stop()
		notifier.Stop()
		return err
	}
	a.run.Store(&running{cur: l, stack: stack, dyn: dyn, static: static, notifier: notifier})
	return nil
}

// stop hands over and stops everything start started. In the dynamic mode
// the dynamic mode's Stop runs the data plane's Stop as its hand-over
// step, in the order it documents. The notify hooks run last, so they hear
// every router's STOP.
func (a *agent) stop() error {
	run := a.run.Load()
	defer run.notifier.Stop()
	if run.static != nil {
		run.static.Stop()
	}
	if run.dyn == nil {
		return run.stack.Stop()
	}
	return run.dyn.Stop(run.stack.Stop)
}

// restart stops what runs (handing over first) and starts l.
func (a *agent) restart(l *loaded) error {
	if err := a.stop(); err != nil {
		a.log.Error().Err(err).Msg("old engine stopped with an error")
	}
	return a.start(l)
}

// agentGCPercent is the agent's GOGC when the environment sets none: its
// heap is small and steady, so the collector's headroom is cut by half.
const agentGCPercent = 50

// reloadKind is what a reload has to do to apply a new config.
type reloadKind int

const (
	// reloadNothing: the config is unchanged.
	reloadNothing reloadKind = iota
	// reloadInPlace: only log, http, control, garp, notify, the
	// auth_hmac keys, the gossip keys and token, and in the dynamic mode
	// the health checks, track_interfaces and keepalived_peers changed;
	// VRRP and gossip keep running untouched.
	reloadInPlace
	// reloadRouters: static mode, same interfaces, devs, VRRP, garp and
	// health settings: the engine moves to the new routers, restarting
	// only those that changed.
	reloadRouters
	// reloadRestart: anything else restarts the engine (and gossip),
	// resigning first.
	reloadRestart
)

// classifyReload says what applying next over cur takes.
func classifyReload(cur, next *loaded) reloadKind {
	c, n := cur.cfg, next.cfg
	inPlace := n
	inPlace.Log, inPlace.HTTP, inPlace.Control, inPlace.GARP, inPlace.Notify = c.Log, c.HTTP, c.Control, c.GARP, c.Notify
	inPlace.VRRP.AuthHMAC = c.VRRP.AuthHMAC // keys rotate in place
	if c.Priorities == nil {
		inPlace.Health, inPlace.TrackInterfaces, inPlace.ScriptUser = c.Health, c.TrackInterfaces, c.ScriptUser
		inPlace.VRRP.KeepalivedPeers = c.VRRP.KeepalivedPeers // a migration's steps
	}
	sameVRRP := n.VRRP
	sameVRRP.AuthHMAC = c.VRRP.AuthHMAC
	switch {
	case reflect.DeepEqual(c, n) && reflect.DeepEqual(cur.auth, next.auth) && bytes.Equal(cur.token, next.token) &&
		reflect.DeepEqual(cur.gossipKeys, next.gossipKeys):
		return reloadNothing
	case reflect.DeepEqual(c, inPlace):
		return reloadInPlace
	case c.Priorities != nil && n.Priorities != nil && slices.Equal(cur.interfaces(), next.interfaces()) && reflect.DeepEqual(cur.dev(), next.dev()) &&
		reflect.DeepEqual(c.VRRP, sameVRRP) && reflect.DeepEqual(c.GARP, n.GARP) && reflect.DeepEqual(c.Health, n.Health):
		return reloadRouters
	}
	return reloadRestart
}

// reload applies a new config as classifyReload says. An invalid config
// changes nothing. The error is for the one case the agent cannot go on:
// neither the new config nor the running one would start again, and an
// agent with no engine must not look healthy.
func (a *agent) reload(path string, srv *servers) (*servers, error) {
	l, err := loadConfig(path)
	if err != nil {
		a.log.Error().Err(err).Msg("reload rejected; keeping the running config")
		return srv, nil
	}
	run := a.run.Load()
	cur := run.cur
	switch classifyReload(cur, l) {
	case reloadNothing:
		a.log.Info().Msg("reload: the config is unchanged; nothing to do")
		return srv, nil
	case reloadInPlace:
		err = a.applyInPlace(run, l)
	case reloadRouters:
		if run.static != nil {
			err = run.static.SetRouters(l.routers)
		} else {
			err = run.stack.Update(context.Background(), l.routers)
		}
		if err == nil {
			if err := a.applyInPlace(run, l); err != nil {
				a.log.Error().Err(err).Msg("reload: the routers changed, but not the rest")
			}
		}
	case reloadRestart:
		a.log.Warn().Msg("reload changes interface, vrrp or garp settings, or runs the dynamic mode: restarting the VRRP engine (and gossip)")
		if err := a.restart(l); err != nil {
			a.log.Error().Err(err).Msg("new config cannot start; restarting with the previous one")
			if err2 := a.start(cur); err2 != nil {
				return srv, fmt.Errorf("reload: the new config cannot start (%w) and the previous one cannot start again (%w): stopping so the supervisor restarts garpd", err, err2)
			}
			return srv, nil
		}
	}
	if err != nil {
		a.log.Error().Err(err).Msg("reload rejected; keeping the running config")
		return srv, nil
	}
	next := *a.run.Load() // the same parts, or restart's new ones
	next.cur = l
	a.run.Store(&next)
	if l.cfg.Log != cur.cfg.Log {
		a.logOut.set(l.cfg.Log)
		a.log.Info().Str("level", l.cfg.Log.Level).Str("format", l.cfg.Log.Format).Msg("log settings changed")
	}
	if l.cfg.HTTP.PProf != a.pprof.Swap(l.cfg.HTTP.PProf) {
		a.log.Info().Bool("pprof", l.cfg.HTTP.PProf).Msg("profiler at /debug/pprof/ switched")
	}
	if l.cfg.HTTP.Listen != cur.cfg.HTTP.Listen || l.cfg.Control != cur.cfg.Control || !bytes.Equal(l.token, cur.token) {
		// Close first: the new listeners may take the same addresses.
		srv.close()
		nsrv, err := a.serve(l)
		if err != nil {
			a.log.Error().Err(err).Msg("the new http or control listener cannot be used; back to the old ones")
			if nsrv, err = a.serve(cur); err != nil {
				return srv, fmt.Errorf("reload: neither the new listeners nor the old ones can listen: %w", err)
			}
		}
		srv = nsrv
	}
	a.log.Info().Int("routers", len(l.routers)).Msg("config reloaded")
	return srv, nil
}

// applyInPlace applies changed garp settings and health checks to the
// running data plane and dynamic mode.
func (a *agent) applyInPlace(run *running, l *loaded) error {
	cur, stack, dyn := run.cur, run.stack, run.dyn
	if !reflect.DeepEqual(cur.cfg.Notify, l.cfg.Notify) {
		run.notifier.SetConfig(l.cfg.Notify)
		a.log.Info().Bool("hooks", l.cfg.Notify.Enabled()).Msg("notify hooks replaced")
	}
	if dyn != nil && !reflect.DeepEqual(cur.cfg.Health, l.cfg.Health) {
		if err := dyn.SetHealth(l.cfg.Health); err != nil {
			return err
		}
		a.log.Info().Int("checks", len(l.cfg.Health.Checks)).Msg("health checks replaced")
	}
	if !reflect.DeepEqual(cur.cfg.GARP, l.cfg.GARP) {
		if err := stack.SetGARP(context.Background(), l.cfg.GARP); err != nil {
			return err
		}
		a.log.Info().Msg("garp settings applied")
	}
	if dyn != nil && !slices.Equal(cur.cfg.VRRP.KeepalivedPeers, l.cfg.VRRP.KeepalivedPeers) {
		peers, _ := l.cfg.VRRP.KeepalivedPeerAddrs() // validated with the config
		dyn.SetKeepalivedPeers(peers)
		a.log.Info().Strs("keepalived_peers", l.cfg.VRRP.KeepalivedPeers).Msg("keepalived peers replaced")
	}
	if dyn != nil && !reflect.DeepEqual(cur.gossipKeys, l.gossipKeys) {
		// Before the VRRP keys: a node that signs with the new key is
		// understood by members that accept it already.
		if err := dyn.SetGossipKeys(l.gossipKeys); err != nil {
			return err
		}
	}
	if !reflect.DeepEqual(cur.auth, l.auth) {
		if err := stack.SetAuth(context.Background(), l.auth); err != nil {
			return err
		}
		a.log.Info().Str("mode", l.auth.Mode.String()).Int("keys", len(l.auth.Keys)).Int("active_key", int(l.auth.Active)).Msg("auth_hmac keys applied")
	}
	return nil
}

// checkConfig validates a config file and prints what it would run.
func checkConfig(w io.Writer, path string, host bool) error {
	l, err := loadConfigAs(path, !host)
	if err != nil {
		return err
	}
	if host {
		for _, name := range l.interfaces() {
			if _, err := net.InterfaceByName(name); err != nil {
				return &configError{fmt.Errorf("config %s: interface: %q is not on this host (%v): name one of ip link's, or check elsewhere with --check --offline", path, name, err)}
			}
		}
		// What exec checks and hooks run must run here: a script in a
		// distroless image fails at every interval.
		var errs []error
		for i, hc := range l.cfg.Health.Checks {
			if len(hc.Exec) > 0 {
				if err := health.Runnable(hc.Exec[0]); err != nil {
					errs = append(errs, fmt.Errorf("health.checks[%d] (%s): %w", i, hc.Name, err))
				}
			}
		}
		for _, h := range l.cfg.Notify.AllHooks() {
			if err := health.Runnable(h.Argv[0]); err != nil {
				errs = append(errs, fmt.Errorf("notify.%s: %w", h.Name, err))
			}
		}
		if len(errs) > 0 {
			return &configError{fmt.Errorf("config %s: %w", path, errors.Join(errs...))}
		}
	}
	fmt.Fprintf(w, "%s: valid. node %s, interface %s, %s every %s\n", path, l.cfg.Node, l.cfg.Interface,
		versions(l.cfg.VRRP.Version, l.routers), l.cfg.VRRP.AdvertInterval)
	dev := l.dev()
	for _, r := range l.routers {
		fam := "ipv4"
		if r.V6() {
			fam = "ipv6"
		}
		where := ""
		if r.Interface != "" {
			where = "  on " + r.Interface
		}
		for _, p := range r.VIPs {
			if d := dev[p.Addr()]; d != "" {
				where += fmt.Sprintf("  %s on %s", p.Addr(), d)
			}
		}
		fmt.Fprintf(w, "  %s VRID %3d  priority %3d  %v%s\n", fam, r.VRID, r.Priority, r.VIPs, where)
	}
	for _, g := range l.alloc.Grouped {
		fmt.Fprintf(w, "  note: %s\n", g)
	}
	if note := preferenceNote(l.alloc.Groups); note != "" {
		fmt.Fprintf(w, "  note: %s\n", note)
	}
	for _, n := range append(l.cfg.GARP.Notes(l.vipCount(), l.cfg.VRRP.UseVMAC), l.cfg.VRRP.Notes()...) {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	notes := l.dynamicNotes(host)
	if host {
		notes = append(notes, l.accessNotes(true)...)
	}
	for _, n := range notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if !host {
		fmt.Fprintln(w, "  not checked (--offline): that the interfaces exist on the host, the gossip key file, gossip.state_dir, the checks' CA files, and that exec checks and hooks can run")
	} else if dir := l.cfg.Gossip.StateDir; l.dynamic() && dir != "" {
		if err := gossip.CheckKnown(dir); err != nil {
			fmt.Fprintf(w, "  note: gossip.state_dir: %v\n", err)
		}
	}
	return nil
}

// dynamicNotes says what --check knows of a dynamic config beyond its
// validity: the priorities it prints, a cluster nobody can join, a key
// others can read (on the host).
func (l *loaded) dynamicNotes(host bool) []string {
	if !l.dynamic() {
		return nil
	}
	out := []string{fmt.Sprintf("priority %d above is every VIP's until this node has settled in a cluster; then each VIP's comes from its rank in the plan (garpd plan shows it)", balancer.UnrankedPriority)}
	if h := l.cfg.VRRP.AuthHMAC; len(l.gossipKeys) > 0 && len(l.gossipKeys[0]) < vrrp.AuthKeyMin && (h == nil || len(h.Keys) == 0) {
		out = append(out, fmt.Sprintf("the gossip key has %d bytes, so the VRRP key derived from it has %d bits of entropy, below keepalived's floor of %d bytes: use a %d-byte gossip key (head -c 32 /dev/urandom | base64)",
			len(l.gossipKeys[0]), 8*len(l.gossipKeys[0]), vrrp.AuthKeyMin, vrrp.AuthKeyMin))
	}
	if len(l.cfg.Gossip.Join) == 0 && l.cfg.Kubernetes == nil {
		out = append(out, "gossip.join is empty and there is no kubernetes section: this node finds no member by itself and forms a cluster only if others join it; list seeds in gossip.join")
	}
	return out
}

// accessNotes says who else can reach what the agent guards: the key
// files group or others can read (keepalived flags its auth_hmac key files
// alike): auth_hmac's file: keys, the control token and, with gossipKey,
// the gossip key (gossip warns of it itself when it starts); and a TCP
// control listener without a token, which every local process reaches.
func (l *loaded) accessNotes(gossipKey bool) []string {
	files := map[string]string{}
	if f := l.cfg.Gossip.SecretKeyFile; f != "" && l.dynamic() && gossipKey {
		files[f] = "gossip.secret_key_file"
	}
	if h := l.cfg.VRRP.AuthHMAC; h != nil {
		for id, k := range h.Keys {
			if f, ok := strings.CutPrefix(k, "file:"); ok {
				files[f] = fmt.Sprintf("vrrp.auth_hmac.keys.%d", id)
			}
		}
	}
	if f := l.cfg.Control.TokenFile; f != "" {
		files[f] = "control.token_file"
	}
	var out []string
	for _, f := range slices.Sorted(maps.Keys(files)) {
		if st, err := os.Stat(f); err == nil && st.Mode().Perm()&0o077 != 0 {
			out = append(out, fmt.Sprintf("%s %s is readable by group or others (mode %s): chmod 600 it", files[f], f, st.Mode().Perm()))
		}
	}
	if l.scriptsRunAsRoot() {
		out = append(out, "exec checks and notify hooks run as root, with the agent's NET_ADMIN and NET_RAW: set script_user (e.g. nobody) unless they need root (keepalived's script_user)")
	}
	if !strings.HasPrefix(l.cfg.Control.Listen, "unix:") && len(l.token) == 0 {
		out = append(out, fmt.Sprintf("control.listen %s has no control.token_file: every process on this host, and every pod on its network, can forget members and start waves; listen on %s (the default) or set control.token_file", l.cfg.Control.Listen, defaultControlListen))
	}
	return out
}

// scriptsRunAsRoot reports whether the config runs programs (exec
// checks, notify hooks) as root: the agent is root and script_user names
// nobody else.
func (l *loaded) scriptsRunAsRoot() bool {
	if os.Geteuid() != 0 || (l.cfg.ScriptUser != "" && l.cfg.ScriptUser != "root" && l.cfg.ScriptUser != "0") {
		return false
	}
	return l.cfg.Notify.Enabled() || slices.ContainsFunc(l.cfg.Health.Checks, func(c health.CheckConfig) bool { return len(c.Exec) > 0 })
}

// versions says which VRRP versions the routers speak: vrrp.version is
// IPv4's, and IPv6 is always VRRPv3.
func versions(v4 int, routers []vrrp.RouterSpec) string {
	has4, has6 := false, false
	for _, r := range routers {
		has4, has6 = has4 || !r.V6(), has6 || r.V6()
	}
	switch {
	case has6 && !has4:
		return "VRRPv3"
	case has6 && v4 != 3:
		return fmt.Sprintf("VRRPv%d for IPv4 and VRRPv3 for IPv6", v4)
	}
	return fmt.Sprintf("VRRPv%d", v4)
}

// preferenceNote says when the VIPs' prefer: cannot be balanced over the
// nodes they name (the least cluster they imply): a node preferred by more
// VIPs than its share owns them all. "" when they cost nothing.
func preferenceNote(groups []balancer.Group) string {
	var names []string
	for _, g := range groups {
		if g.Prefer != "" && !slices.Contains(names, g.Prefer) {
			names = append(names, g.Prefer)
		}
	}
	if len(names) == 0 {
		return ""
	}
	with, without, err := balancer.PreferenceCost(names, groups)
	if err != nil || with <= without {
		return ""
	}
	return fmt.Sprintf("prefer: over the %d nodes the VIPs prefer (%s), owners differ by up to %d VIPs with the preferences and %d without: a node preferred beyond its share owns all it is preferred for (garpd plan --prefer shows the layout)",
		len(names), strings.Join(names, ", "), with, without)
}
