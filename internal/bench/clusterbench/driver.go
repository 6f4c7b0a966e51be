package main

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/internal/netnstest"
)

// results is everything the report prints.
type results struct {
	c          *cluster
	idle, pods window
	podsUp     time.Duration
	spread     map[string]int
	tunnel     tunnelResults
	heap       string // the Go runtime's memory, from the server's /metrics
	rollup     map[string]map[string]int64
	binaries   [][3]string
}

// runDriver runs inside the server's namespace: it starts the cluster,
// measures, prints the report and stops the cluster.
func runDriver(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &netnstest.Program{}
	defer e.Close()
	res := &results{}
	err := e.Run(func() error {
		c, err := startCluster(ctx, o)
		if c != nil {
			res.c = c
			defer c.stop()
		}
		if err != nil {
			return err
		}
		if err := measureAll(ctx, e, c, res); err != nil {
			return err
		}
		if err := res.print(o); err != nil {
			return err
		}
		return c.holdUp(ctx)
	})
	return err
}

// print writes the report to stdout and to -out.
func (r *results) print(o options) error {
	var report string
	if o.idleOnly {
		report = r.idleSummary()
	} else {
		report = r.markdown(o)
	}
	fmt.Print(report)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(report), 0o644)
	}
	return nil
}

func measureAll(ctx context.Context, e *netnstest.Program, c *cluster, res *results) error {
	say := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "clusterbench: %s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
	say("cluster Ready in %s; idle with no workloads for %s", c.bothReady.Round(time.Millisecond), c.o.window)
	c.agentNS.Nft(e, tunnelTable)
	time.Sleep(c.o.settle)
	var err error
	if res.idle, err = c.measureWindow(c.o.window); err != nil {
		return err
	}
	res.rollup = map[string]map[string]int64{
		"server": smapsRollup(c.server.pid()),
		"agent":  smapsRollup(c.agent.pid()),
	}
	res.heap = c.goMemory(ctx)
	if c.o.idleOnly {
		return nil
	}

	say("starting %d busybox pods", c.o.pods)
	t0 := time.Now()
	if err := c.deploySleep(ctx); err != nil {
		return err
	}
	res.podsUp = time.Since(t0)
	c.recordServerPods(ctx)
	if res.spread, err = c.spread(ctx); err != nil {
		return err
	}
	say("%d pods available in %s (%v); idle for %s", c.o.pods, res.podsUp.Round(time.Millisecond), res.spread, c.o.window)
	time.Sleep(c.o.settle)
	if res.pods, err = c.measureWindow(c.o.window); err != nil {
		return err
	}

	say("API requests through the tunnel vs direct")
	if res.tunnel.api, err = c.probeAPI(ctx); err != nil {
		return err
	}
	say("kubectl exec round trips")
	agentPod, serverPod, err := c.podOnEach(ctx)
	if err != nil {
		return err
	}
	if err := c.execRoundTrips(ctx, agentPod, serverPod, &res.tunnel); err != nil {
		return err
	}
	say("port-forward throughput")
	if err := c.throughput(ctx, &res.tunnel); err != nil {
		return err
	}
	say("link cut and restore")
	if err := c.linkCut(ctx, e, &res.tunnel); err != nil {
		return err
	}
	res.binaries = binarySizes(c.o.orch, c.o.orchArm64)
	return nil
}

// holdUp keeps the cluster running for -hold so that its processes can
// be inspected by hand (smaps, profiles); it names their PIDs first.
func (c *cluster) holdUp(ctx context.Context) error {
	if c.o.hold <= 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "clusterbench: holding the cluster for %s: server pid %d, agent pid %d (agent in netns %s)\n",
		c.o.hold, c.server.pid(), c.agent.pid(), agentNS)
	select {
	case <-ctx.Done():
	case <-time.After(c.o.hold):
	}
	return nil
}

// deploySleep creates the Deployment "sleep" and waits for all its pods
// to be available.
func (c *cluster) deploySleep(ctx context.Context) error {
	labels := map[string]string{"app": "sleep"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "sleep", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(c.o.pods)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To(int64(1)),
					Containers: []corev1.Container{{
						Name: "sleep", Image: benchImage, Command: []string{"sleep", "1000000"},
					}},
				},
			},
		},
	}
	if _, err := c.cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Deployment sleep: %w", err)
	}
	return poll(ctx, 5*time.Minute, 100*time.Millisecond, fmt.Sprintf("%d pods of Deployment sleep available", c.o.pods), func() (bool, error) {
		if err := errAlive(c); err != nil {
			return false, err
		}
		d, err := c.cs.AppsV1().Deployments("default").Get(ctx, "sleep", metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas == int32(c.o.pods), nil
	})
}

// spread counts the Deployment's pods per node.
func (c *cluster) spread(ctx context.Context) (map[string]int, error) {
	pods, err := c.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=sleep"})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range pods.Items {
		out[p.Spec.NodeName]++
	}
	return out, nil
}

// podOnEach names a running pod of the Deployment on each node.
func (c *cluster) podOnEach(ctx context.Context) (onAgent, onServer string, err error) {
	pods, err := c.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=sleep"})
	if err != nil {
		return "", "", err
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		switch p.Spec.NodeName {
		case agentNode:
			onAgent = p.Name
		case serverNode:
			onServer = p.Name
		}
	}
	if onAgent == "" || onServer == "" {
		return "", "", fmt.Errorf("need a running pod on each node for the exec comparison; spread: agent %q, server %q", onAgent, onServer)
	}
	return onAgent, onServer, nil
}

// goMemory reads the Go runtime's view of the server's memory from its
// /metrics. The agent's /metrics is served only inside the tunnel (the
// server has no nodes/proxy), so it is not read.
func (c *cluster) goMemory(ctx context.Context) string {
	b, err := c.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return fmt.Sprintf("(/metrics: %v)", err)
	}
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, " ")
		var f float64
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if _, err := fmt.Sscan(value, &f); err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			parts = append(parts, fmt.Sprintf("%.0f goroutines", f))
		case "go_memstats_heap_alloc_bytes":
			parts = append(parts, "heap objects "+mib(int64(f)))
		case "go_memstats_sys_bytes":
			parts = append(parts, "runtime total "+mib(int64(f)))
		}
	}
	return strings.Join(parts, ", ")
}

// binarySizes lists each binary's size and its gzip -9 size (k3s
// publishes its compressed download size).
func binarySizes(paths ...string) [][3]string {
	var out [][3]string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			out = append(out, [3]string{p, "not built", ""})
			continue
		}
		out = append(out, [3]string{p, fmt.Sprintf("%.1f MiB (%d bytes)", float64(fi.Size())/(1<<20), fi.Size()), gzipSize(p)})
	}
	return out
}

func gzipSize(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	var n countWriter
	zw, _ := gzip.NewWriterLevel(&n, gzip.BestCompression)
	if _, err := io.Copy(zw, f); err != nil {
		return "?"
	}
	if err := zw.Close(); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

type countWriter int64

func (w *countWriter) Write(p []byte) (int, error) { *w += countWriter(len(p)); return len(p), nil }

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
