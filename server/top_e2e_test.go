package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKubectlTopE2E runs the real orch server (ORCH_BIN) with its own node
// and a real container burning CPU under a 200m limit, and reads its usage
// with `kubectl top`: the whole path from the container's cgroup through
// the agent's /metrics/resource and the server's scrape to metrics.k8s.io.
func TestKubectlTopE2E(t *testing.T) {
	bin := requireNodeE2E(t, "kubectl")
	data := filepath.Join(logsE2EDir, "data")
	importBusybox(t, data, "busybox:logs")
	kubeconfig := startLogsServer(t, bin, data)
	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(logsE2EDir, "cache")}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := kubectl("delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"); err != nil {
			t.Logf("delete pods: %v\n%s", err, out)
		}
	})
	eventually := func(timeout time.Duration, pattern string, args ...string) string {
		t.Helper()
		re := regexp.MustCompile(pattern)
		var out string
		var err error
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Second) {
			if out, err = kubectl(args...); err == nil && re.MatchString(out) {
				return out
			}
		}
		t.Fatalf("kubectl %s: want %q, last output (err %v):\n%s", strings.Join(args, " "), pattern, err, out)
		return ""
	}
	eventually(90*time.Second, ` Ready `, "get", "nodes")
	manifest := filepath.Join(logsE2EDir, "burn.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: burn}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: loop
    image: busybox:logs
    imagePullPolicy: Never
    command: [sh, -c, "while :; do :; done"]
    resources:
      requests: {cpu: 100m, memory: 16Mi}
      limits: {cpu: 200m, memory: 32Mi}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl("apply", "-f", manifest); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	eventually(90*time.Second, `burn\s+1/1\s+Running`, "get", "pod", "burn")

	// Two scrapes (15 s apart) give a rate; the CFS quota holds it near
	// 200m, and a shared test machine may give it less.
	out := eventually(90*time.Second, `burn\s+\d+m\s+\d+Mi`, "top", "pod", "burn")
	m := regexp.MustCompile(`burn\s+(\d+)m`).FindStringSubmatch(out)
	if cpu, _ := strconv.Atoi(m[1]); cpu < 20 || cpu > 260 {
		t.Errorf("a loop limited to 200m uses %dm:\n%s", cpu, out)
	}
	eventually(30*time.Second, `burn\s+loop\s+\d+m\s+\d+Mi`, "top", "pod", "burn", "--containers")
	out = eventually(30*time.Second, `logs-e2e\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%`, "top", "node")
	t.Logf("kubectl top node:\n%s", out)
}
