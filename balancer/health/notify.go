package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/garpd/garpd/vrrp"
)

// NotifyConfig is the `notify:` section: executables run on every state
// change of a virtual router, as keepalived's notify scripts, so the hooks
// an operator wrote for keepalived keep working. Each is an argv (no
// shell). Exec gets keepalived's arguments appended: INSTANCE, the
// instance's name (garpd_ipv4_51), its new state (MASTER, BACKUP, FAULT or
// STOP) and its priority. Master, Backup, Fault and Stop run on that state
// alone, without arguments. Every hook finds the router in its
// environment: GARPD_INSTANCE, GARPD_STATE, GARPD_PREVIOUS_STATE,
// GARPD_PRIORITY, GARPD_VRID, GARPD_FAMILY, GARPD_VIPS (comma-separated),
// GARPD_INTERFACE and, in FAULT, GARPD_FAULT (why).
type NotifyConfig struct {
	NotifyHooks `yaml:",inline"`
	// Timeout bounds each run; at the timeout the hook is killed with its
	// children. Default 10s.
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// ScriptUser is who the hooks run as (the config's top-level
	// script_user, which exec checks share; see NewRunner).
	ScriptUser string `yaml:"-" json:"-"`
	// Instances are hooks of their own for the virtual routers of those
	// instance names (a VIP's name:), in place of the common ones, as
	// keepalived runs each instance's notify scripts; with this section's
	// timeout and user.
	Instances map[string]NotifyHooks `yaml:"instances" json:"instances,omitempty"`
}

// NotifyHooks are the hooks themselves, each an argv.
type NotifyHooks struct {
	Exec   []string `yaml:"exec" json:"exec,omitempty"`
	Master []string `yaml:"master" json:"master,omitempty"`
	Backup []string `yaml:"backup" json:"backup,omitempty"`
	Fault  []string `yaml:"fault" json:"fault,omitempty"`
	Stop   []string `yaml:"stop" json:"stop,omitempty"`
}

// For is the hooks a router of instance name runs: its own, else the
// common ones.
func (c NotifyConfig) For(name string) NotifyConfig {
	own, ok := c.Instances[name]
	if !ok {
		return c
	}
	return NotifyConfig{NotifyHooks: own, Timeout: c.Timeout, ScriptUser: c.ScriptUser}
}

// Enabled reports whether any hook is set, common or an instance's.
func (c NotifyConfig) Enabled() bool {
	return len(c.Exec)+len(c.Master)+len(c.Backup)+len(c.Fault)+len(c.Stop)+len(c.Instances) > 0
}

// NotifyHook is one set hook: its key and its argv.
type NotifyHook struct {
	Name string
	Argv []string
}

// Hooks lists the hooks that are set, in the order they run.
func (c NotifyHooks) Hooks() []NotifyHook {
	var out []NotifyHook
	for _, h := range []NotifyHook{{"exec", c.Exec}, {"master", c.Master}, {"backup", c.Backup}, {"fault", c.Fault}, {"stop", c.Stop}} {
		if len(h.Argv) > 0 {
			out = append(out, h)
		}
	}
	return out
}

// AllHooks lists every hook set: the common ones, then each instance's,
// named by their keys (instances.NAME.exec).
func (c NotifyConfig) AllHooks() []NotifyHook {
	out := c.Hooks()
	for _, name := range slices.Sorted(maps.Keys(c.Instances)) {
		for _, h := range c.Instances[name].Hooks() {
			out = append(out, NotifyHook{Name: "instances." + name + "." + h.Name, Argv: h.Argv})
		}
	}
	return out
}

// Validate checks the section; errors start with the key they are about.
func (c NotifyConfig) Validate() error {
	var errs []error
	for _, h := range c.AllHooks() {
		if !strings.HasPrefix(h.Argv[0], "/") {
			errs = append(errs, fmt.Errorf("%s: %q: give the hook's absolute path (no shell runs it; for a shell line: [/bin/sh, -c, LINE])", h.Name, h.Argv[0]))
		}
	}
	if c.Timeout < 0 || c.Timeout > time.Hour {
		errs = append(errs, fmt.Errorf("timeout: %s: use 0 (10s) up to 1h", c.Timeout))
	}
	return errors.Join(errs...)
}

// defaultNotifyTimeout bounds a hook without notify.timeout.
const defaultNotifyTimeout = 10 * time.Second

// notifyQueue is how many state changes wait for their hooks at most;
// beyond, changes are dropped, counted and logged, so hooks that hang
// cannot make the agent's memory grow.
const notifyQueue = 1024

// NotifyMetrics count the hooks' runs; made once per process.
type NotifyMetrics struct {
	Runs    *prometheus.CounterVec
	Dropped prometheus.Counter
}

// NewNotifyMetrics creates the hooks' metrics; reg may be nil.
func NewNotifyMetrics(reg prometheus.Registerer) NotifyMetrics {
	m := NotifyMetrics{
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "garpd_notify_runs_total",
			Help: "Notify hook runs by hook (exec, master, backup, fault, stop) and result (ok, failed, timeout)."}, []string{"hook", "result"}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "garpd_notify_dropped_total",
			Help: "State changes not notified: the hooks were this far behind."}),
	}
	if reg != nil {
		reg.MustRegister(m.Runs, m.Dropped)
	}
	return m
}

// Notifier runs the hooks of state changes one after another, outside the
// engine's loop: the engine only queues, so a hook that hangs or fails
// never delays a takeover or a release.
type Notifier struct {
	mu      sync.Mutex
	cfg     NotifyConfig
	iface   string
	log     zerolog.Logger
	metrics NotifyMetrics
	queue   chan vrrp.StateChange
	cancel  context.CancelFunc
	done    chan struct{}
}

// StartNotifier runs the hooks of cfg for the routers of iface until Stop.
func StartNotifier(cfg NotifyConfig, iface string, m NotifyMetrics, log zerolog.Logger) *Notifier {
	n := &Notifier{cfg: cfg.withDefaults(), iface: iface, log: log, metrics: m, queue: make(chan vrrp.StateChange, notifyQueue), done: make(chan struct{})}
	for _, h := range cfg.AllHooks() {
		// Not refused: the config may be checked on another host, and a
		// hook installed later runs from then on.
		if st, err := os.Stat(h.Argv[0]); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			log.Warn().Str("hook", h.Name).Str("path", h.Argv[0]).Msg("notify hook is not an executable file: its runs will fail until it is one")
		} else if err := Runnable(h.Argv[0]); err != nil {
			log.Warn().Err(err).Str("hook", h.Name).Msg("notify hook cannot run here: its runs will fail until it can")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.run(ctx); close(n.done) }()
	return n
}

// SetConfig replaces the hooks in place (a reload): the next change runs
// the new ones.
func (n *Notifier) SetConfig(cfg NotifyConfig) {
	n.mu.Lock()
	n.cfg = cfg.withDefaults()
	n.mu.Unlock()
}

func (c NotifyConfig) withDefaults() NotifyConfig {
	c.Timeout = cmp.Or(c.Timeout, defaultNotifyTimeout)
	return c
}

func (n *Notifier) config() NotifyConfig {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

// Stop runs the hooks still queued (the STOP of every router, once the
// data plane has stopped) within one timeout, and returns when they are
// done.
func (n *Notifier) Stop() {
	n.cancel()
	<-n.done
}

// Notify queues a change for the hooks without blocking (vrrp.Deps.Notify).
func (n *Notifier) Notify(c vrrp.StateChange) {
	select {
	case n.queue <- c:
	default:
		n.metrics.Dropped.Inc()
		n.log.Warn().Str("instance", c.Instance()).Str("state", c.To).Msg("notify hooks are this far behind (a hook hangs?): this change is not notified")
	}
}

// run runs the hooks of queued changes until ctx ends; then those still
// queued within one timeout.
func (n *Notifier) run(ctx context.Context) {
	for {
		select {
		case c := <-n.queue:
			n.hooks(context.Background(), c)
		case <-ctx.Done():
			drain, cancel := context.WithTimeout(context.Background(), n.config().Timeout)
			defer cancel()
			for {
				select {
				case c := <-n.queue:
					n.hooks(drain, c)
				default:
					return
				}
			}
		}
	}
}

// hooks runs the hooks of one change.
func (n *Notifier) hooks(ctx context.Context, c vrrp.StateChange) {
	env := []string{"GARPD_INSTANCE=" + c.Instance(), "GARPD_STATE=" + c.To, "GARPD_PREVIOUS_STATE=" + c.From,
		"GARPD_PRIORITY=" + strconv.Itoa(c.Priority), "GARPD_VRID=" + strconv.Itoa(int(c.Router.VRID)),
		"GARPD_FAMILY=" + c.Router.Family(), "GARPD_VIPS=" + strings.Join(c.VIPs, ","),
		"GARPD_INTERFACE=" + cmp.Or(c.Router.Interface, n.iface), "GARPD_FAULT=" + c.Fault}
	cfg := n.config().For(c.Instance())
	for _, h := range cfg.Hooks() {
		switch {
		case h.Name == "exec":
			argv := append(append([]string{}, h.Argv...), "INSTANCE", c.Instance(), c.To, strconv.Itoa(c.Priority))
			n.exec(ctx, cfg, h.Name, argv, env, c)
		case strings.ToUpper(h.Name) == c.To:
			n.exec(ctx, cfg, h.Name, h.Argv, env, c)
		}
	}
}

func (n *Notifier) exec(ctx context.Context, cfg NotifyConfig, hook string, argv, env []string, c vrrp.StateChange) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	run, err := NewRunner(cfg.ScriptUser)
	if err == nil {
		err = run.Run(ctx, argv, env)
	}
	result := "ok"
	switch {
	case ctx.Err() != nil:
		result = "timeout"
	case err != nil:
		result = "failed"
	}
	n.metrics.Runs.WithLabelValues(hook, result).Inc()
	ev := n.log.Debug()
	if err != nil {
		ev = n.log.Warn().Err(err)
	}
	ev.Str("hook", hook).Str("instance", c.Instance()).Str("state", c.To).Dur("took", time.Since(start)).Msg("notify hook ran")
}
