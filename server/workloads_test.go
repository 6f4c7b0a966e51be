package server

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orch-dev/orch/internal/hollow"
)

// cluster is a running `orch server` (control plane only) with simulated
// nodes, driven by the real kubectl.
type cluster struct {
	t          *testing.T
	kubeconfig string
	cacheDir   string
	cs         kubernetes.Interface
	nodes      *hollow.Cluster
}

func startCluster(t *testing.T, nodes int) *cluster {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed")
	}
	cfg := testConfig(t, t.TempDir())
	cfg.Logger = quietLogger()
	startRun(t, cfg)
	rest, err := clientcmd.BuildConfigFromFlags("", cfg.WriteKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rest.QPS, rest.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(rest)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hc, err := hollow.Start(ctx, cs, hollow.Options{Nodes: nodes, CPU: "2", Memory: "4Gi",
		Labels: func(i int) map[string]string { return map[string]string{"tier": []string{"a", "b", "c"}[i%3]} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Stop)
	return &cluster{t: t, kubeconfig: cfg.WriteKubeconfig, cacheDir: t.TempDir(), cs: cs, nodes: hc}
}

// kubectl runs kubectl and returns its output; a failure fails the test.
func (c *cluster) kubectl(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) try(args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", c.kubeconfig, "--cache-dir", c.cacheDir}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// eventually retries kubectl until its output contains every want.
func (c *cluster) eventually(timeout time.Duration, want []string, args ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.try(args...)
		if err == nil && containsAll(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("kubectl %s: want %q within %s, last output (err %v):\n%s", strings.Join(args, " "), want, timeout, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

func (c *cluster) apply(manifest string) string {
	c.t.Helper()
	path := filepath.Join(c.t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return c.kubectl("apply", "-f", path)
}

func TestSchedulingOnHollowNodes(t *testing.T) {
	c := startCluster(t, 3)
	c.eventually(20*time.Second, []string{"hollow-0", "hollow-1", "hollow-2", "Ready"}, "get", "nodes")

	c.kubectl("run", "web", "--image=busybox", "--restart=Never")
	out := c.eventually(20*time.Second, []string{"Running", "1/1"}, "get", "pod", "web", "-o", "wide")
	if !strings.Contains(out, "hollow-") {
		t.Fatalf("pod not placed on a node:\n%s", out)
	}
	c.eventually(10*time.Second, []string{"Scheduled", "Successfully assigned default/web to hollow-"}, "get", "events", "--field-selector", "involvedObject.name=web")

	// A selector no node matches: the pod stays Pending with Kubernetes'
	// exact explanation.
	c.apply(`apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  nodeSelector: {tier: z}
  containers: [{name: c, image: busybox}]
`)
	c.eventually(20*time.Second, []string{"FailedScheduling",
		"0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."},
		"describe", "pod", "picky")
	c.eventually(5*time.Second, []string{"Pending"}, "get", "pod", "picky")

	// Cordon every node but one: new pods land on the one left.
	c.kubectl("cordon", "hollow-0")
	c.kubectl("cordon", "hollow-1")
	c.eventually(5*time.Second, []string{"SchedulingDisabled"}, "get", "node", "hollow-0")
	c.kubectl("run", "late", "--image=busybox", "--restart=Never")
	c.eventually(20*time.Second, []string{"Running", "hollow-2"}, "get", "pod", "late", "-o", "wide")
	c.kubectl("uncordon", "hollow-0", "hollow-1")

	// Labelling a node makes the picky pod schedulable; it is retried.
	c.kubectl("label", "node", "hollow-1", "tier=z", "--overwrite")
	c.eventually(30*time.Second, []string{"Running", "hollow-1"}, "get", "pod", "picky", "-o", "wide")
}

func TestNamespaceDeletionRemovesContents(t *testing.T) {
	c := startCluster(t, 1)
	c.kubectl("create", "namespace", "doomed")
	c.kubectl("-n", "doomed", "create", "configmap", "a", "--from-literal=k=v")
	c.kubectl("-n", "doomed", "create", "secret", "generic", "b", "--from-literal=k=v")
	c.kubectl("-n", "doomed", "run", "p", "--image=busybox", "--restart=Never")
	c.eventually(20*time.Second, []string{"Running"}, "-n", "doomed", "get", "pod", "p")
	c.kubectl("delete", "namespace", "doomed", "--wait=true", "--timeout=60s")
	if out, err := c.try("get", "namespace", "doomed"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("namespace still there after delete --wait:\n%s", out)
	}
	if out, _ := c.try("-n", "doomed", "get", "configmaps,secrets,pods", "-o", "name"); strings.Contains(out, "/") {
		t.Fatalf("contents left behind:\n%s", out)
	}
	// The name can be used again.
	c.kubectl("create", "namespace", "doomed")
}

// quietLogger keeps the cluster's logs out of the test output unless they
// are warnings.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
