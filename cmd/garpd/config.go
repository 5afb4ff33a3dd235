package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rs/zerolog"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/balancer/health"
	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/gossip/kube"
	"github.com/garpd/garpd/vrrp"
)

// agentConfig is the agent's YAML file: the packages' sections composed.
type agentConfig struct {
	Node       string           `yaml:"node"`
	Interface  string           `yaml:"interface"`
	VIPs       balancer.VIPList `yaml:"vips"`
	VRRP       vrrp.Config      `yaml:"vrrp"`
	Priorities map[string]int   `yaml:"priorities"`
	GARP       vrrp.GARPConfig  `yaml:"garp"`
	Gossip     gossip.Config    `yaml:"gossip"`
	Health     health.Config    `yaml:"health"`
	// TrackInterfaces are links whose loss resigns (or shifts by a
	// weight) the routers: keepalived's track_interface. Each becomes an
	// interface check.
	TrackInterfaces []trackInterface    `yaml:"track_interfaces"`
	Notify          health.NotifyConfig `yaml:"notify"`
	// ScriptUser is who exec checks and notify hooks run as: keepalived's
	// global_defs script_user. Empty: the agent's own user.
	ScriptUser string        `yaml:"script_user"`
	Kubernetes *kube.Config  `yaml:"kubernetes"`
	HTTP       httpConfig    `yaml:"http"`
	Control    controlConfig `yaml:"control"`
	Log        logConfig     `yaml:"log"`
}

// trackInterface is one entry of track_interfaces: a name, or
// {name, weight, vips}.
type trackInterface struct {
	Name   string   `yaml:"name"`
	Weight int      `yaml:"weight"`
	VIPs   []string `yaml:"vips"`
}

// UnmarshalYAML takes a bare interface name too.
func (t *trackInterface) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		t.Name = n.Value
		return nil
	}
	type plain trackInterface
	return n.Decode((*plain)(t))
}

// check is the interface check a tracked interface becomes.
func (t trackInterface) check() health.CheckConfig {
	return health.CheckConfig{Name: "interface:" + t.Name, Interface: t.Name, Weight: t.Weight, VIPs: t.VIPs}
}

type httpConfig struct {
	Listen string `yaml:"listen"`
	// PProf serves Go's profiler at /debug/pprof/ on the same listener, so
	// an operator can profile a running agent. Off by default: profiles
	// show internals and cost CPU while they run.
	PProf bool `yaml:"pprof"`
}

// controlConfig is where the operator's endpoints listen: /status,
// /forget, /announce and the profiler, which /metrics and /healthz's
// listener never serves.
type controlConfig struct {
	// Listen is unix:PATH (a socket of mode 0600, the default), or
	// HOST:PORT: on loopback without TokenFile only as the operator's
	// explicit choice (every local process reaches it), elsewhere with it.
	Listen string `yaml:"listen"`
	// TokenFile holds a bearer token every request must carry.
	TokenFile string `yaml:"token_file"`
}

// defaultControlListen is where the agent's control endpoints listen, and
// where garpd status, forget and announce look, when given no address: a
// socket only root (the agent's user) may use, which no other local
// process and no host-network pod reaches. In a pod, kubectl exec reaches
// it: kubectl exec POD -- garpd status.
const defaultControlListen = "unix:/run/garpd/control.sock"

type logConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// loaded is a validated config with what was derived from it.
type loaded struct {
	cfg     agentConfig
	alloc   balancer.Allocation
	routers []vrrp.RouterSpec
	// auth is vrrp.auth_hmac resolved, or in the dynamic mode the key
	// derived from the gossip key when the section names none.
	auth vrrp.AuthKeys
	// token is control.token_file's bearer token, if any.
	token []byte
	// gossipKeys are gossip.secret_key_file's keys, the primary first; a
	// SIGHUP installs new ones in place.
	gossipKeys [][]byte
}

// dynamic: no static priorities, so gossip and the balancer set them.
func (l *loaded) dynamic() bool { return l.cfg.Priorities == nil }

// configError marks bad input, a config or a flag: the command exits 2
// for it.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// kubeNodeNameEnv is the variable the manifests fill from the downward
// API (spec.nodeName): the node name when the config has a kubernetes
// section and no node.
const kubeNodeNameEnv = "NODE_NAME"

// loadConfig reads, defaults and validates a config file. Every problem is
// reported with the key it is about; nothing is used unless all is valid.
func loadConfig(path string) (*loaded, error) { return loadConfigAs(path, false) }

// loadConfigAs is loadConfig; offline checks the file alone, without the
// host's files it names (the gossip key), as on a workstation.
func loadConfigAs(path string, offline bool) (*loaded, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &configError{fmt.Errorf("read config: %w", err)}
	}
	l, err := parseConfigAs(raw, offline)
	if err != nil {
		return nil, &configError{fmt.Errorf("config %s: %w", path, err)}
	}
	return l, nil
}

func parseConfig(raw []byte) (*loaded, error) { return parseConfigAs(raw, false) }

func parseConfigAs(raw []byte, offline bool) (*loaded, error) {
	// Defaults go in first, so a key the file leaves out keeps its default
	// while an explicit value, 0 included, is taken as written.
	c := agentConfig{GARP: vrrp.DefaultGARPConfig(), Gossip: gossip.DefaultConfig()}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); errors.Is(err, io.EOF) {
		return nil, errors.New("no settings in it (empty, or comments only): interface: required, vips: required; e.g. interface: eth0 and vips: [192.0.2.101]")
	} else if err != nil {
		return nil, explainYAML(err, raw)
	}
	if err := strictValues(raw); err != nil {
		return nil, err
	}
	if err := c.resolveNode(); err != nil {
		return nil, err
	}
	if err := c.expandCredentials(os.Getenv(credentialsDirEnv), offline); err != nil {
		return nil, err
	}
	c.withDefaults()

	var errs []error
	section := func(name string, err error) {
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			errs = append(errs, fmt.Errorf("%s.%s", name, line))
		}
	}
	if c.Interface == "" {
		errs = append(errs, errors.New("interface: required: the interface on the VIPs' L2 segment, e.g. interface: eth0"))
	}
	if len(c.VIPs) == 0 {
		errs = append(errs, errors.New("vips: required: list at least one virtual IP"))
	}
	section("vrrp", c.VRRP.Validate())
	section("garp", c.GARP.Validate())
	for i, t := range c.TrackInterfaces {
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("track_interfaces[%d]: name: required", i))
			continue
		}
		c.Health.Checks = append(c.Health.Checks, t.check())
	}
	for i := range c.Health.Checks {
		c.Health.Checks[i] = c.Health.Checks[i].WithDefaults()
	}
	hv := c.Health
	if offline { // the CA files are the host's: named, not read
		hv.Checks = slices.Clone(hv.Checks)
		for i := range hv.Checks {
			hv.Checks[i].CAFile = ""
		}
	}
	section("health", hv.Validate())
	section("notify", c.Notify.Validate())
	c.Health.ScriptUser, c.Notify.ScriptUser = c.ScriptUser, c.ScriptUser
	if !offline { // the host's users: named, not looked up
		if _, err := health.NewRunner(c.ScriptUser); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.checkVIPs()...)
	if c.Priorities == nil {
		g := c.Gossip
		if offline && g.SecretKeyFile != "" {
			g.SecretKeyFile, g.Insecure = "", true // named, not read
		}
		section("gossip", g.Validate())
		section("vrrp", noPreemptOff(c.VRRP))
		if k := c.Kubernetes; k != nil {
			section("kubernetes", k.Validate())
		}
	} else if len(c.VRRP.KeepalivedPeers) > 0 {
		errs = append(errs, errors.New("vrrp.keepalived_peers: the dynamic mode's (a migration from keepalived); the static mode admits every advert already"))
	} else if c.VRRP.UnicastAuto() || c.Kubernetes != nil {
		errs = append(errs, errors.New("priorities: static priorities cannot follow gossip or Kubernetes (unicast_peers: auto, kubernetes); remove priorities for the dynamic mode"))
	}
	if _, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil || port == "" {
		errs = append(errs, fmt.Errorf("http.listen: %q: write HOST:PORT, e.g. 127.0.0.1:9496 (or 0.0.0.0:9496 for a ServiceMonitor)", c.HTTP.Listen))
	}
	token, err := c.Control.check(c.HTTP.Listen)
	if err != nil {
		errs = append(errs, err)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %w", err))
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		errs = append(errs, fmt.Errorf("log.format: %q: use json or console", c.Log.Format))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	return newLoaded(c, token, offline)
}

// withDefaults fills in what the file left out after decoding: the keys
// whose default is not their zero value.
func (c *agentConfig) withDefaults() {
	c.VRRP = c.VRRP.WithDefaults()
	c.HTTP.Listen = cmp.Or(c.HTTP.Listen, "127.0.0.1:9496")
	c.Control.Listen = cmp.Or(c.Control.Listen, defaultControlListen)
	c.Log.Level = cmp.Or(c.Log.Level, "info")
	c.Log.Format = cmp.Or(c.Log.Format, "json")
}

// credentialsDirEnv is where systemd puts a unit's LoadCredential= files,
// readable by the unit's user alone.
const credentialsDirEnv = "CREDENTIALS_DIRECTORY"

// expandCredentials writes the unit's credentials directory into the
// secret files' paths that name it (${CREDENTIALS_DIRECTORY}/gossip.key),
// so a key can stay root's file, mode 600, while the agent runs as the
// garpd user. credDir is $CREDENTIALS_DIRECTORY; offline leaves such a
// path as written when it is unset (the files are named, not read).
func (c *agentConfig) expandCredentials(credDir string, offline bool) error {
	var errs []error
	for _, f := range []struct {
		key  string
		path *string
	}{{"gossip.secret_key_file", &c.Gossip.SecretKeyFile}, {"control.token_file", &c.Control.TokenFile}} {
		if !strings.Contains(*f.path, "$") {
			continue
		}
		var bad []string
		expanded := os.Expand(*f.path, func(name string) string {
			if name != credentialsDirEnv {
				bad = append(bad, "$"+name)
			}
			return credDir
		})
		switch {
		case len(bad) > 0:
			errs = append(errs, fmt.Errorf("%s: %q names %s: only ${%s} (systemd's LoadCredential=) is expanded; write the file's path", f.key, *f.path, strings.Join(bad, ", "), credentialsDirEnv))
		case credDir != "":
			*f.path = expanded
		case !offline:
			errs = append(errs, fmt.Errorf("%s: %q names ${%s}, which is unset: run garpd from its unit with LoadCredential=%s:/etc/garpd/%s (systemctl edit garpd), or write the file's path", f.key, *f.path, credentialsDirEnv, filepath.Base(*f.path), filepath.Base(*f.path)))
		}
	}
	return errors.Join(errs...)
}

// resolveNode names the node when the config does not: in Kubernetes as
// the downward API's spec.nodeName, so the member is named as its Node (a
// deleted Node then names the member to forget), else the host name.
func (c *agentConfig) resolveNode() error {
	if c.Node == "" && c.Kubernetes != nil {
		c.Node = os.Getenv(kubeNodeNameEnv)
	}
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node: not set and the host name is unknown: %w", err)
		}
		c.Node = h
	}
	return nil
}

// newLoaded allocates the validated config's VRIDs, makes its routers and
// reads its keys.
func newLoaded(c agentConfig, token []byte, offline bool) (*loaded, error) {
	var err error
	l := &loaded{cfg: c, token: token}
	if l.alloc, err = balancer.AssignVRIDs(c.VIPs, c.VRRP.VRIDBase, 255); err != nil {
		return nil, fmt.Errorf("vips: %w", err)
	}
	named := map[string]bool{}
	for _, g := range l.alloc.Groups {
		named[g.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(c.Notify.Instances)) {
		if !named[name] {
			return nil, fmt.Errorf("notify.instances.%s: no VIP is named %s: give the VIPs of that instance name: %s", name, name, name)
		}
	}
	if l.dynamic() {
		// Everything starts as a backup of last resort; the controller
		// raises this node's priorities to its ranks once it has settled.
		for _, g := range l.alloc.Groups {
			l.routers = append(l.routers, g.Spec(balancer.UnrankedPriority))
		}
	} else if l.routers, err = balancer.StaticRouters(l.alloc, c.Priorities); err != nil {
		return nil, err
	}
	if l.dynamic() && c.Gossip.SecretKeyFile != "" && !offline {
		if l.gossipKeys, err = gossip.LoadKeys(c.Gossip.SecretKeyFile); err != nil {
			return nil, fmt.Errorf("gossip.secret_key_file: %w", err)
		}
	}
	if l.auth, err = authKeys(c, l.gossipKeys); err != nil {
		return nil, err
	}
	return l, nil
}

// checkVIPs normalises each VIP's interface and dev (the agent's interface
// is said the one way) and checks the VIPs against the mode and the
// checks that name them.
func (c *agentConfig) checkVIPs() []error {
	var errs []error
	vips := map[netip.Addr]bool{}
	for i, v := range c.VIPs {
		vips[v.Prefix.Addr()] = true
		// The agent's interface is the default: say it the one way.
		if v.Interface == c.Interface {
			v.Interface = ""
		}
		if v.Dev == cmp.Or(v.Interface, c.Interface) {
			v.Dev = ""
		}
		c.VIPs[i] = v
		if v.Interface != "" && c.Priorities == nil {
			errs = append(errs, fmt.Errorf("vips[%d].interface: the dynamic mode runs VRRP on interface (%s), where the members reach each other; to hold %s on %s, write dev: %s instead", i, c.Interface, v.Prefix.Addr(), v.Interface, v.Interface))
		}
		if v.Dev != "" && c.VRRP.UseVMAC {
			errs = append(errs, fmt.Errorf("vips[%d].dev: %s", i, vrrp.VMACRefusesDev(v.Prefix.Addr(), cmp.Or(v.Interface, c.Interface))))
		}
		if v.Prefer != "" && c.Priorities != nil {
			errs = append(errs, fmt.Errorf("vips[%d].prefer: the dynamic mode's: in the static mode priorities: says who owns %s", i, v.Prefix.Addr()))
		}
	}
	for i, hc := range c.Health.Checks {
		for _, v := range hc.VIPs {
			if p, err := vrrp.ParseVIP(v); err != nil || !vips[p.Addr()] {
				errs = append(errs, fmt.Errorf("health.checks[%d].vips: %q is not one of the configured vips", i, v))
			}
		}
		switch {
		case hc.KubernetesPod != nil && c.Kubernetes == nil:
			errs = append(errs, fmt.Errorf("health.checks[%d].kubernetes_pod: needs the kubernetes section (kubernetes: {} in a pod, or kubernetes.kubeconfig on a host), which is the dynamic mode's", i))
		}
	}
	return errs
}

// authKeys resolves vrrp.auth_hmac. The dynamic mode signs and enforces
// by default, with keys derived from the gossip keys (the primary's
// signs, all are accepted, so both rotate together), so an operator
// provisions one secret; auth_hmac without keys there sets only the mode
// or window of the derived keys.
func authKeys(c agentConfig, gossipKeys [][]byte) (vrrp.AuthKeys, error) {
	dynamic := c.Priorities == nil
	h := c.VRRP.AuthHMAC
	keys, err := c.VRRP.Auth() // validated with the section
	if err != nil {
		return keys, fmt.Errorf("vrrp.%w", err)
	}
	switch {
	case h != nil && len(h.Keys) > 0:
		return keys, nil
	case !dynamic && h != nil:
		return keys, errors.New("vrrp.auth_hmac.keys: required in the static mode, e.g. keys: {1: file:/etc/garpd/vrrp.key} (the file holds hex:DIGITS; make one with: printf 'hex:%s' $(openssl rand -hex 32))")
	case !dynamic || len(gossipKeys) == 0 || (h != nil && keys.Mode == vrrp.AuthOff):
		return vrrp.AuthKeys{}, nil
	}
	if h == nil {
		if keys, err = (vrrp.Config{AdvertInterval: c.VRRP.AdvertInterval, AuthHMAC: &vrrp.AuthHMACConfig{}}).Auth(); err != nil {
			return keys, err
		}
	}
	// Each key under its id and the id garpd 0.1 gave it, which the
	// dynamic mode signs with while a member may know no other.
	keys.Keys = map[uint8][]byte{}
	for i, gk := range gossipKeys {
		id, key := vrrp.DeriveAuthKey(gk)
		legacy := vrrp.LegacyAuthKeyID(key)
		for _, kid := range []uint8{id, legacy} {
			if other, dup := keys.Keys[kid]; dup && !bytes.Equal(other, key) {
				return keys, fmt.Errorf("gossip.secret_key_file: key %d derives VRRP key id %d, which another key's derived key has too: replace the new key with another", i+1, kid)
			}
			keys.Keys[kid] = key
		}
		if i == 0 {
			keys.Active, keys.Legacy = id, legacy
		}
	}
	return keys, nil
}

// check validates the control section and reads the token: off loopback,
// a token is required, so nobody who merely reaches the node can forget
// a member or start waves.
func (c controlConfig) check(httpListen string) ([]byte, error) {
	if c.Listen == httpListen {
		return nil, fmt.Errorf("control.listen: %s is http.listen too: give the operator's endpoints a listener of their own (default %s)", c.Listen, defaultControlListen)
	}
	var token []byte
	if c.TokenFile != "" {
		b, err := gossip.ReadSecretFile(c.TokenFile, 4096)
		if err != nil {
			return nil, fmt.Errorf("control.token_file: %w", err)
		}
		if token = bytes.TrimSpace(b); len(token) < 16 {
			return nil, fmt.Errorf("control.token_file: %s holds %d characters: use at least 16 (make one with: head -c 24 /dev/urandom | base64)", c.TokenFile, len(token))
		}
	}
	if strings.HasPrefix(c.Listen, "unix:") {
		return token, nil
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("control.listen: %q: write HOST:PORT or unix:PATH", c.Listen)
	}
	if a, err := netip.ParseAddr(host); (err != nil || !a.IsLoopback()) && host != "localhost" && token == nil {
		return nil, fmt.Errorf("control.listen: %s is not loopback: set control.token_file, or listen on 127.0.0.1 or unix:PATH", c.Listen)
	}
	return token, nil
}

// stackConfig is the data plane's part of the config.
func (l *loaded) stackConfig(m *vrrp.Metrics, log zerolog.Logger) vrrp.StackConfig {
	return vrrp.StackConfig{Interface: l.cfg.Interface, VRRP: l.cfg.VRRP, GARP: l.cfg.GARP, Routers: l.routers, Dev: l.dev(),
		IPv4: l.dynamic(), DefendClaims: l.dynamic(), Auth: l.auth, Metrics: m, Log: log}
}

// dev maps the VIPs held on another interface than their router's to it.
func (l *loaded) dev() map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, g := range l.alloc.Groups {
		maps.Copy(out, g.Dev)
	}
	return out
}

// vipCount is the most VIPs one interface's announcement budget may have
// to move at once.
func (l *loaded) vipCount() int {
	per := map[string]int{}
	for _, r := range l.routers {
		per[r.Interface] += len(r.VIPs)
	}
	return slices.Max(append(slices.Collect(maps.Values(per)), 0))
}

// interfaces lists every interface the config uses: the agent's, the
// other VRRP interfaces, the VIPs' devs.
func (l *loaded) interfaces() []string {
	out := []string{l.cfg.Interface}
	for _, v := range l.cfg.VIPs {
		out = append(out, v.Interface, v.Dev)
	}
	out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	slices.Sort(out[1:])
	return slices.Compact(out)
}

// staticChecks: the static mode runs health checks (keepalived's
// track_script and track_interface).
func (l *loaded) staticChecks() bool {
	return !l.dynamic() && len(l.cfg.Health.Checks) > 0
}

// dynamicConfig is the dynamic mode's part of the config.
func (l *loaded) dynamicConfig() balancer.DynamicConfig {
	c := l.cfg
	return balancer.DynamicConfig{Node: c.Node, Interface: c.Interface, Groups: l.alloc.Groups, VRRP: c.VRRP,
		Gossip: c.Gossip, Health: c.Health, Kubernetes: c.Kubernetes, Version: version}
}

// explainYAML rewrites the YAML decoder's errors for an operator: "field
// interfac not found in type main.agentConfig" becomes "line 2: interfac:
// unknown key; did you mean interface?".
func explainYAML(err error, raw []byte) error {
	te, ok := errors.AsType[*yaml.TypeError](err)
	if !ok {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	keys, paths := configKeys(reflect.TypeFor[agentConfig]())
	lines := strings.Split(string(raw), "\n")
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = m
		var line int
		var field, typ string
		if n, _ := fmt.Sscanf(m, "line %d: cannot unmarshal !!int %s into time.Duration", &line, &field); n == 2 {
			// YAML's number has no unit, and guessing one (seconds?
			// nanoseconds?) would hide a mistake.
			msgs[i] = fmt.Sprintf("line %d: %s%s is a number without a unit: write a duration such as 0s, 500ms or 60s", line, keyAt(lines, line, field), field)
			continue
		}
		if v, into, ok := cannotUnmarshal(m, &line); ok {
			switch into {
			case "time.Duration":
				msgs[i] = fmt.Sprintf("line %d: %s%s is not a duration: write one such as 30s, 500ms or 1m30s", line, keyAt(lines, line, v), v)
				continue
			case "[]string":
				msgs[i] = fmt.Sprintf("line %d: %s%s: write a list, one word an item, such as [/usr/bin/curl, -sf, URL]", line, keyAt(lines, line, v), v)
				continue
			case "bool":
				msgs[i] = fmt.Sprintf("line %d: %s%q is text, not true or false: write true or false without quotes", line, keyAt(lines, line, v), v)
				continue
			}
		}
		if n, _ := fmt.Sscanf(m, "line %d: field %s not found in type %s", &line, &field, &typ); n < 3 {
			continue
		}
		msgs[i] = fmt.Sprintf("line %d: %s: unknown key", line, field)
		if near := nearest(field, keys[typ]); near != "" {
			msgs[i] += "; did you mean " + near + "?"
		} else if elsewhere := paths[field]; len(elsewhere) > 0 {
			msgs[i] += "; did you mean " + strings.Join(elsewhere, " or ") + "?"
		} else if len(keys[typ]) > 0 {
			msgs[i] += " (known here: " + strings.Join(keys[typ], ", ") + ")"
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// noPreemptOff refuses preempt: false in the dynamic mode, which hands a
// returning owner its VIPs back once it has settled.
func noPreemptOff(v vrrp.Config) error {
	if p := v.Preempt; p != nil && !*p {
		return errors.New("preempt: false is the static mode's: the dynamic mode hands a returning owner its VIPs back once it has settled (gossip.settle holds it back); remove it, or give priorities for the static mode")
	}
	return nil
}

// defaultedWhenZero are the keys whose 0 means "the default" to the
// packages: written out as 0, they are refused rather than silently
// replaced.
var defaultedWhenZero = map[string]string{
	"vrid_base": "use 1..255, or leave vrid_base out for 10",
	"fall":      "use 1..100, or leave fall out for the default",
	"rise":      "use 1..100, or leave rise out for the default",
	"interval":  "leave interval out for the default",
	"timeout":   "leave timeout out for the default",
}

// strictValues refuses what YAML decoding lets through silently: a
// fraction for a whole number (count: 2.9 would be 2) and an explicit 0
// where the packages read 0 as "unset".
func strictValues(raw []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil || len(doc.Content) == 0 {
		return nil // the decoder has said what is wrong
	}
	var errs []error
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
			for i, c := range n.Content {
				walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, val := n.Content[i].Value, n.Content[i+1]
				f, ok := fieldByTag(t, key)
				if !ok {
					continue
				}
				p := strings.TrimPrefix(path+"."+key, ".")
				ft := f.Type
				isInt := ft.Kind() >= reflect.Int && ft.Kind() <= reflect.Int64 && ft != reflect.TypeFor[time.Duration]()
				switch {
				case val.Kind == yaml.ScalarNode && isInt && val.Tag == "!!float":
					errs = append(errs, fmt.Errorf("line %d: %s: %s: a whole number", val.Line, p, val.Value))
				case val.Kind == yaml.ScalarNode && (val.Value == "0" || val.Value == "0s") && defaultedWhenZero[key] != "" && (isInt || ft == reflect.TypeFor[time.Duration]()):
					errs = append(errs, fmt.Errorf("line %d: %s: 0: %s", val.Line, p, defaultedWhenZero[key]))
				}
				walk(val, ft, p)
			}
		}
	}
	walk(doc.Content[0], reflect.TypeFor[agentConfig](), "")
	// garp: refresh and schedule are one choice: the schedule replaces the
	// refresh, so both written is a mistake.
	if root := doc.Content[0]; root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if g := root.Content[i+1]; root.Content[i].Value == "garp" && g.Kind == yaml.MappingNode {
				keys := map[string]bool{}
				for j := 0; j+1 < len(g.Content); j += 2 {
					keys[g.Content[j].Value] = true
				}
				if keys["refresh"] && keys["schedule"] {
					errs = append(errs, fmt.Errorf("line %d: garp: refresh and schedule both set: a schedule replaces the rolling refresh; keep one", g.Line))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// fieldByTag is t's field whose yaml tag names key.
func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// cannotUnmarshal reads yaml's "line N: cannot unmarshal !!T `V` into G":
// the value (as yaml shortens it) and the Go type.
func cannotUnmarshal(m string, line *int) (value, into string, ok bool) {
	rest, found := strings.CutPrefix(m, "line ")
	if !found {
		return "", "", false
	}
	n, rest, found := strings.Cut(rest, ": cannot unmarshal ")
	if _, err := fmt.Sscanf(n, "%d", line); !found || err != nil {
		return "", "", false
	}
	_, rest, found = strings.Cut(rest, "`")
	if !found {
		return "", "", false
	}
	value, into, found = strings.Cut(rest, "` into ")
	return value, into, found
}

// keyAt is "KEY: " for the key on line whose value starts with value
// (yaml shortens long values with "..."), "" when it cannot tell.
func keyAt(lines []string, line int, value string) string {
	if line < 1 || line > len(lines) {
		return ""
	}
	value = strings.TrimSuffix(value, "...")
	re := regexp.MustCompile(`([A-Za-z_]+):\s*["']?` + regexp.QuoteMeta(value))
	if m := re.FindStringSubmatch(lines[line-1]); m != nil {
		return m[1] + ": "
	}
	return ""
}

// configKeys maps each struct type reachable from t, by the name the YAML
// decoder prints (main.agentConfig, vrrp.Config), to its keys, and each
// key below the top to the dotted paths it is known at (vrrp.unicast_peers).
func configKeys(t reflect.Type) (byType, paths map[string][]string) {
	byType, paths = map[string][]string{}, map[string][]string{}
	var walk func(reflect.Type, string, int)
	walk = func(t reflect.Type, prefix string, depth int) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth > 5 {
			return
		}
		var keys []string
		for f := range t.Fields() {
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if opts == "inline" { // its keys are this struct's
				walk(f.Type, prefix, depth+1)
				keys = append(keys, byType[f.Type.String()]...)
				continue
			}
			name = cmp.Or(name, strings.ToLower(f.Name))
			keys = append(keys, name)
			if prefix != "" {
				paths[name] = append(paths[name], prefix+name)
			}
			walk(f.Type, prefix+name+".", depth+1)
		}
		byType[t.String()] = keys
	}
	walk(t, "", 0)
	return byType, paths
}

// nearest is the known key closest to a misspelt one, if any is close:
// at most a third of its letters wrong.
func nearest(key string, known []string) string {
	best, bestD := "", len(key)/3+1
	for _, k := range known {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
