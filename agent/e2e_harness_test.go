package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orch-dev/orch/internal/cgrouptree"
	"github.com/orch-dev/orch/internal/netnstest"
	"github.com/orch-dev/orch/internal/testimage"
)

// The helpers in this file are the one harness of this package's root
// end-to-end tests (TestAgentE2E, TestJoinE2E, the pod network and
// metrics tests): finding the orch binary, a clean test directory,
// orch processes with their logs, kubectl with a kubeconfig, and the
// cleanup of what real containers leave behind.

// e2eBinary returns the orch binary (ORCH_BIN) for a test that runs real
// containers, and skips the test unless it runs as root with
// busybox-static and the commands in tools installed.
func e2eBinary(t *testing.T, tools ...string) string {
	t.Helper()
	bin := os.Getenv("ORCH_BIN")
	switch {
	case bin == "":
		t.Skip("ORCH_BIN is not set (make test sets it)")
	case os.Geteuid() != 0:
		t.Skip("needs root: real namespaces, cgroups and overlayfs")
	}
	if _, err := os.Stat(testimage.BusyboxPath); err != nil {
		t.Skipf("needs %s (apt-get install -y busybox-static)", testimage.BusyboxPath)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	return bin
}

// freshE2EDir empties dir and the cgroups under cgroupRoot of whatever a
// killed earlier run left, creates dir, and cleans both again when the
// test ends. Register it before anything that must stop before the
// cleanup (t.Cleanup runs last-registered first).
func freshE2EDir(t *testing.T, dir, cgroupRoot string) {
	t.Helper()
	cleanupTestNode(t, dir, cgroupRoot)
	t.Cleanup(func() { cleanupTestNode(t, dir, cgroupRoot) })
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

// e2eProcess is an orch (or other) process started by startE2EProcess.
type e2eProcess struct {
	cmd *exec.Cmd
	log string
	// exited is closed once the process has exited.
	exited chan struct{}
	// ended says the test stopped or killed the process itself; a
	// restarted process continues its log, so the log is shown once.
	ended bool
}

// startE2EProcess starts cmd with its output appended to logPath (a
// restarted process continues the same log) and stops it when the test
// ends, showing the log's end if the test failed.
func startE2EProcess(t *testing.T, cmd *exec.Cmd, logPath string) *e2eProcess {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Killed with the test binary. nsenter execs the program, so the
	// signal reaches orch itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	p := &e2eProcess{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM, 15*time.Second)
		logf.Close()
		if t.Failed() && !p.ended {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s:\n%s", filepath.Base(logPath), lastLines(b, 80))
		}
	})
	return p
}

// signal sends sig and waits up to grace for the process to exit, then
// kills it. It reports whether the process exited within grace.
func (p *e2eProcess) signal(sig syscall.Signal, grace time.Duration) bool {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return true
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return false
	}
}

// stop ends the process as an init system would (SIGTERM); an agent's
// pods keep running.
func (p *e2eProcess) stop(t *testing.T) {
	t.Helper()
	p.ended = true
	if !p.signal(syscall.SIGTERM, 30*time.Second) {
		t.Errorf("%s did not stop within 30s of SIGTERM", p.cmd.Args[0])
	}
}

// kill ends the process with SIGKILL, as a crash or power loss would.
func (p *e2eProcess) kill() {
	p.ended = true
	p.signal(syscall.SIGKILL, time.Minute)
}

// waitFile waits for the process to write path (e.g. the server's
// kubeconfig) and fails the test with its log if it exits first.
func (p *e2eProcess) waitFile(t *testing.T, path string) {
	t.Helper()
	waitFor(t, 60*time.Second, path, func() (bool, error) {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.log)
			return false, fmt.Errorf("%s exited before writing %s:\n%s", p.cmd.Args[0], path, lastLines(b, 80))
		default:
		}
		_, err := os.Stat(path)
		return err == nil, nil
	})
}

// startLocalServer runs `orch server --disable-agent` on a free
// 127.0.0.1 port with its files in dir and returns a client config from
// its admin kubeconfig.
func startLocalServer(t *testing.T, bin, dir string) *rest.Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// None of this machine's /etc/orch may leak in.
	conf := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(conf, []byte("disable-agent: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig.yaml")
	srv := startE2EProcess(t, exec.Command(bin, "server", "--config", conf,
		"--data-dir", filepath.Join(dir, "server"),
		"--bind-address", "127.0.0.1", "--https-listen-port", strconv.Itoa(port),
		"--write-kubeconfig", kubeconfig, "--node-name", e2eNode,
	), filepath.Join(dir, "server.log"))
	srv.waitFile(t, kubeconfig)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// localNodeConfig is the configuration of an in-process agent for node
// e2eNode of the server behind restCfg, with its data in dir/node (the
// test image ready to import) and its pods under cgroupRoot, logging to
// the test's log. Tests set further fields before startAgent.
func localNodeConfig(t *testing.T, restCfg *rest.Config, dir, cgroupRoot string) Config {
	t.Helper()
	httpClient, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "node")
	importBusybox(t, dataDir)
	return Config{
		ServerURL:  restCfg.Host,
		NodeName:   e2eNode,
		DataDir:    dataDir,
		HTTPClient: httpClient,
		NodeIP:     "127.0.0.1",
		CgroupRoot: cgroupRoot,
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// kubectlRunner runs the real kubectl with a kubeconfig and a discovery
// cache of the test's own, in a network namespace (or, with ns nil, in
// the test's).
type kubectlRunner struct {
	ns         *netnstest.NS
	kubeconfig string
	cacheDir   string
}

// command returns the kubectl command with args; it is killed when ctx
// ends.
func (k *kubectlRunner) command(ctx context.Context, args ...string) *exec.Cmd {
	args = append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir}, args...)
	if k.ns == nil {
		return exec.CommandContext(ctx, "kubectl", args...)
	}
	return k.ns.NetCommand(ctx, "kubectl", args...)
}

// run runs kubectl with args and returns its combined output.
func (k *kubectlRunner) run(args ...string) (string, error) { return k.runIn("", args...) }

// runIn runs kubectl with args and stdin, for at most 90 s.
func (k *kubectlRunner) runIn(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := k.command(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// importBusybox puts the test image (e2eImage) where a node with data dir
// dataDir imports images from at start.
func importBusybox(t *testing.T, dataDir string) {
	t.Helper()
	importDir := filepath.Join(dataDir, "agent", "images", "import")
	if err := os.MkdirAll(importDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := testimage.WriteBusybox(filepath.Join(importDir, "busybox.tar"), e2eImage); err != nil {
		t.Fatal(err)
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls ok until it returns true, failing the test on an error or
// after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, ok func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		done, err := ok()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if done {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

// cleanupTestNode kills the processes in the cgroups under cgroupRoot and
// removes dir with everything mounted under it.
func cleanupTestNode(t *testing.T, dir, cgroupRoot string) {
	if err := cgrouptree.Clean(cgroupRoot); err != nil {
		t.Logf("clean cgroup %s: %v", cgroupRoot, err)
	}
	mounts, _ := mountsUnder(dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Logf("remove %s: %v", dir, err)
	}
}

// cgroupDirs returns cgroupRoot's directory in every mounted hierarchy
// where it exists (cgrouptree.Dirs).
func cgroupDirs(t *testing.T, cgroupRoot string) []string {
	t.Helper()
	dirs, err := cgrouptree.Dirs(cgroupRoot)
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}
