package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/internal/netnstest"
)

const (
	joinE2EDir        = "/tmp/orch-join-e2e"
	joinE2ECgroupRoot = "/orch-join-e2e"
	joinE2ENode       = "remote-1"
	joinE2EPort       = "6443"
)

var (
	joinE2EServerIP = netip.MustParsePrefix("198.18.10.1/24")
	joinE2EAgentIP  = netip.MustParsePrefix("198.18.10.2/24")
)

// TestJoinE2E runs the real orch server (ORCH_BIN, no node of its own) in
// one network namespace and `orch agent --join` in another, on a switch of
// their own. The agent's namespace refuses every connection the server
// might open, so everything (joining, the node's API traffic, kubectl logs
// of its pod) has to ride the one connection the agent opens.
func TestJoinE2E(t *testing.T) {
	bin := os.Getenv("ORCH_BIN")
	if bin == "" {
		t.Skip("ORCH_BIN is not set (make test sets it)")
	}
	netnstest.Skip(t, "nft", "nsenter", "busybox", "kubectl")
	freshE2EDir(t, joinE2EDir, joinE2ECgroupRoot)
	// No /etc/orch/config.yaml of this machine may leak in.
	conf := filepath.Join(joinE2EDir, "config.yaml")
	if err := os.WriteFile(conf, []byte("debug: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	sw := netnstest.NewSwitch(t, "oj-switch")
	srvNS, agentNS := netnstest.New(t, "oj-server"), netnstest.New(t, "oj-agent")
	sw.Attach(t, srvNS, "eth0", joinE2EServerIP)
	sw.Attach(t, agentNS, "eth0", joinE2EAgentIP)

	// The server cannot open connections to the agent: prove the rule
	// bites with a listener in the agent's namespace.
	agentNS.Nft(t, `table inet orch_join_e2e {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "eth0" ct state new meta l4proto tcp reject with tcp reset
		iifname "eth0" ct state new drop
	}
}`)
	agentNS.Listen(t, 10250)
	waitFor(t, 30*time.Second, "listener in the agent's namespace", func() (bool, error) {
		return agentNS.Dial(netip.MustParseAddrPort("127.0.0.1:10250"), 5) == nil, nil
	})
	if err := srvNS.Dial(netip.AddrPortFrom(joinE2EAgentIP.Addr(), 10250), 5); err == nil {
		t.Fatal("the server's namespace can connect to the agent's: the firewall rule does not hold")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv := startJoinE2EServer(ctx, t, bin, srvNS, conf)
	serverURL := "https://" + joinE2EServerIP.Addr().String() + ":" + joinE2EPort
	tokenBytes, err := os.ReadFile(filepath.Join(joinE2EDir, "server", "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := jointoken.Parse(string(tokenBytes))
	if err != nil {
		t.Fatal(err)
	}

	agentDir := filepath.Join(joinE2EDir, "agent")
	agentArgs := func(dataDir, tok string) []string {
		args := []string{"agent", "--config", conf, "--join", serverURL, "--node-name", joinE2ENode,
			"--data-dir", dataDir, "--cgroup-root", joinE2ECgroupRoot}
		if tok != "" {
			args = append(args, "--token", tok)
		}
		return args
	}

	// Joins that must fail, with a clear message, a non-zero exit and
	// nothing stored.
	wrongCA := jointoken.Token{CAHash: strings.Repeat("ab", 32), User: token.User, Secret: token.Secret}
	wrongSecret := jointoken.Token{CAHash: token.CAHash, User: token.User, Secret: "not-the-secret"}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"wrong CA hash", wrongCA.String(), "server CA hash mismatch: token pins sha256:" + wrongCA.CAHash + ", server presented sha256:" + token.CAHash},
		{"wrong secret", wrongSecret.String(), "the server refused the token's secret (401 Unauthorized"},
		{"no token before joining", "", "has not joined a cluster yet"},
	} {
		out, err := runAgentOnce(ctx, agentNS, bin, agentArgs(agentDir, tc.token))
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: err %v, output:\n%s\nwant it to contain %q", tc.name, err, out, tc.want)
		}
		if _, err := os.Stat(filepath.Join(agentDir, "agent", certFile)); err == nil {
			t.Errorf("%s: a failed join left a node certificate", tc.name)
		}
	}

	// A good join; the node's pod logs through the server.
	importBusybox(t, agentDir)
	agent := startJoinE2EAgent(ctx, t, bin, agentNS, agentArgs(agentDir, token.String()), "agent-1.log")
	waitJoinE2ENodeReady(t, srv)
	for _, f := range []string{caFile, certFile, keyFile, passwordFile} {
		fi, err := os.Stat(filepath.Join(agentDir, "agent", f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if out, err := srv.kubectl("get", "nodes"); err != nil || !strings.Contains(out, joinE2ENode) {
		t.Errorf("kubectl get nodes: %v\n%s", err, out)
	}

	pod := `apiVersion: v1
kind: Pod
metadata:
  name: remote-logger
  namespace: default
spec:
  nodeName: ` + joinE2ENode + `
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ` + e2eImage + `
    command: ["sh", "-c", "echo hello-over-the-tunnel; mkdir -p /www && echo port-forward-ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
`
	if out, err := srv.kubectlIn(pod, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	waitJoinE2ELogs(t, srv, "remote-logger")
	if out, err := srv.kubectl("exec", "remote-logger", "--", "sh", "-c", "echo exec-over-the-$((1+1))-tunnel"); err != nil || !strings.Contains(out, "exec-over-the-2-tunnel") {
		t.Errorf("kubectl exec through the tunnel: %v\n%s", err, out)
	}

	checkJoinE2EPortForward(ctx, t, srv)

	// Another machine under the same name is refused.
	out, err := runAgentOnce(ctx, agentNS, bin, agentArgs(filepath.Join(joinE2EDir, "impostor"), token.String()))
	if want := `already joined from another machine`; err == nil || !strings.Contains(out, want) {
		t.Errorf("second machine named %s: err %v, output:\n%s\nwant it to contain %q", joinE2ENode, err, out, want)
	}

	// Restart without the token: the stored certificate is enough, and
	// the pod keeps running and logging through the new tunnel.
	agent.stop(t)
	startJoinE2EAgent(ctx, t, bin, agentNS, agentArgs(agentDir, ""), "agent-2.log")
	waitFor(t, 60*time.Second, "the restarted agent's tunnel", func() (bool, error) {
		b, _ := os.ReadFile(filepath.Join(joinE2EDir, "agent-2.log"))
		return bytes.Contains(b, []byte("node registered")), nil
	})
	waitJoinE2ELogs(t, srv, "remote-logger")

	// Cut the link until both ends have noticed (no packet passes either
	// way, as when an edge box loses its uplink), then restore it: the
	// tunnel comes back by itself and the pod never restarted.
	serverLog, agentLog := filepath.Join(joinE2EDir, "server.log"), filepath.Join(joinE2EDir, "agent-2.log")
	disconnects := countInFile(serverLog, `msg="tunnel: node disconnected"`)
	connects := countInFile(serverLog, `msg="tunnel: node connected"`)
	losses := countInFile(agentLog, `msg="tunnel: connection to server lost"`)
	agentNS.Nft(t, `table inet orch_join_cut {
	chain input { type filter hook input priority -10; policy accept; iifname "eth0" drop; }
	chain output { type filter hook output priority -10; policy accept; oifname "eth0" drop; }
}`)
	waitFor(t, 90*time.Second, "both ends noticing the cut link", func() (bool, error) {
		return countInFile(serverLog, `msg="tunnel: node disconnected"`) > disconnects &&
			countInFile(agentLog, `msg="tunnel: connection to server lost"`) > losses, nil
	})
	agentNS.MustRun(t, "nft", "delete", "table", "inet", "orch_join_cut")
	waitFor(t, 90*time.Second, "the tunnel back after the cut", func() (bool, error) {
		return countInFile(serverLog, `msg="tunnel: node connected"`) > connects, nil
	})
	waitJoinE2ENodeReady(t, srv)
	waitJoinE2ELogs(t, srv, "remote-logger")
	if out, err := srv.kubectl("get", "pod", "remote-logger", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"); err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("restart count after the cut: %v %q, want 0", err, out)
	}

	if out, err := srv.kubectl("delete", "pod", "remote-logger", "--wait=true", "--timeout=60s"); err != nil {
		t.Errorf("kubectl delete pod: %v\n%s", err, out)
	}
}

// joinE2EServer is the server process and kubectl in its namespace.
type joinE2EServer struct {
	ns         *netnstest.NS
	kubeconfig string
	cacheDir   string
}

func startJoinE2EServer(ctx context.Context, t *testing.T, bin string, ns *netnstest.NS, conf string) *joinE2EServer {
	t.Helper()
	s := &joinE2EServer{ns: ns, kubeconfig: filepath.Join(joinE2EDir, "kubeconfig.yaml"), cacheDir: filepath.Join(joinE2EDir, "kube-cache")}
	cmd := ns.NetCommand(ctx, bin, "server", "--config", conf, "--disable-agent",
		"--data-dir", filepath.Join(joinE2EDir, "server"),
		"--bind-address", joinE2EServerIP.Addr().String(), "--https-listen-port", joinE2EPort,
		"--write-kubeconfig", s.kubeconfig, "--node-name", "oj-server")
	exited := startE2EProcess(t, cmd, filepath.Join(joinE2EDir, "server.log")).exited
	waitFor(t, 60*time.Second, "server kubeconfig", func() (bool, error) {
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(joinE2EDir, "server.log"))
			return false, fmt.Errorf("server exited:\n%s", b)
		default:
		}
		_, err := os.Stat(s.kubeconfig)
		return err == nil, nil
	})
	return s
}

func (s *joinE2EServer) kubectl(args ...string) (string, error) { return s.kubectlIn("", args...) }

// kubectlIn runs kubectl in the server's namespace with stdin.
func (s *joinE2EServer) kubectlIn(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := s.ns.NetCommand(ctx, "kubectl", append([]string{"--kubeconfig", s.kubeconfig, "--cache-dir", s.cacheDir}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// joinE2EAgent is a running `orch agent`.
type joinE2EAgent struct {
	cmd    *exec.Cmd
	exited <-chan struct{}
}

func startJoinE2EAgent(ctx context.Context, t *testing.T, bin string, ns *netnstest.NS, args []string, logName string) *joinE2EAgent {
	t.Helper()
	cmd := ns.NetCommand(ctx, bin, args...)
	return &joinE2EAgent{cmd: cmd, exited: startE2EProcess(t, cmd, filepath.Join(joinE2EDir, logName)).exited}
}

// stop ends the agent as an init system would; its pods keep running.
func (a *joinE2EAgent) stop(t *testing.T) {
	t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		t.Error("agent did not stop within 30s of SIGTERM")
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
}

// runAgentOnce runs an agent that is expected to exit (a failing join)
// and returns its output.
func runAgentOnce(ctx context.Context, ns *netnstest.NS, bin string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := ns.NetCommand(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func waitJoinE2ENodeReady(t *testing.T, s *joinE2EServer) {
	t.Helper()
	waitFor(t, 90*time.Second, "node "+joinE2ENode+" Ready", func() (bool, error) {
		out, err := s.kubectl("get", "node", joinE2ENode, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return err == nil && strings.TrimSpace(out) == "True", nil
	})
}

func waitJoinE2ELogs(t *testing.T, s *joinE2EServer, pod string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		out, err := s.kubectl("logs", pod)
		if err == nil && strings.Contains(out, "hello-over-the-tunnel") {
			return
		}
		last = out
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("kubectl logs %s never showed the pod's output through the tunnel; last answer:\n%s", pod, last)
}

// checkJoinE2EPortForward forwards a port of the server's namespace to the
// remote pod's web server and fetches a page through it.
func checkJoinE2EPortForward(ctx context.Context, t *testing.T, s *joinE2EServer) {
	t.Helper()
	pfCtx, stop := context.WithCancel(ctx)
	defer stop()
	var out bytes.Buffer
	pf := s.ns.NetCommand(pfCtx, "kubectl", "--kubeconfig", s.kubeconfig, "--cache-dir", s.cacheDir,
		"port-forward", "pod/remote-logger", "18080:8080")
	pf.Stdout, pf.Stderr = &out, &out
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = pf.Wait(); close(exited) }()
	defer func() { stop(); <-exited }()
	var last error
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		// A bounded HTTP/1.0 request by hand (busybox-static's wget
		// crashes resolving names on glibc hosts).
		get := s.ns.NetCommand(ctx, "busybox", "nc", "-w", "10", "127.0.0.1", "18080")
		get.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
		page, err := get.CombinedOutput()
		if err == nil && strings.Contains(string(page), "port-forward-ok") {
			return
		}
		last = err
		select {
		case <-exited:
			t.Fatalf("kubectl port-forward exited: %s", out.String())
		case <-time.After(500 * time.Millisecond):
		}
	}
	stop()
	<-exited
	t.Errorf("no page through kubectl port-forward to the remote pod: %v\nkubectl: %s", last, out.String())
}

// countInFile counts the lines of path that contain s.
func countInFile(path, s string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte(s))
}
