package keepalived

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is what garpd can take from one node's keepalived config.
type Config struct {
	// RouterID is global_defs' router_id, the node's name if set.
	RouterID *Value
	// Version is global_defs' vrrp_version (keepalived's default is 2).
	Version   *Value
	Instances []*Instance
	Scripts   map[string]*Script
	// GARP holds the vrrp_garp_* / garp_* settings of global_defs.
	GARP GARP
	// ScriptUser is global_defs' script_user: who scripts run as.
	ScriptUser *Value
	// Unsupported lists what garpd cannot express, with where it is.
	Unsupported []Note
}

// Value is an argument with the statement it came from.
type Value struct {
	Text string
	At   *Stmt
}

// Note is a statement garpd cannot express, and why.
type Note struct {
	Where string
	What  string
	// Harmless: garpd behaves as keepalived does all the same (a setting
	// keepalived ignores too, a source address the peers accept), so
	// --strict lets it pass.
	Harmless bool
}

// String is the note as a line for an operator: FILE:LINE: what.
func (n Note) String() string { return n.Where + ": " + n.What }

// GARP is keepalived's gratuitous ARP settings (global or per instance).
type GARP struct {
	MasterDelay   *Value // garp_master_delay: seconds before the second burst
	MasterRepeat  *Value // garp_master_repeat: announcements per burst
	MasterRefresh *Value // garp_master_refresh: seconds between refreshes
	Interval      *Value // garp_interval: seconds between announcements
}

// set records s under key, one of garp_master_delay, garp_master_repeat,
// garp_master_refresh, garp_interval (global_defs spells them vrrp_garp_*).
func (g *GARP) set(key string, s *Stmt) {
	v := value(s)
	switch key {
	case "garp_master_delay":
		g.MasterDelay = v
	case "garp_master_repeat":
		g.MasterRepeat = v
	case "garp_master_refresh":
		g.MasterRefresh = v
	case "garp_interval":
		g.Interval = v
	}
}

// VIP is one virtual_ipaddress entry.
type VIP struct {
	Prefix netip.Prefix
	Dev    string
	// Dropped are the options garpd has no counterpart for (label,
	// scope, brd, no_track …), as written.
	Dropped []string
	At      *Stmt
}

// Instance is a vrrp_instance.
type Instance struct {
	Name         string
	At           *Stmt
	State        *Value
	Interface    *Value
	VRID         int
	VRIDAt       *Stmt
	Priority     int // 100 when unset, as keepalived
	PriorityAt   *Stmt
	AdvertInt    time.Duration // 1s when unset
	AdvertAt     *Stmt
	Version      *Value // the instance's own version, if set
	AuthType     *Value
	AuthPass     *Value
	AuthHMAC     *Stmt // the auth_hmac block (keepalived 2.4)
	UnicastSrc   *Value
	UnicastPeers []Value
	NoPreempt    *Stmt
	PreemptDelay *Value
	VIPs         []VIP
	TrackScripts []Value
	// TrackWeights are the weights a track_script line sets for this
	// instance ("chk_api weight -20"), by script name.
	TrackWeights    map[string]*Value
	TrackInterfaces []TrackedInterface
	// Notify are the instance's notify scripts by key (notify,
	// notify_master, notify_backup, notify_fault, notify_stop).
	Notify       map[string]*Value
	UseVMAC      *Stmt
	VMACXmitBase *Stmt
	GARP         GARP
	IPv6         bool // its VIPs are IPv6
}

// TrackedInterface is one line of track_interface: a link, and the weight
// its loss shifts the priority by (nil: FAULT).
type TrackedInterface struct {
	Name   string
	Weight *Value
	At     *Stmt
}

// Script is a vrrp_script.
type Script struct {
	Name     string
	At       *Stmt
	Script   *Value
	Interval time.Duration // 1s when unset
	Timeout  time.Duration // 0: unset
	Rise     int
	Fall     int
	Weight   *Value
}

// unsupportedWhy says what an operator should know about a key garpd has
// no counterpart for.
func unsupportedWhy(key string) string {
	switch key {
	case "notify_master_rx_lower_pri":
		return "not imported: garpd's notify hooks hear state changes only"
	case "dont_track_primary":
		return "not imported: garpd always follows the link state of its own interface"
	case "virtual_routes", "static_routes":
		return "not imported: garpd manages addresses, not routes"
	case "virtual_rules":
		return "not imported: garpd manages addresses, not policy rules"
	case "virtual_server", "virtual_server_group", "lvs_sync_daemon":
		return "LVS is not garpd's business: keep it in keepalived (without VRRP) or ipvsadm"
	case "smtp_alert":
		return "no e-mail alerts: use the Prometheus rules in deploy/prometheus"
	case "track_file", "track_process", "track_bfd":
		return "not imported: express it as an exec health check"
	case "vrrp_sync_group":
		return "sync groups are not imported: in garpd every VIP moves on its own"
	case "static_ipaddress":
		return "not imported: static addresses are the host's, not garpd's"
	case "virtual_ipaddress_excluded":
		return "not imported: list these addresses as VIPs of their own, or leave them to the host"
	}
	return "garpd has no counterpart: not imported"
}

// Load extracts the instances and scripts from parsed statements.
func Load(stmts []*Stmt) (*Config, error) {
	c := &Config{Scripts: map[string]*Script{}}
	for _, s := range stmts {
		switch s.Key {
		case "global_defs":
			c.loadGlobal(s)
		case "vrrp_script":
			sc, err := loadScript(s)
			if err != nil {
				return nil, err
			}
			c.Scripts[sc.Name] = sc
		case "vrrp_instance":
			in, err := c.loadInstance(s)
			if err != nil {
				return nil, err
			}
			c.Instances = append(c.Instances, in)
		default:
			c.unsupported(s)
		}
	}
	for _, in := range c.Instances {
		for _, ts := range in.TrackScripts {
			if c.Scripts[ts.Text] == nil {
				return nil, fmt.Errorf("%s: track_script %s names no vrrp_script", ts.At.Where(), ts.Text)
			}
		}
	}
	return c, nil
}

// weightArg is the "weight N" of a tracking line, nil without one.
func weightArg(s *Stmt) *Value {
	for i := 0; i+1 < len(s.Args); i++ {
		if s.Args[i] == "weight" {
			return &Value{Text: s.Args[i+1], At: s}
		}
	}
	return nil
}

func (c *Config) unsupported(s *Stmt) {
	c.Unsupported = append(c.Unsupported, Note{Where: s.Where(), What: s.Key + ": " + unsupportedWhy(s.Key)})
}

func value(s *Stmt) *Value {
	if len(s.Args) == 0 {
		return &Value{At: s}
	}
	return &Value{Text: s.Args[0], At: s}
}

func (c *Config) loadGlobal(g *Stmt) {
	for _, s := range g.Block {
		switch s.Key {
		case "router_id":
			c.RouterID = value(s)
		case "vrrp_version":
			c.Version = value(s)
		case "vrrp_garp_master_delay", "vrrp_garp_master_repeat", "vrrp_garp_master_refresh", "vrrp_garp_interval":
			c.GARP.set(strings.TrimPrefix(s.Key, "vrrp_"), s)
		case "script_user":
			c.ScriptUser = value(s)
		case "notification_email", "notification_email_from", "smtp_server", "smtp_connect_timeout", "enable_script_security",
			"vrrp_skip_check_adv_addr", "vrrp_strict", "vrrp_gna_interval", "max_auto_priority":
			// Mail, and checks garpd does anyway: nothing to carry over.
		default:
			c.Unsupported = append(c.Unsupported, Note{Where: s.Where(), What: "global_defs " + s.Key + ": garpd has no counterpart: not imported"})
		}
	}
}

// seconds parses keepalived's seconds (integer or decimal).
func seconds(s *Stmt) (time.Duration, error) {
	if len(s.Args) == 0 {
		return 0, fmt.Errorf("%s: %s needs a number of seconds", s.Where(), s.Key)
	}
	f, err := strconv.ParseFloat(s.Args[0], 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%s: %s %q is not a number of seconds", s.Where(), s.Key, s.Args[0])
	}
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond), nil
}

func integer(s *Stmt, lo, hi int) (int, error) {
	if len(s.Args) == 0 {
		return 0, fmt.Errorf("%s: %s needs a number", s.Where(), s.Key)
	}
	n, err := strconv.Atoi(s.Args[0])
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s: %s %q: use %d..%d", s.Where(), s.Key, s.Args[0], lo, hi)
	}
	return n, nil
}

func loadScript(b *Stmt) (*Script, error) {
	if len(b.Args) != 1 {
		return nil, fmt.Errorf("%s: vrrp_script needs a name", b.Where())
	}
	sc := &Script{Name: b.Args[0], At: b, Interval: time.Second, Rise: 1, Fall: 1}
	var err error
	for _, s := range b.Block {
		switch s.Key {
		case "script":
			// keepalived takes the rest of the line (quoted or not) as the command.
			sc.Script = &Value{Text: strings.Join(s.Args, " "), At: s}
		case "interval":
			sc.Interval, err = seconds(s)
		case "timeout":
			sc.Timeout, err = seconds(s)
		case "rise":
			sc.Rise, err = integer(s, 1, 100)
		case "fall":
			sc.Fall, err = integer(s, 1, 100)
		case "weight":
			sc.Weight = value(s)
		case "user":
		default:
			err = fmt.Errorf("%s: vrrp_script %s: unknown key %s", s.Where(), sc.Name, s.Key)
		}
		if err != nil {
			return nil, err
		}
	}
	if sc.Script == nil || sc.Script.Text == "" {
		return nil, fmt.Errorf("%s: vrrp_script %s has no script", b.Where(), sc.Name)
	}
	return sc, nil
}

func (c *Config) loadInstance(b *Stmt) (*Instance, error) {
	if len(b.Args) != 1 {
		return nil, fmt.Errorf("%s: vrrp_instance needs a name", b.Where())
	}
	in := &Instance{Name: b.Args[0], At: b, Priority: 100, AdvertInt: time.Second, TrackWeights: map[string]*Value{}, Notify: map[string]*Value{}}
	var err error
	for _, s := range b.Block {
		switch s.Key {
		case "state":
			in.State = value(s)
		case "interface":
			in.Interface = value(s)
		case "virtual_router_id":
			in.VRID, err = integer(s, 1, 255)
			in.VRIDAt = s
		case "priority":
			in.Priority, err = integer(s, 1, 255)
			in.PriorityAt = s
		case "advert_int":
			in.AdvertInt, err = seconds(s)
			in.AdvertAt = s
		case "version":
			in.Version = value(s)
		case "authentication":
			for _, a := range s.Block {
				switch a.Key {
				case "auth_type":
					in.AuthType = value(a)
				case "auth_pass":
					in.AuthPass = value(a)
				}
			}
		case "auth_hmac":
			in.AuthHMAC = s
		case "unicast_src_ip":
			in.UnicastSrc = value(s)
		case "unicast_peer":
			for _, p := range s.Block {
				in.UnicastPeers = append(in.UnicastPeers, Value{Text: p.Key, At: p})
			}
		case "nopreempt":
			in.NoPreempt = s
		case "preempt_delay":
			in.PreemptDelay = value(s)
		case "virtual_ipaddress":
			for _, v := range s.Block {
				vip, err := parseVIP(v)
				if err != nil {
					return nil, err
				}
				in.VIPs = append(in.VIPs, vip)
			}
		case "track_script":
			for _, t := range s.Block {
				in.TrackScripts = append(in.TrackScripts, Value{Text: t.Key, At: t})
				if w := weightArg(t); w != nil {
					in.TrackWeights[t.Key] = w
				}
			}
		case "track_interface":
			for _, t := range s.Block {
				in.TrackInterfaces = append(in.TrackInterfaces, TrackedInterface{Name: t.Key, Weight: weightArg(t), At: t})
			}
		case "notify", "notify_master", "notify_backup", "notify_fault", "notify_stop":
			in.Notify[s.Key] = &Value{Text: strings.Join(s.Args, " "), At: s}
		case "use_vmac":
			in.UseVMAC = s
		case "vmac_xmit_base":
			in.VMACXmitBase = s
		case "native_ipv6":
			// The VIPs' family decides; keepalived's flag adds nothing.
		case "debug":
			// keepalived's log detail for the instance: garpd's log.level
			// is the agent's, and its debug level says as much.
			c.Unsupported = append(c.Unsupported, Note{Where: s.Where(), What: "debug: keepalived's log detail; garpd's is log.level (debug): not imported", Harmless: true})
		case "garp_master_delay", "garp_master_repeat", "garp_master_refresh", "garp_interval":
			in.GARP.set(s.Key, s)
		default:
			c.unsupported(s)
		}
		if err != nil {
			return nil, err
		}
	}
	if in.VRIDAt == nil {
		return nil, fmt.Errorf("%s: vrrp_instance %s has no virtual_router_id", b.Where(), in.Name)
	}
	if len(in.VIPs) == 0 {
		return nil, fmt.Errorf("%s: vrrp_instance %s has no virtual_ipaddress", b.Where(), in.Name)
	}
	in.IPv6 = in.VIPs[0].Prefix.Addr().Is6()
	for _, v := range in.VIPs[1:] {
		if v.Prefix.Addr().Is6() != in.IPv6 {
			return nil, fmt.Errorf("%s: vrrp_instance %s mixes IPv4 and IPv6 VIPs, which keepalived does not run either", v.At.Where(), in.Name)
		}
	}
	return in, nil
}

// parseVIP reads "ADDR[/LEN] [dev IF] [label ...] ...".
// vipOptionTakesValue are the virtual_ipaddress options followed by a
// value.
var vipOptionTakesValue = map[string]bool{"label": true, "scope": true, "brd": true, "broadcast": true, "peer": true, "track_group": true, "preferred_lft": true}

func parseVIP(s *Stmt) (VIP, error) {
	v := VIP{At: s}
	a := s.Key
	if !strings.Contains(a, "/") {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return v, fmt.Errorf("%s: virtual_ipaddress %q is not an address", s.Where(), a)
		}
		a = netip.PrefixFrom(addr, addr.BitLen()).String()
	}
	p, err := netip.ParsePrefix(a)
	if err != nil {
		return v, fmt.Errorf("%s: virtual_ipaddress %q is not ADDR/LEN", s.Where(), s.Key)
	}
	v.Prefix = p
	for i := 0; i < len(s.Args); i++ {
		switch {
		case s.Args[i] == "dev" && i+1 < len(s.Args):
			v.Dev = s.Args[i+1]
			i++
		case vipOptionTakesValue[s.Args[i]] && i+1 < len(s.Args):
			v.Dropped = append(v.Dropped, s.Args[i]+" "+s.Args[i+1])
			i++
		default:
			v.Dropped = append(v.Dropped, s.Args[i])
		}
	}
	return v, nil
}
