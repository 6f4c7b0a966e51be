// Command scalebench measures the control plane at cluster scale with
// simulated nodes (internal/hollow) against `orch server --disable-agent`:
// the time for a 1,000-replica Deployment to be all Running on 100 nodes,
// then the server's RSS and idle CPU with 1,000 nodes and 30,000 pods and
// the scheduler's throughput through the API server at that scale. It
// prints a Markdown section for BENCHMARKS.md. Traffic goes to 127.0.0.1
// only; the simulated nodes' addresses are never dialled.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/internal/bench/measure"
	"github.com/orch-dev/orch/internal/hollow"
)

func main() {
	orch := flag.String("orch", "bin/orch", "orch binary")
	firstNodes := flag.Int("deployment-nodes", 100, "nodes for the single-Deployment run")
	replicas := flag.Int("replicas", 1000, "replicas of that Deployment")
	nodes := flag.Int("nodes", 1000, "nodes for the scale run")
	pods := flag.Int("pods", 30000, "pods for the scale run (Deployments of -replicas each)")
	idle := flag.Duration("idle", 60*time.Second, "idle measurement period at scale")
	out := flag.String("out", "", "write the Markdown section here too")
	schedPods := flag.Int("sched-pods", 5000, "pending pods for the scheduler throughput run at scale (0 skips it)")
	limit := flag.Duration("limit", 40*time.Minute, "wall-clock cap of the whole run; a run cut short still reports what it reached")
	flag.Parse()
	report, err := run(*orch, *firstNodes, *replicas, *nodes, *pods, *schedPods, *idle, *limit)
	if err != nil {
		log.Fatalf("scalebench: %v", err)
	}
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			log.Fatalf("scalebench: %v", err)
		}
	}
}

func run(orch string, firstNodes, replicas, nodes, pods, schedPods int, idle, limit time.Duration) (string, error) {
	dir, err := os.MkdirTemp("", "scalebench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	srv, err := measure.StartServer(orch, dir, "--disable-agent")
	if err != nil {
		return "", err
	}
	defer srv.Stop()
	rest, err := clientcmd.BuildConfigFromFlags("", srv.Kubeconfig)
	if err != nil {
		return "", err
	}
	// The simulated kubelets share one client: no client-side throttling.
	rest.QPS, rest.Burst = 5000, 10000
	cs, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startAll := time.Now()
	hc, err := hollow.Start(ctx, cs, hollow.Options{Nodes: firstNodes, CPU: "32", Memory: "128Gi", Pods: 110})
	if err != nil {
		return "", err
	}
	defer hc.Stop()

	var rows [][2]string
	add := func(k, v string) {
		rows = append(rows, [2]string{k, v})
		log.Printf("%s: %s", k, v) // as it goes: a long run may be cut short
	}

	took, err := deployAndWait(ctx, cs, "burst", replicas)
	if err != nil {
		return "", err
	}
	add(fmt.Sprintf("%d-replica Deployment → all available, %d nodes", replicas, firstNodes),
		fmt.Sprintf("%.1f s (%.0f pods/s end to end)", took.Seconds(), float64(replicas)/took.Seconds()))

	for i := firstNodes; i < nodes; i++ {
		if err := hc.AddNode(ctx, i); err != nil {
			return "", err
		}
	}
	start := time.Now()
	before, _ := measure.ReadProc(srv.Pid())
	deployments := pods/replicas - 1 // "burst" already runs
	for d := 0; d < deployments; d++ {
		if err := createDeployment(ctx, cs, fmt.Sprintf("scale-%d", d), replicas); err != nil {
			return "", err
		}
	}
	var stuck error
	capped, stopCap := context.WithDeadline(ctx, startAll.Add(limit))
	for d := 0; d < deployments && stuck == nil; d++ {
		stuck = waitAvailable(capped, cs, fmt.Sprintf("scale-%d", d), replicas)
	}
	stopCap()
	took = time.Since(start)
	after, _ := measure.ReadProc(srv.Pid())
	if stuck != nil {
		// Measure the server at the scale reached all the same.
		add(fmt.Sprintf("%d more pods → all available, %d nodes", deployments*replicas, nodes), "not reached: "+stuck.Error())
	} else {
		add(fmt.Sprintf("%d more pods → all available, %d nodes", deployments*replicas, nodes),
			fmt.Sprintf("%.1f s (%.0f pods/s end to end)", took.Seconds(), float64(deployments*replicas)/took.Seconds()))
	}

	time.Sleep(10 * time.Second) // let the last status writes settle
	// A run cut short is measured at the scale it reached, and says so.
	reached := availablePods(ctx, cs)
	a, _ := measure.ReadProc(srv.Pid())
	time.Sleep(idle)
	b, _ := measure.ReadProc(srv.Pid())
	add(fmt.Sprintf("server RSS, %d nodes + %d pods available", nodes, reached), measure.MiB(b.RSSBytes))
	add(fmt.Sprintf("server CPU over %s at that scale (leases of %d nodes renewed every 10 s)", idle, nodes),
		fmt.Sprintf("%.1f %% of a core", measure.CPUPercent(a, b)))
	add(fmt.Sprintf("server disk writes over %s", idle), fmt.Sprintf("%d bytes", b.WriteBytes-a.WriteBytes))
	if schedPods > 0 {
		bound, created, took, err := schedulingThroughput(ctx, cs, schedPods)
		what := fmt.Sprintf("scheduler: %d pods created by 32 clients → all bound through the API server, %d nodes (with %d pods running)", schedPods, nodes, reached)
		if err != nil {
			add(what, fmt.Sprintf("not reached: %v (%d bound in %.1f s)", err, bound, took.Seconds()))
		} else {
			add(what, fmt.Sprintf("%.2f s (%.0f pods/s scheduled; the creates alone took %.2f s)", took.Seconds(), float64(bound)/took.Seconds(), created.Seconds()))
		}
	}
	ws := hc.WatchStats()
	add("simulated kubelets' pod watch over the run",
		fmt.Sprintf("%d lists, %d expired (410), %d resumed", ws.Lists, ws.Expired, ws.Rewatches))
	// Per pod, so that runs of different sizes compare; the CPU includes
	// the leases and node status of the nodes meanwhile.
	if created := reached - replicas; created > 0 {
		add("server CPU per pod while scaling (create, schedule, status, controllers)",
			fmt.Sprintf("%.2f ms (%.0f %% of a core for %.1f s)", float64((after.CPU-before.CPU).Microseconds())/1000/float64(created),
				measure.CPUPercent(before, after), took.Seconds()))
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "## Control plane at scale: simulated nodes (issue 5)\n\nMachine: %s. Date: %s.\nCommand: `go run ./internal/bench/scalebench` (`make bench`). The simulated\nkubelets run in the benchmark process and share its 2 cores with the server.\n\n",
		measure.Machine(), time.Now().UTC().Format("2006-01-02"))
	sb.WriteString("| measure | orch | reference |\n|---|---|---|\n")
	refs := []string{"kube-scheduler default ~100–300 pods/s", "", "k0s: 2.3 GB for 100 nodes / 10k pods; target ≤ 1 GB", "", "", "target ≥ 1,000 pods/s (kube-scheduler default ~100–300 pods/s)"}
	for i, r := range rows {
		ref := ""
		if i < len(refs) {
			ref = refs[i]
		}
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", r[0], r[1], ref)
	}
	return sb.String(), nil
}

func deployAndWait(ctx context.Context, cs kubernetes.Interface, name string, replicas int) (time.Duration, error) {
	start := time.Now()
	if err := createDeployment(ctx, cs, name, replicas); err != nil {
		return 0, err
	}
	if err := waitAvailable(ctx, cs, name, replicas); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func createDeployment(ctx context.Context, cs kubernetes.Interface, name string, replicas int) error {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
			},
		},
	}
	_, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create deployment %s: %w", name, err)
	}
	return nil
}

// waitAvailable polls the Deployment's status; 10 minutes is far beyond
// any plausible run and only stops a wedged benchmark.
func waitAvailable(ctx context.Context, cs kubernetes.Interface, name string, replicas int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		d, err := cs.AppsV1().Deployments("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil && d.Status.AvailableReplicas == int32(replicas) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			got := int32(0)
			if d != nil {
				got = d.Status.AvailableReplicas
			}
			return fmt.Errorf("deployment %s: %d of %d available after %s", name, got, replicas,
				time.Since(deadline.Add(-10*time.Minute)).Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// availablePods sums the available replicas of the benchmark's
// Deployments (0 when they cannot be listed).
func availablePods(ctx context.Context, cs kubernetes.Interface) int {
	list, err := cs.AppsV1().Deployments("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	n := 0
	for _, d := range list.Items {
		n += int(d.Status.AvailableReplicas)
	}
	return n
}
