package server

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/internal/testimage"
)

const logsE2EDir = "/tmp/orch-logs-e2e"

// TestKubectlLogsE2E runs the real orch server (ORCH_BIN) with its own node
// and real containers, and reads their logs with the real kubectl: the
// whole path from the API server through kubelet.sock to the CRI files.
func TestKubectlLogsE2E(t *testing.T) {
	bin := requireNodeE2E(t, "kubectl")
	data := filepath.Join(logsE2EDir, "data")
	importBusybox(t, data, "busybox:logs")
	kubeconfig := startLogsServer(t, bin, data)
	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(logsE2EDir, "cache")}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := kubectl(args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); !ok(); time.Sleep(300 * time.Millisecond) {
			if time.Now().After(deadline) {
				out, _ := kubectl("get", "pods", "-o", "wide")
				t.Fatalf("timed out waiting for %s\n%s", what, out)
			}
		}
	}
	t.Cleanup(func() {
		// Pods outlive the server: delete them while it still runs.
		if out, err := kubectl("delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"); err != nil {
			t.Logf("delete pods: %v\n%s", err, out)
		}
	})
	eventually("the node", func() bool {
		out, _ := kubectl("get", "nodes")
		return strings.Contains(out, " Ready ")
	})

	// crash prints three lines and exits 1, so it restarts: its previous
	// instance has logs too.
	must("run", "crash", "--image=busybox:logs", "--image-pull-policy=Never", "--",
		// All on stdout: stdout and stderr are separate pipes, so their
		// relative order in the log is not defined (as in Kubernetes).
		"sh", "-c", "echo one; echo two; echo three; exit 1")
	must("run", "tick", "--image=busybox:logs", "--image-pull-policy=Never", "--",
		"sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done")
	eventually("crash to restart", func() bool {
		out, _ := kubectl("get", "pod", "crash", "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
		n, _ := strconv.Atoi(out)
		return n >= 1
	})
	if out := must("logs", "crash", "--previous"); out != "one\ntwo\nthree\n" {
		t.Errorf("logs --previous = %q", out)
	}
	if out := must("logs", "crash", "--previous", "--tail=1"); out != "three\n" {
		t.Errorf("logs --previous --tail=1 = %q", out)
	}
	if out := must("logs", "crash", "--previous", "--limit-bytes=5"); out != "one\nt" {
		t.Errorf("logs --previous --limit-bytes=5 = %q", out)
	}
	out := must("logs", "crash", "--previous", "--timestamps", "--tail=1")
	if ts, msg, _ := strings.Cut(strings.TrimSpace(out), " "); msg != "three" || !strings.HasSuffix(ts, "Z") {
		t.Errorf("logs --timestamps = %q", out)
	} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Errorf("logs --timestamps: %v", err)
	}
	if out, err := kubectl("logs", "crash", "-c", "nope"); err == nil || !strings.Contains(out, "container nope is not valid for pod crash") {
		t.Errorf("logs -c nope = %v %q", err, out)
	}

	eventually("tick to log", func() bool {
		out, _ := kubectl("logs", "tick", "--tail=1")
		return strings.HasPrefix(out, "tick ")
	})
	if out, err := kubectl("logs", "tick", "--previous"); err == nil || !strings.Contains(out, `previous terminated container "tick" in pod "tick" not found`) {
		t.Errorf("logs --previous of a first instance = %v %q", err, out)
	}
	if out := must("logs", "tick", "--since=1h", "--tail=2"); len(strings.Split(strings.TrimSpace(out), "\n")) != 2 {
		t.Errorf("logs --since=1h --tail=2 = %q", out)
	}
	// -f streams lines as the container writes them.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(logsE2EDir, "cache"), "logs", "-f", "--tail=1", "tick")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var seen []int
	for len(seen) < 5 && sc.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "tick "))
		if err != nil {
			t.Fatalf("followed line %q", sc.Text())
		}
		seen = append(seen, n)
	}
	cancel()
	_ = cmd.Wait()
	for i := 1; i < len(seen); i++ {
		if seen[i] != seen[i-1]+1 {
			t.Errorf("followed lines not consecutive: %v", seen)
		}
	}
	if len(seen) < 5 {
		t.Errorf("followed only %v", seen)
	}
}

// requireNodeE2E skips a test that needs the real orch server (ORCH_BIN)
// running real containers, unless root, busybox-static and tools are
// there; it clears what a killed earlier run left in logsE2EDir, which
// these tests share (they run one at a time), and returns the binary.
func requireNodeE2E(t *testing.T, tools ...string) string {
	t.Helper()
	bin := os.Getenv("ORCH_BIN")
	switch {
	case bin == "":
		t.Skip("ORCH_BIN is not set (make test sets it)")
	case os.Geteuid() != 0:
		t.Skip("needs root: real containers")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if _, err := os.Stat(testimage.BusyboxPath); err != nil {
		t.Skip("busybox-static is not installed")
	}
	removeLogsE2EDir(t)
	return bin
}

// importBusybox drops a busybox image named name where the node in data
// imports images from at start.
func importBusybox(t *testing.T, data, name string) {
	t.Helper()
	dir := filepath.Join(data, "agent", "images", "import")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := testimage.WriteBusybox(filepath.Join(dir, "busybox.tar"), name); err != nil {
		t.Fatal(err)
	}
}

// startLogsServer runs `orch server` with its node and returns the path of
// its admin kubeconfig.
func startLogsServer(t *testing.T, bin, data string) string {
	t.Helper()
	conf := filepath.Join(logsE2EDir, "config.yaml")
	if err := os.WriteFile(conf, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(logsE2EDir, "kubeconfig.yaml")
	cmd := exec.Command(bin, "server", "--config", conf, "--data-dir", data,
		"--bind-address", "127.0.0.1", "--https-listen-port", strconv.Itoa(freePort(t)),
		"--write-kubeconfig", kubeconfig, "--node-name", "logs-e2e",
		// The server runs in the test machine's own network namespace:
		// its node must not add a bridge, routes or nftables there.
		"--flannel-backend", "none")
	logf, err := os.Create(filepath.Join(logsE2EDir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	// Registered first, so it runs last: after the pods are deleted.
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("server log:\n%s", b)
		}
		removeLogsE2EDir(t)
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(kubeconfig); err == nil {
			return kubeconfig
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("server exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server not ready within 60s")
		}
	}
}

// removeLogsE2EDir unmounts what the node left under the test dir and
// removes it.
func removeLogsE2EDir(t *testing.T) {
	b, _ := os.ReadFile("/proc/self/mounts")
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], logsE2EDir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	if err := os.RemoveAll(logsE2EDir); err != nil {
		t.Log(fmt.Errorf("remove %s: %w", logsE2EDir, err))
	}
}
