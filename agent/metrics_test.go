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

	"github.com/orch-dev/orch/internal/nodeapi"
	"github.com/orch-dev/orch/runtime/container"
)

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

	client := &http.Client{Transport: nodeapi.UnixTransport(nodeapi.SocketPath(dataDir)), Timeout: 10 * time.Second}
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://node/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
				t.Fatalf("GET /metrics: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
			}
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node API socket never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		"\nkubelet_running_pods 0\n",
		`kubelet_running_containers{container_state="running"} 0`,
		"\nkubelet_pod_start_duration_seconds_count 1\n",
		`orch_agent_image_pulls_total{result="failure"} 1`,
		"\nprocess_resident_memory_bytes ",
		"\ngo_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	resp, err := client.Post("http://node/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("POST /metrics: %s, want it refused", resp.Status)
	}
}
