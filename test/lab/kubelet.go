package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A lab node can run a real kubelet: containerd and the kubelet in the
// node's network namespace, so that host-network pods share the node's
// interface as they do on a real node. They run in a mount namespace of
// their own, in which the lab directory stands in for /run, /var/lib and
// /var/log: what they write to fixed paths (shim sockets, pod logs,
// device-plugin sockets) stays in the lab, and their mounts vanish with
// them. Pods' cgroups go under a cgroup root of the node's own
// (cgroupfs driver, cgroup v1 or v2), removed when the lab closes.

// ContainerdAvailable reports why the lab cannot run containerd and build
// images, or nil.
func ContainerdAvailable() error {
	for _, p := range []struct{ cmd, pkg string }{
		{"containerd", "containerd"}, {"ctr", "containerd"}, {"runc", "runc"},
		{"buildah", "buildah"}, {"nsenter", "util-linux"}, {"unshare", "util-linux"},
	} {
		if _, err := exec.LookPath(p.cmd); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install %s)", p.cmd, p.pkg)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		return errors.New("no cgroup file system at /sys/fs/cgroup")
	}
	return nil
}

// Images are the OCI archives of the images a lab kubelet runs, built here
// with buildah: no registry is reachable.
type Images struct {
	// Garpd is the repository Dockerfile's default image, from a static
	// binary of this tree on a local base shaped like distroless (root,
	// nonroot, /tmp, CA certificates), tagged GarpdRef.
	Garpd, GarpdRef string
	// Pause is the pod sandbox image, tagged PauseRef.
	Pause, PauseRef string
}

// PauseRef is the lab's pod sandbox image.
const PauseRef = "localhost/garpd-lab/pause:1"

// labBase is the local stand-in for the Dockerfile's distroless base.
const labBase = "localhost/garpd-lab/static-base:1"

// repoRoot is the repository this package is in.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BuildImages builds garpd's image, tagged garpdRef, and the pause image
// into dir, with buildah keeping its storage in dir too.
func BuildImages(dir, garpdRef string) (Images, error) {
	if err := ContainerdAvailable(); err != nil {
		return Images{}, err
	}
	img := Images{Garpd: filepath.Join(dir, "garpd-image.tar"), GarpdRef: garpdRef,
		Pause: filepath.Join(dir, "pause-image.tar"), PauseRef: PauseRef}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b, err := NewBuildah(filepath.Join(dir, "buildah"))
	if err != nil {
		return Images{}, err
	}
	buildah := func(args ...string) error { return b.Run(ctx, args...) }
	goBuild := func(out, pkg string) error { return BuildRelease(ctx, out, pkg) }
	base, err := b.LabBase(ctx, filepath.Join(dir, "base"))
	if err != nil {
		return Images{}, err
	}

	// garpd: the Dockerfile itself, on make release's binary and SBOM.
	garpdCtx := filepath.Join(dir, "garpd-context")
	release := exec.CommandContext(ctx, "make", "-C", repoRoot(), "release", "ARCHES="+runtime.GOARCH, "DIST="+garpdCtx)
	if out, err := release.CombinedOutput(); err != nil {
		return Images{}, fmt.Errorf("make release: %w: %s", err, tail(string(out), 2000))
	}
	if err := buildah("bud", "--quiet", "--platform", "linux/"+runtime.GOARCH, "--build-arg", "BINARY=prebuilt", "--build-arg", "BASE="+base,
		"--build-arg", "VERSION=lab", "-t", garpdRef, "-f", filepath.Join(repoRoot(), "Dockerfile"), garpdCtx); err != nil {
		return Images{}, err
	}

	pauseCtx := filepath.Join(dir, "pause-context")
	if err := goBuild(filepath.Join(pauseCtx, "pause"), "./test/lab/pause"); err != nil {
		return Images{}, err
	}
	if err := writeFile(filepath.Join(pauseCtx, "Containerfile"), "FROM scratch\nCOPY pause /pause\nENTRYPOINT [\"/pause\"]\n", 0o644); err != nil {
		return Images{}, err
	}
	if err := buildah("bud", "--quiet", "-t", PauseRef, "-f", filepath.Join(pauseCtx, "Containerfile"), pauseCtx); err != nil {
		return Images{}, err
	}
	for ref, archive := range map[string]string{garpdRef: img.Garpd, PauseRef: img.Pause} {
		if err := buildah("push", "--quiet", ref, "oci-archive:"+archive+":"+ref); err != nil {
			return Images{}, err
		}
	}
	return img, nil
}

func writeFile(path, content string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), mode)
}

// Kubelet is containerd and a kubelet running as a lab node.
type Kubelet struct {
	node       *Node
	dir        string
	socket     string
	cgroupRoot string
	Containerd *Proc
	Kubelet    *Proc
	// ManifestDir is the kubelet's static pod directory, checked every second.
	ManifestDir string
}

// KubeletOptions say how a lab kubelet runs.
type KubeletOptions struct {
	Binary string // the kubelet
	Images Images // imported into containerd before the kubelet starts
	// Kubeconfig registers the kubelet as a Node of that cluster (named as
	// the lab node); empty runs it standalone, with static pods only.
	Kubeconfig string
}

// StartKubelet starts containerd and a kubelet for n and waits until the
// kubelet has started its sync loop.
func (n *Node) StartKubelet(opts KubeletOptions) (*Kubelet, error) {
	if err := ContainerdAvailable(); err != nil {
		return nil, err
	}
	dir := filepath.Join(n.lab.Dir, n.Name+"-kubelet")
	k := &Kubelet{node: n, dir: dir, socket: filepath.Join(dir, "containerd.sock"),
		cgroupRoot: "/" + nsPrefix + "-" + n.lab.ID + "-" + n.Name, ManifestDir: filepath.Join(dir, "manifests")}
	for _, d := range []string{"run", "var-lib", "var-log", "cni-conf", "cni-bin", "manifests"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := k.makeCgroupRoot(); err != nil {
		return nil, err
	}
	n.lab.OnClose(k.removeCgroupRoot)
	if err := writeFile(filepath.Join(dir, "containerd.toml"), k.containerdConfig(), 0o644); err != nil {
		return nil, err
	}
	// Host-network pods need no CNI plugin, but the runtime reports its
	// network ready only with a configuration.
	if err := writeFile(filepath.Join(dir, "cni-conf", "10-lab.conflist"),
		`{"cniVersion": "1.0.0", "name": "lab-host-network-only", "plugins": [{"type": "loopback"}]}`+"\n", 0o644); err != nil {
		return nil, err
	}
	// The mount namespace: /run, /var/lib and /var/log from the lab.
	script := `mount --bind "$1/run" /run && mount --bind "$1/var-lib" /var/lib && mount --bind "$1/var-log" /var/log && exec containerd --config "$1/containerd.toml"`
	var err error
	k.Containerd, err = n.lab.StartCommand(n.Name+"-containerd", "nsenter", "--net=/run/netns/"+n.NS,
		"unshare", "--mount", "--propagation", "slave", "sh", "-c", script, "sh", dir)
	if err != nil {
		return nil, err
	}
	if err := k.waitContainerd(); err != nil {
		return nil, err
	}
	for _, archive := range []string{opts.Images.Pause, opts.Images.Garpd} {
		if _, err := k.Ctr("images", "import", archive); err != nil {
			return nil, fmt.Errorf("import %s into %s's containerd: %w", filepath.Base(archive), n.Name, err)
		}
	}
	if err := writeFile(filepath.Join(dir, "kubelet.yaml"), k.kubeletConfig(), 0o644); err != nil {
		return nil, err
	}
	args := []string{"nsenter", "--target", strconv.Itoa(k.Containerd.Cmd.Process.Pid), "--mount", "--net",
		opts.Binary, "--config", filepath.Join(dir, "kubelet.yaml"), "--hostname-override", n.Name,
		"--node-ip", n.IPv4.String(), "--v", "2"}
	if opts.Kubeconfig != "" {
		args = append(args, "--kubeconfig", opts.Kubeconfig)
	}
	k.Kubelet, err = n.lab.StartCommand(n.Name+"-kubelet", args...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(k.Kubelet.Output(), "Starting kubelet main sync loop") {
		if k.Kubelet.Exited() {
			return nil, fmt.Errorf("kubelet on %s exited: %s", n.Name, tail(k.Kubelet.Output(), 3000))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kubelet on %s not syncing after 60s: %s", n.Name, tail(k.Kubelet.Output(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return k, nil
}

func (k *Kubelet) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  enable_selinux = false
  disable_apparmor = true
  # The lab's root lacks CAP_SYS_RESOURCE: a pod's negative oom_score_adj
  # (a critical pod's -997) would fail the container's start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, filepath.Join(k.dir, "containerd", "root"), filepath.Join(k.dir, "containerd", "state"), k.socket,
		filepath.Join(k.dir, "containerd.ttrpc.sock"), filepath.Join(k.dir, "containerd", "opt"), PauseRef,
		filepath.Join(k.dir, "cni-bin"), filepath.Join(k.dir, "cni-conf"))
}

func (k *Kubelet) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: %q
containerRuntimeEndpoint: unix://%s
staticPodPath: %q
fileCheckFrequency: 1s
syncFrequency: 5s
failSwapOn: false
readOnlyPort: 0
healthzPort: 0
# The tests read /metrics/probes over the node's own loopback.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
# A test machine's disk is not the pods' concern.
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
resolvConf: ""
`, k.cgroupRoot, k.socket, k.ManifestDir)
}

// HostExec runs a command on the node as its pods see it: in the node's
// network namespace and the kubelet's mount namespace (its /run and
// /var/lib, where hostPath and emptyDir volumes live).
func (k *Kubelet) HostExec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--target", strconv.Itoa(k.Containerd.Cmd.Process.Pid), "--mount", "--net"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Ctr runs containerd's ctr against this node's containerd, in the
// Kubernetes namespace.
func (k *Kubelet) Ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", k.socket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (k *Kubelet) waitContainerd() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := k.Ctr("version"); err == nil {
			return nil
		}
		if k.Containerd.Exited() {
			return fmt.Errorf("containerd on %s exited: %s", k.node.Name, tail(k.Containerd.Output(), 3000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd on %s not answering after 30s: %s", k.node.Name, tail(k.Containerd.Output(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// RunningContainers lists the names of the containers running on the node.
func (k *Kubelet) RunningContainers() ([]string, error) {
	tasks, err := k.runningTasks()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range tasks {
		names = append(names, t.name)
	}
	return names, nil
}

// ContainerPIDs lists the host PIDs of the processes of the running
// containers named name (Kubernetes' container name), to read what the
// kernel confines them with under /proc.
func (k *Kubelet) ContainerPIDs(name string) ([]int, error) {
	tasks, err := k.runningTasks()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, t := range tasks {
		if t.name == name {
			pids = append(pids, t.pids...)
		}
	}
	return pids, nil
}

type runningTask struct {
	name string
	pids []int
}

// runningTasks is every running container: its Kubernetes name and the
// PIDs of its processes.
func (k *Kubelet) runningTasks() ([]runningTask, error) {
	out, err := k.Ctr("containers", "list", "--quiet")
	if err != nil {
		return nil, err
	}
	var tasks []runningTask
	for _, id := range strings.Fields(out) {
		info, err := k.Ctr("tasks", "ps", id)
		if err != nil || !strings.Contains(info, "PID") {
			continue // not running
		}
		labels, err := k.Ctr("containers", "info", id)
		if err != nil {
			continue
		}
		i := strings.Index(labels, `"io.kubernetes.container.name": "`)
		if i < 0 {
			continue
		}
		rest := labels[i+len(`"io.kubernetes.container.name": "`):]
		t := runningTask{name: rest[:strings.IndexByte(rest, '"')]}
		for _, line := range strings.Split(info, "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				if pid, err := strconv.Atoi(f[0]); err == nil {
					t.pids = append(t.pids, pid)
				}
			}
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

// ProbeResults counts the kubelet's probe results for a pod's container
// by probe type and result (e.g. "Liveness/successful"), from its
// /metrics/probes on the node's loopback.
func (k *Kubelet) ProbeResults(pod, container string) (map[string]int, error) {
	out, err := Exec(k.node.NS, "curl", "-sk", "--max-time", "5", "https://127.0.0.1:10250/metrics/probes")
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "prober_probe_total{") || !strings.Contains(line, `container="`+container+`"`) ||
			!strings.Contains(line, `pod="`+pod+`"`) {
			continue
		}
		label := func(name string) string {
			i := strings.Index(line, name+`="`)
			if i < 0 {
				return ""
			}
			rest := line[i+len(name)+2:]
			return rest[:strings.IndexByte(rest, '"')]
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		counts[label("probe_type")+"/"+label("result")] += int(v)
	}
	return counts, nil
}

// PodLog is what a container of a pod has logged, over all its restarts,
// from the kubelet's log directory.
func (k *Kubelet) PodLog(namespace, pod, container string) string {
	matches, _ := filepath.Glob(filepath.Join(k.dir, "var-log", "pods", namespace+"_"+pod+"_*", container, "*.log"))
	var b strings.Builder
	for _, m := range matches {
		data, _ := os.ReadFile(m)
		b.Write(data)
	}
	return b.String()
}

// AllPodLogs is every container log of the node, each headed by its path.
func (k *Kubelet) AllPodLogs() string {
	matches, _ := filepath.Glob(filepath.Join(k.dir, "var-log", "pods", "*", "*", "*.log"))
	var b strings.Builder
	for _, m := range matches {
		data, _ := os.ReadFile(m)
		fmt.Fprintf(&b, "--- %s\n%s", strings.TrimPrefix(m, k.dir+"/var-log/pods/"), data)
	}
	return b.String()
}

// cgroupHierarchies are the mounted cgroup hierarchies: one directory for
// cgroup v2, one per controller (and named hierarchy) for v1.
func cgroupHierarchies() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var dirs []string
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		// Skip the symlinks (cpu,cpuacct) to hierarchies listed anyway.
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			dirs = append(dirs, p)
		}
	}
	return dirs
}

func (k *Kubelet) makeCgroupRoot() error {
	for _, h := range cgroupHierarchies() {
		if err := os.MkdirAll(filepath.Join(h, k.cgroupRoot), 0o755); err != nil {
			return fmt.Errorf("make the kubelet's cgroup root: %w", err)
		}
	}
	return nil
}

// removeCgroupRoot removes the node's cgroups, deepest first, killing
// anything left in them.
func (k *Kubelet) removeCgroupRoot() error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, k.cgroupRoot)
		var dirs []string
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 50; try++ {
				if procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs")); len(procs) > 0 {
					for _, f := range strings.Fields(string(procs)) {
						if pid, err := strconv.Atoi(f); err == nil {
							syscall.Kill(pid, syscall.SIGKILL)
						}
					}
				}
				if err = os.Remove(dirs[i]); err == nil || errors.Is(err, fs.ErrNotExist) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}
