package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/garpd/garpd/test/lab"
)

// kubeTools builds (or takes from the cache) kube-apiserver, kubectl and
// helm, or skips t when it cannot.
func kubeTools(t *testing.T) lab.KubeBinaries {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipping: the Go tool is needed to build helm and the API server")
	}
	kubeOnce.Do(buildKubeTools)
	if kubeErr != nil {
		t.Fatal(kubeErr)
	}
	return kubeBins
}

func buildKubeTools() {
	kubeBins, kubeErr = lab.BuildKube(func(msg string) { fmt.Fprintln(os.Stderr, "e2e:", msg) })
}

func chartDir() string { return filepath.Join(repoRoot(), "deploy", "helm", "garpd") }

// helm runs the built helm with args in a scratch home, so no user's
// helm config or repositories play a part.
func helm(t *testing.T, bins lab.KubeBinaries, args ...string) string {
	t.Helper()
	cmd := exec.Command(bins.Helm, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// docVIPsValues is a values file with the chart's one required value,
// documentation addresses, for renders about something else. Given first,
// a later -f or --set of vips replaces it.
func docVIPsValues(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "doc-vips.yaml")
	if err := os.WriteFile(path, []byte("vips: [192.0.2.101, 192.0.2.102, 192.0.2.103]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// helmChart is helm VERB with the documentation VIPs, then args.
func helmChart(t *testing.T, bins lab.KubeBinaries, verb string, args ...string) string {
	t.Helper()
	return helm(t, bins, append([]string{verb, "-f", docVIPsValues(t)}, args...)...)
}

// renderManifest is what `make manifests` writes.
func renderManifest(t *testing.T, bins lab.KubeBinaries) string {
	t.Helper()
	header, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "kubernetes", "garpd.yaml.header"))
	if err != nil {
		t.Fatal(err)
	}
	return string(header) + helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd",
		"--set", "gossip.key.existingSecret=garpd-gossip-key")
}

// The plain manifest is the chart rendered with its defaults, and the
// chart's alert rules are deploy/prometheus's.
func TestPlainManifestIsTheChart(t *testing.T) {
	bins := kubeTools(t)
	got, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "kubernetes", "garpd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := renderManifest(t, bins); string(got) != want {
		t.Errorf("deploy/kubernetes/garpd.yaml is not the chart's rendering: run `make manifests`")
	}
	a, _ := os.ReadFile(filepath.Join(repoRoot(), "deploy", "prometheus", "garpd-rules.yaml"))
	b, _ := os.ReadFile(filepath.Join(chartDir(), "files", "garpd-rules.yaml"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("deploy/helm/garpd/files/garpd-rules.yaml differs from deploy/prometheus/garpd-rules.yaml: copy the latter over the former")
	}
}

// documents splits a rendered manifest into its objects.
func documents(t *testing.T, manifest string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	dec := yaml.NewDecoder(strings.NewReader(manifest))
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			if err.Error() == "EOF" {
				return docs
			}
			t.Fatalf("decode the rendered manifest: %v", err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// agentConfig is the garpd.yaml of a rendered manifest's ConfigMap.
func agentConfig(t *testing.T, manifest string) string {
	t.Helper()
	for _, d := range documents(t, manifest) {
		if d["kind"] == "ConfigMap" {
			if data, ok := d["data"].(map[string]any); ok {
				if cfg, ok := data["garpd.yaml"].(string); ok {
					return cfg
				}
			}
		}
	}
	t.Fatal("the rendered manifest has no ConfigMap with garpd.yaml")
	return ""
}

// standInCRD is a CustomResourceDefinition that accepts any object of its
// kind: it stands in for OpenShift's SecurityContextConstraints and the
// Prometheus Operator's types, so the API server can take the chart's
// objects of those kinds (names, namespaces, API versions).
func standInCRD(group, kind, plural string, clusterScoped bool) string {
	scope := "Namespaced"
	if clusterScoped {
		scope = "Cluster"
	}
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[3]s.%[1]s
spec:
  group: %[1]s
  scope: %[4]s
  names: {kind: %[2]s, plural: %[3]s, singular: %[3]s}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`, group, kind, plural, scope)
}

// Issue 12: helm lint passes; the real API server accepts (dry run) the
// chart rendered with its defaults, with openshift: true, with a minimal
// values file and with the Prometheus objects, and the plain manifest; every rendered agent
// config passes garpd agent --check. (The Kubernetes tests run the agents
// under the chart's RBAC.)
func TestHelmChart(t *testing.T) {
	l := newLab(t, 1)
	k := startKube(t, l)
	bins := kubeBins
	helmChart(t, bins, "lint", "--strict", chartDir())
	helmChart(t, bins, "lint", "--strict", chartDir(), "--set", "openshift=true", "--set", "serviceMonitor.enabled=true",
		"--set", "prometheusRule.enabled=true", "--set", "http.listen=0.0.0.0:9496", "--set", "healthChecks.presets={ingress,kubelet,apiserver,openshift-router}")
	minimal := filepath.Join(l.Dir, "minimal-values.yaml")
	if err := os.WriteFile(minimal, []byte("interface: ens3\nvips: [198.51.100.10, 2001:db8::10]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ipv6Only := filepath.Join(l.Dir, "ipv6-only-values.yaml")
	if err := os.WriteFile(ipv6Only, []byte("vips: [2001:db8::101, 2001:db8::102, 2001:db8::103]\nhttp: {listen: \"[::1]:9496\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	execChecks := filepath.Join(l.Dir, "exec-checks-values.yaml")
	if err := os.WriteFile(execChecks, []byte(`image: {flavor: checks}
healthChecks:
  scripts:
    check_apiserver.sh: |
      #!/bin/sh
      curl -sfk --max-time 2 https://127.0.0.1:6443/healthz -o /dev/null
  checks:
    - {name: apiserver, exec: [/etc/garpd-checks/check_apiserver.sh]}
    - {name: apiserver-ca, http: "https://127.0.0.1:6443/readyz", ca_file: /etc/kubernetes/pki/ca.crt}
extraVolumes: [{name: pki, hostPath: {path: /etc/kubernetes/pki, type: Directory}}]
extraVolumeMounts: [{name: pki, mountPath: /etc/kubernetes/pki, readOnly: true}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeApply(t, l, k, "crds", strings.Join([]string{
		standInCRD("security.openshift.io", "SecurityContextConstraints", "securitycontextconstraints", true),
		standInCRD("monitoring.coreos.com", "ServiceMonitor", "servicemonitors", false),
		standInCRD("monitoring.coreos.com", "PrometheusRule", "prometheusrules", false),
	}, "---\n"))
	for _, crd := range []string{"securitycontextconstraints.security.openshift.io", "servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"} {
		if _, err := k.Kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/"+crd); err != nil {
			t.Fatal(err)
		}
	}
	renders := map[string]string{
		"defaults":       helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd"),
		"openshift":      helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd", "--set", "openshift=true"),
		"minimal values": helmChart(t, bins, "template", "edge", chartDir(), "--namespace", "garpd", "-f", minimal),
		"monitoring": helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd", "--set", "serviceMonitor.enabled=true",
			"--set", "prometheusRule.enabled=true", "--set", "http.listen=0.0.0.0:9496"),
		"plain manifest":  renderManifest(t, bins),
		"IPv6-only nodes": helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd", "-f", ipv6Only),
		"exec checks":     helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd", "-f", execChecks),
		"per-check timings": helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd", "--set", "healthChecks.presets[0].name=kubelet",
			"--set", "healthChecks.presets[0].interval=3s", "--set", "healthChecks.presets[0].fall=10", "--set", "healthChecks.presets[1]=ingress"),
		// keepalived's "weight -40 while the API is unreachable": a soft
		// check, which the dynamic mode takes (issue 37 item 3).
		"VIP range": helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd", "--set", "vips={192.0.2.110-192.0.2.119,2001:db8::10-2001:db8::11}"),
		"soft check": helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd", "--set", "healthChecks.presets[0].name=apiserver",
			"--set", "healthChecks.presets[0].weight=-40"),
	}
	key := labKey(l)
	for name, manifest := range renders {
		path := filepath.Join(l.Dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := k.Kubectl("apply", "--dry-run=server", "-f", path); err != nil {
			t.Errorf("%s: the API server refuses it: %v", name, err)
		} else {
			t.Logf("%s: accepted by the API server (dry run):\n%s", name, strings.TrimSpace(out))
		}
		cfg := strings.ReplaceAll(agentConfig(t, manifest), "/etc/garpd-key/key", key)
		cfgPath := filepath.Join(l.Dir, strings.ReplaceAll(name, " ", "-")+"-garpd.yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(garpdBin, "agent", "--check", "--offline", "--config", cfgPath).CombinedOutput(); err != nil {
			t.Errorf("%s: garpd agent --check refuses its config: %v\n%s\n%s", name, err, out, cfg)
		}
	}
	// The announce CronJob mounts the key the chart's config names, so its
	// `garpd announce --config` loads; the API server takes it.
	cron := filepath.Join(repoRoot(), "deploy", "kubernetes", "announce-cronjob.yaml")
	if out, err := k.Kubectl("apply", "--dry-run=server", "-f", cron); err != nil {
		t.Errorf("the announce CronJob: the API server refuses it: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(cron); err != nil || !strings.Contains(string(b), "secretName: garpd-gossip-key") ||
		!strings.Contains(agentConfig(t, renders["defaults"]), "secret_key_file: /etc/garpd-key/key") || !strings.Contains(string(b), "mountPath: /etc/garpd-key") {
		t.Errorf("the announce CronJob does not mount the gossip key where the chart's config names it (%v)", err)
	}
	if cfg := agentConfig(t, renders["per-check timings"]); !strings.Contains(cfg, "- fall: 10\n      http: http://127.0.0.1:10248/healthz\n      interval: 3s\n      name: kubelet") ||
		!strings.Contains(cfg, "- fall: 2\n      http: http://127.0.0.1:10254/healthz\n      interval: 2s\n      name: ingress") {
		t.Errorf("per-check timings: the kubelet check every 3s × 10 and the ingress check at the defaults, want both in:\n%s", cfg)
	}
	if cfg := agentConfig(t, renders["VIP range"]); !strings.Contains(cfg, "- 192.0.2.110-192.0.2.119\n") {
		t.Errorf("VIP range: want the range as it is in:\n%s", cfg)
	}
	if cfg := agentConfig(t, renders["soft check"]); !strings.Contains(cfg, "name: apiserver") || !strings.Contains(cfg, "weight: -40") {
		t.Errorf("soft check: want the apiserver preset with weight -40 in:\n%s", cfg)
	}
	// IPv6-only nodes need no per-node value: gossip advertises each
	// node's IPv6 address itself, and the probe reaches [::1].
	if r := renders["IPv6-only nodes"]; !strings.Contains(r, "host: \"::1\"\n              port: 9496") || strings.Contains(agentConfig(t, r), "advertise") {
		t.Errorf("IPv6-only nodes: want the probe on ::1 port 9496 and no per-node gossip address in:\n%s", r)
	}
	// Exec checks: the image with a shell, the scripts mounted executable,
	// the CA's host directory mounted; scripts without that image are
	// refused when the chart renders.
	if r := renders["exec checks"]; !strings.Contains(r, `garpd:0.1.0-checks"`) || !strings.Contains(r, "check_apiserver.sh: |") ||
		!strings.Contains(r, "{name: checks, mountPath: /etc/garpd-checks, readOnly: true}") || !strings.Contains(r, "defaultMode: 0555") ||
		!strings.Contains(r, "mountPath: /etc/kubernetes/pki") {
		t.Errorf("exec checks: want the -checks image, the scripts mounted at /etc/garpd-checks (0555) and the pki mount in:\n%s", r)
	}
	// Refused when the chart renders: scripts without the image that runs
	// them; values the schema does not know or cannot be (a misspelt key,
	// a VIP that is no address or range, a weight out of range).
	for args, want := range map[string]string{
		"healthChecks.scripts.a=x": "set image.flavor=checks",
		"vip=192.0.2.1":            "vip",
		"vips={192.0.2.1-x}":       "vips",
		"healthChecks.presets[0].name=apiserver,healthChecks.presets[0].weight=-300": "weight",
		"": "vips: list at least one virtual IP", // no VIPs: the chart has no default
	} {
		cmd := exec.Command(bins.Helm, "template", "garpd", chartDir())
		if args != "" {
			cmd.Args = append(cmd.Args, "-f", docVIPsValues(t), "--set", args)
		}
		home := t.TempDir()
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), want) {
			t.Errorf("--set %s: %v, want a refusal that names %s:\n%s", args, err, want, out)
		}
	}
	// helm lint of a values file with a misspelt key and a bad VIP names both.
	badValues := filepath.Join(l.Dir, "bad-values.yaml")
	if err := os.WriteFile(badValues, []byte("vips: [192.0.2.1-x]\nintrface: eth1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lint := exec.Command(bins.Helm, "lint", "--strict", chartDir(), "-f", badValues)
	lint.Env = append(os.Environ(), "HELM_CACHE_HOME="+l.Dir, "HELM_CONFIG_HOME="+l.Dir, "HELM_DATA_HOME="+l.Dir)
	if out, err := lint.CombinedOutput(); err == nil || !strings.Contains(string(out), "'intrface' not allowed") || !strings.Contains(string(out), "'192.0.2.1-x' does not match") {
		t.Errorf("helm lint of a misspelt key and a bad VIP: %v, want both named:\n%s", err, out)
	}
	if r := helmChart(t, bins, "template", "garpd", chartDir(), "--set", "imagePullSecrets[0].name=regcred", "--set", "logFormat=console"); !strings.Contains(r, "imagePullSecrets:\n        - name: regcred") ||
		!strings.Contains(agentConfig(t, r), "format: console") {
		t.Errorf("imagePullSecrets and logFormat not rendered:\n%s", r)
	}
	if !strings.Contains(renders["openshift"], "kind: SecurityContextConstraints") || strings.Contains(renders["defaults"], "SecurityContextConstraints") {
		t.Error("openshift: true does not switch the SCC on, or the defaults render one")
	}
	// The SCC admits a host path only when extraVolumes mounts one, as the
	// exec checks example does; every pod gets the runtime's seccomp filter.
	scc := func(r string) string { return r[strings.Index(r, "kind: SecurityContextConstraints"):] }
	withHostPath := helmChart(t, bins, "template", "garpd", chartDir(), "--set", "openshift=true", "-f", execChecks)
	if s := scc(withHostPath); !strings.Contains(s, "allowHostDirVolumePlugin: true") || !strings.Contains(s, ", hostPath]") {
		t.Errorf("openshift with the exec checks example: the SCC does not admit its hostPath volume:\n%s", s)
	}
	if s := scc(renders["openshift"]); !strings.Contains(s, "allowHostDirVolumePlugin: false") || strings.Contains(s, "hostPath") || !strings.Contains(s, "seccompProfiles: [runtime/default]") {
		t.Errorf("openshift: the SCC admits host paths without extraVolumes, or no seccomp profile:\n%s", s)
	}
	for name, r := range renders {
		if !strings.Contains(r, "seccompProfile: {type: RuntimeDefault}") {
			t.Errorf("%s: the pod has no seccompProfile RuntimeDefault", name)
		}
	}
}

// The systemd unit passes systemd-analyze verify (with the built binary
// standing in for /usr/bin/garpd, and the LoadCredential= drop-in its
// comment gives), runs as the garpd user with only the two capabilities,
// and of /proc/sys writes only the per-interface IPv4 settings use_vmac
// writes.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipping: systemd-analyze is not installed")
	}
	if garpdBin == "" {
		t.Skip("skipping: the lab is not available, so garpd was not built")
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "systemd", "garpd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n", "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW\n",
		"NoNewPrivileges=yes\n", "ProtectSystem=strict\n", "StateDirectory=garpd\n", "ExecReload=/bin/kill -HUP $MAINPID\n", "Restart=on-failure\n",
		"ProtectKernelTunables=yes\n", "ReadWritePaths=/proc/sys/net/ipv4/conf\n", "Type=notify\n", "WatchdogSec=10s\n", "RuntimeDirectory=garpd\n",
		"User=garpd\n", "\n#   LoadCredential=gossip.key:/etc/garpd/gossip.key\n"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	unit := filepath.Join(t.TempDir(), "garpd.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(raw, []byte("/usr/bin/garpd"), []byte(garpdBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	// With the drop-in the unit's comment gives for the gossip key.
	dropIn := filepath.Join(filepath.Dir(unit), "garpd.service.d")
	if err := os.Mkdir(dropIn, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropIn, "credentials.conf"), []byte("[Service]\nLoadCredential=gossip.key:/etc/garpd/gossip.key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The Debian package (make deb), installed the way dpkg installs into
// another root: dpkg --root into a scratch tree, maintainer scripts run
// outside it and honouring DPKG_ROOT. It installs the binary, the unit, a
// config that lists no VIPs (the service refuses to start on it: nothing
// runs on an example), the garpd system user and its state directory; an
// upgrade over itself keeps the operator's edited config; a purge leaves
// the tree as it was (dpkg's own database and the shadow tools' backup
// files aside).
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: dpkg --root needs root")
	}
	for _, tool := range []string{"dpkg", "make", "useradd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: no %s", tool)
		}
	}
	dist := t.TempDir()
	if out, err := exec.Command("make", "-C", repoRoot(), "deb", "DIST="+dist).CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "garpd_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one package", debs)
	}
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	accounts := map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n",
		"etc/shadow": "root:*:19000:0:99999:7:::\n", "etc/gshadow": "root:*::\n", "var/lib/dpkg/status": ""}
	for f, text := range accounts {
		if err := os.WriteFile(filepath.Join(root, f), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A gossip key from before the unit ran as garpd: root's, mode 600.
	oldKey := filepath.Join(root, "etc/garpd/gossip.key")
	if err := os.MkdirAll(filepath.Dir(oldKey), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldKey, []byte("bGFiLWtleS1sYWIta2V5LWxhYi1rZXktbGFiLWtleSE=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := treeOf(t, root)
	dpkg := func(args ...string) {
		t.Helper()
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-confdef", "--force-confold", "--log=/dev/null"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	dpkg("-i", debs[0])
	for _, f := range []string{"usr/bin/garpd", "usr/lib/systemd/system/garpd.service", "etc/garpd/garpd.yaml", "usr/share/doc/garpd/examples/dynamic-3-nodes.yaml"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); !strings.Contains(string(b), "garpd:x:") {
		t.Errorf("no garpd system user:\n%s", b)
	}
	gid := accountID(t, filepath.Join(root, "etc/group"), "garpd")
	uid := accountID(t, filepath.Join(root, "etc/passwd"), "garpd")
	owned := func(rel string, wantUID uint32, want os.FileMode) {
		t.Helper()
		st, err := os.Stat(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != wantUID || sys.Gid != gid || st.Mode().Perm() != want {
			t.Errorf("%s: uid %d gid %d mode %o; want uid %d, gid %d (garpd), mode %o", rel, sys.Uid, sys.Gid, st.Mode().Perm(), wantUID, gid, want)
		}
	}
	// The unit's User=garpd reads the config and the old key, nobody else.
	owned("var/lib/garpd", uid, 0o700)
	owned("etc/garpd/garpd.yaml", 0, 0o640)
	owned("etc/garpd/gossip.key", 0, 0o640)
	cfg := filepath.Join(root, "etc/garpd/garpd.yaml")
	if out, err := exec.Command(filepath.Join(root, "usr/bin/garpd"), "agent", "--check", "--offline", "--config", cfg).CombinedOutput(); err == nil || !strings.Contains(string(out), "vips: required") {
		t.Errorf("the installed config passes --check (%v), so the unit would start garpd on it:\n%s", err, out)
	}
	// The operator's config survives an upgrade.
	edited := "# edited\ninterface: eth0\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 100}\n"
	if err := os.WriteFile(cfg, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("-i", debs[0])
	if b, _ := os.ReadFile(cfg); string(b) != edited {
		t.Errorf("the upgrade replaced the operator's config:\n%s", b)
	}
	dpkg("--purge", "garpd")
	after := treeOf(t, root)
	kept := func(p string) bool {
		return strings.HasPrefix(p, "var/lib/dpkg") || strings.HasSuffix(p, "-") // dpkg's database, shadow's backups
	}
	for p := range after {
		if !before[p] && !kept(p) {
			t.Errorf("the purge left %s", p)
		}
	}
	for p := range before {
		if !after[p] {
			t.Errorf("the purge removed %s, which was there before", p)
		}
	}
	for f, text := range accounts {
		if b, _ := os.ReadFile(filepath.Join(root, f)); f != "var/lib/dpkg/status" && string(b) != text {
			t.Errorf("after the purge %s holds:\n%s\nwant:\n%s", f, b, text)
		}
	}
}

// accountID is name's uid or gid in an /etc/passwd or /etc/group file.
func accountID(t *testing.T, file, name string) uint32 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Split(line, ":"); len(f) > 2 && f[0] == name {
			id, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				t.Fatalf("%s: %q", file, line)
			}
			return uint32(id)
		}
	}
	t.Fatalf("%s has no %s", file, name)
	return 0
}

// treeOf lists every path under root, relative to it.
func treeOf(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Run as the unit runs it: Type=notify and WatchdogSec, and as a user
// that is not root with the unit's two ambient capabilities and its
// gossip key from a LoadCredential= directory. The agent says READY=1
// once its routers run and gossip has found the cluster, feeds the
// watchdog at least every WatchdogSec/2 (4 s here), and holds its share
// of the VIPs in the router's table: NET_ADMIN and NET_RAW are all it
// needs.
func TestSystemdNotify(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("skipping: no setpriv (util-linux) to drop root as systemd's User= does")
	}
	l := newLab(t, 2)
	// The unit's user: nobody, reaching only what systemd gives it.
	const uid = 65534
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "garpd")
	if b, err := os.ReadFile(garpdBin); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copy garpd: %v", err)
	}
	creds := filepath.Join(dir, "credentials")
	key, _ := os.ReadFile(labKey(l))
	if err := errors.Join(os.Mkdir(creds, 0o500), os.WriteFile(filepath.Join(creds, "gossip.key"), key, 0o400),
		os.Chown(filepath.Join(creds, "gossip.key"), uid, uid), os.Chown(creds, uid, uid)); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	type msg struct {
		text string
		at   time.Time
	}
	msgs := make(chan msg, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- msg{string(buf[:n]), time.Now()}
		}
	}()
	n1, n2 := l.Node("n1"), l.Node("n2")
	if _, err := n2.StartGarpd(garpdBin, dynConfig(l, "n2", vips3, "")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "n1-garpd.yaml")
	text := lab.WithLoopbackControl(strings.Replace(dynConfig(l, "n1", vips3, ""), labKey(l), "${CREDENTIALS_DIRECTORY}/gossip.key", 1))
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, err := l.Start(n1.NS, "n1-garpd", setpriv, fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups",
		"--inh-caps=-all,+net_admin,+net_raw", "--ambient-caps=-all,+net_admin,+net_raw", "--bounding-set=-all,+net_admin,+net_raw", "--no-new-privs",
		"env", "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=8000000", "CREDENTIALS_DIRECTORY="+creds,
		bin, "agent", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ready time.Time
	var fed []time.Time
	for deadline := time.After(30 * time.Second); len(fed) < 4; {
		select {
		case m := <-msgs:
			switch {
			case m.text == "READY=1" && ready.IsZero():
				ready = m.at
			case m.text == "WATCHDOG=1" && !ready.IsZero():
				fed = append(fed, m.at)
			default:
				t.Fatalf("%q (ready at %v)", m.text, ready)
			}
		case <-deadline:
			t.Fatalf("in 30 s: ready %v, %d watchdog feeds", !ready.IsZero(), len(fed))
		}
	}
	if st := memberStates(t, n1); len(st) != 2 {
		t.Errorf("READY before gossip found the cluster? n1 knows %v", st)
	}
	t.Logf("READY %s after start; watchdog fed at %v after it", ready.Sub(start).Round(time.Millisecond), func() (out []time.Duration) {
		for _, f := range fed {
			out = append(out, f.Sub(ready).Round(time.Millisecond))
		}
		return
	}())
	for i := 1; i < len(fed); i++ {
		if gap := fed[i].Sub(fed[i-1]); gap > 4*time.Second {
			t.Errorf("the watchdog went %s unfed, more than WatchdogSec/2", gap)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil || !strings.Contains(string(status), fmt.Sprintf("\nUid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid)) {
		t.Fatalf("the agent does not run as uid %d: %v\n%s", uid, err, status)
	}
	waitFor(t, 30*time.Second, "the router to reach both nodes' VIPs", func() (bool, string) {
		c, all := spread(t, l, vips3)
		return all && c["n1"] > 0 && c["n2"] > 0, fmt.Sprint(c)
	})
}

// The arm64 build runs: the binary of make release under qemu-user says
// its version, and the VRRP codec's tests (the wire format, checksums and
// auth_hmac trailers, whose byte order an architecture could get wrong)
// pass as arm64 code.
func TestArm64UnderQemu(t *testing.T) {
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Skip("skipping: no qemu-aarch64-static (apt-get install qemu-user-static)")
	}
	dir := t.TempDir()
	build := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=arm64")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	bin, codec := filepath.Join(dir, "garpd"), filepath.Join(dir, "vrrp.test")
	build("build", "-trimpath", "-o", bin, "./cmd/garpd")
	build("test", "-c", "-o", codec, "./vrrp")
	if out, err := exec.Command("file", bin).CombinedOutput(); err == nil && !strings.Contains(string(out), "aarch64") {
		t.Fatalf("not an arm64 binary: %s", out)
	}
	out, err := exec.Command(qemu, bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "garpd") {
		t.Fatalf("garpd version under qemu-aarch64: %v\n%s", err, out)
	}
	t.Logf("arm64: %s", strings.TrimSpace(string(out)))
	run := exec.Command(qemu, codec, "-test.run", "^(TestEncodeV3IPv4Golden|TestRoundTrip|TestChecksumCoverage|TestDecodeRejects|TestEncodeRejects|TestTrailerVectors|TestTrailerTampering|TestSignedAdvertRoundTrip|TestParseAuthKey|TestDerivedKeyIDs)$", "-test.v")
	run.Dir = filepath.Join(repoRoot(), "vrrp") // testdata, as go test runs it
	out, err = run.CombinedOutput()
	if err != nil || strings.Count(string(out), "--- PASS") < 10 {
		t.Fatalf("the VRRP codec's tests under qemu-aarch64: %v\n%s", err, out)
	}
}
