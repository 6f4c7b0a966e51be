package server

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orch-dev/orch/internal/hollow"
)

// startMetricsCluster is startCluster whose server scrapes the hollow
// nodes' resource metrics every second and syncs autoscalers as often.
func startMetricsCluster(t *testing.T, nodes int) *cluster {
	t.Helper()
	var hc atomic.Pointer[hollow.Cluster]
	c := startCluster(t, nodes, func(cfg *Config) {
		cfg.MetricsResolution = time.Second
		cfg.HPASyncPeriod = time.Second
		cfg.NodeTransport = func(node string) (http.RoundTripper, error) {
			if h := hc.Load(); h != nil {
				return h.Transport(node)
			}
			return nil, fmt.Errorf("node %s is not connected", node)
		}
	})
	hc.Store(c.nodes)
	return c
}

// eventuallyMatch retries kubectl until its output matches every pattern.
func (c *cluster) eventuallyMatch(timeout time.Duration, patterns []string, args ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.try(args...)
		matched := err == nil
		for _, p := range patterns {
			matched = matched && regexp.MustCompile(p).MatchString(out)
		}
		if matched {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("kubectl %s: want %q within %s, last output (err %v):\n%s", strings.Join(args, " "), patterns, timeout, err, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

var errNoKubectlVersion = errors.New("kubectl version not installed")

// tryKubectlVersion runs the bundled kubectl of one minor version (the
// dispatcher installs them beside itself as kubectl.1.NN), with a cache
// of its own.
func (c *cluster) tryKubectlVersion(version string, args ...string) (string, error) {
	path, err := exec.LookPath("kubectl")
	if err != nil {
		return "", errNoKubectlVersion
	}
	if path, err = filepath.EvalSymlinks(path); err != nil {
		return "", errNoKubectlVersion
	}
	bin := filepath.Join(filepath.Dir(path), "kubectl."+version)
	if _, err := os.Stat(bin); err != nil {
		return "", errNoKubectlVersion
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", c.kubeconfig, "--cache-dir", filepath.Join(c.cacheDir, version)}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestKubectlTop(t *testing.T) {
	c := startMetricsCluster(t, 3)
	c.eventually(20*time.Second, []string{"hollow-0", "hollow-1", "hollow-2"}, "get", "nodes")
	c.apply(`apiVersion: apps/v1
kind: Deployment
metadata: {name: busy, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: busy}}
  template:
    metadata:
      labels: {app: busy}
      annotations: {hollow.orch.dev/cpu: 250m, hollow.orch.dev/memory: 100Mi}
    spec:
      containers:
      - {name: app, image: busybox}
      - {name: sidecar, image: busybox}
`)
	c.kubectl("create", "namespace", "other")
	c.kubectl("-n", "other", "run", "lone", "--image=busybox", "--annotations=hollow.orch.dev/cpu=1", "--annotations=hollow.orch.dev/memory=1Gi")
	c.eventually(30*time.Second, []string{"2/2"}, "get", "deployment", "busy")

	// The metrics group is discovered, with both resources.
	c.eventually(10*time.Second, []string{"nodes", "pods", "NodeMetrics", "PodMetrics"}, "api-resources", "--api-group=metrics.k8s.io")

	// Every node: a base of 50m and 256Mi, plus its pods; percentages of
	// the 2 CPUs and 4Gi allocatable.
	out := c.eventuallyMatch(30*time.Second, []string{
		`NAME\s+CPU\(cores\)\s+CPU(\(%\))?\s+MEMORY\(bytes\)\s+MEMORY(\(%\))?`,
		`hollow-0\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%`, `hollow-1\s+\d+m`, `hollow-2\s+\d+m`,
	}, "top", "nodes")
	t.Logf("kubectl top nodes:\n%s", out)

	// The annotations are the pod's usage, shared by its containers.
	c.eventuallyMatch(30*time.Second, []string{`busy-\S+\s+(24\d|25\d)m\s+100Mi`}, "top", "pods")
	out = c.eventuallyMatch(30*time.Second, []string{
		`NAMESPACE\s+NAME\s+CPU\(cores\)\s+MEMORY\(bytes\)`,
		`default\s+busy-\S+\s+(24\d|25\d)m\s+100Mi`, `other\s+lone\s+(99\d|100\d)m\s+1024Mi`,
	}, "top", "pods", "-A")
	t.Logf("kubectl top pods -A:\n%s", out)
	c.eventuallyMatch(30*time.Second, []string{`busy-\S+\s+app\s+12\dm\s+50Mi`, `busy-\S+\s+sidecar\s+12\dm\s+50Mi`},
		"top", "pods", "-l", "app=busy", "--containers")
	if out, err := c.try("top", "pods", "-l", "app=none"); err == nil && !strings.Contains(out, "No resources found") {
		t.Errorf("top pods with a selector matching nothing:\n%s", out)
	}

	// kubectl get shows them as metrics-server's tables.
	c.eventuallyMatch(10*time.Second, []string{`NAME\s+CPU\s+MEMORY\s+WINDOW`, `hollow-0\s+\d+n\s+\d+\S*\s+1\.?\d*s`},
		"get", "nodes.metrics.k8s.io")
	c.eventuallyMatch(10*time.Second, []string{`NAMESPACE\s+NAME\s+CPU\s+MEMORY\s+WINDOW`, `default\s+busy-\S+\s+2[45]\d+n\s+100Mi\s+`},
		"get", "podmetrics", "-A", "-l", "app=busy")

	// Every kubectl the dispatcher may pick reads the same API.
	for _, v := range []string{"1.31", "1.32", "1.33"} {
		out, err := c.tryKubectlVersion(v, "top", "pods", "-A", "--containers")
		if errors.Is(err, errNoKubectlVersion) {
			t.Logf("kubectl %s is not installed", v)
			continue
		}
		if err != nil || !regexp.MustCompile(`default\s+busy-\S+\s+app\s+12\dm\s+50Mi`).MatchString(out) {
			t.Errorf("kubectl %s top pods -A --containers (err %v):\n%s", v, err, out)
		}
		if out, err := c.tryKubectlVersion(v, "top", "nodes"); err != nil || !regexp.MustCompile(`hollow-1\s+\d+m\s+\d+%`).MatchString(out) {
			t.Errorf("kubectl %s top nodes (err %v):\n%s", v, err, out)
		}
	}

	// Usage follows the annotation at run time.
	c.kubectl("-n", "other", "annotate", "pod", "lone", "hollow.orch.dev/cpu=300m", "--overwrite")
	c.eventuallyMatch(30*time.Second, []string{`lone\s+(29\d|30\d)m`}, "-n", "other", "top", "pod", "lone")
	if out, err := c.try("top", "pod", "lone"); err == nil || !strings.Contains(out, `podmetrics.metrics.k8s.io "default/lone" not found`) &&
		!strings.Contains(out, `pods.metrics.k8s.io "default/lone" not found`) {
		t.Errorf("top of a pod in the wrong namespace:\n%s (err %v)", out, err)
	}

	// A node that stops answering disappears from the metrics.
	c.nodes.StopHeartbeats(2)
	c.eventuallyMatch(30*time.Second, []string{`hollow-2\s+<unknown>`}, "top", "nodes")
}

func TestHorizontalPodAutoscaler(t *testing.T) {
	c := startMetricsCluster(t, 3)
	c.eventually(20*time.Second, []string{"hollow-2"}, "get", "nodes")
	c.apply(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {hollow.orch.dev/cpu: 50m}
    spec:
      containers:
      - name: app
        image: busybox
        resources: {requests: {cpu: 200m}}
`)
	c.eventually(30*time.Second, []string{"2/2"}, "get", "deployment", "web")
	c.kubectl("autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=5")

	// 50m of 200m: 25% against a 50% target. Scaling down waits for the
	// default five-minute window.
	c.eventuallyMatch(30*time.Second, []string{`web\s+Deployment/web\s+cpu: 25%/50%\s+1\s+5\s+2`}, "get", "hpa", "web")
	out := c.eventually(10*time.Second, []string{"ScaleDownStabilized", "ValidMetricFound"}, "describe", "hpa", "web")
	if strings.Contains(out, "SuccessfulRescale") {
		t.Fatalf("scaled within the default stabilization window:\n%s", out)
	}
	c.kubectl("patch", "hpa", "web", "--type=merge", "-p", `{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":3}}}}`)

	// Load: 400m of 200m is 200%, four times the target: the maximum.
	c.kubectl("annotate", "pods", "-l", "app=web", "hollow.orch.dev/cpu=400m", "--overwrite")
	c.eventually(60*time.Second, []string{"SuccessfulRescale",
		"New size: 5; reason: cpu resource utilization (percentage of request) above target"}, "describe", "hpa", "web")
	c.eventually(60*time.Second, []string{"5/5"}, "get", "deployment", "web")
	c.eventuallyMatch(30*time.Second, []string{`ScalingLimited\s+True\s+TooManyReplicas`}, "describe", "hpa", "web")

	// The load drops: back to the minimum once the short window passed.
	c.kubectl("annotate", "pods", "-l", "app=web", "hollow.orch.dev/cpu=10m", "--overwrite")
	c.eventually(60*time.Second, []string{"New size: 1; reason: All metrics below target"}, "describe", "hpa", "web")
	c.eventually(60*time.Second, []string{"1/1"}, "get", "deployment", "web")
	out = c.eventuallyMatch(30*time.Second, []string{`web\s+Deployment/web\s+cpu: \d+%/50%\s+1\s+5\s+1`}, "get", "hpa", "web")
	t.Logf("kubectl get hpa:\n%s", out)
	out = c.kubectl("get", "hpa", "web", "-o", "jsonpath={.status.currentReplicas} {.status.desiredReplicas} {.status.lastScaleTime}")
	if !regexp.MustCompile(`^1 1 \d{4}-`).MatchString(out) {
		t.Errorf("status = %q", out)
	}
}
