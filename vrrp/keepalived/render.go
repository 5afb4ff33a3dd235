package keepalived

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/garpd/garpd/vrrp"
)

// Rendering is what one node's keepalived.conf is made of: its virtual
// routers, at this node's priorities, and the VRRP and GARP settings they
// share.
type Rendering struct {
	Node      string
	Interface string
	VRRP      vrrp.Config
	GARP      vrrp.GARPConfig
	Routers   []vrrp.RouterSpec
	// Dev maps VIPs held on another interface than their router's to it.
	Dev map[netip.Addr]string
	// Auth, when set, is rendered as every instance's auth_hmac block.
	Auth *vrrp.AuthHMACConfig
	// Checks become vrrp_scripts (or track_interface lines) tracked by the
	// routers they track, with their weights: keepalived's track_script.
	Checks []Check
	// Notify are the notify scripts by keepalived's key (notify,
	// notify_master, ...), each an argv.
	Notify map[string][]string
	// InstanceNotify are an instance's own notify scripts, by its name,
	// in place of Notify.
	InstanceNotify map[string]map[string][]string
	// ScriptUser is who the scripts run as ("": root, as garpd's agent).
	ScriptUser string
	// Comment says where the rendering came from, on the file's first line.
	Comment string
}

// Check is a health check as keepalived runs it: a script line, or a link
// (Interface); VIPs empty tracks every router.
type Check struct {
	Name       string
	Script     string
	Interface  string
	Interval   time.Duration
	Timeout    time.Duration
	Fall, Rise int
	Weight     int
	VIPs       []netip.Addr
}

// tracks reports whether c tracks router rt.
func (c Check) tracks(rt vrrp.RouterSpec) bool {
	if len(c.VIPs) == 0 {
		return true
	}
	for _, p := range rt.VIPs {
		if slices.Contains(c.VIPs, p.Addr()) {
			return true
		}
	}
	return false
}

// weightText is the " weight N" of a tracking line, "" for none.
func weightText(w int) string {
	if w == 0 {
		return ""
	}
	return " weight " + strconv.Itoa(w)
}

// Render writes a keepalived.conf that runs r's virtual routers: one
// instance per router, with its VRID, VIPs, priority, adverts, version,
// authentication, peers, preemption and virtual MAC, and keepalived's
// GARP settings for garpd's. keepalived -t accepts it.
func Render(r Rendering) []byte {
	c := r.VRRP
	peers, _ := c.Peers() // validated with the config
	src4, src6, _ := c.Sources()
	var b strings.Builder
	fmt.Fprintf(&b, "# keepalived.conf for %s, %s.\n", r.Node, r.Comment)
	fmt.Fprintf(&b, "# garpd's rolling refresh is rendered as keepalived's periodic one; garp.max_rate has no keepalived counterpart.\n")
	fmt.Fprintf(&b, "global_defs {\n    router_id %s\n    vrrp_version %d\n", r.Node, c.Version)
	fmt.Fprintf(&b, "    vrrp_garp_master_repeat %d\n", r.GARP.Count)
	fmt.Fprintf(&b, "    vrrp_garp_interval %s\n", secondsText(r.GARP.Interval))
	if r.GARP.Refresh > 0 && r.GARP.Schedule == "" {
		fmt.Fprintf(&b, "    vrrp_garp_master_refresh %d\n", max(1, int(r.GARP.Refresh.Round(time.Second)/time.Second)))
	}
	if len(r.Notify) > 0 || len(r.InstanceNotify) > 0 || slices.ContainsFunc(r.Checks, func(c Check) bool { return c.Script != "" }) {
		// keepalived refuses to run scripts without it; garpd runs its
		// hooks and checks as script_user, or the agent's user, root.
		fmt.Fprintf(&b, "    script_user %s\n    enable_script_security\n", cmp.Or(r.ScriptUser, "root"))
	}
	b.WriteString("}\n")
	for _, ch := range r.Checks {
		if ch.Script == "" {
			continue
		}
		fmt.Fprintf(&b, "\nvrrp_script %s {\n    script \"%s\"\n    interval %s\n    timeout %s\n    fall %d\n    rise %d\n}\n",
			scriptName(ch.Name), ch.Script, secondsText(ch.Interval), secondsText(ch.Timeout), ch.Fall, ch.Rise)
	}
	for _, rt := range r.Routers {
		family := "ipv4"
		if rt.V6() {
			family = "ipv6"
		}
		iface, name := r.Interface, fmt.Sprintf("garpd_%s_%d", family, rt.VRID)
		if rt.Interface != "" {
			iface, name = rt.Interface, name+"_"+rt.Interface
		}
		notify := r.Notify
		if rt.Name != "" { // the instance's own name: a round trip keeps it
			name = rt.Name
			if own, ok := r.InstanceNotify[rt.Name]; ok {
				notify = own
			}
		}
		fmt.Fprintf(&b, "\nvrrp_instance %s {\n    state BACKUP\n    interface %s\n    virtual_router_id %d\n    priority %d\n    advert_int %s\n",
			name, iface, rt.VRID, rt.Priority, secondsText(c.AdvertInterval))
		if rt.V6() && c.Version == 2 {
			b.WriteString("    version 3\n")
		}
		if c.Preempt != nil && !*c.Preempt {
			b.WriteString("    nopreempt\n")
		} else if c.PreemptDelay > 0 {
			fmt.Fprintf(&b, "    preempt_delay %s\n", secondsText(c.PreemptDelay))
		}
		if c.UseVMAC {
			// Named as garpd names it, so the two never differ on a node.
			fmt.Fprintf(&b, "    use_vmac %s\n", vrrp.VMACName(rt.VRID, rt.V6()))
			if c.VMACXmitBase {
				b.WriteString("    vmac_xmit_base\n")
			}
		}
		if r.Auth != nil {
			writeAuthHMAC(&b, r.Auth)
		} else if c.AuthPass != "" && c.Version == 2 && !rt.V6() {
			fmt.Fprintf(&b, "    authentication {\n        auth_type PASS\n        auth_pass %s\n    }\n", c.AuthPass)
		}
		var peerLines []string
		for _, p := range peers {
			if p.Is6() == rt.V6() {
				peerLines = append(peerLines, "        "+p.String())
			}
		}
		if len(peerLines) > 0 {
			src := src4
			if rt.V6() {
				src = src6
			}
			if src.IsValid() && rt.Interface == "" { // vrrp.source is the agent's interface's
				fmt.Fprintf(&b, "    unicast_src_ip %s\n", src)
			}
			fmt.Fprintf(&b, "    unicast_peer {\n%s\n    }\n", strings.Join(peerLines, "\n"))
		}
		b.WriteString("    virtual_ipaddress {\n")
		for _, v := range rt.VIPs {
			fmt.Fprintf(&b, "        %s dev %s\n", v, cmp.Or(r.Dev[v.Addr()], iface))
		}
		b.WriteString("    }\n")
		writeTracks(&b, r.Checks, rt)
		for _, k := range slices.Sorted(maps.Keys(notify)) {
			fmt.Fprintf(&b, "    %s \"%s\"\n", k, strings.Join(notify[k], " "))
		}
		b.WriteString("}\n")
	}
	return []byte(b.String())
}

// writeAuthHMAC writes an instance's auth_hmac block.
func writeAuthHMAC(b *strings.Builder, a *vrrp.AuthHMACConfig) {
	b.WriteString("    auth_hmac {\n")
	for _, id := range slices.Sorted(maps.Keys(a.Keys)) {
		fmt.Fprintf(b, "        key %d %s\n", id, a.Keys[id])
	}
	fmt.Fprintf(b, "        active_key %d\n", a.ActiveKey)
	if a.AntiReplay == "monotonic" {
		b.WriteString("        anti_replay monotonic\n")
	} else if a.TimeWindow > 0 {
		fmt.Fprintf(b, "        anti_replay time\n        time_window %d\n", int(a.TimeWindow/time.Second))
	}
	if a.Mode != "" {
		fmt.Fprintf(b, "        mode %s\n", a.Mode)
	}
	b.WriteString("    }\n")
}

// writeTracks writes the track_script and track_interface blocks of the
// checks that track router rt.
func writeTracks(b *strings.Builder, checks []Check, rt vrrp.RouterSpec) {
	var scripts, links []string
	for _, ch := range checks {
		switch {
		case !ch.tracks(rt):
		case ch.Interface != "":
			links = append(links, "        "+ch.Interface+weightText(ch.Weight))
		case ch.Script != "":
			scripts = append(scripts, "        "+scriptName(ch.Name)+weightText(ch.Weight))
		}
	}
	if len(scripts) > 0 {
		fmt.Fprintf(b, "    track_script {\n%s\n    }\n", strings.Join(scripts, "\n"))
	}
	if len(links) > 0 {
		fmt.Fprintf(b, "    track_interface {\n%s\n    }\n", strings.Join(links, "\n"))
	}
}

// scriptName is a check's name as a vrrp_script name: keepalived's names
// are words.
func scriptName(name string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '{' || r == '}' || r == '"' {
			return '_'
		}
		return r
	}, name)
}

// secondsText writes d as keepalived's seconds: 1, 0.1, 1.1.
func secondsText(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
