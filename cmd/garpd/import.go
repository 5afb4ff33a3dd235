package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/garpd/garpd/vrrp"
	"github.com/garpd/garpd/vrrp/keepalived"
)

func newImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Turn another tool's configuration into garpd configs",
	}
	cmd.AddCommand(newImportKeepalivedCmd())
	return cmd
}

func newImportKeepalivedCmd() *cobra.Command {
	var node, outDir string
	var dynamic, strict bool
	cmd := &cobra.Command{
		Use:   "keepalived FILE... [--node NAME] [--dynamic] [--strict] [--out DIR]",
		Short: "Turn keepalived.conf files (one per node) into garpd configs",
		Long: `Read the keepalived configs of a cluster, one file per node (includes,
comments and both brace styles are read), and write one garpd config per
node: to stdout, or to DIR/NODE.yaml with --out.

By default the configs are static-mode garpd that reproduces keepalived's
VRRP exactly: interface, VRIDs, per-node priorities, advert_int, version,
authentication (PASS), unicast peers, nopreempt and preempt_delay, the
virtual_ipaddress entries with their prefix, and the garp settings. A
vrrp_script that curls a URL becomes an http health check (-k: insecure);
other scripts become exec checks. With --dynamic the same VIPs and VRIDs
become one dynamic-mode config (no priorities: garpd balances them),
joined over gossip; the nodes' unicast_src_ip addresses are the seeds.

Every output comment says where a value came from. What garpd cannot
express (notify scripts, track_interface, virtual_routes, LVS, sync
groups, authentication on a VRRPv3 or IPv6 instance, which keepalived
ignores too) is listed with its file and line on stderr; the import still
succeeds, unless --strict makes any such line an error (exit 2).
Template placeholders left in a file ({{VIP1}}) are an error.

The node is named by global_defs' router_id, else by the file name
(--node names it when one file is given).`,
		Example: `  garpd import keepalived lb1/keepalived.conf lb2/keepalived.conf --out /tmp/garpd
  garpd import keepalived keepalived.conf --node cp1 --strict
  garpd import keepalived n1.conf n2.conf n3.conf --dynamic`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if node != "" && len(files) > 1 {
				return usageError(errors.New("--node names the node of a single file; with several files each is named by its router_id or file name"))
			}
			out, notes, err := importKeepalived(keepalived.OSFiles{}, files, importOptions{node: node, dynamic: dynamic})
			if err != nil {
				return &configError{err}
			}
			for _, n := range notes {
				fmt.Fprintf(cmd.ErrOrStderr(), "not imported: %s\n", n)
			}
			if strict && len(notes) > 0 {
				return &configError{fmt.Errorf("--strict: %d keepalived settings garpd cannot express (listed above)", len(notes))}
			}
			return writeNodeFiles(cmd.OutOrStdout(), cmd.ErrOrStderr(), outDir, ".yaml", out)
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "the node's name, when one file is given (default: router_id, else the file name)")
	cmd.Flags().BoolVar(&dynamic, "dynamic", false, "write dynamic-mode configs: the same VIPs and VRIDs, balanced by garpd")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail (exit 2) on any keepalived setting garpd cannot express")
	cmd.Flags().StringVar(&outDir, "out", "", "write DIR/NODE.yaml per node instead of printing them")
	return cmd
}

type importOptions struct {
	node    string
	dynamic bool
}

// nodeFile is one node's output file: a garpd config from an import, or
// a keepalived.conf from a rendering.
type nodeFile struct {
	node string
	from string // what it was made from, for the progress line
	data []byte
}

// writeNodeFiles prints the files one after another (--- between them),
// or writes DIR/NODE.ext for each.
func writeNodeFiles(stdout, stderr io.Writer, dir, ext string, files []nodeFile) error {
	if dir == "" {
		for i, f := range files {
			if i > 0 {
				fmt.Fprintln(stdout, "---")
			}
			if _, err := stdout.Write(f.data); err != nil {
				return err
			}
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		path := filepath.Join(dir, f.node+ext)
		if err := os.WriteFile(path, f.data, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s (node %s, from %s)\n", path, f.node, f.from)
	}
	return nil
}

// importNode is one file's node: its name, config and the file it came from.
type importNode struct {
	name string
	file string
	cfg  *keepalived.Config
}

// importKeepalived reads each node's file and writes its garpd config.
func importKeepalived(files keepalived.Files, paths []string, opts importOptions) ([]nodeFile, []keepalived.Note, error) {
	var nodes []importNode
	var notes []keepalived.Note
	seen := map[string]string{}
	for _, p := range paths {
		stmts, err := keepalived.Parse(files, p)
		if err != nil {
			return nil, nil, err
		}
		c, err := keepalived.Load(stmts)
		if err != nil {
			return nil, nil, err
		}
		if len(c.Instances) == 0 {
			return nil, nil, fmt.Errorf("%s: no vrrp_instance to import", p)
		}
		name := opts.node
		if name == "" && c.RouterID != nil && c.RouterID.Text != "" {
			name = c.RouterID.Text
		}
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
			if name == "keepalived" {
				name = filepath.Base(filepath.Dir(p))
			}
		}
		if other, dup := seen[name]; dup {
			return nil, nil, fmt.Errorf("%s and %s both name the node %q: give each file its own router_id", other, p, name)
		}
		seen[name] = p
		nodes = append(nodes, importNode{name: name, file: p, cfg: c})
		notes = append(notes, c.Unsupported...)
	}
	var out []nodeFile
	for _, n := range nodes {
		// The static form holds every VIP and VRRP setting the dynamic
		// one does: if the agent's loader refuses it, say so now rather
		// than write a config that will not start.
		static, _, err := convertNode(n, nodes, false)
		if err != nil {
			return nil, nil, err
		}
		if _, err := parseConfig(static); err != nil {
			return nil, nil, fmt.Errorf("%s: garpd cannot run what it imports from this file: %w", n.file, err)
		}
		b, more, err := convertNode(n, nodes, opts.dynamic)
		if err != nil {
			return nil, nil, err
		}
		notes = append(notes, more...)
		out = append(out, nodeFile{node: n.name, from: n.file, data: b})
	}
	return out, notes, nil
}

// ymap builds a YAML mapping whose values carry comments.
type ymap struct{ n *yaml.Node }

func newMap() ymap { return ymap{&yaml.Node{Kind: yaml.MappingNode}} }

func (m ymap) set(key string, val any, comment string) {
	k := &yaml.Node{Kind: yaml.ScalarNode, Value: key}
	var v *yaml.Node
	switch x := val.(type) {
	case ymap:
		v = x.n
		k.LineComment = comment
	case *yaml.Node:
		v = x
		k.LineComment = comment
	default:
		v = &yaml.Node{}
		if err := v.Encode(val); err != nil {
			panic(err) // only strings, numbers, bools and slices of them come here
		}
		if v.Kind == yaml.ScalarNode {
			v.LineComment = comment
		} else {
			k.LineComment = comment
		}
	}
	m.n.Content = append(m.n.Content, k, v)
}

func seq() *yaml.Node { return &yaml.Node{Kind: yaml.SequenceNode} }

func from(s *keepalived.Stmt, what string) string {
	if s == nil {
		return what
	}
	return what + " (" + s.Where() + ")"
}

// duration writes d as an operator would: 60s, 100ms, 1.5s.
func duration(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// convertNode writes one node's garpd config.
func convertNode(n importNode, all []importNode, dynamic bool) ([]byte, []keepalived.Note, error) {
	c := n.cfg
	var notes []keepalived.Note
	note := func(s *keepalived.Stmt, what string) {
		notes = append(notes, keepalived.Note{Where: s.Where(), What: what})
	}
	first := c.Instances[0]
	root := newMap()
	mode := "static mode: keepalived's priorities, as they were"
	if dynamic {
		mode = "dynamic mode: the same VIPs and VRIDs, balanced by garpd"
	}
	root.n.HeadComment = fmt.Sprintf("garpd config imported from %s by garpd import keepalived (%s).", n.file, mode)
	root.set("node", n.name, "from router_id or the file name")

	// One interface per agent: garpd adds the VIPs and speaks VRRP there.
	if first.Interface == nil {
		return nil, nil, fmt.Errorf("%s: vrrp_instance %s has no interface", first.At.Where(), first.Name)
	}
	iface := first.Interface.Text
	root.set("interface", iface, from(first.Interface.At, "interface"))
	for _, in := range c.Instances[1:] {
		if in.Interface == nil || in.Interface.Text != iface {
			note(in.At, fmt.Sprintf("vrrp_instance %s runs on another interface than %s: one garpd agent serves one interface; import it into a config of its own", in.Name, iface))
		}
	}

	// VRRP version: the instance's, else global_defs', else keepalived's 2.
	version, versionAt := 2, "keepalived's default vrrp_version"
	if c.Version != nil {
		v, err := strconv.Atoi(c.Version.Text)
		if err != nil || (v != 2 && v != 3) {
			return nil, nil, fmt.Errorf("%s: vrrp_version %q: keepalived takes 2 or 3", c.Version.At.Where(), c.Version.Text)
		}
		version, versionAt = v, from(c.Version.At, "vrrp_version")
	}
	if first.Version != nil {
		v, err := strconv.Atoi(first.Version.Text)
		if err != nil || (v != 2 && v != 3) {
			return nil, nil, fmt.Errorf("%s: version %q: keepalived takes 2 or 3", first.Version.At.Where(), first.Version.Text)
		}
		version, versionAt = v, from(first.Version.At, "version")
	}
	anyV6 := slices.ContainsFunc(c.Instances, func(in *keepalived.Instance) bool { return in.IPv6 })
	if anyV6 && version == 2 {
		// keepalived runs IPv6 instances as VRRPv3 whatever vrrp_version says.
		version, versionAt = 3, "IPv6 instances run VRRPv3 (keepalived does the same)"
	}

	vr := newMap()
	vr.set("version", version, versionAt)
	advert := first.AdvertInt
	vr.set("advert_interval", duration(advert), from(first.AdvertAt, "advert_int"))
	for _, in := range c.Instances[1:] {
		if in.AdvertInt != advert {
			note(in.At, fmt.Sprintf("vrrp_instance %s adverts every %s, the others every %s: garpd's routers share one advert_interval", in.Name, in.AdvertInt, advert))
		}
	}
	var authPass *keepalived.Value
	for _, in := range c.Instances {
		if in.AuthType == nil {
			continue
		}
		switch {
		case version == 3 || in.IPv6:
			note(in.AuthType.At, fmt.Sprintf("vrrp_instance %s: authentication on a VRRPv3 or IPv6 instance, which keepalived ignores too: not imported", in.Name))
		case !strings.EqualFold(in.AuthType.Text, "PASS"):
			note(in.AuthType.At, fmt.Sprintf("vrrp_instance %s: auth_type %s: garpd speaks PASS only (AH is deprecated, RFC 3768)", in.Name, in.AuthType.Text))
		case in.AuthPass != nil && authPass != nil && in.AuthPass.Text != authPass.Text:
			note(in.AuthPass.At, fmt.Sprintf("vrrp_instance %s has another auth_pass than the others: garpd's routers share one", in.Name))
		case in.AuthPass != nil && authPass == nil:
			authPass = in.AuthPass
		}
	}
	if authPass != nil {
		pass := authPass.Text
		if len(pass) > 8 {
			pass = pass[:8] // keepalived uses the first 8 characters too
		}
		vr.set("auth_pass", pass, from(authPass.At, "auth_pass"))
	}
	var peers []string
	peerAt := (*keepalived.Stmt)(nil)
	for _, in := range c.Instances {
		for _, p := range in.UnicastPeers {
			if _, err := netip.ParseAddr(p.Text); err != nil {
				return nil, nil, fmt.Errorf("%s: unicast_peer %q is not an address", p.At.Where(), p.Text)
			}
			if !slices.Contains(peers, p.Text) {
				peers = append(peers, p.Text)
			}
			if peerAt == nil {
				peerAt = p.At
			}
		}
		if in.UnicastSrc != nil && in == first {
			note(in.UnicastSrc.At, fmt.Sprintf("unicast_src_ip %s: garpd sends from the interface's own address (IPv4: the primary one; IPv6: the link-local one, as RFC 5798 asks); the peers must accept it", in.UnicastSrc.Text))
		}
	}
	if len(peers) > 0 {
		vr.set("unicast_peers", peers, from(peerAt, "unicast_peer"))
	}
	noPreempt := 0
	for _, in := range c.Instances {
		if in.NoPreempt != nil {
			noPreempt++
		}
	}
	switch {
	case noPreempt == len(c.Instances):
		vr.set("preempt", false, from(first.NoPreempt, "nopreempt"))
	case noPreempt > 0:
		note(first.At, "nopreempt on some instances only: garpd's routers share one preempt setting; imported with preemption")
	}
	if first.PreemptDelay != nil {
		d, err := strconv.ParseFloat(first.PreemptDelay.Text, 64)
		if err != nil || d < 0 || d > 1000 {
			return nil, nil, fmt.Errorf("%s: preempt_delay %q: use seconds, 0..1000", first.PreemptDelay.At.Where(), first.PreemptDelay.Text)
		}
		vr.set("preempt_delay", duration(time.Duration(d*float64(time.Second))), from(first.PreemptDelay.At, "preempt_delay"))
	}
	// Virtual MACs: one setting for all of garpd's routers.
	var vmacAt, xmitBaseAt *keepalived.Stmt
	vmacs, xmitBase := 0, 0
	for _, in := range c.Instances {
		if in.UseVMAC != nil {
			vmacs++
			vmacAt = cmp.Or(vmacAt, in.UseVMAC)
			v6 := len(in.VIPs) > 0 && in.VIPs[0].Prefix.Addr().Is6()
			if len(in.UseVMAC.Args) > 0 && in.UseVMAC.Args[0] != vrrp.VMACName(uint8(in.VRID), v6) {
				note(in.UseVMAC, fmt.Sprintf("vrrp_instance %s: use_vmac %s: garpd names its virtual MAC interfaces vrrp.VRID (IPv6: vrrp6.VRID)", in.Name, in.UseVMAC.Args[0]))
			}
		}
		if in.UseVMAC != nil && in.VMACXmitBase != nil {
			xmitBase++
			xmitBaseAt = cmp.Or(xmitBaseAt, in.VMACXmitBase)
		}
	}
	if vmacs > 0 {
		vr.set("use_vmac", true, from(vmacAt, "use_vmac"))
		if vmacs < len(c.Instances) {
			note(vmacAt, "use_vmac on some instances only: garpd's routers share one setting; imported with virtual MACs for all")
		}
	}
	if xmitBase > 0 {
		if xmitBase == vmacs {
			vr.set("vmac_xmit_base", true, from(xmitBaseAt, "vmac_xmit_base"))
		} else {
			note(xmitBaseAt, "vmac_xmit_base on some use_vmac instances only: garpd's routers share one setting; imported with adverts from the virtual MACs")
		}
	}

	// The VIPs, each pinned to its instance's VRID.
	vips := seq()
	prios := newMap()
	for _, in := range c.Instances {
		for _, v := range in.VIPs {
			item := newMap()
			item.n.Style = yaml.FlowStyle
			item.set("address", v.Prefix.String(), "")
			item.set("vrid", in.VRID, "")
			item.n.LineComment = from(v.At, "vrrp_instance "+in.Name)
			vips.Content = append(vips.Content, item.n)
			if v.Dev != "" && v.Dev != iface {
				note(v.At, fmt.Sprintf("%s dev %s: garpd adds its VIPs on %s", v.Prefix, v.Dev, iface))
			}
			prio, at := in.Priority, from(in.PriorityAt, "priority of "+in.Name)
			if prio == 255 {
				prio, at = 254, at+"; 255 (address owner) becomes 254: garpd never owns the addresses"
			}
			prios.set(v.Prefix.Addr().String(), prio, at)
		}
	}
	root.set("vips", vips, "")
	root.set("vrrp", vr, "")
	if !dynamic {
		root.set("priorities", prios, "static mode: each VIP at its instance's priority")
	}

	// Gratuitous ARP: keepalived's settings where it has them.
	garp := newMap()
	g := c.GARP
	if first.GARP.MasterRepeat != nil {
		g.MasterRepeat = first.GARP.MasterRepeat
	}
	if first.GARP.Interval != nil {
		g.Interval = first.GARP.Interval
	}
	if first.GARP.MasterRefresh != nil {
		g.MasterRefresh = first.GARP.MasterRefresh
	}
	if first.GARP.MasterDelay != nil {
		g.MasterDelay = first.GARP.MasterDelay
	}
	if v := g.MasterRepeat; v != nil {
		n, err := strconv.Atoi(v.Text)
		if err != nil || n < 1 || n > 20 {
			return nil, nil, fmt.Errorf("%s: %s %q: garpd bursts 1..20 announcements", v.At.Where(), v.At.Key, v.Text)
		}
		garp.set("count", n, from(v.At, v.At.Key))
	}
	if v := g.Interval; v != nil {
		d, err := strconv.ParseFloat(v.Text, 64)
		if err != nil || d < 0 {
			return nil, nil, fmt.Errorf("%s: %s %q is not seconds", v.At.Where(), v.At.Key, v.Text)
		}
		garp.set("interval", duration(time.Duration(d*float64(time.Second))), from(v.At, v.At.Key))
	}
	if v := g.MasterRefresh; v != nil {
		d, err := strconv.Atoi(v.Text)
		if err != nil || d < 0 {
			return nil, nil, fmt.Errorf("%s: %s %q is not whole seconds", v.At.Where(), v.At.Key, v.Text)
		}
		garp.set("refresh", duration(time.Duration(d)*time.Second), from(v.At, v.At.Key))
	}
	if v := g.MasterDelay; v != nil {
		note(v.At, v.At.Key+": garpd sends one takeover burst (count × interval) and then refreshes; the second burst after a delay is not imported")
	}
	if len(garp.n.Content) > 0 {
		root.set("garp", garp, "")
	}

	if dynamic {
		gs := newMap()
		var seeds []string
		for _, other := range all {
			if other.name == n.name {
				continue
			}
			if src := other.cfg.Instances[0].UnicastSrc; src != nil {
				seeds = append(seeds, net.JoinHostPort(src.Text, "7946"))
			}
		}
		if len(seeds) > 0 {
			gs.set("join", seeds, "the other nodes' unicast_src_ip")
		} else {
			gs.set("join", []string{}, "list the other nodes as HOST:7946, or use kubernetes.peers")
		}
		gs.set("secret_key_file", "/etc/garpd/gossip.key", "the same key on every node: head -c 32 /dev/urandom | base64")
		root.set("gossip", gs, "")
	}

	checks := seq()
	for _, in := range c.Instances {
		for _, ts := range in.TrackScripts {
			sc := c.Scripts[ts.Text]
			if slices.ContainsFunc(checks.Content, func(n *yaml.Node) bool { return n.Content[1].Value == sc.Name }) {
				continue
			}
			check, more := convertScript(sc)
			notes = append(notes, more...)
			checks.Content = append(checks.Content, check.n)
		}
	}
	if len(checks.Content) > 0 {
		if !dynamic {
			// Static priorities cannot follow checks: say what to do.
			for _, ch := range checks.Content {
				notes = append(notes, keepalived.Note{Where: n.file, What: "track_script " + ch.Content[1].Value +
					": the static mode does not follow health checks (keepalived's weight adjusts priorities); import with --dynamic to keep it"})
			}
		} else {
			h := newMap()
			h.set("checks", checks, "")
			root.set("health", h, "from track_script")
		}
	}

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root.n}}
	if err := enc.Encode(doc); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), notes, nil
}

// convertScript turns a vrrp_script into a health check: curl of a URL
// becomes an http check, anything else an exec check.
func convertScript(sc *keepalived.Script) (ymap, []keepalived.Note) {
	var notes []keepalived.Note
	m := newMap()
	m.n.LineComment = from(sc.At, "vrrp_script "+sc.Name)
	m.set("name", sc.Name, "")
	argv := splitCommand(sc.Script.Text)
	url, insecure := curlURL(argv)
	if url != "" {
		m.set("http", url, from(sc.Script.At, "curl"))
		if insecure {
			m.set("insecure", true, "curl -k")
		}
	} else {
		m.set("exec", argv, from(sc.Script.At, "script"))
	}
	interval := sc.Interval
	if interval < 100*time.Millisecond {
		interval = 100 * time.Millisecond
	}
	m.set("interval", duration(interval), "interval")
	timeout := sc.Timeout
	if timeout == 0 || timeout > interval {
		timeout = interval
	}
	m.set("timeout", duration(timeout), "timeout (at most the interval)")
	m.set("fall", sc.Fall, "fall")
	m.set("rise", sc.Rise, "rise")
	if sc.Weight != nil && sc.Weight.Text != "0" {
		notes = append(notes, keepalived.Note{Where: sc.Weight.At.Where(), What: "vrrp_script " + sc.Name +
			": weight " + sc.Weight.Text + ": a failing check in garpd resigns the node's VIPs rather than shifting its priority"})
	}
	return m, notes
}

// splitCommand splits a script line as a shell would for simple words and
// single or double quotes.
func splitCommand(s string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// curlURL is the URL a plain curl command fetches, and whether it skips
// TLS verification; "" when the command is not one curl of a URL.
func curlURL(argv []string) (string, bool) {
	if len(argv) == 0 || filepath.Base(argv[0]) != "curl" {
		return "", false
	}
	url, insecure := "", false
	for _, a := range argv[1:] {
		switch {
		case a == "-k" || a == "--insecure":
			insecure = true
		case strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://"):
			if url != "" {
				return "", false
			}
			url = a
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a[1:], "k"):
			insecure = true // -sk, -fsSk
		}
	}
	return url, insecure
}
