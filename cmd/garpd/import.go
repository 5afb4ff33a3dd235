package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

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
	var outDir string
	var dynamic, strict, anywhere bool
	var join, nodes []string
	cmd := &cobra.Command{
		Use:   "keepalived FILE... [--node NAME | --node NAME=FILE...] [--dynamic] [--strict] [--out DIR]",
		Short: "Turn keepalived.conf files (one per node) into garpd configs",
		Long: `Read the keepalived configs of a cluster, one file per node (includes,
comments and both brace styles are read), and write one garpd config per
node: to stdout, or to DIR/NODE.yaml with --out.

By default the configs are static-mode garpd that reproduces keepalived's
VRRP exactly: interface, VRIDs, per-node priorities, advert_int, version,
authentication (PASS), unicast peers, nopreempt and preempt_delay, the
virtual_ipaddress entries with their prefix, and the garp settings. A
vrrp_script that curls a URL becomes an http health check (-k: insecure),
one that only connects to bash's /dev/tcp a tcp check; other scripts
become exec checks. Each keeps its track_script weight (in the dynamic
mode a soft check: the VIPs move to members where it passes) and, when
only some instances track it, their VIPs; track_interface becomes
track_interfaces. Each VIP keeps its instance's name (name:), which its
router's notify hooks hear; the notify scripts become notify hooks, each
instance's own under notify.instances when they differ; script_user is
kept. With --dynamic the same VIPs and VRIDs
become one dynamic-mode config (no priorities: garpd balances them),
joined over gossip; the nodes' unicast_src_ip addresses are the seeds.

Every output comment says where a value came from. What garpd cannot
express (virtual_routes, LVS, sync groups, a VIP's label or scope,
authentication on a VRRPv3 or IPv6 instance, which keepalived ignores
too) is listed with its file and line on stderr; the import still
succeeds, unless --strict makes any such line that changes behaviour an error (exit 2);
notes on what keepalived ignores too, or garpd does the same way, pass.
Template placeholders left in a file ({{VIP1}}) are an error.

The node is named by global_defs' router_id, else by the file name (the
directory's, for keepalived.conf), which must be a host name; --node
names it: NAME for the one file given, NAME=FILE for any of several (as
ipfailover's, whose router_id is ipfailover on every node).
Includes are followed inside each config's directory only, unless
--include-anywhere; only regular files of at most 1 MiB are read. Files
that hold a password or keys are written mode 0600.`,
		Example: `  garpd import keepalived lb1/keepalived.conf lb2/keepalived.conf --out /tmp/garpd
  garpd import keepalived keepalived.conf --node cp1 --strict
  garpd import keepalived a/keepalived.conf b/keepalived.conf --node lb1=a/keepalived.conf --node lb2=b/keepalived.conf --dynamic
  garpd import keepalived n1.conf n2.conf n3.conf --dynamic`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			names, err := nodeNames(nodes, files)
			if err != nil {
				return usageError(err)
			}
			out, notes, err := importKeepalived(keepalived.OSFiles{IncludeAnywhere: anywhere}, files, importOptions{names: names, dynamic: dynamic, join: join})
			if err != nil {
				return &configError{err}
			}
			changes := 0
			for _, n := range notes {
				kind := "changes behaviour"
				if n.Harmless {
					kind = "same behaviour"
				} else {
					changes++
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "note (%s): %s\n", kind, n)
			}
			if strict && changes > 0 {
				return &configError{fmt.Errorf("--strict: %d keepalived settings garpd would run differently (the notes marked \"changes behaviour\" above)", changes)}
			}
			if err := writeNodeFiles(cmd.OutOrStdout(), cmd.ErrOrStderr(), outDir, ".yaml", out); err != nil {
				return err
			}
			if dynamic {
				printMigration(cmd.ErrOrStderr(), out, outDir)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "the node's name: NAME for the one file given, NAME=FILE for any of several (default: router_id, else the file name)")
	cmd.Flags().BoolVar(&dynamic, "dynamic", false, "write dynamic-mode configs: the same VIPs and VRIDs, balanced by garpd")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail (exit 2) on any keepalived setting garpd cannot express")
	cmd.Flags().StringVar(&outDir, "out", "", "write DIR/NODE.yaml per node instead of printing them")
	cmd.Flags().BoolVar(&anywhere, "include-anywhere", false, "follow include statements outside each config's directory")
	cmd.Flags().StringSliceVar(&join, "join", nil, "with --dynamic: the gossip seeds, HOST:PORT (default: the nodes' unicast_src_ip, else the unicast peers)")
	return cmd
}

// printMigration says how to move the imported keepalived cluster to
// garpd node by node, with every VIP held by one node throughout.
func printMigration(w io.Writer, out []nodeFile, dir string) {
	var names []string
	for _, f := range out {
		names = append(names, f.node)
	}
	where := "the config above"
	if dir != "" {
		where = filepath.Join(dir, "NODE.yaml")
	}
	fmt.Fprintf(w, `
Migrating %s from keepalived, one node at a time (every VIP keeps one holder):
  1. Put the same gossip key on every node (/etc/garpd/gossip.key: head -c 32 /dev/urandom | base64).
  2. On each node in turn (%s): stop keepalived (its VIPs go to their keepalived backups), then
     start garpd with %s. A garpd node alone holds nothing; from the second one on, the garpd
     nodes take the VIPs they prefer (keepalived's masters) and the rest of the plan, and
     keepalived yields to their higher priorities. Wait until garpd status shows the node ranked.
  3. While keepalived runs, the configs admit its nodes' adverts (vrrp.keepalived_peers) and
     accept unsigned adverts (vrrp.auth_hmac mode receive-only), so VRRP arbitrates between the
     two. After the last node: remove keepalived_peers and set vrrp.auth_hmac.mode: permissive
     on every node (SIGHUP each), then remove auth_hmac (the dynamic mode enforces) and SIGHUP
     each again.
`, strings.Join(names, ", "), strings.Join(names, ", then "), where)
}

type importOptions struct {
	names   map[string]string // file → node name (--node)
	dynamic bool
	join    []string
}

// nodeNames reads --node: NAME for the one file given, or NAME=FILE for
// any of several.
func nodeNames(flags, files []string) (map[string]string, error) {
	names, taken := map[string]string{}, map[string]bool{}
	for _, f := range flags {
		name, file, pinned := strings.Cut(f, "=")
		switch {
		case !pinned && len(files) > 1:
			return nil, fmt.Errorf("--node %s: with several files, name each as NAME=FILE, e.g. --node lb1=%s", f, files[0])
		case !pinned:
			file = files[0]
		case !slices.Contains(files, file):
			return nil, fmt.Errorf("--node %s: %s is not one of the files given", f, file)
		}
		if _, dup := names[file]; dup || taken[name] || name == "" {
			return nil, fmt.Errorf("--node %s: give each file one name, and each name to one file", f)
		}
		names[file], taken[name] = name, true
	}
	return names, nil
}

// nodeFile is one node's output file: a garpd config from an import, or
// a keepalived.conf from a rendering.
type nodeFile struct {
	node string
	from string // what it was made from, for the progress line
	data []byte
	// secret: the file holds a password or keys, so only its owner may
	// read it.
	secret bool
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
		mode := os.FileMode(0o644)
		if f.secret {
			mode = 0o600
		}
		if err := replaceFile(path, f.data, mode); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s (node %s, from %s)\n", path, f.node, f.from)
	}
	return nil
}

// replaceFile writes data to path as a new file of this process's with
// mode: written to a file created exclusively beside it, then renamed over
// path. A link planted at path is replaced, never followed, and a file
// someone created there in advance never receives the data (it may hold
// secrets), nor keeps its owner or mode.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	err = errors.Join(err, f.Chmod(mode), f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// importKeepalived reads each node's file and writes its garpd config,
// each checked with the agent's own loader first.
func importKeepalived(files keepalived.Files, paths []string, opts importOptions) ([]nodeFile, []keepalived.Note, error) {
	nodes, notes, err := keepalived.ReadNodes(files, paths, opts.names)
	if err != nil {
		return nil, nil, err
	}
	var out []nodeFile
	for _, n := range nodes {
		// The static form holds every VIP and VRRP setting the dynamic
		// one does: if the agent's loader refuses it, say so now rather
		// than write a config that will not start.
		static, _, err := keepalived.Convert(n, nodes, keepalived.Options{})
		if err != nil {
			return nil, nil, err
		}
		if _, err := parseConfig(static); err != nil {
			return nil, nil, fmt.Errorf("%s: garpd cannot run what it imports from this file: %w", n.File, err)
		}
		b, more, err := keepalived.Convert(n, nodes, keepalived.Options{Dynamic: opts.dynamic, Join: opts.join})
		if err != nil {
			return nil, nil, err
		}
		notes = append(notes, more...)
		secret := slices.ContainsFunc(n.Config.Instances, func(in *keepalived.Instance) bool { return in.AuthPass != nil || in.AuthHMAC != nil })
		out = append(out, nodeFile{node: n.Name, from: n.File, data: b, secret: secret})
	}
	if opts.dynamic {
		if err := sameCluster(out); err != nil {
			return nil, nil, err
		}
	}
	return out, notes, nil
}

// sameCluster refuses dynamic-mode configs that would not be one cluster:
// members must share the VIPs, their VRIDs and the VRRP version and
// advert interval (the config digest), or they exclude each other as
// config_mismatch. Each difference is named, with the nodes.
func sameCluster(out []nodeFile) error {
	type view struct {
		node    string
		vips    map[string]int // address → VRID
		version int
		advert  string
	}
	var views []view
	for _, f := range out {
		l, err := parseConfigAs(f.data, true) // the key is the nodes', not here
		if err != nil {
			return fmt.Errorf("%s: %w", f.from, err)
		}
		v := view{node: f.node, vips: map[string]int{}, version: l.cfg.VRRP.Version, advert: l.cfg.VRRP.AdvertInterval.String()}
		for _, g := range l.alloc.Groups {
			for _, p := range g.VIPs {
				v.vips[p.Addr().String()] = g.VRID
			}
		}
		views = append(views, v)
	}
	var diffs []string
	for _, v := range views[1:] {
		first := views[0]
		if v.version != first.version {
			diffs = append(diffs, fmt.Sprintf("VRRP version %d on %s, %d on %s", first.version, first.node, v.version, v.node))
		}
		if v.advert != first.advert {
			diffs = append(diffs, fmt.Sprintf("advert_int %s on %s, %s on %s", first.advert, first.node, v.advert, v.node))
		}
		for a, vrid := range first.vips {
			switch other, ok := v.vips[a]; {
			case !ok:
				diffs = append(diffs, fmt.Sprintf("VIP %s (VRID %d) is on %s, not on %s", a, vrid, first.node, v.node))
			case other != vrid:
				diffs = append(diffs, fmt.Sprintf("VIP %s has VRID %d on %s, %d on %s", a, vrid, first.node, other, v.node))
			}
		}
		for a, vrid := range v.vips {
			if _, ok := first.vips[a]; !ok {
				diffs = append(diffs, fmt.Sprintf("VIP %s (VRID %d) is on %s, not on %s", a, vrid, v.node, first.node))
			}
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	slices.Sort(diffs)
	return fmt.Errorf("the files do not describe one cluster, and dynamic-mode members must share the VIPs, VRIDs, version and advert interval (else they exclude each other as config_mismatch); make the files agree:\n  %s", strings.Join(diffs, "\n  "))
}
