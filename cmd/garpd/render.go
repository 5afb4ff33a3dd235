package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/balancer/health"
	"github.com/garpd/garpd/vrrp"
	"github.com/garpd/garpd/vrrp/keepalived"
)

func newRenderCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Express a garpd config in another tool's configuration",
	}
	cmd.AddCommand(newRenderKeepalivedCmd())
	return cmd
}

func newRenderKeepalivedCmd() *cobra.Command {
	var config, nodes, outDir, target string
	cmd := &cobra.Command{
		Use:   "keepalived --config FILE [--nodes A,B,C] [--target 2.2|2.4] [--out DIR]",
		Short: "Print each node's keepalived.conf for a garpd config",
		Long: `Print the keepalived.conf that runs the same virtual routers as a garpd
config: the same instances (one per VRID), VIPs, priorities, adverts,
version, authentication, peers, preemption and gratuitous ARP settings,
for hosts that keep keepalived beside garpd nodes.

A static-mode config renders its own node. A dynamic-mode config has no
priorities of its own: --nodes fixes the membership, and each node gets the
priorities garpd's plan over those nodes gives it (as garpd plan shows),
so keepalived and garpd nodes of the same plan agree on every master.
Several nodes print one after another (--- between them), or go to
DIR/NODE.conf with --out. keepalived -t -f FILE accepts every file.

The files are for the keepalived found on the PATH, or the version
--target names (2.2, 2.4, ...). What that version cannot parse is left out,
with a note on standard error that says what it costs: keepalived before
2.4 has no auth_hmac, so its nodes sign nothing, and the note gives the
auth_hmac setting the garpd nodes beside them need.`,
		Example: `  garpd render keepalived --config /etc/garpd/garpd.yaml
  garpd render keepalived --config garpd.yaml --nodes n1,n2,n3 --out /tmp/keepalived
  garpd render keepalived --config garpd.yaml --nodes n1,n2,n3 --target 2.2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return usageError(errors.New("--config is required: the garpd config to render"))
			}
			l, err := loadConfig(config)
			if err != nil {
				return err
			}
			var names []string
			if nodes != "" {
				names = strings.Split(nodes, ",")
			}
			version, found, err := keepalivedTarget(target)
			if err != nil {
				return usageError(err)
			}
			out, notes, err := renderKeepalived(l, config, names, version)
			if err != nil {
				return err
			}
			if target == "" {
				notes = append([]string{found}, notes...)
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
			}
			return writeNodeFiles(cmd.OutOrStdout(), cmd.ErrOrStderr(), outDir, ".conf", out)
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "", "the garpd config")
	cmd.Flags().StringVar(&nodes, "nodes", "", "dynamic mode: the members to plan over, comma-separated (the config's node among them); NAME=ADDR gives a node's address, which a unicast config needs for each node's peers")
	cmd.Flags().StringVar(&outDir, "out", "", "write DIR/NODE.conf per node instead of printing them")
	cmd.Flags().StringVar(&target, "target", "", "the keepalived version to write for, MAJOR.MINOR (default: the keepalived on the PATH, else "+latestKeepalived.String()+")")
	return cmd
}

// keepalivedVersion is a keepalived release, major and minor.
type keepalivedVersion struct{ major, minor int }

func (v keepalivedVersion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// atLeast reports whether v is o or later.
func (v keepalivedVersion) atLeast(o keepalivedVersion) bool {
	return v.major > o.major || (v.major == o.major && v.minor >= o.minor)
}

var (
	// latestKeepalived is the newest release whose syntax render knows.
	latestKeepalived = keepalivedVersion{2, 4}
	// keepalivedSigns is the first release with auth_hmac.
	keepalivedSigns = keepalivedVersion{2, 4}
)

var keepalivedVersionLine = regexp.MustCompile(`Keepalived v(\d+)\.(\d+)`)

// keepalivedTarget is the version to render for: --target's, or the
// keepalived on the PATH's (found says which), or the latest.
func keepalivedTarget(target string) (v keepalivedVersion, found string, err error) {
	text := target
	if target == "" {
		out, _ := exec.Command("keepalived", "--version").CombinedOutput()
		m := keepalivedVersionLine.FindStringSubmatch(string(out))
		if m == nil {
			return latestKeepalived, fmt.Sprintf("no keepalived on the PATH: rendering for keepalived %s (--target sets the version)", latestKeepalived), nil
		}
		text = m[1] + "." + m[2]
		found = fmt.Sprintf("rendering for keepalived %s, the one on the PATH (--target sets another)", text)
	}
	major, minor, ok := strings.Cut(strings.TrimPrefix(text, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	v.major, err = strconv.Atoi(major)
	if err == nil && ok {
		v.minor, err = strconv.Atoi(minor)
	}
	if err != nil || !ok || v.major < 1 {
		return v, "", fmt.Errorf("--target %q: give keepalived's version as MAJOR.MINOR, e.g. 2.2 or 2.4", target)
	}
	return v, found, nil
}

// renderKeepalived writes the keepalived.conf of each node: the config's
// own in static mode, each of names in dynamic mode.
func renderKeepalived(l *loaded, path string, names []string, target keepalivedVersion) ([]nodeFile, []string, error) {
	c := l.cfg
	prio := map[string][]int{}       // node → priority per router, in l.routers' order
	addrs := map[string]netip.Addr{} // --nodes NAME=ADDR: each node's VRRP address
	switch {
	case !l.dynamic():
		if len(names) > 0 {
			return nil, nil, usageError(errors.New("--nodes is for dynamic-mode configs; a static config renders its own node, with its priorities"))
		}
		for _, r := range l.routers {
			prio[c.Node] = append(prio[c.Node], int(r.Priority))
		}
		names = []string{c.Node}
	case len(names) == 0:
		return nil, nil, usageError(errors.New("--nodes: a dynamic-mode config has no priorities until the membership is fixed: name the members, e.g. --nodes n1,n2,n3"))
	default:
		for i, n := range names {
			name, addr, hasAddr := strings.Cut(n, "=")
			if name == "" {
				return nil, nil, usageError(fmt.Errorf("--nodes %q: an empty node name", strings.Join(names, ",")))
			}
			if hasAddr {
				a, err := netip.ParseAddr(addr)
				if err != nil {
					return nil, nil, usageError(fmt.Errorf("--nodes %q: %q is not an IP address", n, addr))
				}
				addrs[name] = a
			}
			names[i] = name
		}
		if len(c.VRRP.UnicastPeers) > 0 && len(addrs) != len(names) {
			return nil, nil, usageError(errors.New("--nodes: the config sends unicast, and each node's keepalived.conf lists the others as peers: give every node's address, e.g. --nodes n1=192.0.2.11,n2=192.0.2.12,n3=192.0.2.13"))
		}
		plan, err := balancer.Rank(names, l.alloc.Groups)
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("--nodes: %w", err))
		}
		for i := range l.routers { // the dynamic mode's routers are the groups, in order
			p := plan.Groups[i].Priorities()
			for _, n := range names {
				prio[n] = append(prio[n], p[n])
			}
		}
	}
	if c.VRRP.UnicastAuto() {
		return nil, nil, errors.New("vrrp.unicast_peers: auto takes the peers from gossip, which keepalived has not: list the peers' addresses to render")
	}
	mode := "static mode"
	if l.dynamic() {
		mode = "dynamic mode, planned over " + strings.Join(names, ", ")
	}
	checks, err := renderChecks(c.Health.Checks)
	if err != nil {
		return nil, nil, err
	}
	auth, notes := renderAuth(l), []string(nil)
	if auth != nil && !target.atLeast(keepalivedSigns) {
		auth = nil
		notes = append(notes, fmt.Sprintf("keepalived %s has no auth_hmac (%s has): left out, so these keepalived nodes sign nothing and anyone on the segment can forge their adverts. The garpd nodes beside them must accept unsigned adverts and sign none, or both sides become master: in their vrrp section, auth_hmac: {mode: receive-only}%s",
			target, keepalivedSigns, map[bool]string{true: ", and keepalived_peers: the keepalived nodes' addresses", false: ""}[l.dynamic()]))
	}
	var out []nodeFile
	for _, node := range names {
		routers := slices.Clone(l.routers)
		for i := range routers {
			routers[i].Priority = uint8(prio[node][i])
		}
		vr := c.VRRP
		if len(addrs) > 0 && len(vr.UnicastPeers) > 0 {
			// Each node's peers are the others, never itself, and its
			// source is its own address.
			vr.UnicastPeers, vr.Source = nil, []string{addrs[node].String()}
			for _, other := range names {
				if other != node {
					vr.UnicastPeers = append(vr.UnicastPeers, addrs[other].String())
				}
			}
		} else if node != c.Node {
			vr.Source = nil // the config's source is its own node's address
		}
		conf := keepalived.Render(keepalived.Rendering{Node: node, Interface: c.Interface, VRRP: vr, GARP: c.GARP,
			Routers: routers, Dev: l.dev(), Auth: auth, Checks: checks, Notify: renderNotify(c.Notify.NotifyHooks), InstanceNotify: renderInstanceNotify(c.Notify), ScriptUser: c.ScriptUser,
			Comment: fmt.Sprintf("rendered by garpd render keepalived from %s (%s)", filepath.Base(path), mode)})
		out = append(out, nodeFile{node: node, from: path, data: conf, secret: c.VRRP.AuthPass != "" || l.auth.Enabled()})
	}
	return out, notes, nil
}

// renderChecks are the health checks as keepalived runs them: exec as its
// command line, http as curl, interface as track_interface. A check
// keepalived cannot run (tcp, kubernetes_pod) is refused by name.
func renderChecks(checks []health.CheckConfig) ([]keepalived.Check, error) {
	var out []keepalived.Check
	for i, hc := range checks {
		k := keepalived.Check{Name: hc.Name, Interface: hc.Interface, Interval: hc.Interval, Timeout: hc.Timeout,
			Fall: hc.Fall, Rise: hc.Rise, Weight: hc.Weight}
		for _, v := range hc.VIPs {
			p, err := vrrp.ParseVIP(v)
			if err != nil {
				return nil, fmt.Errorf("health.checks[%d].vips: %w", i, err)
			}
			k.VIPs = append(k.VIPs, p.Addr())
		}
		switch {
		case hc.Interface != "":
		case len(hc.Exec) > 0:
			k.Script = shellJoin(hc.Exec)
		case hc.HTTP != "":
			curl := []string{"/usr/bin/curl", "-sf", "-o", "/dev/null", "--max-time", strconv.FormatFloat(hc.Timeout.Seconds(), 'f', -1, 64)}
			if hc.Insecure {
				curl = append(curl, "-k")
			}
			if hc.CAFile != "" {
				curl = append(curl, "--cacert", hc.CAFile)
			}
			k.Script = shellJoin(append(curl, hc.HTTP))
		default:
			return nil, fmt.Errorf("health.checks[%d] (%s): keepalived has no counterpart for a tcp or kubernetes_pod check; write it as an exec check to render it", i, hc.Name)
		}
		out = append(out, k)
	}
	return out, nil
}

// shellJoin writes argv as one script line, quoting words with spaces.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if strings.ContainsAny(a, " \t'") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// renderNotify are the notify hooks under keepalived's keys.
func renderNotify(n health.NotifyHooks) map[string][]string {
	out := map[string][]string{}
	for key, argv := range map[string][]string{"notify": n.Exec, "notify_master": n.Master, "notify_backup": n.Backup, "notify_fault": n.Fault, "notify_stop": n.Stop} {
		if len(argv) > 0 {
			out[key] = argv
		}
	}
	return out
}

// renderInstanceNotify are the instances' own hooks, by instance name.
func renderInstanceNotify(n health.NotifyConfig) map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for name, own := range n.Instances {
		out[name] = renderNotify(own)
	}
	return out
}

// renderAuth is the auth_hmac block keepalived needs to speak with the
// config's nodes: the config's own keys as written, or the key the dynamic
// mode derives from the gossip key, in hex. nil when adverts are not
// authenticated.
func renderAuth(l *loaded) *vrrp.AuthHMACConfig {
	if !l.auth.Enabled() {
		return nil
	}
	a := &vrrp.AuthHMACConfig{Keys: map[int]string{}, ActiveKey: int(l.auth.Active), Mode: l.auth.Mode.String(), TimeWindow: l.auth.Window}
	if l.auth.Window == 0 {
		a.AntiReplay = "monotonic"
	}
	for id, key := range l.auth.Keys {
		a.Keys[int(id)] = "hex:" + hex.EncodeToString(key)
		if h := l.cfg.VRRP.AuthHMAC; h != nil && h.Keys[int(id)] != "" {
			a.Keys[int(id)] = h.Keys[int(id)]
		}
	}
	return a
}
