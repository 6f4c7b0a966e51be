package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/cgrouptree"
	"github.com/orch-dev/orch/internal/jointoken"
	"github.com/orch-dev/orch/internal/netnstest"
)

const (
	joinE2EDir        = "/tmp/orch-join-e2e"
	joinE2ECgroupRoot = "/orch-join-e2e"
	joinE2EPort       = "6443"
	// joinE2ECut is how long the test holds an agent's link cut: the
	// issue's acceptance asks for 60 s, longer than the node lease grace
	// period, so the server sees the node go silent.
	joinE2ECut = 60 * time.Second
)

var joinE2EServerIP = netip.MustParsePrefix("198.18.10.1/24")

// TestJoinE2E is the acceptance run of joining and the tunnel: the real
// orch server (ORCH_BIN, secrets encryption on, no node of its own) in
// one network namespace and two `orch agent --join` nodes in namespaces
// of their own, on one switch. The agents' namespaces refuse every
// connection the server might open, so joining, the nodes' API traffic
// and every kubectl session with their pods (logs -f, exec -it,
// port-forward, cp) ride the connection each agent opens. Then: joins
// that must fail, an agent restarted without its token, one agent's
// link cut for a minute, the server killed with SIGKILL and restarted,
// what a node's certificate and a service account may read, the
// database file with secrets encryption on, and a join with an expired
// token.
func TestJoinE2E(t *testing.T) {
	bin := e2eBinary(t, "kubectl", "script")
	netnstest.Skip(t, "nft", "nsenter")
	freshE2EDir(t, joinE2EDir, joinE2ECgroupRoot)
	c := newJoinE2ECluster(t, bin)
	c.startServer()

	// Joins that must fail, with a clear message, a non-zero exit and
	// nothing stored.
	first, second := c.agents[0], c.agents[1]
	wrongCA := jointoken.Token{CAHash: strings.Repeat("ab", 32), User: c.token.User, Secret: c.token.Secret}
	wrongSecret := jointoken.Token{CAHash: c.token.CAHash, User: c.token.User, Secret: "not-the-secret"}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"wrong CA hash", wrongCA.String(), "server CA hash mismatch: token pins sha256:" + wrongCA.CAHash + ", server presented sha256:" + c.token.CAHash},
		{"wrong secret", wrongSecret.String(), "the server refused the token (401 Unauthorized: a node certificate needs the join token's secret"},
		{"no token before joining", "", "has not joined a cluster yet"},
	} {
		c.failJoin(tc.name, first.ns, c.agentArgs(first, first.dataDir, tc.token), tc.want)
	}

	// Good joins, at once; each node gets a pod referencing a secret.
	for _, a := range c.agents {
		importBusybox(t, a.dataDir)
		c.startAgent(a, c.token.String())
	}
	for _, a := range c.agents {
		c.waitNodeReady(a)
		for _, f := range []string{caFile, certFile, keyFile, passwordFile} {
			fi, err := os.Stat(filepath.Join(a.dataDir, "agent", f))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s has mode %v, want 0600", a.name, f, fi.Mode().Perm())
			}
		}
		c.createPod(a)
	}
	for _, a := range c.agents {
		c.waitLogs(a)
	}

	t.Run("sessions", func(t *testing.T) {
		for _, a := range c.agents {
			t.Run(a.name, func(t *testing.T) {
				t.Parallel()
				c.checkLogsFollow(t, a)
				c.checkExecTTY(t, a)
				c.checkPortForward(t, a)
				c.checkCopy(t, a)
			})
		}
	})

	// Another machine under the same name is refused.
	c.failJoin("second machine named "+first.name, first.ns,
		c.agentArgs(first, filepath.Join(joinE2EDir, "impostor"), c.token.String()), "already joined from another machine")

	// Restart without the token: the stored certificate is enough, and
	// the pod keeps running and logging through the new tunnel.
	registered := countInFile(first.log, "node registered")
	first.proc.stop(t)
	c.startAgent(first, "")
	waitFor(t, 60*time.Second, "the restarted agent's tunnel", func() (bool, error) {
		return countInFile(first.log, "node registered") > registered, nil
	})
	c.waitLogs(first)

	// The second agent loses its link for a minute; meanwhile the first
	// node and the server answer what a node and a service account may
	// read, and the database file is checked.
	c.cutLink(second, func() {
		c.checkNodeAuthorization(first, second)
		c.checkServiceAccountRBAC()
		c.checkSecretsEncrypted()
	})

	c.checkServerCrash()
	c.checkExpiredToken(first.ns)
}

// joinE2ECluster is TestJoinE2E's server and agents.
type joinE2ECluster struct {
	t         *testing.T
	bin, conf string
	srvNS     *netnstest.NS
	server    *e2eProcess
	serverLog string
	serverURL string
	kubectl   *kubectlRunner
	token     jointoken.Token
	agents    []*joinE2EAgent
}

// joinE2EAgent is one joined node: its namespace, data and the pod the test
// runs on it.
type joinE2EAgent struct {
	name      string
	ns        *netnstest.NS
	ip        netip.Prefix
	dataDir   string
	cgroup    string
	log       string
	proc      *e2eProcess
	pod       string
	secret    string // the name of the Secret its pod references
	password  string // that Secret's value
	localPort int    // its port-forward's port in the server's namespace
}

// newJoinE2ECluster builds the network: a switch, the server's namespace
// and two agents' whose firewall refuses every connection from outside,
// which it proves with a listener in each.
func newJoinE2ECluster(t *testing.T, bin string) *joinE2ECluster {
	t.Helper()
	c := &joinE2ECluster{t: t, bin: bin, conf: filepath.Join(joinE2EDir, "config.yaml"),
		serverLog: filepath.Join(joinE2EDir, "server.log"),
		serverURL: "https://" + joinE2EServerIP.Addr().String() + ":" + joinE2EPort}
	// No /etc/orch/config.yaml of this machine may leak in.
	if err := os.WriteFile(c.conf, []byte("debug: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sw := netnstest.NewSwitch(t, "oj-switch")
	c.srvNS = netnstest.New(t, "oj-server")
	sw.Attach(t, c.srvNS, "eth0", joinE2EServerIP)
	c.kubectl = &kubectlRunner{ns: c.srvNS, kubeconfig: filepath.Join(joinE2EDir, "kubeconfig.yaml"), cacheDir: filepath.Join(joinE2EDir, "kube-cache")}
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("remote-%d", i)
		a := &joinE2EAgent{
			name:      name,
			ns:        netnstest.New(t, fmt.Sprintf("oj-agent%d", i)),
			ip:        netip.MustParsePrefix(fmt.Sprintf("198.18.10.%d/24", i+1)),
			dataDir:   filepath.Join(joinE2EDir, name),
			cgroup:    joinE2ECgroupRoot + "/" + name,
			log:       filepath.Join(joinE2EDir, name+".log"),
			pod:       "app-" + strconv.Itoa(i),
			secret:    "secret-" + strconv.Itoa(i),
			password:  fmt.Sprintf("pw-%d-%d", i, time.Now().UnixNano()),
			localPort: 18080 + i,
		}
		sw.Attach(t, a.ns, "eth0", a.ip)
		a.ns.RefuseInbound(t, "eth0")
		a.ns.Listen(t, 10250)
		waitFor(t, 30*time.Second, "listener in "+name+"'s namespace", func() (bool, error) {
			return a.ns.Dial(netip.MustParseAddrPort("127.0.0.1:10250"), 5) == nil, nil
		})
		if err := c.srvNS.Dial(netip.AddrPortFrom(a.ip.Addr(), 10250), 5); err == nil {
			t.Fatalf("the server's namespace can connect to %s's: the firewall rule does not hold", name)
		}
		c.agents = append(c.agents, a)
	}
	return c
}

// startServer starts (or, after a crash, restarts) the server on the same
// data and waits until it serves.
func (c *joinE2ECluster) startServer() {
	t := c.t
	t.Helper()
	c.server = startE2EProcess(t, c.srvNS.NetCommand(context.Background(), c.bin, "server", "--config", c.conf,
		"--disable-agent", "--secrets-encryption",
		"--data-dir", filepath.Join(joinE2EDir, "server"),
		"--bind-address", joinE2EServerIP.Addr().String(), "--https-listen-port", joinE2EPort,
		"--write-kubeconfig", c.kubectl.kubeconfig, "--node-name", "oj-server"), c.serverLog)
	c.server.waitFile(t, c.kubectl.kubeconfig)
	waitFor(t, 60*time.Second, "the server ready", func() (bool, error) {
		select {
		case <-c.server.exited:
			return false, fmt.Errorf("the server exited; see %s", c.serverLog)
		default:
		}
		out, err := c.kubectl.run("get", "--raw", "/readyz")
		return err == nil && strings.TrimSpace(out) == "ok", nil
	})
	tokenBytes, err := os.ReadFile(filepath.Join(joinE2EDir, "server", "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	if c.token, err = jointoken.Parse(string(tokenBytes)); err != nil {
		t.Fatal(err)
	}
}

func (c *joinE2ECluster) agentArgs(a *joinE2EAgent, dataDir, token string) []string {
	args := []string{"agent", "--config", c.conf, "--join", c.serverURL, "--node-name", a.name,
		"--data-dir", dataDir, "--cgroup-root", a.cgroup}
	if token != "" {
		args = append(args, "--token", token)
	}
	return args
}

// startAgent starts a's agent with token ("" for a restart on the stored
// certificate), logging to a.log.
func (c *joinE2ECluster) startAgent(a *joinE2EAgent, token string) {
	a.proc = startE2EProcess(c.t, a.ns.NetCommand(context.Background(), c.bin, c.agentArgs(a, a.dataDir, token)...), a.log)
}

// failJoin runs an agent that must fail to join: non-zero exit, output
// containing want, and no node certificate left in its data dir.
func (c *joinE2ECluster) failJoin(name string, ns *netnstest.NS, args []string, want string) {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := ns.NetCommand(ctx, c.bin, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("%s: err %v, output:\n%s\nwant it to contain %q", name, err, out, want)
	} else {
		t.Logf("%s: %v: %s", name, err, lastLines(out, 1))
	}
	dataDir := args[slices.Index(args, "--data-dir")+1]
	if _, err := os.Stat(filepath.Join(dataDir, "agent", certFile)); err == nil {
		t.Errorf("%s: a failed join left a node certificate", name)
	}
}

func (c *joinE2ECluster) waitNodeReady(a *joinE2EAgent) {
	c.t.Helper()
	c.waitNodeCondition(a, "True", 90*time.Second)
}

// waitNodeCondition waits until a's node has condition Ready with status.
func (c *joinE2ECluster) waitNodeCondition(a *joinE2EAgent, status string, timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, "node "+a.name+" Ready="+status, func() (bool, error) {
		out, err := c.kubectl.run("get", "node", a.name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && strings.TrimSpace(out) == status {
			return true, nil
		}
		time.Sleep(500 * time.Millisecond) // kubectl costs a CPU: poll gently
		return false, nil
	})
}

// createPod creates a's Secret and its pod: it records a boot id (a
// restarted container would get a new one), serves a page on port 8080,
// says hello, and then prints whatever lands in /tmp/say.
func (c *joinE2ECluster) createPod(a *joinE2EAgent) {
	t := c.t
	t.Helper()
	if out, err := c.kubectl.run("create", "secret", "generic", a.secret, "--from-literal=password="+a.password); err != nil {
		t.Fatalf("kubectl create secret: %v\n%s", err, out)
	}
	// The test image links only a few applets; kubectl cp needs tar.
	script := "/bin/busybox --install -s; cat /proc/sys/kernel/random/uuid > /tmp/boot-id; " +
		"mkdir -p /www && echo port-forward-ok-" + a.name + " > /www/index.html && httpd -p 8080 -h /www; " +
		"echo hello-over-the-tunnel; " +
		"while true; do if [ -f /tmp/say ]; then cat /tmp/say; rm -f /tmp/say; fi; sleep 0.2; done"
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: ` + a.pod + `
  namespace: default
spec:
  nodeName: ` + a.name + `
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ` + e2eImage + `
    command: ["sh", "-c", ` + strconv.Quote(script) + `]
    env:
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: ` + a.secret + `, key: password}}
`
	if out, err := c.kubectl.runIn(pod, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}

// waitLogs waits until kubectl logs of a's pod shows its greeting, which
// has to come through a's tunnel.
func (c *joinE2ECluster) waitLogs(a *joinE2EAgent) {
	t := c.t
	t.Helper()
	var last string
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, err := c.kubectl.run("logs", a.pod)
		if err == nil && strings.Contains(out, "hello-over-the-tunnel") {
			return
		}
		last = out
	}
	t.Fatalf("kubectl logs %s never showed the pod's output through the tunnel; last answer:\n%s", a.pod, last)
}

// say makes a's pod print line on its stdout.
func (c *joinE2ECluster) say(t *testing.T, a *joinE2EAgent, line string) {
	t.Helper()
	if out, err := c.kubectl.run("exec", a.pod, "--", "sh", "-c", "echo "+line+" > /tmp/say.new && mv /tmp/say.new /tmp/say"); err != nil {
		t.Fatalf("kubectl exec %s: %v\n%s", a.pod, err, out)
	}
}

// checkLogsFollow follows the pod's log with kubectl logs -f, sees a line
// the pod prints after the follow started, and stops kubectl.
func (c *joinE2ECluster) checkLogsFollow(t *testing.T, a *joinE2EAgent) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := c.kubectl.command(ctx, "logs", "-f", a.pod)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(stdout); sc.Scan(); {
			lines <- sc.Text()
		}
	}()
	waitLine := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("kubectl logs -f %s ended before %q: %s", a.pod, want, stderr.String())
				}
				if l == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("kubectl logs -f %s: no %q: %v", a.pod, want, ctx.Err())
			}
		}
	}
	waitLine("hello-over-the-tunnel")
	mark := "followed-" + a.name
	c.say(t, a, mark)
	waitLine(mark)
	// kubectl is stopped as a user would (^C), and goes.
	_ = cmd.Process.Signal(syscall.SIGINT)
	go func() {
		for range lines {
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("kubectl logs -f %s did not stop within 30s of SIGINT", a.pod)
		cancel()
		<-done
	}
}

// checkExecTTY runs `kubectl exec -it POD -- sh` under script(1), which
// gives it a terminal, and types commands into it.
func (c *joinE2ECluster) checkExecTTY(t *testing.T, a *joinE2EAgent) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kubectl := fmt.Sprintf("kubectl --kubeconfig %s --cache-dir %s exec -it %s -- sh", c.kubectl.kubeconfig, c.kubectl.cacheDir, a.pod)
	cmd := c.srvNS.NetCommand(ctx, "script", "-qec", kubectl, "/dev/null")
	// The terminal echoes the line as typed; only the shell computes 42.
	cmd.Stdin = strings.NewReader("tty; echo tty-$((6*7))-" + a.name + "; exit 7\n")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Errorf("kubectl exec -it %s: %v (want the shell's exit code 7)\n%s", a.pod, err, out)
	}
	for _, want := range []string{"/dev/pts/", "tty-42-" + a.name} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl exec -it %s: no %q in:\n%s", a.pod, want, out)
		}
	}
}

// checkPortForward forwards a port of the server's namespace to the pod's
// web server and fetches a page through it with a bounded request.
func (c *joinE2ECluster) checkPortForward(t *testing.T, a *joinE2EAgent) {
	ctx, stop := context.WithTimeout(context.Background(), 90*time.Second)
	defer stop()
	var out bytes.Buffer
	pf := c.kubectl.command(ctx, "port-forward", "pod/"+a.pod, strconv.Itoa(a.localPort)+":8080")
	pf.Stdout, pf.Stderr = &out, &out
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = pf.Wait(); close(exited) }()
	defer func() { stop(); <-exited }()
	want := "port-forward-ok-" + a.name
	var last error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		// A bounded HTTP/1.0 request by hand (busybox-static's wget
		// crashes resolving names on glibc hosts).
		get := c.srvNS.NetCommand(ctx, "busybox", "nc", "-w", "10", "127.0.0.1", strconv.Itoa(a.localPort))
		get.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
		page, err := get.CombinedOutput()
		if err == nil && strings.Contains(string(page), want) {
			return
		}
		last = err
		select {
		case <-exited:
			t.Fatalf("kubectl port-forward exited: %s", out.String())
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Errorf("no page through kubectl port-forward to %s: %v\nkubectl: %s", a.pod, last, out.String())
}

// checkCopy copies a file into the pod and back with kubectl cp.
func (c *joinE2ECluster) checkCopy(t *testing.T, a *joinE2EAgent) {
	content := fmt.Sprintf("copied to %s at %d\n", a.pod, time.Now().UnixNano())
	local := filepath.Join(joinE2EDir, "cp-"+a.name+".txt")
	back := filepath.Join(joinE2EDir, "cp-"+a.name+"-back.txt")
	if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.kubectl.run("cp", local, a.pod+":/tmp/copied.txt"); err != nil {
		t.Fatalf("kubectl cp to %s: %v\n%s", a.pod, err, out)
	}
	if out, err := c.kubectl.run("exec", a.pod, "--", "cat", "/tmp/copied.txt"); err != nil || out != content {
		t.Errorf("the copied file in %s: %v %q, want %q", a.pod, err, out, content)
	}
	if out, err := c.kubectl.run("cp", a.pod+":/tmp/copied.txt", back); err != nil {
		t.Fatalf("kubectl cp from %s: %v\n%s", a.pod, err, out)
	}
	if b, err := os.ReadFile(back); err != nil || string(b) != content {
		t.Errorf("copied back from %s: %v %q, want %q", a.pod, err, b, content)
	}
}

// containerState is what a container restart would change.
type containerState struct {
	ContainerID  string
	RestartCount int
	StartedAt    string
}

func (c *joinE2ECluster) containerState(a *joinE2EAgent) containerState {
	t := c.t
	t.Helper()
	out, err := c.kubectl.run("get", "pod", a.pod, "-o",
		`jsonpath={.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.running.startedAt}`)
	f := strings.Fields(out)
	if err != nil || len(f) != 3 {
		t.Fatalf("container status of %s: %v %q", a.pod, err, out)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("restartCount of %s: %q", a.pod, f[1])
	}
	return containerState{ContainerID: f[0], RestartCount: n, StartedAt: f[2]}
}

// bootID is the id the pod's container drew when it started.
func (c *joinE2ECluster) bootID(a *joinE2EAgent) string {
	c.t.Helper()
	out, err := c.kubectl.run("exec", a.pod, "--", "cat", "/tmp/boot-id")
	if err != nil {
		c.t.Fatalf("boot id of %s: %v\n%s", a.pod, err, out)
	}
	return strings.TrimSpace(out)
}

// cutLink drops every packet of a's link both ways (as when an edge box
// loses its uplink) for joinE2ECut (longer if the server takes longer to
// mark the node Unknown), running during while it is cut. Its pod's
// processes live on throughout; after the link is back the tunnel returns
// by itself, the node is Ready again and the container never restarted.
func (c *joinE2ECluster) cutLink(a *joinE2EAgent, during func()) {
	t := c.t
	t.Helper()
	state, boot := c.containerState(a), c.bootID(a)
	cgroups := cgroupDirs(t, a.cgroup)
	if len(cgroups) == 0 {
		t.Fatalf("no cgroup %s", a.cgroup)
	}
	pids := longLivedPIDs(t, cgroups[0])
	disconnects := countInFile(c.serverLog, `msg="tunnel: node disconnected"`)
	connects := countInFile(c.serverLog, `msg="tunnel: node connected"`)
	losses := countInFile(a.log, `msg="tunnel: connection to server lost"`)
	restore := a.ns.CutLink(t, "eth0")
	restored := time.Now().Add(joinE2ECut)
	during()
	waitFor(t, 90*time.Second, "both ends noticing the cut link", func() (bool, error) {
		return countInFile(c.serverLog, `msg="tunnel: node disconnected"`) > disconnects &&
			countInFile(a.log, `msg="tunnel: connection to server lost"`) > losses, nil
	})
	// The server stops hearing from the node: past the node monitor's
	// grace period (40 s) its Ready condition turns Unknown.
	c.waitNodeCondition(a, "Unknown", 2*joinE2ECut)
	time.Sleep(time.Until(restored))
	alive := cgrouptree.PIDs(cgroups[0])
	for _, pid := range pids {
		if !slices.Contains(alive, pid) || syscall.Kill(pid, 0) != nil {
			t.Errorf("process %d of %s's pods is gone after the link was cut for %v", pid, a.name, joinE2ECut)
		}
	}
	restore(t)
	waitFor(t, 90*time.Second, "the tunnel back after the cut", func() (bool, error) {
		return countInFile(c.serverLog, `msg="tunnel: node connected"`) > connects, nil
	})
	c.waitNodeReady(a)
	c.waitLogs(a)
	if after := c.containerState(a); after != state {
		t.Errorf("%s's container changed across the cut:\nbefore %+v\nafter  %+v", a.pod, state, after)
	}
	if after := c.bootID(a); after != boot {
		t.Errorf("%s's container restarted across the cut: boot id %s, now %s", a.pod, boot, after)
	}
}

// longLivedPIDs returns the processes in cgroup dir that outlive a
// second (not the pod's short sleeps), at least one.
func longLivedPIDs(t *testing.T, dir string) []int {
	t.Helper()
	first := cgrouptree.PIDs(dir)
	time.Sleep(time.Second)
	var pids []int
	for _, pid := range cgrouptree.PIDs(dir) {
		if slices.Contains(first, pid) {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no lasting process in %s", dir)
	}
	return pids
}

// checkNodeAuthorization talks to the API server with a's node
// certificate, from a's namespace: the Secret of a's own pod is readable,
// the one of other's pod is 403 Forbidden.
func (c *joinE2ECluster) checkNodeAuthorization(a, other *joinE2EAgent) {
	t := c.t
	t.Helper()
	dir := filepath.Join(a.dataDir, "agent")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialInNetNS(ctx, a.ns.Path(), network, addr)
		},
	}}
	get := func(secret string) (int, []byte) {
		t.Helper()
		resp, err := client.Get(c.serverURL + "/api/v1/namespaces/default/secrets/" + secret)
		if err != nil {
			t.Fatalf("GET secret %s as node %s: %v", secret, a.name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, body := get(a.secret); code != http.StatusOK || !bytes.Contains(body, []byte(base64.StdEncoding.EncodeToString([]byte(a.password)))) {
		t.Errorf("node %s reading its own pod's secret: %d %s", a.name, code, body)
	}
	code, body := get(other.secret)
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil || code != http.StatusForbidden || st.Kind != "Status" ||
		st.Code != http.StatusForbidden || st.Reason != metav1.StatusReasonForbidden ||
		!strings.Contains(st.Message, `secrets "`+other.secret+`" is forbidden: User "system:node:`+a.name+`" cannot get resource "secrets"`) {
		t.Errorf("node %s reading the secret of a pod on %s: %d %s (%v), want a 403 Forbidden Status", a.name, other.name, code, body, err)
	}
}

// checkServiceAccountRBAC: a ServiceAccount bound to a Role that may list
// pods lists the pods of its namespace with a token from kubectl create
// token, and is refused everything else.
func (c *joinE2ECluster) checkServiceAccountRBAC() {
	t := c.t
	t.Helper()
	for _, args := range [][]string{
		{"create", "namespace", "team"},
		{"create", "serviceaccount", "reader", "-n", "team"},
		{"create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", "team"},
		{"create", "rolebinding", "reader-pods", "--role=pod-reader", "--serviceaccount=team:reader", "-n", "team"},
	} {
		if out, err := c.kubectl.run(args...); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// A pod in team that no node takes (nothing matches its selector):
	// an object to list, not a workload.
	if out, err := c.kubectl.runIn(`apiVersion: v1
kind: Pod
metadata: {name: unscheduled, namespace: team}
spec:
  nodeSelector: {orch-e2e: nowhere}
  containers: [{name: c, image: `+e2eImage+`}]
`, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	token, err := c.kubectl.run("create", "token", "reader", "-n", "team")
	if err != nil {
		t.Fatalf("kubectl create token: %v\n%s", err, token)
	}
	kubeconfig := filepath.Join(joinE2EDir, "reader.kubeconfig")
	conf := `apiVersion: v1
kind: Config
clusters:
- name: orch
  cluster: {server: "` + c.serverURL + `", certificate-authority: "` + filepath.Join(c.agents[0].dataDir, "agent", caFile) + `"}
users:
- name: reader
  user: {token: "` + strings.TrimSpace(token) + `"}
contexts:
- name: reader
  context: {cluster: orch, user: reader}
current-context: reader
`
	if err := os.WriteFile(kubeconfig, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	reader := &kubectlRunner{ns: c.srvNS, kubeconfig: kubeconfig, cacheDir: filepath.Join(joinE2EDir, "reader-cache")}
	if out, err := reader.run("get", "pods", "-n", "team", "-o", "name"); err != nil || strings.TrimSpace(out) != "pod/unscheduled" {
		t.Errorf("the service account listing pods in its namespace: %v\n%s", err, out)
	}
	for _, tc := range []struct{ resource, ns string }{{"secrets", "team"}, {"pods", "default"}, {"configmaps", "team"}} {
		want := `Error from server (Forbidden): ` + tc.resource + ` is forbidden: User "system:serviceaccount:team:reader" cannot list resource "` +
			tc.resource + `" in API group "" in the namespace "` + tc.ns + `"`
		if out, err := reader.run("get", tc.resource, "-n", tc.ns); err == nil || !strings.Contains(out, want) {
			t.Errorf("the service account listing %s in %s: %v\n%s\nwant %q", tc.resource, tc.ns, err, out, want)
		}
	}
}

// checkSecretsEncrypted reads the server's database file: with secrets
// encryption on, no Secret's value is in it as plain text (nor base64).
func (c *joinE2ECluster) checkSecretsEncrypted() {
	t := c.t
	t.Helper()
	db, err := os.ReadFile(filepath.Join(joinE2EDir, "server", "server", "db", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range c.agents {
		for _, plain := range []string{a.password, base64.StdEncoding.EncodeToString([]byte(a.password))} {
			if bytes.Contains(db, []byte(plain)) {
				t.Errorf("the database file holds secret %s as plain text (%s)", a.secret, plain)
			}
		}
	}
	if !bytes.Contains(db, []byte("k8s:enc:aesgcm:v1:")) {
		t.Error("no encrypted value in the database file")
	}
}

// checkServerCrash kills the server with SIGKILL and starts it again:
// every object is still there with its uid, both nodes come back through
// their tunnels, and no container restarted.
func (c *joinE2ECluster) checkServerCrash() {
	t := c.t
	t.Helper()
	objects := c.objects()
	states := map[string]containerState{}
	for _, a := range c.agents {
		states[a.name] = c.containerState(a)
	}
	connects := countInFile(c.serverLog, `msg="tunnel: node connected"`)
	c.server.kill()
	c.startServer()
	waitFor(t, 90*time.Second, "both agents' tunnels back after the server restart", func() (bool, error) {
		return countInFile(c.serverLog, `msg="tunnel: node connected"`) >= connects+len(c.agents), nil
	})
	for _, a := range c.agents {
		c.waitNodeReady(a)
		waitFor(t, 60*time.Second, a.name+"'s lease renewed after the server's restart", func() (bool, error) {
			_, err := c.kubectl.run("get", "lease", "-n", "kube-node-lease", a.name)
			return err == nil, nil
		})
		c.waitLogs(a)
		if after := c.containerState(a); after != states[a.name] {
			t.Errorf("%s's container changed across the server's restart:\nbefore %+v\nafter  %+v", a.pod, states[a.name], after)
		}
	}
	after := c.objects()
	for key, uid := range objects {
		switch got, ok := after[key]; {
		case !ok:
			t.Errorf("%s is gone after the server's restart", key)
		case got != uid:
			t.Errorf("%s has uid %s after the server's restart, %s before", key, got, uid)
		}
	}
	t.Logf("%d objects before the server's SIGKILL, %d after", len(objects), len(after))
}

// checkExpiredToken makes a join token with `orch token create --ttl 1s`
// and, once it has expired, joins a new node with it from ns: refused,
// saying the token expired, and nothing stored.
func (c *joinE2ECluster) checkExpiredToken(ns *netnstest.NS) {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := c.srvNS.NetCommand(ctx, c.bin, "token", "create", "--ttl", "1s", "--description", "join e2e: expires at once",
		"--kubeconfig", c.kubectl.kubeconfig).Output()
	if err != nil {
		t.Fatalf("orch token create: %v\n%s", err, out)
	}
	created := time.Now()
	tok, err := jointoken.Parse(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("orch token create printed %q: %v", out, err)
	}
	if _, ok := tok.BootstrapID(); !ok || tok.CAHash != c.token.CAHash {
		t.Errorf("orch token create printed %q: want K10<the server's CA hash>::<id>.<secret>", out)
	}
	// The expiration has a precision of a second: wait until it is
	// past whichever way the server rounded it.
	time.Sleep(time.Until(created.Add(2 * time.Second)))
	late := &joinE2EAgent{name: "remote-late", cgroup: joinE2ECgroupRoot + "/remote-late"}
	c.failJoin("expired token", ns, c.agentArgs(late, filepath.Join(joinE2EDir, "remote-late"), tok.String()), "expired")
	if out, err := c.kubectl.run("get", "node", late.name); err == nil {
		t.Errorf("a node joined with an expired token:\n%s", out)
	}
}

// objects returns the uid of every stored object of every listable kind
// (namespaced and cluster-wide), by "apiVersion kind namespace/name".
func (c *joinE2ECluster) objects() map[string]string {
	t := c.t
	t.Helper()
	out, err := c.kubectl.run("api-resources", "--verbs=list", "-o", "name")
	if err != nil {
		t.Fatalf("kubectl api-resources: %v\n%s", err, out)
	}
	var kinds []string
	for _, r := range strings.Fields(out) {
		// Metrics are computed on each request and reviews are
		// create-only: neither is stored. (Aggregated discovery lists
		// the reviews with every verb, though a list of them is 405.)
		if !strings.HasSuffix(r, ".metrics.k8s.io") && !strings.Contains(r, "reviews.") {
			kinds = append(kinds, r)
		}
	}
	out, err = c.kubectl.run("get", strings.Join(kinds, ","), "--all-namespaces", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl get %s: %v\n%s", strings.Join(kinds, ","), err, out)
	}
	var list struct {
		Items []metav1.PartialObjectMetadata `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get -o json: %v", err)
	}
	objs := make(map[string]string, len(list.Items))
	for _, o := range list.Items {
		objs[o.APIVersion+" "+o.Kind+" "+o.Namespace+"/"+o.Name] = string(o.UID)
	}
	if len(objs) == 0 {
		t.Fatal("kubectl get listed no objects")
	}
	return objs
}

// countInFile counts the lines of path that contain s.
func countInFile(path, s string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte(s))
}
