// Package gossip is how garpd nodes find each other and what they tell each
// other: membership over hashicorp/memberlist, the known set, each node's
// metadata (health, exclusion, config digest, VRRP source addresses, MAC,
// version), the encryption key, seed discovery, and the addresses it binds
// and advertises (Config.Resolve). The health checks whose
// verdict a node gossips are balancer/health's.
//
// It decides nothing about VIPs: the balancer turns the member list into a
// ranking, and VRRP arbitrates.
//
// Imports: none of garpd's packages, and not client-go: Kubernetes lives in
// gossip/kube. balancer imports it.
package gossip

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the `gossip:` section.
type Config struct {
	// Bind is HOST:PORT; without a host (the default, :7946) gossip binds
	// the advertised address only, so nothing on the host's other
	// networks reaches it.
	Bind string `yaml:"bind" json:"bind"`
	// Advertise is the address the other members reach this node on: an
	// IP or IP:PORT; AdvertiseIPv4 / AdvertiseIPv6 for the interface's
	// address of that family; or another interface's name, for its
	// address. Empty: the interface's IPv4 address, or its global IPv6
	// address on an IPv6-only node.
	Advertise     string   `yaml:"advertise" json:"advertise"`
	Join          []string `yaml:"join" json:"join"`
	SecretKeyFile string   `yaml:"secret_key_file" json:"secret_key_file"`
	// AllowFrom are addresses and prefixes that may reach the gossip port
	// besides the members and the seeds: gossip from anywhere else is
	// dropped unread. A node that joins through a seed that does not list
	// it needs to be here on that seed, unless AdmitSubnet admits it.
	AllowFrom []string `yaml:"allow_from" json:"allow_from,omitempty"`
	// AdmitSubnet (default true) lets a node on the advertised address's
	// subnet join through any seed, as memberlist clusters grow, without
	// every node listing it: until it is a member its gossip is read like
	// a member's, but its streams share two slots of their own (each
	// capped as every stream is), so strangers cannot crowd the members'
	// out; what it sends must still decrypt with the cluster's key. false:
	// only members, seeds and allow_from.
	AdmitSubnet *bool `yaml:"admit_subnet" json:"admit_subnet,omitempty"`
	// Insecure allows gossip without a key. Without one, anyone who reaches
	// the gossip port can join fake members and steer every VIP, so it
	// must be asked for.
	Insecure bool          `yaml:"insecure" json:"insecure,omitempty"`
	Settle   time.Duration `yaml:"settle" json:"settle"`
	// ForgetAfter is how long a known member may be down before the
	// cluster forgets it and re-plans. While it is down its VIPs sit on
	// their rank-1 backups, which keeps the survivors within one VIP of
	// each other, so there is no hurry; forgetting moves VIPs of live
	// nodes. The default, 24h, rides out reboots, maintenance and a
	// node drained over a working day, and still clears out a node that
	// was removed for good.
	ForgetAfter time.Duration `yaml:"forget_after" json:"forget_after"`
	// StateDir, if set, keeps the known members on disk, so a cluster
	// whose nodes all restart at once comes back to the same layout.
	StateDir string `yaml:"state_dir" json:"state_dir,omitempty"`
}

// interfaceName is what a Linux interface may be called (IFNAMSIZ).
var interfaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.@-]{0,14}$`)

// The family keywords gossip.advertise takes besides an address.
const (
	AdvertiseIPv4 = "ipv4"
	AdvertiseIPv6 = "ipv6"
)

// DefaultConfig is the section when the file says nothing.
func DefaultConfig() Config {
	return Config{Bind: ":7946", Settle: 10 * time.Second, ForgetAfter: 24 * time.Hour}
}

// Validate checks c; errors start with the key they are about.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := SplitHostPort(c.Bind); err != nil {
		errs = append(errs, fmt.Errorf("bind: %w", err))
	}
	if c.Advertise != "" && c.Advertise != AdvertiseIPv4 && c.Advertise != AdvertiseIPv6 && !interfaceName.MatchString(c.Advertise) {
		if _, err := netip.ParseAddr(c.Advertise); err != nil {
			if _, _, err := SplitHostPort(c.Advertise); err != nil {
				errs = append(errs, fmt.Errorf("advertise: %q: want an IP address, IP:PORT, ipv4, ipv6 or an interface name", c.Advertise))
			}
		}
	}
	if _, err := ParseAllowFrom(c.AllowFrom); err != nil {
		errs = append(errs, fmt.Errorf("allow_from: %w", err))
	}
	for i, j := range c.Join {
		if err := checkSeed(j); err != nil {
			errs = append(errs, fmt.Errorf("join[%d]: %w", i, err))
		}
	}
	if c.Settle < 0 || c.Settle > time.Hour {
		errs = append(errs, fmt.Errorf("settle: %s: use 0s..1h", c.Settle))
	}
	if c.ForgetAfter < time.Second || c.ForgetAfter > 365*24*time.Hour {
		errs = append(errs, fmt.Errorf("forget_after: %s: use 1s..8760h (a member down that long is forgotten and the VIPs re-planned)", c.ForgetAfter))
	}
	if c.StateDir != "" {
		if st, err := os.Stat(c.StateDir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("state_dir: %q is not a directory (create it, or leave state_dir out)", c.StateDir))
		}
	}
	if c.SecretKeyFile != "" {
		if _, err := LoadKeys(c.SecretKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("secret_key_file: %w", err))
		}
	} else if !c.Insecure {
		errs = append(errs, errors.New("secret_key_file: required: gossip is encrypted, so only your nodes can join and steer VIPs. Make a key with `head -c 32 /dev/urandom | base64 > /etc/garpd/gossip.key; chmod 600 /etc/garpd/gossip.key`, give every node the same one, and set gossip.secret_key_file; or set gossip.insecure: true on a network you trust"))
	}
	return errors.Join(errs...)
}

// SplitHostPort parses "HOST:PORT" with a numeric port.
func SplitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q: want HOST:PORT", s)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port must be 1..65535", s)
	}
	return h, port, nil
}

// AdmitsSubnet is AdmitSubnet with its default.
func (c Config) AdmitsSubnet() bool { return c.AdmitSubnet == nil || *c.AdmitSubnet }

// subnetOf is the subnet a is on: the most specific prefix of the
// interface addresses in addrs (as net.InterfaceAddrs lists them) that
// holds it, masked.
func subnetOf(a netip.Addr, addrs []net.Addr) (netip.Prefix, bool) {
	var best netip.Prefix
	for _, ia := range addrs {
		p, err := netip.ParsePrefix(ia.String())
		if err != nil || p.Bits() == 0 || !p.Masked().Contains(a.Unmap()) {
			continue
		}
		if !best.IsValid() || p.Bits() > best.Bits() {
			best = p.Masked()
		}
	}
	return best, best.IsValid()
}

// ParseAllowFrom reads gossip.allow_from: addresses (one host) and
// prefixes.
func ParseAllowFrom(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("[%d]: %q: want an address or a prefix, such as 192.0.2.0/24", i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func checkSeed(s string) error {
	if rest, ok := strings.CutPrefix(s, "dns:"); ok {
		name, _, err := SplitHostPort(rest)
		if err != nil || name == "" {
			return fmt.Errorf("%q: want dns:NAME:PORT", s)
		}
		return nil
	}
	_, _, err := SplitHostPort(s)
	return err
}

// maxKeyFile bounds a gossip key file: a keyring of a few keys in base64
// with comments fits many times over.
const maxKeyFile = 64 << 10

// ReadSecretFile reads a file that holds a secret (a key, a token): a
// regular file, so a device such as /dev/zero cannot run the reader out
// of memory, of at most max bytes.
func ReadSecretFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: give the file that holds the secret", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes: it holds one secret", path, max)
	}
	return b, nil
}

// LoadKeys reads the gossip encryption keys: one key of 16, 24 or 32
// bytes (AES-128, -192, -256) raw, or base64 keys one per line (blank
// lines and # comments skipped). The first is the primary, which encrypts;
// the others are only accepted, so a key rotates without a partition: add
// the new key second everywhere, move it first everywhere, drop the old
// one, with a SIGHUP after each step.
func LoadKeys(path string) ([][]byte, error) {
	b, err := ReadSecretFile(path, maxKeyFile)
	if err != nil {
		hint := ""
		if errors.Is(err, fs.ErrNotExist) {
			hint = " (make one with: head -c 32 /dev/urandom | base64 > " + path + "; chmod 600 " + path + "; the same file on every node)"
		}
		return nil, fmt.Errorf("read key: %w%s", err, hint)
	}
	if validKeyLen(len(b)) && !isText(b) { // binary: head -c 32 /dev/urandom > key
		return [][]byte{b}, nil
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, ok := decodeKey(line)
		if !ok {
			return nil, fmt.Errorf("%s line %d: a key is 16, 24 or 32 bytes in base64 (head -c 32 /dev/urandom | base64) or hex (openssl rand -hex 32), one per line; or the whole file 16, 24 or 32 raw bytes", path, i+1)
		}
		if slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			return nil, fmt.Errorf("%s line %d: the same key twice", path, i+1)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key: write 16, 24 or 32 bytes in base64 (head -c 32 /dev/urandom | base64) or hex (openssl rand -hex 32)", path)
	}
	return keys, nil
}

// isText reports whether b is printable ASCII and white space only.
func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

// decodeKey reads one key line: base64 (strict), else hex.
func decodeKey(line string) ([]byte, bool) {
	if k, err := base64.StdEncoding.Strict().DecodeString(line); err == nil && validKeyLen(len(k)) {
		return k, true
	}
	if k, err := hex.DecodeString(line); err == nil && validKeyLen(len(k)) {
		return k, true
	}
	return nil, false
}

// validKeyLen: AES-128, -192 or -256.
func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

// Resolve fills in the addresses c leaves to the interface, so members
// reach each other with no per-node setting. Advertise becomes an address:
// itself when it is one; else an address of ifi (the VIPs' interface), or
// of the interface it names: of the family it names ("ipv4", "ipv6"), or
// the IPv4 address and on IPv6-only nodes the global IPv6 one. Addresses
// in skip (the VIPs) are never advertised. A Bind without a host binds the
// advertised address.
func (c Config) Resolve(ifi *net.Interface, skip map[netip.Addr]bool) (Config, error) {
	adv, err := advertised(c.Advertise, ifi, skip)
	if err != nil {
		return c, err
	}
	c.Advertise = adv
	if host, port, _ := SplitHostPort(c.Bind); host == "" {
		if h, _, err := SplitHostPort(adv); err == nil {
			adv = h
		}
		c.Bind = net.JoinHostPort(adv, strconv.Itoa(port))
	}
	return c, nil
}

// advertised is Resolve's Advertise.
func advertised(adv string, ifi *net.Interface, vips map[netip.Addr]bool) (string, error) {
	if _, _, err := SplitHostPort(adv); err == nil && adv != "" {
		return adv, nil
	}
	if _, err := netip.ParseAddr(adv); err == nil {
		return adv, nil
	}
	family := adv
	if adv != "" && adv != AdvertiseIPv4 && adv != AdvertiseIPv6 {
		other, err := net.InterfaceByName(adv)
		if err != nil {
			return "", fmt.Errorf("gossip.advertise: %q is not an address, ipv4, ipv6 or an interface here: %w", adv, err)
		}
		ifi, family = other, ""
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", fmt.Errorf("gossip.advertise: list addresses of %s: %w", ifi.Name, err)
	}
	var v4, v6 netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		switch ip := p.Addr(); {
		case err != nil || vips[ip]:
		case ip.Is4() && !v4.IsValid():
			v4 = ip
		case ip.Is6() && ip.IsGlobalUnicast() && !v6.IsValid():
			v6 = ip
		}
	}
	switch {
	case v4.IsValid() && family != AdvertiseIPv6:
		return v4.String(), nil
	case v6.IsValid() && family != AdvertiseIPv4:
		return v6.String(), nil
	case family == "":
		return "", fmt.Errorf("gossip.advertise: %s has no IPv4 address and no global IPv6 address to advertise; add one, or set gossip.advertise", ifi.Name)
	}
	return "", fmt.Errorf("gossip.advertise: %s: %s has no such address; add one, or set gossip.advertise to the other family, an interface or an address", family, ifi.Name)
}
