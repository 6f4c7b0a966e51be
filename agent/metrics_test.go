package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/orch-dev/orch/internal/nodeapi"
	"github.com/orch-dev/orch/runtime/container"
)

// scrapeNode GETs /metrics from the node API socket of the agent with
// dataDir, waiting for the socket to answer.
func scrapeNode(t *testing.T, dataDir string) string {
	t.Helper()
	client := &http.Client{Transport: nodeapi.UnixTransport(nodeapi.SocketPath(dataDir)), Timeout: 10 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://node/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
				t.Fatalf("GET /metrics: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
			}
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("node API socket never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantMetrics(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %q:\n%s", w, body)
		}
	}
}

// TestNodeAPIMetrics scrapes /metrics on the node API socket: process
// metrics, the runtime's gauges and what the agent recorded.
func TestNodeAPIMetrics(t *testing.T) {
	dataDir := t.TempDir()
	a, err := newAgent(Config{DataDir: dataDir, NodeName: "n1", ServerURL: "https://127.0.0.1:6443",
		HTTPClient: http.DefaultClient, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a.rt, err = container.Open(container.Config{StateDir: filepath.Join(dataDir, "agent", "containers"), Exe: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	a.metrics.ObservePodStart(80 * time.Millisecond)
	a.metrics.ObserveImagePull(time.Second, errors.New("manifest unknown"))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.serveNodeAPI(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	wantMetrics(t, scrapeNode(t, dataDir),
		"\nkubelet_running_pods 0\n",
		`kubelet_running_containers{container_state="running"} 0`,
		"\nkubelet_pod_start_duration_seconds_count 1\n",
		`orch_agent_image_pulls_total{result="failure"} 1`,
		"\nprocess_resident_memory_bytes ",
		"\ngo_goroutines ",
	)
	client := &http.Client{Transport: nodeapi.UnixTransport(nodeapi.SocketPath(dataDir)), Timeout: 10 * time.Second}
	resp, err := client.Post("http://node/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("POST /metrics: %s, want it refused", resp.Status)
	}
}

// TestNodeMetricsE2E runs a real pod (as TestAgentE2E, whose helpers and
// directories it shares) and reads the agent's metrics: the pod counts as
// running and started once; after an agent restart the adopted pod is
// still running but is not counted as a new start.
func TestNodeMetricsE2E(t *testing.T) {
	bin := e2eBinary(t)
	freshAgentE2EDir(t)
	restCfg := startServer(t, bin)
	cs := kubernetes.NewForConfigOrDie(restCfg)
	cfg := localNodeConfig(t, restCfg, e2eDir, e2eCgroupRoot)
	dataDir := cfg.DataDir
	agent := startAgent(t, cfg)

	createPod(t, cs, newPod("sleeper", v1.Container{Name: "sleep", Command: []string{"sleep", "3600"}}))
	waitPod(t, cs, "sleeper", 60*time.Second, "Running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	wantMetrics(t, scrapeNode(t, dataDir),
		"\nkubelet_running_pods 1\n",
		`kubelet_running_containers{container_state="running"} 1`,
		"\nkubelet_pod_start_duration_seconds_count 1\n",
	)

	agent.restart(t)
	wantMetrics(t, scrapeNode(t, dataDir),
		"\nkubelet_running_pods 1\n",
		"\nkubelet_pod_start_duration_seconds_count 0\n",
	)
}
