// Command podbench measures how fast orch starts pods and containers,
// side by side with Debian's podman and crun in the same run on the same
// machine (issue 6's benchmarks): pod create → Running and → Ready for one
// pod and for 30 at once against `orch server` with its built-in agent,
// `podman run` of the same busybox image, a container started by orch's
// runtime (runtime/container, libcontainer) against `crun run` of the same
// root filesystem, and the server+agent process' RSS idle and with 30
// pods. It needs root, prints a Markdown section and never fails on
// timing. Benchmarks only: nothing in the orch binary imports it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orch-dev/orch/internal/bench/measure"
	"github.com/orch-dev/orch/internal/cgrouptree"
	"github.com/orch-dev/orch/internal/testimage"
	"github.com/orch-dev/orch/runtime/container"
	"github.com/orch-dev/orch/runtime/image"
)

const (
	imageTag = "busybox:bench"
	// podman names a loaded docker-save image without a registry
	// "localhost/NAME:TAG".
	podmanImage = "localhost/busybox:bench"
	cgroupRoot  = "/orch-podbench"
	podLabel    = "podbench"
)

func main() {
	orch := flag.String("orch", "bin/orch", "orch binary")
	dir := flag.String("dir", "/tmp/orch-podbench", "scratch directory (emptied first)")
	singles := flag.Int("singles", 10, "pods (and podman containers) started one at a time")
	batch := flag.Int("batch", 30, "pods (and podman containers) started at once")
	rounds := flag.Int("rounds", 2, "rounds of the batch")
	containers := flag.Int("containers", 30, "containers for runtime/container vs crun run")
	flag.Parse()
	if err := run(*orch, *dir, *singles, *batch, *rounds, *containers); err != nil {
		fmt.Fprintln(os.Stderr, "podbench:", err)
		os.Exit(1)
	}
}

func run(orch, dir string, singles, batch, rounds, containers int) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (containers, cgroups, mounts)")
	}
	orch, err := filepath.Abs(orch)
	if err != nil {
		return err
	}
	if err := ensureTools(); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tarball := filepath.Join(dir, "busybox.tar")
	if err := testimage.WriteBusybox(tarball, imageTag); err != nil {
		return err
	}
	load0 := measure.LoadAvg()
	fmt.Printf("### Pods: orch agent vs podman/crun (issue 6)\n\n%s; %s; load average at start %s\n\n", time.Now().UTC().Format("2006-01-02 15:04Z"), measure.Machine(), load0)

	orchRes, err := benchOrch(orch, dir, tarball, singles, batch, rounds)
	if err != nil {
		return fmt.Errorf("orch: %w", err)
	}
	rt, err := benchRuntime(orch, dir, tarball, containers)
	if err != nil {
		return fmt.Errorf("runtime/container vs crun: %w", err)
	}
	podmanRes, err := benchPodman(dir, tarball, rt.peer, singles, batch, rounds)
	if err != nil {
		return fmt.Errorf("podman: %w", err)
	}
	report(orchRes, podmanRes, rt, batch, load0)
	return nil
}

// ensureTools installs Debian's podman, crun and runc when missing: they
// are the peers of this benchmark only, so `make deps` does not carry
// them. runc stands in for crun where crun cannot run (crun 1.8 refuses
// cgroup hybrid mode with controllers on the v2 hierarchy).
func ensureTools() error {
	_, e1 := exec.LookPath("podman")
	_, e2 := exec.LookPath("crun")
	_, e3 := exec.LookPath("runc")
	if e1 == nil && e2 == nil && e3 == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "podbench: installing Debian's podman, crun and runc, the peers of this benchmark (apt-get install -y podman crun runc)")
	cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "podman", "crun", "runc")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("install podman and crun: %w\n%s", err, out)
	}
	return nil
}

// startLatencies are one engine's pod or container start times.
type startLatencies struct {
	singleRunning, singleReady measure.Latencies
	batchRunning, batchReady   measure.Latencies
	batchWall                  []time.Duration // from the first create to the last Ready
	rssIdle, rssBusy           int64           // the engine's long-lived process (orch server)
	helpersBusy                int64           // per-pod helper processes with the batch running
	helpersPerPod              int
	// CPU from the creates to the last pod Running and Ready (orch only).
	cpuSingle, cpuBatch cpuSample
}

// ---- orch ----

func benchOrch(orch, dir, tarball string, singles, batch, rounds int) (*startLatencies, error) {
	sdir := filepath.Join(dir, "orch")
	importDir := filepath.Join(sdir, "data", "agent", "images", "import")
	if err := os.MkdirAll(importDir, 0o700); err != nil {
		return nil, err
	}
	if err := measure.CopyFile(tarball, filepath.Join(importDir, "busybox.tar"), 0o644); err != nil {
		return nil, err
	}
	// The server runs in this machine's network namespace: its node adds
	// no bridge, routes or nftables (pods get loopback only, as podman's
	// --network none below).
	srv, err := measure.StartServer(orch, sdir, "--node-name", "podbench", "--flannel-backend", "none", "--cgroup-root", cgroupRoot)
	if err != nil {
		return nil, err
	}
	defer cleanupCgroups()
	defer srv.Stop()
	meter, err := newCPUMeter(srv.Pid())
	if err != nil {
		return nil, err
	}
	defer meter.close()
	cfg, err := clientcmd.BuildConfigFromFlags("", srv.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := waitUntil(60*time.Second, "node Ready and default service account", func() bool {
		n, err := cs.CoreV1().Nodes().Get(ctx, "podbench", metav1.GetOptions{})
		if err != nil {
			return false
		}
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return len(n.Status.Images) > 0
			}
		}
		return false
	}); err != nil {
		return nil, err
	}
	res := &startLatencies{helpersPerPod: 2}
	w := newPodWatch(ctx, cs)
	defer w.stop()
	// Deleted pods leave the API at once (grace 0); the node stops them
	// right after. Wait for that, so that each round starts from an empty
	// node and the server is stopped with none left running.
	deleteAll := func() error {
		if err := w.deleteAll(ctx, cs); err != nil {
			return err
		}
		return waitUntil(2*time.Minute, "pods' processes gone", func() bool { return helperCount(orch, srv.Pid()) == 0 })
	}
	// One pod first, not measured: first use of the image and the cgroups.
	if _, err := w.startPods(ctx, cs, "warm", 1); err != nil {
		return nil, err
	}
	if err := deleteAll(); err != nil {
		return nil, err
	}
	time.Sleep(5 * time.Second)
	if p, err := measure.ReadProc(srv.Pid()); err == nil {
		res.rssIdle = p.RSSBytes
	}
	// measured adds the CPU that start cost to into.
	measured := func(into *cpuSample, n int, start func() (started, error)) (started, error) {
		s0, p0 := meter.read()
		st, err := start()
		s1, p1 := meter.read()
		into.server += s1 - s0
		into.pods += p1 - p0
		into.n += n
		return st, err
	}
	for i := 0; i < singles; i++ {
		st, err := measured(&res.cpuSingle, 1, func() (started, error) {
			return w.startPods(ctx, cs, fmt.Sprintf("single%d", i), 1)
		})
		if err != nil {
			return nil, err
		}
		res.singleRunning = append(res.singleRunning, st.running...)
		res.singleReady = append(res.singleReady, st.ready...)
		if err := deleteAll(); err != nil {
			return nil, err
		}
	}
	for r := 0; r < rounds; r++ {
		st, err := measured(&res.cpuBatch, batch, func() (started, error) {
			return w.startPods(ctx, cs, fmt.Sprintf("batch%d-", r), batch)
		})
		if err != nil {
			return nil, err
		}
		res.batchRunning = append(res.batchRunning, st.running...)
		res.batchReady = append(res.batchReady, st.ready...)
		res.batchWall = append(res.batchWall, st.wall)
		if r == rounds-1 {
			time.Sleep(3 * time.Second)
			if p, err := measure.ReadProc(srv.Pid()); err == nil {
				res.rssBusy = p.RSSBytes
			}
			res.helpersBusy = helperRSS(orch, srv.Pid())
		}
		if err := deleteAll(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// podWatch follows the benchmark's pods and notes when each was first
// seen Running and Ready.
type podWatch struct {
	w       watch.Interface
	mu      sync.Mutex
	running map[string]time.Time
	ready   map[string]time.Time
	gone    map[string]bool
	changed chan struct{}
}

func newPodWatch(ctx context.Context, cs kubernetes.Interface) *podWatch {
	pw := &podWatch{running: map[string]time.Time{}, ready: map[string]time.Time{}, gone: map[string]bool{}, changed: make(chan struct{}, 1)}
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + podLabel})
	if err != nil {
		panic(err)
	}
	pw.w = w
	go func() {
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			now := time.Now()
			pw.mu.Lock()
			if ev.Type == watch.Deleted {
				pw.gone[pod.Name] = true
			} else {
				if pod.Status.Phase == corev1.PodRunning && pw.running[pod.Name].IsZero() {
					pw.running[pod.Name] = now
				}
				for _, c := range pod.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && pw.ready[pod.Name].IsZero() {
						pw.ready[pod.Name] = now
					}
				}
			}
			pw.mu.Unlock()
			select {
			case pw.changed <- struct{}{}:
			default:
			}
		}
	}()
	return pw
}

func (pw *podWatch) stop() { pw.w.Stop() }

type started struct {
	running, ready measure.Latencies
	wall           time.Duration
}

// startPods creates n pods at once and waits until all are Ready.
func (pw *podWatch) startPods(ctx context.Context, cs kubernetes.Interface, prefix string, n int) (started, error) {
	created := make([]time.Time, n)
	names := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := 0; i < n; i++ {
		names[i] = fmt.Sprintf("%s%d", prefix, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			zero := int64(0)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: names[i], Labels: map[string]string{"app": podLabel}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &zero,
					Containers: []corev1.Container{{
						Name: "c", Image: imageTag, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"sleep", "3600"},
					}},
				},
			}
			created[i] = time.Now()
			if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return started{}, err
	}
	var out started
	err := pw.waitFor(2*time.Minute, func() bool {
		for _, name := range names {
			if pw.ready[name].IsZero() || pw.running[name].IsZero() {
				return false
			}
		}
		return true
	})
	if err != nil {
		return out, fmt.Errorf("%d pods %s*: %w", n, prefix, err)
	}
	pw.mu.Lock()
	last := begin
	for i, name := range names {
		out.running = append(out.running, pw.running[name].Sub(created[i]))
		out.ready = append(out.ready, pw.ready[name].Sub(created[i]))
		if pw.ready[name].After(last) {
			last = pw.ready[name]
		}
	}
	pw.mu.Unlock()
	out.wall = last.Sub(begin)
	return out, nil
}

// deleteAll deletes the benchmark's pods and waits until they are gone
// from the API (the agent deletes them once their containers stopped).
func (pw *podWatch) deleteAll(ctx context.Context, cs kubernetes.Interface) error {
	list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + podLabel})
	if err != nil {
		return err
	}
	zero := int64(0)
	for _, p := range list.Items {
		if err := cs.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return pw.waitFor(2*time.Minute, func() bool {
		for _, p := range list.Items {
			if !pw.gone[p.Name] {
				return false
			}
		}
		return true
	})
}

// waitFor waits until ok (called under pw.mu) holds.
func (pw *podWatch) waitFor(timeout time.Duration, ok func() bool) error {
	deadline := time.After(timeout)
	for {
		pw.mu.Lock()
		done := ok()
		pw.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-pw.changed:
		case <-time.After(time.Second):
		case <-deadline:
			return fmt.Errorf("not done within %s", timeout)
		}
	}
}

// helperPids lists orch's per-pod processes, other than the server: the
// pause processes (the orch binary re-executed as `orch pause`) and the
// container shims (`container-shim STATEDIR`, run from orch-helper, the
// shim-only binary orch writes to its state dir, or from orch itself).
func helperPids(orch string, server int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == server {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		switch {
		case exe == orch:
			out = append(out, pid)
		case len(args) >= 3 && args[1] == "container-shim" && strings.HasPrefix(filepath.Base(exe), "orch-helper"):
			out = append(out, pid)
		}
	}
	return out
}

func helperCount(orch string, server int) int { return len(helperPids(orch, server)) }

// helperRSS sums the proportional set size (PSS) of orch's per-pod
// processes: their RSS counts the shared orch binary once per process.
func helperRSS(orch string, server int) int64 {
	var total int64
	for _, pid := range helperPids(orch, server) {
		total += pss(pid)
	}
	return total
}

// pss is a process' proportional set size, from smaps_rollup.
func pss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(v)
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// ---- podman ----

func benchPodman(dir, tarball, ociRuntime string, singles, batch, rounds int) (*startLatencies, error) {
	root := filepath.Join(dir, "podman")
	// Storage of its own, cgroupfs (no systemd here), crun (or runc), no
	// network.
	base := []string{"--root", filepath.Join(root, "root"), "--runroot", filepath.Join(root, "run"),
		"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", ociRuntime}
	podman := func(args ...string) (string, error) {
		out, err := exec.Command("podman", append(append([]string{}, base...), args...)...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	defer func() {
		_, _ = podman("rm", "-a", "-f", "-t", "0")
		_, _ = podman("system", "reset", "--force")
		// podman's overlay driver bind mounts its directory on itself.
		_ = exec.Command("umount", filepath.Join(root, "root", "overlay")).Run()
	}()
	if _, err := podman("load", "-i", tarball); err != nil {
		return nil, err
	}
	runOne := func(name string) (time.Duration, error) {
		start := time.Now()
		// --pull never: the image is loaded; never ask a registry.
		// podman's default open files and processes limits are above this
		// machine's hard limits (setrlimit denied): ask for less.
		_, err := podman("run", "-d", "--pull", "never", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
			"--name", name, podmanImage, "sleep", "3600")
		return time.Since(start), err
	}
	rmAll := func() error { _, err := podman("rm", "-a", "-f", "-t", "0"); return err }
	if _, err := runOne("warm"); err != nil {
		return nil, err
	}
	if err := rmAll(); err != nil {
		return nil, err
	}
	res := &startLatencies{helpersPerPod: 1}
	for i := 0; i < singles; i++ {
		d, err := runOne(fmt.Sprintf("single%d", i))
		if err != nil {
			return nil, err
		}
		// `podman run -d` returns once the container runs: Running and
		// Ready are the same moment for podman.
		res.singleRunning = append(res.singleRunning, d)
		res.singleReady = append(res.singleReady, d)
		if err := rmAll(); err != nil {
			return nil, err
		}
	}
	for r := 0; r < rounds; r++ {
		lat := make([]time.Duration, batch)
		errs := make([]error, batch)
		var wg sync.WaitGroup
		begin := time.Now()
		for i := 0; i < batch; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lat[i], errs[i] = runOne(fmt.Sprintf("batch%d-%d", r, i))
			}()
		}
		wg.Wait()
		res.batchWall = append(res.batchWall, time.Since(begin))
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		res.batchRunning = append(res.batchRunning, lat...)
		res.batchReady = append(res.batchReady, lat...)
		if r == rounds-1 {
			res.helpersBusy = processRSS("conmon")
		}
		if err := rmAll(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// processRSS sums the PSS of processes whose command name is comm.
func processRSS(comm string) int64 {
	var total int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(b)) != comm {
			continue
		}
		total += pss(pid)
	}
	return total
}

// ---- runtime/container vs crun ----

type runtimeResults struct {
	sandbox, app, pod measure.Latencies // orch: pause, app container, both
	crun              measure.Latencies // crun (or runc) run -d
	peer              string            // "crun", or "runc" where crun cannot run
	crunErr           string            // why crun could not
}

func benchRuntime(orch, dir, tarball string, n int) (res *runtimeResults, err error) {
	res = &runtimeResults{peer: "crun"}
	ctx := context.Background()
	store, err := image.Open(image.Options{Root: filepath.Join(dir, "images")})
	if err != nil {
		return nil, err
	}
	if _, err := store.ImportFile(ctx, tarball); err != nil {
		return nil, err
	}
	lower, err := store.LowerDirs(imageTag)
	if err != nil {
		return nil, err
	}
	rt, err := container.Open(container.Config{StateDir: filepath.Join(dir, "runtime"), CgroupRoot: cgroupRoot, Exe: orch,
		Logger: nil})
	if err != nil {
		return nil, err
	}
	defer cleanupCgroups()
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		return nil, err
	}
	for i := -1; i < n; i++ { // i == -1 warms up
		uid := fmt.Sprintf("podbench-%d", i+1)
		t0 := time.Now()
		sb, err := rt.RunSandbox(ctx, container.SandboxConfig{PodUID: uid, Hostname: "bench", QOSClass: "BestEffort"})
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		c, err := rt.StartContainer(ctx, container.ContainerConfig{SandboxID: sb.ID, Name: "c", Lower: lower,
			Args: []string{"sleep", "3600"}, LogPath: filepath.Join(logs, uid+".log")})
		if err != nil {
			return nil, err
		}
		t2 := time.Now()
		if i >= 0 {
			res.sandbox = append(res.sandbox, t1.Sub(t0))
			res.app = append(res.app, t2.Sub(t1))
			res.pod = append(res.pod, t2.Sub(t0))
		}
		_ = rt.StopContainer(ctx, c.ID, 0)
		_ = rt.RemoveContainer(ctx, c.ID)
		_ = rt.StopSandbox(ctx, sb.ID)
		_ = rt.RemoveSandbox(ctx, sb.ID)
	}

	// crun: the same root filesystem (read-only, without an overlay mount,
	// which orch's start includes), crun's default namespaces.
	bundle := filepath.Join(dir, "bundle")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return nil, err
	}
	if out, err := exec.Command("crun", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("crun spec: %w: %s", err, out)
	}
	if err := patchSpec(filepath.Join(bundle, "config.json"), lower[len(lower)-1]); err != nil {
		return nil, err
	}
	crun := func(args ...string) error {
		cmd := exec.Command(res.peer, append([]string{"--root", filepath.Join(dir, res.peer)}, args...)...)
		// A file, not a pipe: a detached container keeps its runtime's
		// stdio, and a pipe would stay open for its whole life.
		out, err := os.CreateTemp(dir, "oci-output")
		if err != nil {
			return err
		}
		defer os.Remove(out.Name())
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			b, _ := os.ReadFile(out.Name())
			return fmt.Errorf("%s %s: %w: %s", res.peer, strings.Join(args, " "), err, b)
		}
		return nil
	}
	if err := crun("run", "-d", "--bundle", bundle, "podbench-probe"); err != nil {
		res.crunErr = err.Error()
		fmt.Fprintf(os.Stderr, "podbench: crun cannot run containers here (%v); runc stands in for it\n", err)
		res.peer = "runc"
	} else {
		_ = crun("kill", "podbench-probe", "KILL")
		_ = crun("delete", "-f", "podbench-probe")
	}
	for i := -1; i < n; i++ {
		id := fmt.Sprintf("podbench-%s-%d", res.peer, i+1)
		start := time.Now()
		if err := crun("run", "-d", "--bundle", bundle, id); err != nil {
			return nil, err
		}
		if i >= 0 {
			res.crun = append(res.crun, time.Since(start))
		}
		_ = crun("kill", id, "KILL")
		_ = crun("delete", "-f", id)
	}
	return res, nil
}

// patchSpec makes crun's default spec run `sleep 3600` detached on
// rootfs, read-only.
func patchSpec(path, rootfs string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sleep", "3600"}
	proc["env"] = []string{"PATH=/bin"}
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	b, err = json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// cleanupCgroups kills what is left in the benchmark's cgroups and
// removes them in every hierarchy.
func cleanupCgroups() {
	if err := cgrouptree.Clean(cgroupRoot); err != nil {
		fmt.Fprintln(os.Stderr, "podbench:", err)
	}
}

// ---- report ----

func report(o, p *startLatencies, rt *runtimeResults, batch int, load0 string) {
	row := func(what string, a, b measure.Latencies) {
		fmt.Printf("| %s | %s / %s | %s / %s | %.2f× |\n", what, measure.Ms(a.Percentile(50)), measure.Ms(a.Percentile(99)),
			measure.Ms(b.Percentile(50)), measure.Ms(b.Percentile(99)), ratio(a.Percentile(50), b.Percentile(50)))
	}
	fmt.Printf("| start latency (p50 / p99) | orch (server + built-in agent) | podman run -d (%s) | orch / podman (p50) |\n", rt.peer)
	fmt.Println("|---|---|---|---|")
	row("1 pod: create → Running", o.singleRunning, p.singleRunning)
	row("1 pod: create → Ready", o.singleReady, p.singleReady)
	row(fmt.Sprintf("%d pods at once: create → Running", batch), o.batchRunning, p.batchRunning)
	row(fmt.Sprintf("%d pods at once: create → Ready", batch), o.batchReady, p.batchReady)
	fmt.Printf("| %d pods at once: first create → last Ready (wall, per round) | %s | %s | |\n", batch, durs(o.batchWall), durs(p.batchWall))
	fmt.Println()
	fmt.Println("| container start (p50 / p99) | time |")
	fmt.Println("|---|---|")
	for _, r := range []struct {
		what string
		l    measure.Latencies
	}{
		{"orch runtime/container: sandbox (pause process, own net/ipc/uts namespaces)", rt.sandbox},
		{"orch runtime/container: app container in it (shim, libcontainer init, overlayfs root)", rt.app},
		{"orch runtime/container: both", rt.pod},
		{rt.peer + " run -d (own namespaces, read-only root, no overlay mount)", rt.crun},
	} {
		fmt.Printf("| %s | %s / %s |\n", r.what, measure.Ms(r.l.Percentile(50)), measure.Ms(r.l.Percentile(99)))
	}
	fmt.Println()
	fmt.Printf("orch server process (API server, controllers and built-in agent in one process): RSS %s idle, %s with %d pods running; "+
		"per-pod helpers (pause: orch re-executed; container shims: orch-helper) %s PSS in all for %d pods; podman's conmon processes %s PSS for %d containers.\n\n",
		measure.MiB(o.rssIdle), measure.MiB(o.rssBusy), batch, measure.MiB(o.helpersBusy), batch, measure.MiB(p.helpersBusy), batch)
	cpuRow := func(what string, s cpuSample) {
		srv, pods := s.perPod()
		fmt.Printf("%s: %s (server cgroup: server, pause, shims, libcontainer init until it joins the container cgroup: %s; pod cgroups: %s)", what, measure.Ms(srv+pods), measure.Ms(srv), measure.Ms(pods))
	}
	fmt.Print("orch CPU per pod start, from the creates to the last pod Ready, as cgroup CPU accounting charged it: ")
	cpuRow("one at a time", o.cpuSingle)
	fmt.Print("; ")
	cpuRow(fmt.Sprintf("%d at once", batch), o.cpuBatch)
	fmt.Print(".\n\n")
	if rt.crunErr != "" {
		fmt.Printf("crun could not run a container on this machine, so runc (Debian's) stands in for it, for podman too: %s\n\n", strings.TrimSpace(rt.crunErr))
	}
	fmt.Printf("Load average at start %s, at end %s (the machine is shared; absolute times vary with it, the side-by-side ratios less).\n", load0, measure.LoadAvg())
	fmt.Printf("Targets: pod create → Running p99 ≤ 0.3 s with %d at once: %s (%s); at least as fast as podman per container (1 pod, p50): %s.\n",
		batch, met(o.batchRunning.Percentile(99) <= 300*time.Millisecond), measure.Ms(o.batchRunning.Percentile(99)),
		met(o.singleRunning.Percentile(50) <= p.singleRunning.Percentile(50)))
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func durs(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, measure.Ms(d))
	}
	return strings.Join(s, ", ")
}

func waitUntil(timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
