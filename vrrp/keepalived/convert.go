package keepalived

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/garpd/garpd/vrrp"
)

// nodeName is what a node may be called: a host name (RFC 1123), so that
// NAME.yaml stays inside the output directory.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$`)

// Node is one node's keepalived config: its name and the file it came
// from.
type Node struct {
	Name   string
	File   string
	Config *Config
}

// ReadNodes reads one file per node. A node is named as names says for
// its file, else by its router_id, else by its file name (the
// directory's, for keepalived.conf). It returns what garpd cannot express
// of them.
func ReadNodes(files Files, paths []string, names map[string]string) ([]Node, []Note, error) {
	var nodes []Node
	var notes []Note
	seen := map[string]string{}
	for _, p := range paths {
		name := names[p]
		byFile := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		if byFile == "keepalived" {
			byFile = filepath.Base(filepath.Dir(p))
		}
		// keepalived's config id is the host name by default: the node's
		// name as the import names it.
		stmts, err := Parse(files, p, cmp.Or(name, byFile))
		if err != nil {
			return nil, nil, err
		}
		c, err := Load(stmts)
		if err != nil {
			return nil, nil, err
		}
		if len(c.Instances) == 0 {
			return nil, nil, fmt.Errorf("%s: no vrrp_instance to import", p)
		}
		n := name
		if n == "" && c.RouterID != nil {
			n = c.RouterID.Text
		}
		n = cmp.Or(n, byFile)
		if !nodeName.MatchString(n) {
			return nil, nil, fmt.Errorf("%s: the node name %q (from router_id or the file name) is not a host name: use letters, digits, '-' and '.', or name it with --node NAME=%s", p, n, p)
		}
		if other, dup := seen[n]; dup {
			return nil, nil, fmt.Errorf("%s and %s both name the node %q: name each with --node NAME=FILE (as ipfailover's, whose router_id is ipfailover on every node)", other, p, n)
		}
		seen[n] = p
		nodes = append(nodes, Node{Name: n, File: p, Config: c})
		notes = append(notes, c.Unsupported...)
	}
	return nodes, notes, nil
}

// Options say what Convert writes.
type Options struct {
	// Dynamic writes dynamic-mode configs: the same VIPs and VRIDs,
	// balanced by garpd, each preferring keepalived's master.
	Dynamic bool
	// Join are the gossip seeds (HOST:PORT); empty: the nodes'
	// unicast_src_ip, else this node's unicast peers.
	Join []string
}

// Convert writes one node's garpd config: in the static mode keepalived's
// priorities as they were, in the dynamic mode the same VIPs and VRIDs for
// garpd to balance. all is every node of the cluster (for the gossip
// seeds). Comments in the YAML cite the file and line of each value.
func Convert(n Node, all []Node, o Options) ([]byte, []Note, error) {
	dynamic := o.Dynamic
	c := n.Config
	cv := &converter{c: c, first: c.Instances[0], dynamic: dynamic}
	if dynamic && len(all) > 1 {
		cv.all = all
	}
	first := cv.first
	root := newMap()
	mode := "static mode: keepalived's priorities, as they were"
	if dynamic {
		mode = "dynamic mode: the same VIPs and VRIDs, balanced by garpd"
	}
	root.n.HeadComment = fmt.Sprintf("garpd config imported from %s by garpd import keepalived (%s).", n.File, mode)
	root.set("node", n.Name, "from router_id or the file name")

	// The first instance's interface is the agent's; the static mode runs
	// the others' routers where they ran, the dynamic mode on the agent's
	// alone (where the members reach each other).
	for _, in := range c.Instances {
		if in.Interface == nil {
			return nil, nil, fmt.Errorf("%s: vrrp_instance %s has no interface", in.At.Where(), in.Name)
		}
	}
	iface := first.Interface.Text
	root.set("interface", iface, from(first.Interface.At, "interface"))
	cv.iface = iface
	vr, err := cv.vrrp()
	if err != nil {
		return nil, nil, err
	}
	if dynamic {
		if peers := keepalivedPeers(n, all, o.Join); len(peers) > 0 {
			vr.set("keepalived_peers", peers, "while keepalived runs on them; remove after the last node")
		}
	}
	for _, in := range c.Instances {
		if in.State != nil && strings.EqualFold(in.State.Text, "MASTER") {
			cv.note(in.State.At, fmt.Sprintf("vrrp_instance %s: state MASTER: keepalived starts it as master (then elects); garpd starts every router as a backup and VRRP elects within the master-down interval, so a starting node never takes a VIP a running master holds", in.Name))
		}
	}
	vips, prios := cv.vips()
	root.set("vips", vips, "")
	root.set("vrrp", vr, "")
	if !dynamic {
		root.set("priorities", prios, "static mode: each VIP at its instance's priority")
	}
	garp, err := cv.garp()
	if err != nil {
		return nil, nil, err
	}
	if len(garp.n.Content) > 0 {
		root.set("garp", garp, "")
	}
	if dynamic {
		gs, err := gossipSection(n, all, o.Join)
		if err != nil {
			return nil, nil, err
		}
		root.set("gossip", gs, "")
	}
	if checks := cv.checks(); checks != nil {
		h := newMap()
		h.set("checks", checks, "")
		root.set("health", h, "from track_script and track_interface")
	}
	if nt := cv.notify(); nt != nil {
		root.set("notify", *nt, "from the notify scripts")
	}
	if u := c.ScriptUser; u != nil && u.Text != "" {
		if len(u.At.Args) > 1 {
			cv.note(u.At, fmt.Sprintf("global_defs script_user %s: garpd runs scripts in %s's own groups, not group %s", u.Text, u.Text, u.At.Args[1]))
		}
		root.set("script_user", u.Text, from(u.At, "script_user"))
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root.n}}
	if err := enc.Encode(doc); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), cv.notes, nil
}

// keepalivedPeers are the other nodes' addresses, which keepalived runs on
// until each moves to garpd: the --join hosts, the others' unicast_src_ip,
// this node's unicast peers.
func keepalivedPeers(n Node, all []Node, join []string) []string {
	var out []string
	add := func(a string) {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	own := ""
	if src := n.Config.Instances[0].UnicastSrc; src != nil {
		own = src.Text
	}
	for _, j := range join {
		if h, _, err := net.SplitHostPort(j); err == nil && h != own {
			add(h)
		}
	}
	for _, other := range all {
		if src := other.Config.Instances[0].UnicastSrc; other.Name != n.Name && src != nil {
			add(src.Text)
		}
	}
	for _, p := range n.Config.Instances[0].UnicastPeers {
		add(p.Text)
	}
	return out
}

// gossipSection is the dynamic mode's gossip section: the other nodes'
// unicast source addresses are the seeds.
func gossipSection(n Node, all []Node, join []string) (ymap, error) {
	gs := newMap()
	var seeds []string
	for _, other := range all {
		if other.Name == n.Name {
			continue
		}
		if src := other.Config.Instances[0].UnicastSrc; src != nil {
			seeds = append(seeds, net.JoinHostPort(src.Text, "7946"))
		}
	}
	switch {
	case len(join) > 0:
		gs.set("join", join, "--join")
	case len(seeds) > 0:
		gs.set("join", seeds, "the other nodes' unicast_src_ip")
	case len(n.Config.Instances[0].UnicastPeers) > 0:
		for _, p := range n.Config.Instances[0].UnicastPeers {
			seeds = append(seeds, net.JoinHostPort(p.Text, "7946"))
		}
		gs.set("join", seeds, from(n.Config.Instances[0].UnicastPeers[0].At, "unicast_peer"))
	default:
		return gs, fmt.Errorf("%s: a multicast cluster imported with --dynamic: garpd nodes find each other by gossip, and the files name no peer addresses; give --join HOST:7946,... (every node's address), or use kubernetes.peers in place of gossip.join", n.File)
	}
	if len(join) == 0 && allIPv6(seeds) {
		// Gossip advertises the interface's IPv4 address when it has one:
		// seeds of IPv6 alone would never answer it.
		gs.set("advertise", "ipv6", "the seeds are IPv6 addresses")
	}
	gs.set("secret_key_file", "/etc/garpd/gossip.key", "the same key on every node: head -c 32 /dev/urandom | base64")
	return gs, nil
}

// allIPv6 reports whether every HOST:PORT of seeds, and at least one, has
// an IPv6 host.
func allIPv6(seeds []string) bool {
	for _, s := range seeds {
		host, _, err := net.SplitHostPort(s)
		if a, perr := netip.ParseAddr(host); err != nil || perr != nil || !a.Is6() {
			return false
		}
	}
	return len(seeds) > 0
}

// converter holds one node's conversion: its config, its first instance
// (which sets what garpd's routers share), and the notes so far.
type converter struct {
	c     *Config
	first *Instance
	iface string
	notes []Note
	// all are the cluster's nodes when the dynamic mode keeps keepalived's
	// masters as preferred owners; nil otherwise.
	all     []Node
	dynamic bool
}

// preferred is the node whose instance of in's VRID and family has the
// highest priority, keepalived's master when all are up: "" on a tie.
func (cv *converter) preferred(in *Instance) (string, int) {
	best, prio, tie := "", 0, false
	for _, n := range cv.all {
		for _, o := range n.Config.Instances {
			if o.VRID != in.VRID || o.IPv6 != in.IPv6 {
				continue
			}
			switch {
			case o.Priority > prio:
				best, prio, tie = n.Name, o.Priority, false
			case o.Priority == prio:
				tie = true
			}
		}
	}
	if tie {
		return "", 0
	}
	return best, prio
}

func (cv *converter) note(s *Stmt, what string) {
	cv.notes = append(cv.notes, Note{Where: s.Where(), What: what})
}

// harmless notes what garpd does as keepalived does all the same.
func (cv *converter) harmless(s *Stmt, what string) {
	cv.notes = append(cv.notes, Note{Where: s.Where(), What: what, Harmless: true})
}

// sources keeps each family's unicast_src_ip as vrrp.source, and, where
// keepalived does not sign, accepts its IPv6 unicast peers' adverts below
// hop limit 255: keepalived sends them with hop limit 64.
func (cv *converter) sources(vr ymap, peers []string) error {
	var src [2]*Value
	for _, in := range cv.c.Instances {
		v := in.UnicastSrc
		if v == nil {
			continue
		}
		a, err := netip.ParseAddr(v.Text)
		if err != nil {
			return fmt.Errorf("%s: unicast_src_ip %q is not an address", v.At.Where(), v.Text)
		}
		f := b2i(a.Is6())
		switch {
		case src[f] == nil:
			src[f] = v
		case src[f].Text != v.Text:
			cv.note(v.At, fmt.Sprintf("vrrp_instance %s: unicast_src_ip %s, another than %s: garpd's routers share one source per family; imported as %s", in.Name, v.Text, src[f].Text, src[f].Text))
		}
	}
	var list []string
	var at *Stmt
	for _, v := range src {
		if v != nil {
			list, at = append(list, v.Text), cmp.Or(at, v.At)
		}
	}
	if len(list) > 0 {
		vr.set("source", list, from(at, "unicast_src_ip"))
	}
	var v6 []string
	for _, p := range peers {
		if a, _ := netip.ParseAddr(p); a.Is6() {
			v6 = append(v6, p)
		}
	}
	if len(v6) > 0 && cv.first.AuthHMAC == nil {
		vr.set("accept_hop_limit_from", v6, "keepalived sends IPv6 unicast adverts with hop limit 64 and, without auth_hmac, unsigned: accept them from its nodes while they run; remove after the last node (or enforce auth_hmac)")
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// vrrp is the vrrp section: version, advert interval, authentication,
// unicast peers, preemption and virtual MACs, which garpd's routers share.
//
// Over 100 lines as a flat list, one block per keepalived keyword in the
// order of the section it writes, so a keyword is found by reading down.
func (cv *converter) vrrp() (ymap, error) {
	c, first, note := cv.c, cv.first, cv.note
	version, versionAt := 2, "keepalived's default vrrp_version"
	// vrrp.version is IPv4's: IPv6 instances run VRRPv3 in keepalived and
	// garpd alike, so the IPv4 instances say which version to keep.
	ref := first
	if i := slices.IndexFunc(c.Instances, func(in *Instance) bool { return !in.IPv6 }); i >= 0 {
		ref = c.Instances[i]
	}
	for _, set := range []struct {
		key string
		v   *Value
	}{{"vrrp_version", c.Version}, {"version", ref.Version}} {
		if set.v == nil {
			continue
		}
		v, err := strconv.Atoi(set.v.Text)
		if err != nil || (v != 2 && v != 3) {
			return ymap{}, fmt.Errorf("%s: %s %q: keepalived takes 2 or 3", set.v.At.Where(), set.key, set.v.Text)
		}
		version, versionAt = v, from(set.v.At, set.key)
	}
	if ref.IPv6 && version == 2 {
		// IPv6 alone: keepalived runs it as VRRPv3 whatever vrrp_version says.
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
	var authPass *Value
	for _, in := range c.Instances {
		if in.AuthType == nil {
			continue
		}
		switch {
		case in.AuthHMAC != nil:
			note(in.AuthType.At, fmt.Sprintf("vrrp_instance %s: authentication beside auth_hmac, which keepalived drops too: not imported", in.Name))
		case version == 3 || in.IPv6:
			cv.harmless(in.AuthType.At, fmt.Sprintf("vrrp_instance %s: authentication on a VRRPv3 or IPv6 instance, which keepalived ignores too: not imported", in.Name))
		case !strings.EqualFold(in.AuthType.Text, "PASS"):
			note(in.AuthType.At, fmt.Sprintf("vrrp_instance %s: auth_type %s: garpd speaks PASS only (AH is deprecated, RFC 3768)", in.Name, in.AuthType.Text))
		case in.AuthPass != nil && authPass != nil && in.AuthPass.Text != authPass.Text:
			note(in.AuthPass.At, fmt.Sprintf("vrrp_instance %s has another auth_pass than the others: garpd's routers share one", in.Name))
		case in.AuthPass != nil && authPass == nil:
			authPass = in.AuthPass
		}
	}
	if first.AuthHMAC == nil && cv.dynamic {
		// The dynamic mode signs and enforces by default; keepalived's
		// nodes sign nothing, and while both run they must hear each other.
		h := newMap()
		h.set("mode", "receive-only", "")
		vr.set("auth_hmac", h, "keepalived signs nothing: accept its adverts while both run; after the last node, permissive, then remove for enforce")
	}
	if first.AuthHMAC != nil {
		h, err := cv.authHMAC(first.AuthHMAC)
		if err != nil {
			return ymap{}, err
		}
		vr.set("auth_hmac", h, from(first.AuthHMAC, "auth_hmac"))
		for _, in := range c.Instances[1:] {
			if !sameBlock(in.AuthHMAC, first.AuthHMAC) {
				note(cmp.Or(in.AuthHMAC, in.At), fmt.Sprintf("vrrp_instance %s: another auth_hmac than %s's: garpd's routers share one; imported as %s's", in.Name, first.Name, first.Name))
			}
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
	peerAt := (*Stmt)(nil)
	for _, in := range c.Instances {
		for _, p := range in.UnicastPeers {
			if _, err := netip.ParseAddr(p.Text); err != nil {
				return ymap{}, fmt.Errorf("%s: unicast_peer %q is not an address", p.At.Where(), p.Text)
			}
			if !slices.Contains(peers, p.Text) {
				peers = append(peers, p.Text)
			}
			if peerAt == nil {
				peerAt = p.At
			}
		}
	}
	if len(peers) > 0 {
		vr.set("unicast_peers", peers, from(peerAt, "unicast_peer"))
	}
	if err := cv.sources(vr, peers); err != nil {
		return ymap{}, err
	}
	noPreempt := 0
	for _, in := range c.Instances {
		if in.NoPreempt != nil {
			noPreempt++
		}
	}
	switch {
	case noPreempt > 0 && cv.dynamic:
		note(first.At, "nopreempt: the dynamic mode hands a returning owner its VIPs back once it has settled (gossip.settle holds it back; garpd plan shows the layout); imported with preemption")
	case noPreempt == len(c.Instances):
		vr.set("preempt", false, from(first.NoPreempt, "nopreempt"))
	case noPreempt > 0:
		note(first.At, "nopreempt on some instances only: garpd's routers share one preempt setting; imported with preemption")
	}
	if first.PreemptDelay != nil {
		d, err := strconv.ParseFloat(first.PreemptDelay.Text, 64)
		if err != nil || d < 0 || d > 1000 {
			return ymap{}, fmt.Errorf("%s: preempt_delay %q: use seconds, 0..1000", first.PreemptDelay.At.Where(), first.PreemptDelay.Text)
		}
		vr.set("preempt_delay", duration(time.Duration(d*float64(time.Second))), from(first.PreemptDelay.At, "preempt_delay"))
	}
	var vmacAt, xmitBaseAt *Stmt
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
	return vr, nil
}

// vips lists the VIPs, each pinned to its instance's VRID, and each VIP's
// priority (the static mode's).
func (cv *converter) vips() (*yaml.Node, ymap) {
	c, iface, note := cv.c, cv.iface, cv.note
	vips := seq()
	prios := newMap()
	for _, in := range c.Instances {
		on := in.Interface.Text
		if !cv.imported(in) {
			note(in.At, fmt.Sprintf("vrrp_instance %s runs on %s: the dynamic mode runs VRRP on %s only, so its VIPs are not imported; import it into a config of its own (a second agent) or use the static mode", in.Name, on, iface))
			continue
		}
		for _, v := range in.VIPs {
			item := newMap()
			item.n.Style = yaml.FlowStyle
			item.set("address", v.Prefix.String(), "")
			item.set("vrid", in.VRID, "")
			item.set("name", in.Name, "")
			if on != iface {
				item.set("interface", on, "")
			}
			if v.Dev != "" && v.Dev != on {
				if slices.ContainsFunc(c.Instances, func(in *Instance) bool { return in.UseVMAC != nil }) {
					note(v.At, fmt.Sprintf("dev %s left out: %s", v.Dev, vrrp.VMACRefusesDev(v.Prefix.Addr(), on)))
				} else {
					item.set("dev", v.Dev, "")
				}
			}
			if len(v.Dropped) > 0 {
				note(v.At, fmt.Sprintf("virtual_ipaddress %s: %s left out: garpd adds a VIP as a host address (/32, /128) with no label or other options, so it never becomes the host's own address", v.Prefix, strings.Join(v.Dropped, ", ")))
			}
			if node, prio := cv.preferred(in); node != "" {
				item.set("prefer", node, "")
				item.n.HeadComment = fmt.Sprintf("prefer %s: keepalived's master (priority %d)", node, prio)
			}
			item.n.LineComment = from(v.At, "vrrp_instance "+in.Name)
			vips.Content = append(vips.Content, item.n)
			prio, at := in.Priority, from(in.PriorityAt, "priority of "+in.Name)
			if prio == 255 {
				prio, at = 254, at+"; 255 (address owner) becomes 254: garpd never owns the addresses"
			}
			prios.set(v.Prefix.Addr().String(), prio, at)
		}
	}
	return vips, prios
}

// garp is the garp section: keepalived's settings where it has them.
func (cv *converter) garp() (ymap, error) {
	c, first, note := cv.c, cv.first, cv.note
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
	if g.MasterRepeat == nil && g.Interval == nil && g.MasterRefresh == nil && g.MasterDelay == nil {
		note(first.At, "no garp settings: keepalived's defaults (5 gratuitous ARPs at once, 5 more after 5 s, no refresh) become garpd's (3 announcements 1.1 s apart, past the ARP lock time, and a rolling refresh every 60 s): set garp: to keep keepalived's")
	}
	if v := g.MasterRepeat; v != nil {
		n, err := strconv.Atoi(v.Text)
		if err != nil || n < 1 || n > 20 {
			return ymap{}, fmt.Errorf("%s: %s %q: garpd bursts 1..20 announcements", v.At.Where(), v.At.Key, v.Text)
		}
		garp.set("count", n, from(v.At, v.At.Key))
	}
	if v := g.Interval; v != nil {
		d, err := strconv.ParseFloat(v.Text, 64)
		if err != nil || d < 0 {
			return ymap{}, fmt.Errorf("%s: %s %q is not seconds", v.At.Where(), v.At.Key, v.Text)
		}
		garp.set("interval", duration(time.Duration(d*float64(time.Second))), from(v.At, v.At.Key))
	}
	if v := g.MasterRefresh; v != nil {
		d, err := strconv.Atoi(v.Text)
		if err != nil || d < 0 {
			return ymap{}, fmt.Errorf("%s: %s %q is not whole seconds", v.At.Where(), v.At.Key, v.Text)
		}
		garp.set("refresh", duration(time.Duration(d)*time.Second), from(v.At, v.At.Key))
	}
	if v := g.MasterDelay; v != nil {
		note(v.At, v.At.Key+": garpd sends one takeover burst (count × interval) and then refreshes; the second burst after a delay is not imported")
	}
	return garp, nil
}

// checks are the health checks of the instances' track_scripts and
// track_interfaces, nil when there are none, with keepalived's semantics
// in both modes: a script's weight (or an instance's override), and, for
// a check only some instances track, their VIPs. In the dynamic mode a
// weight is a soft check: it orders the members' rankings.
func (cv *converter) checks() *yaml.Node {
	c := cv.c
	checks := seq()
	type tracked struct {
		weight, weightAt string
		vips             []string
		instances        int
	}
	var order []string
	seen := map[string]*tracked{}
	track := func(name, weight string, at *Stmt, in *Instance) {
		t := seen[name]
		if t == nil {
			t = &tracked{weight: weight, weightAt: from(at, "weight")}
			seen[name] = t
			order = append(order, name)
		} else if t.weight != weight {
			cv.note(at, fmt.Sprintf("%s: weight %s here, %s elsewhere: garpd's check has one weight, %s", name, weight, t.weight, t.weight))
		}
		t.instances++
		for _, v := range in.VIPs {
			t.vips = append(t.vips, v.Prefix.Addr().String())
		}
	}
	for _, in := range c.Instances {
		for _, ts := range in.TrackScripts {
			sc := c.Scripts[ts.Text]
			w := "0"
			if sc.Weight != nil {
				w = sc.Weight.Text
			}
			if o := in.TrackWeights[ts.Text]; o != nil {
				w = o.Text
			}
			track("script:"+sc.Name, w, ts.At, in)
		}
		for _, ti := range in.TrackInterfaces {
			w := "0"
			if ti.Weight != nil {
				w = ti.Weight.Text
			}
			track("interface:"+ti.Name, w, ti.At, in)
		}
	}
	for _, key := range order {
		t := seen[key]
		kind, name, _ := strings.Cut(key, ":")
		var m ymap
		if kind == "script" {
			var more []Note
			m, more = convertScript(c.Scripts[name])
			cv.notes = append(cv.notes, more...)
		} else {
			m = newMap()
			m.set("name", "interface:"+name, "")
			m.set("interface", name, "track_interface")
		}
		if t.weight != "0" {
			w, err := strconv.Atoi(t.weight)
			if err != nil {
				cv.notes = append(cv.notes, Note{Where: name, What: fmt.Sprintf("weight %q is not a number: imported without a weight (FAULT while failing)", t.weight)})
			} else {
				m.set("weight", w, t.weightAt)
			}
		}
		if t.instances < len(c.Instances) {
			m.set("vips", t.vips, "the VIPs of the instances that track it")
		}
		checks.Content = append(checks.Content, m.n)
	}
	if len(checks.Content) == 0 {
		return nil
	}
	return checks
}

// notify is the notify section, nil when no instance has notify scripts:
// the scripts as common hooks when every instance has the same ones, else
// each instance's under notify.instances, by its name (its VIPs carry it),
// as keepalived runs each instance's own, with its name.
func (cv *converter) notify() *ymap {
	var with []*Instance
	same := true
	for _, in := range cv.c.Instances {
		if !cv.imported(in) {
			continue
		}
		if len(with) > 0 && !sameNotify(with[0], in) {
			same = false
		}
		if len(in.Notify) > 0 {
			with = append(with, in)
		}
	}
	if len(with) == 0 {
		return nil
	}
	if same {
		m := cv.hooks(with[0])
		if len(m.n.Content) == 0 {
			return nil
		}
		return &m
	}
	m, instances := newMap(), newMap()
	for _, in := range with {
		if h := cv.hooks(in); len(h.n.Content) > 0 {
			instances.set(in.Name, h, "vrrp_instance "+in.Name+"'s own")
		}
	}
	if len(instances.n.Content) == 0 {
		return nil
	}
	m.set("instances", instances, "each instance's notify scripts, called with its name")
	return &m
}

// sameNotify reports whether two instances have the same notify scripts.
func sameNotify(a, b *Instance) bool {
	if len(a.Notify) != len(b.Notify) {
		return false
	}
	for k, v := range a.Notify {
		if w := b.Notify[k]; w == nil || w.Text != v.Text {
			return false
		}
	}
	return true
}

// imported reports whether an instance's VIPs are imported: in the
// dynamic mode, those on the agent's interface alone.
func (cv *converter) imported(in *Instance) bool {
	return !cv.dynamic || in.Interface.Text == cv.iface
}

// hooks are one instance's notify scripts as garpd's hooks.
func (cv *converter) hooks(in *Instance) ymap {
	m := newMap()
	for _, k := range []string{"notify", "notify_master", "notify_backup", "notify_fault", "notify_stop"} {
		v := in.Notify[k]
		if v == nil {
			continue
		}
		argv := splitCommand(v.Text)
		if len(argv) == 0 || !strings.HasPrefix(argv[0], "/") {
			cv.note(v.At, fmt.Sprintf("%s %q: garpd runs hooks by absolute path, without a shell: not imported; give the script's full path", k, v.Text))
			continue
		}
		key := cmp.Or(strings.TrimPrefix(strings.TrimPrefix(k, "notify"), "_"), "exec")
		m.set(key, argv, from(v.At, k))
	}
	return m
}

// authHMAC maps keepalived's auth_hmac block: the key forms are the same
// (hex:, file:, text), time_window is in seconds.
func (cv *converter) authHMAC(b *Stmt) (ymap, error) {
	h := newMap()
	keys := newMap()
	for _, s := range b.Block {
		switch s.Key {
		case "key":
			if len(s.Args) != 2 {
				return ymap{}, fmt.Errorf("%s: key wants an id and a value, e.g. key 1 hex:DIGITS", s.Where())
			}
			if _, err := strconv.Atoi(s.Args[0]); err != nil {
				return ymap{}, fmt.Errorf("%s: key %q: the id is 1..255", s.Where(), s.Args[0])
			}
			keys.set(s.Args[0], s.Args[1], from(s, "key"))
		case "active_key":
			n, err := integer(s, 1, 255)
			if err != nil {
				return ymap{}, err
			}
			h.set("active_key", n, from(s, "active_key"))
		case "mode", "anti_replay":
			if len(s.Args) != 1 {
				return ymap{}, fmt.Errorf("%s: %s wants one value", s.Where(), s.Key)
			}
			h.set(s.Key, s.Args[0], from(s, s.Key))
		case "time_window":
			d, err := seconds(s)
			if err != nil {
				return ymap{}, err
			}
			h.set("time_window", duration(d), from(s, "time_window"))
		default:
			cv.note(s, "auth_hmac "+s.Key+": not imported")
		}
	}
	if len(keys.n.Content) > 0 {
		h.set("keys", keys, "")
	}
	return h, nil
}

// sameBlock reports whether two blocks say the same, wherever they stand.
func sameBlock(a, b *Stmt) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Key != b.Key || !slices.Equal(a.Args, b.Args) || len(a.Block) != len(b.Block) {
		return false
	}
	for i := range a.Block {
		if !sameBlock(a.Block[i], b.Block[i]) {
			return false
		}
	}
	return true
}
