package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orch-dev/orch/internal/bench/measure"
	"github.com/orch-dev/orch/internal/netnstest"
	"github.com/orch-dev/orch/internal/testimage"
)

// benchImage is the busybox image both nodes import at start.
const benchImage = "busybox:clusterbench"

// orchProcess is an orch server or agent the driver started.
type orchProcess struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	logPath string
}

// startProcess starts cmd with its output in logPath. The process dies
// with the driver (Pdeathsig survives nsenter's exec).
func startProcess(cmd *exec.Cmd, logPath string) (*orchProcess, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &orchProcess{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.exited) }()
	return p, nil
}

func (p *orchProcess) pid() int { return p.cmd.Process.Pid }

// stop ends the process as an init system would, killing it after 30 s.
func (p *orchProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// alive returns an error with the log's end once the process has exited.
func (p *orchProcess) alive() error {
	select {
	case <-p.exited:
		b, _ := os.ReadFile(p.logPath)
		return fmt.Errorf("%s exited:\n%s", filepath.Base(p.logPath), tail(b, 30))
	default:
		return nil
	}
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cluster is the running server and agent, seen from the server's
// namespace.
type cluster struct {
	o          options
	server     *orchProcess
	agent      *orchProcess
	agentNS    *netnstest.NS
	kubeconfig string
	cs         kubernetes.Interface
	serverURL  string

	// Start-up times, from the server process' start.
	readyz, serverNodeReady, bothReady time.Duration
	agentReady                         time.Duration // from the agent process' start
}

func (c *cluster) serverData() string { return filepath.Join(c.o.dir, "server") }
func (c *cluster) agentData() string  { return filepath.Join(c.o.dir, "agent") }

// startCluster starts the server, then the agent as soon as the server's
// join token exists, and returns once both nodes are Ready.
func startCluster(ctx context.Context, o options) (*cluster, error) {
	c := &cluster{
		o:          o,
		agentNS:    &netnstest.NS{Name: agentNS},
		kubeconfig: filepath.Join(o.dir, "kubeconfig.yaml"),
		serverURL:  fmt.Sprintf("https://%s:%d", serverAddr.Addr(), apiPort),
	}
	// No /etc/orch/config.yaml of this machine may leak in.
	conf := filepath.Join(o.dir, "config.yaml")
	if err := os.WriteFile(conf, []byte("debug: false\n"), 0o600); err != nil {
		return nil, err
	}
	for _, data := range []string{c.serverData(), c.agentData()} {
		dir := filepath.Join(data, "agent", "images", "import")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := testimage.WriteBusybox(filepath.Join(dir, "busybox.tar"), benchImage); err != nil {
			return nil, err
		}
	}

	// The agent stands for another box, with its own copy of orch: one
	// file mapped by both processes would have its shared pages counted in
	// both RSS figures, and reclaimable by neither (internal/textpages).
	agentBin := filepath.Join(o.dir, "agent-orch")
	if err := measure.CopyFile(o.orch, agentBin, 0o755); err != nil {
		return nil, err
	}

	var err error
	c.server, err = startProcess(exec.Command(o.orch, "server", "--config", conf, "--data-dir", c.serverData(),
		"--bind-address", serverAddr.Addr().String(), "--https-listen-port", fmt.Sprint(apiPort),
		"--write-kubeconfig", c.kubeconfig, "--node-name", serverNode), filepath.Join(o.dir, "server.log"))
	if err != nil {
		return nil, err
	}
	t0 := c.server.started

	insecure := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer insecure.CloseIdleConnections()
	if err := poll(ctx, 60*time.Second, 5*time.Millisecond, "server /readyz", func() (bool, error) {
		if err := c.server.alive(); err != nil {
			return false, err
		}
		resp, err := insecure.Get(c.serverURL + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return c, err
	}
	c.readyz = time.Since(t0)

	tokenFile := filepath.Join(c.serverData(), "server", "token")
	var token []byte
	if err := poll(ctx, 30*time.Second, 5*time.Millisecond, "join token", func() (bool, error) {
		token, err = os.ReadFile(tokenFile)
		return err == nil && len(bytes.TrimSpace(token)) > 0, nil
	}); err != nil {
		return c, err
	}
	c.agent, err = startProcess(c.agentNS.NetCommand(context.Background(), agentBin, "agent", "--config", conf,
		"--join", c.serverURL, "--token", string(bytes.TrimSpace(token)), "--node-name", agentNode,
		"--data-dir", c.agentData(), "--cgroup-root", agentCgroupRoot), filepath.Join(o.dir, "agent.log"))
	if err != nil {
		return c, err
	}

	if err := poll(ctx, 30*time.Second, 5*time.Millisecond, "kubeconfig", func() (bool, error) {
		_, err := os.Stat(c.kubeconfig)
		return err == nil, nil
	}); err != nil {
		return c, err
	}
	rest, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return c, err
	}
	rest.QPS, rest.Burst = 1000, 1000
	if c.cs, err = kubernetes.NewForConfig(rest); err != nil {
		return c, err
	}
	err = poll(ctx, 120*time.Second, 10*time.Millisecond, "both nodes Ready", func() (bool, error) {
		if err := errors.Join(c.server.alive(), c.agent.alive()); err != nil {
			return false, err
		}
		nodes, err := c.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, n := range nodes.Items {
			if !nodeReady(&n) {
				continue
			}
			switch n.Name {
			case serverNode:
				if c.serverNodeReady == 0 {
					c.serverNodeReady = time.Since(t0)
				}
			case agentNode:
				if c.agentReady == 0 {
					c.agentReady = time.Since(c.agent.started)
				}
			}
		}
		return c.serverNodeReady > 0 && c.agentReady > 0, nil
	})
	c.bothReady = time.Since(t0)
	return c, err
}

// stop deletes the workloads (so that the nodes stop their containers and
// release their mounts) and stops both processes.
func (c *cluster) stop() {
	if c.cs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		c.recordServerPods(ctx)
		grace := int64(0)
		_ = c.cs.AppsV1().Deployments("default").Delete(ctx, "sleep", metav1.DeleteOptions{})
		_ = c.cs.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{})
		_ = poll(ctx, 80*time.Second, 250*time.Millisecond, "pods gone", func() (bool, error) {
			pods, err := c.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0, nil
		})
	}
	for _, p := range []*orchProcess{c.agent, c.server} {
		if p != nil {
			p.stop()
		}
	}
}

// recordServerPods adds the UIDs of the server node's pods to
// serverPodsFile, so that their cgroups (under the default root, shared
// with other clusters on this machine) can be found and removed.
func (c *cluster) recordServerPods(ctx context.Context) {
	pods, err := c.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + serverNode})
	if err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(c.o.dir, serverPodsFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	for _, p := range pods.Items {
		fmt.Fprintln(f, p.UID)
	}
}

// nodeReady says whether n's Ready condition is True.
func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// poll calls ok every interval until it returns true or an error, ctx ends
// or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, ok func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := ok()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not after %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// kubectl runs kubectl against the cluster (the driver is in the server's
// namespace) and returns its combined output.
func (c *cluster) kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := c.kubectlCmd(ctx, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func (c *cluster) kubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.kubeconfig,
		"--cache-dir", filepath.Join(c.o.dir, "kube-cache")}, args...)...)
}
