package health

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/labels"
)

// Config is the `health:` section.
type Config struct {
	Checks []CheckConfig `yaml:"checks" json:"checks"`
	// ScriptUser is who exec checks run as (the config's top-level
	// script_user, which notify hooks share; see NewRunner).
	ScriptUser string `yaml:"-" json:"-"`
}

// CheckConfig is one local health check: exactly one of HTTP, TCP, Exec,
// KubernetesPod, Interface.
type CheckConfig struct {
	Name string   `yaml:"name" json:"name"`
	HTTP string   `yaml:"http" json:"http,omitempty"`
	TCP  string   `yaml:"tcp" json:"tcp,omitempty"`
	Exec []string `yaml:"exec" json:"exec,omitempty"`
	// Interface passes while the named link is up (keepalived's
	// track_interface); track_interfaces: in the agent's config makes one.
	Interface string `yaml:"interface" json:"interface,omitempty"`
	// Weight is keepalived's track_script weight. 0 (none): a failing
	// check puts the routers it tracks in FAULT (the dynamic mode: takes
	// the node out of the plan, or resigns the routers of its VIPs). A
	// negative weight counts while the check fails, a positive one while
	// it passes: the static mode adds it to the routers' priorities
	// (within 1..254); the dynamic mode adds it to the node's standing
	// for the groups it tracks, by which every member orders their
	// rankings (a soft check: a VIP moves only to a member that stands
	// higher, and stays put when the check fails everywhere).
	Weight int `yaml:"weight" json:"weight,omitempty"`
	// VIPs are the VIPs whose routers the check tracks; empty: all.
	VIPs []string `yaml:"vips" json:"vips,omitempty"`
	// KubernetesPod passes while a pod on this node that matches is Ready
	// (needs the kubernetes section): the VIP follows the router pod.
	KubernetesPod *PodCheck     `yaml:"kubernetes_pod" json:"kubernetes_pod,omitempty"`
	CAFile        string        `yaml:"ca_file" json:"ca_file,omitempty"`
	Insecure      bool          `yaml:"insecure" json:"insecure,omitempty"`
	Interval      time.Duration `yaml:"interval" json:"interval"`
	Timeout       time.Duration `yaml:"timeout" json:"timeout"`
	Fall          int           `yaml:"fall" json:"fall"`
	Rise          int           `yaml:"rise" json:"rise"`
}

// PodCheck selects the pods a kubernetes_pod check watches on this node.
type PodCheck struct {
	Namespace string `yaml:"namespace" json:"namespace"`
	Selector  string `yaml:"selector" json:"selector"`
}

// PodProber makes kubernetes_pod probes; *kube.API is one.
type PodProber interface {
	PodReadyProbe(namespace, selector string) (func(context.Context) error, error)
}

// WithDefaults fills unset timing fields: every 2s, 1s timeout, fall 2,
// rise 2; an interface check every 100ms, fall 1, rise 1 (a link state
// is no guess).
func (c CheckConfig) WithDefaults() CheckConfig {
	interval, timeout, fall, rise := 2*time.Second, time.Second, 2, 2
	if c.Interface != "" {
		interval, timeout, fall, rise = 100*time.Millisecond, 100*time.Millisecond, 1, 1
	}
	c.Interval, c.Timeout = cmp.Or(c.Interval, interval), cmp.Or(c.Timeout, timeout)
	c.Fall, c.Rise = cmp.Or(c.Fall, fall), cmp.Or(c.Rise, rise)
	return c
}

// Validate checks the section (after WithDefaults on each check).
func (h Config) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i, c := range h.Checks {
		key := fmt.Sprintf("checks[%d]", i)
		bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("%s.%s", key, fmt.Sprintf(f, a...))) }
		if c.Name == "" {
			bad("name: required")
		} else if names[c.Name] {
			bad("name: %q is used twice", c.Name)
		}
		names[c.Name] = true
		kinds := 0
		if c.HTTP != "" {
			kinds++
			if u, err := url.Parse(c.HTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("http: %q is not an http(s) URL", c.HTTP)
			}
		}
		if c.TCP != "" {
			kinds++
			if _, port, err := net.SplitHostPort(c.TCP); err != nil {
				bad("tcp: %q: want HOST:PORT", c.TCP)
			} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				bad("tcp: %q: port must be 1..65535", c.TCP)
			}
		}
		if len(c.Exec) > 0 {
			kinds++
			if strings.TrimSpace(c.Exec[0]) == "" {
				bad("exec: %q: the first word is the program to run, such as [/usr/bin/curl, -sf, URL]", c.Exec)
			}
		}
		if c.Interface != "" {
			kinds++
		}
		if p := c.KubernetesPod; p != nil {
			kinds++
			if p.Namespace == "" {
				bad("kubernetes_pod.namespace: required: the namespace of the pods to follow")
			}
			if _, err := labels.Parse(p.Selector); err != nil || p.Selector == "" {
				bad("kubernetes_pod.selector: %q: give a label selector as kubectl's -l takes it, such as app=router", p.Selector)
			}
		}
		if kinds != 1 {
			bad("give exactly one of http, tcp, exec, kubernetes_pod or interface")
		}
		if c.Weight < -253 || c.Weight > 253 {
			bad("weight: %d: use -253..253 (keepalived's range), or 0 for FAULT while failing", c.Weight)
		}
		if c.CAFile != "" {
			if _, err := loadCA(c.CAFile); err != nil {
				bad("ca_file: %v", err)
			}
		}
		if c.Interval < 100*time.Millisecond || c.Interval > time.Hour {
			bad("interval: %s: use 100ms..1h", c.Interval)
		}
		if c.Timeout <= 0 || c.Timeout > c.Interval {
			bad("timeout: %s: use more than 0 and at most the interval (%s)", c.Timeout, c.Interval)
		}
		if c.Fall < 1 || c.Fall > 100 {
			bad("fall: %d: use 1..100", c.Fall)
		}
		if c.Rise < 1 || c.Rise > 100 {
			bad("rise: %d: use 1..100", c.Rise)
		}
	}
	return errors.Join(errs...)
}

// httpTransport is an HTTP check's transport: its TLS settings, and no
// proxy: the check asks the service itself, never a proxy the agent's
// environment names (HTTP_PROXY would answer for it).
func httpTransport(c CheckConfig) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: c.Insecure} //nolint:gosec // operator's explicit choice
	if c.CAFile != "" {
		pool, err := loadCA(c.CAFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return tr, nil
}

// loadCA reads an http check's ca_file.
func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// probe runs one check once.
type probe func(ctx context.Context) error

func newProbe(c CheckConfig, pods PodProber, run Runner) (probe, error) {
	switch {
	case c.KubernetesPod != nil:
		if pods == nil {
			return nil, errors.New("kubernetes_pod needs the kubernetes section")
		}
		return pods.PodReadyProbe(c.KubernetesPod.Namespace, c.KubernetesPod.Selector)
	case c.HTTP != "":
		tr, err := httpTransport(c)
		if err != nil {
			return nil, err
		}
		client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.HTTP, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("status %s: a check passes on 2xx only (a redirect is not the service's health)", resp.Status)
			}
			return nil
		}, nil
	case c.Interface != "":
		name := c.Interface
		return func(context.Context) error {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			a := l.Attrs()
			if a.Flags&net.FlagUp == 0 {
				return errors.New("administratively down")
			}
			if a.OperState != netlink.OperUp && a.OperState != netlink.OperUnknown {
				return fmt.Errorf("link %s", a.OperState)
			}
			return nil
		}, nil
	case c.TCP != "":
		return func(ctx context.Context) error {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", c.TCP)
			if err != nil {
				return err
			}
			return conn.Close()
		}, nil
	default:
		argv := slices.Clone(c.Exec)
		return func(ctx context.Context) error { return run.Run(ctx, argv, nil) }, nil
	}
}

// execOutputLimit is how much of an exec check's output is kept for the
// error; the rest is read and dropped, so a chatty check cannot grow memory.
const execOutputLimit = 200

// Runner runs exec checks and notify hooks as keepalived's script_user
// and script_security do: as the configured user when there is one, and
// never with the agent's ambient capabilities (a systemd unit's
// AmbientCapabilities), so a check or a hook adds no VIP and sends no raw
// packet unless it runs as root.
type Runner struct {
	cred *syscall.Credential // nil: the agent's own user
}

// NewRunner resolves user, a user name or uid of this host or image
// (keepalived_script, nobody): its uid, its primary group and its other
// groups. "" runs as the agent's own user. An agent that is not root can
// run scripts only as itself.
func NewRunner(user string) (Runner, error) {
	if user == "" {
		return Runner{}, nil
	}
	cred, err := lookupCredential(user)
	if err != nil {
		return Runner{}, fmt.Errorf("script_user: %q: %w", user, err)
	}
	if euid := os.Geteuid(); euid != 0 && int(cred.Uid) != euid {
		return Runner{}, fmt.Errorf("script_user: %q: the agent runs as uid %d, which cannot run scripts as another user: leave script_user out, or run the agent as root", user, euid)
	}
	return Runner{cred: cred}, nil
}

// lookupCredential is user's uid and groups; a uid this host does not
// name runs with the group of the same number and no other.
func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if id, nerr := strconv.ParseUint(name, 10, 32); nerr == nil {
			if u, err = user.LookupId(name); err != nil {
				return &syscall.Credential{Uid: uint32(id), Gid: uint32(id), Groups: []uint32{}}, nil
			}
		} else {
			return nil, fmt.Errorf("no such user here: give one of this host's users (e.g. nobody), or create one (keepalived uses keepalived_script)")
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("not a numeric uid and gid: %w", err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	ids, _ := u.GroupIds()
	for _, g := range ids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil && n != gid {
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	return cred, nil
}

// asRoot reports whether what r runs runs as root.
func (r Runner) asRoot() bool {
	if r.cred != nil {
		return r.cred.Uid == 0
	}
	return os.Geteuid() == 0
}

// Run runs argv (an exec check, a notify hook) in its own process group,
// with env added to the agent's environment. At ctx's end the whole group
// is killed, so `sh -c "curl ... | grep ok"` whose curl hangs fails
// instead of running on; WaitDelay bounds the wait for output pipes a
// child that left the group still holds. The error carries the start of
// the output. A program that runs as root must pass ScriptSafe.
func (r Runner) Run(ctx context.Context, argv, env []string) error {
	if r.asRoot() {
		if err := ScriptSafe(argv[0]); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: r.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out := &cappedBuffer{limit: execOutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	err := startWithoutAmbient(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if ctx.Err() != nil {
		return fmt.Errorf("did not finish in time (killed with its children): %s", out.b)
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
		if why := Runnable(argv[0]); why != nil {
			return why
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s", err, out.b)
	}
	return nil
}

// startWithoutAmbient starts cmd from a thread whose ambient capabilities
// are cleared first: a child inherits its parent thread's, and an agent
// that systemd gave NET_ADMIN and NET_RAW as ambient capabilities would
// pass them to every script. The thread is locked and never unlocked, so
// it ends with the goroutine and no other code runs on it.
func startWithoutAmbient(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			errc <- fmt.Errorf("clear the ambient capabilities before running %s: %w", cmd.Path, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// Runnable says why program (an exec check's or a hook's first word)
// cannot run here: it is missing, not executable, or a script whose
// interpreter is missing, which the kernel reports as the script itself
// missing. In garpd's distroless image only garpd exists: scripts need the
// image's "-checks" variant (sh and curl) and a mount.
func Runnable(program string) error {
	const hint = "; in a container, mount it and run the image's -checks variant (it has sh and curl), or use an http or tcp check"
	path, err := exec.LookPath(program)
	if err != nil {
		return fmt.Errorf("exec: %s: not found here%s", program, hint)
	}
	if err := ScriptSafe(program); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	line, _, _ := strings.Cut(string(head[:n]), "\n")
	interp, ok := strings.CutPrefix(line, "#!")
	if !ok {
		return nil
	}
	words := strings.Fields(interp)
	if len(words) == 0 {
		return fmt.Errorf("exec: %s: an empty #! line", path)
	}
	if filepath.Base(words[0]) == "env" && len(words) > 1 {
		words = words[1:] // #!/usr/bin/env bash: bash on the PATH
	}
	if _, err := exec.LookPath(words[0]); err != nil {
		return fmt.Errorf("exec: %s runs under %s, which is not here%s", path, words[0], hint)
	}
	return nil
}

// ScriptSafe refuses, as keepalived's script_security does, a program an
// agent running as root would run although someone else could change it:
// the file, or a directory on its path (links resolved), that is not
// owned by root, or that group (other than root's) or others may write
// (a directory with the sticky bit, such as /tmp, is safe: nobody else
// can replace what is in it). An agent that does not run as root runs
// nothing with more rights than the script's writers: it checks nothing.
func ScriptSafe(program string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	path, err := exec.LookPath(program)
	if err != nil {
		return nil // Runner.Run and Runnable say it is missing
	}
	if path, err = filepath.Abs(path); err == nil {
		path, err = filepath.EvalSymlinks(path)
	}
	if err != nil {
		return fmt.Errorf("exec: %s: %w", program, err)
	}
	for p := path; ; p = filepath.Dir(p) {
		st, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("exec: %w", err)
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		mode := st.Mode()
		sticky := mode.IsDir() && mode&fs.ModeSticky != 0
		groupWrite := sys != nil && sys.Gid != 0 && mode.Perm()&0o020 != 0
		switch {
		case sys != nil && sys.Uid != 0:
			return fmt.Errorf("exec: %s runs as root but %s belongs to uid %d, who could change it: chown root it (keepalived's script_security refuses it too)", program, p, sys.Uid)
		case !sticky && (groupWrite || mode.Perm()&0o002 != 0):
			return fmt.Errorf("exec: %s runs as root but %s is writable by group or others (mode %s): chmod go-w it (keepalived's script_security refuses it too)", program, p, mode.Perm())
		}
		if p == "/" || p == filepath.Dir(p) {
			return nil
		}
	}
}

// cappedBuffer keeps the first limit bytes written to it.
type cappedBuffer struct {
	mu    sync.Mutex
	b     []byte
	limit int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.limit - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// CheckState is one check's state for /status.
type CheckState struct {
	Name      string    `json:"name"`
	Passing   bool      `json:"passing"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since"`
	fails     int
	passes    int
}

// Checker runs the checks and reports the overall verdict on every change.
type Checker struct {
	checks   []CheckConfig
	probes   []probe
	log      zerolog.Logger
	onChange func(healthy bool, failing []string)
	gauge    *prometheus.GaugeVec // may be nil

	mu    sync.Mutex
	state []CheckState
}

// NewGauge creates the per-check metric, once per process; reg may be nil.
func NewGauge(reg prometheus.Registerer) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "garpd_health_check_passing",
		Help: "1 while a local health check passes (after rise), 0 while it fails (after fall).",
	}, []string{"check"})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// NewChecker prepares the checks; onChange is called (from check goroutines,
// serialised) whenever the set of failing checks changes. pods makes the
// kubernetes_pod checks, and may be nil when there are none; gauge may be
// nil.
func NewChecker(cfg Config, pods PodProber, log zerolog.Logger, gauge *prometheus.GaugeVec, onChange func(healthy bool, failing []string)) (*Checker, error) {
	h := &Checker{log: log, onChange: onChange, gauge: gauge}
	run, err := NewRunner(cfg.ScriptUser)
	if err != nil {
		return nil, err
	}
	for _, c := range cfg.Checks {
		c = c.WithDefaults()
		p, err := newProbe(c, pods, run)
		if err != nil {
			return nil, fmt.Errorf("health check %s: %w", c.Name, err)
		}
		h.checks = append(h.checks, c)
		h.probes = append(h.probes, p)
		// A check starts passing: a node is not held out of the cluster
		// before its first probe; fall failures take it out.
		h.state = append(h.state, CheckState{Name: c.Name, Passing: true, Since: time.Now()})
		h.setGauge(c.Name, true)
	}
	return h, nil
}

func (h *Checker) setGauge(name string, passing bool) {
	if h.gauge == nil {
		return
	}
	v := 0.0
	if passing {
		v = 1
	}
	h.gauge.WithLabelValues(name).Set(v)
}

func (h *Checker) verdict() (bool, []string) {
	var failing []string
	for _, s := range h.state {
		if !s.Passing {
			failing = append(failing, s.Name)
		}
	}
	return len(failing) == 0, failing
}

// States returns every check's state.
func (h *Checker) States() []CheckState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.state)
}

// Run probes every check on its interval until ctx ends.
func (h *Checker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range h.checks {
		wg.Go(func() { h.loop(ctx, i) })
	}
	wg.Wait()
}

func (h *Checker) loop(ctx context.Context, i int) {
	c := h.checks[i]
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	var links <-chan netlink.LinkUpdate
	if c.Interface != "" {
		links = linkChanges(ctx, h.log)
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, c.Timeout)
		err := h.probes[i](pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.record(i, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case _, ok := <-links: // an interface check probes at once
			if !ok {
				links = nil // polled from now on
			}
		}
	}
}

// linkChanges streams the host's link changes until ctx ends, so an
// interface check sees a link go down the moment the kernel says so
// rather than at its next poll; nil if netlink will not tell.
func linkChanges(ctx context.Context, log zerolog.Logger) <-chan netlink.LinkUpdate {
	ch := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribe(ch, done); err != nil {
		log.Warn().Err(err).Msg("cannot watch link changes: interface checks poll on their interval")
		return nil
	}
	go func() {
		<-ctx.Done()
		close(done)
		for range ch { // the subscription ends once its sends are taken
		}
	}()
	return ch
}

// record applies fall/rise and reports a change of verdict.
func (h *Checker) record(i int, err error) {
	c := h.checks[i]
	h.mu.Lock()
	s := &h.state[i]
	changed := false
	if err != nil {
		s.LastError = err.Error()
		s.fails++
		s.passes = 0
		if s.Passing && s.fails >= c.Fall {
			s.Passing, s.Since, changed = false, time.Now(), true
			what := "health check failing: resigning what it tracks"
			if c.Weight != 0 {
				what = fmt.Sprintf("health check failing: its weight %d applies to what it tracks", c.Weight)
			}
			h.log.Warn().Str("check", c.Name).Err(err).Int("fall", c.Fall).Msg(what)
		}
	} else {
		s.LastError = ""
		s.passes++
		s.fails = 0
		if !s.Passing && s.passes >= c.Rise {
			s.Passing, s.Since, changed = true, time.Now(), true
			h.log.Info().Str("check", c.Name).Int("rise", c.Rise).Msg("health check passing again")
		}
	}
	var healthy bool
	var failing []string
	if changed {
		healthy, failing = h.verdict()
		h.setGauge(c.Name, s.Passing)
	}
	// The callback runs under mu so verdicts arrive in order.
	if changed && h.onChange != nil {
		h.onChange(healthy, failing)
	}
	h.mu.Unlock()
}
