package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orch-dev/orch/internal/bench/measure"
	"github.com/orch-dev/orch/internal/testimage"
)

const (
	imageTag  = "busybox:netbench"
	namespace = "default"
	// Ports of the Go servers in the server pod.
	sinkPort  = 5001 // reads everything, answers with the byte count
	closePort = 5002 // answers one byte and closes: connection rate
	probePort = 7000 // and probePort+1 (even, so ^1 toggles): answer their own port number
)

// cluster is the running server and the two pods, seen from the node's
// namespace.
type cluster struct {
	o        options
	cs       kubernetes.Interface
	log      string // the server's log file
	serverIP netip.Addr
	// client and server run functions inside the pods' network
	// namespaces.
	client, server *nsRunner
}

// runDriver starts orch in this (the node's) namespace, runs every
// measurement and prints the report.
func runDriver(o options) error {
	importDir := filepath.Join(o.dir, "data", "agent", "images", "import")
	if err := os.MkdirAll(importDir, 0o700); err != nil {
		return err
	}
	if err := testimage.WriteBusybox(filepath.Join(importDir, "busybox.tar"), imageTag); err != nil {
		return err
	}
	// --debug: the node logs each service-rule write with its duration,
	// which the rule-sync table reports beside the end-to-end time.
	logPath := filepath.Join(o.dir, "server.log")
	srv, err := measure.StartServer(o.orch, o.dir, "--node-name", nodeName, "--cgroup-root", cgroupRoot,
		"--kill-pods-on-stop", "--debug", "--log", logPath)
	if err != nil {
		return err
	}
	defer srv.Stop()
	cfg, err := clientcmd.BuildConfigFromFlags("", srv.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	c := &cluster{o: o, cs: cs, log: logPath}
	if err := c.waitNode(ctx); err != nil {
		return err
	}
	if err := c.startPods(ctx); err != nil {
		return err
	}
	defer c.client.close()
	defer c.server.close()

	load0 := measure.LoadAvg()
	fmt.Printf("### Service proxy (issue 7)\n\n%s; %s; load average at start %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04Z"), measure.Machine(), load0)
	fmt.Printf("One node (`orch server` with its built-in agent) in a network namespace of its own; two busybox pods on it, " +
		"the Go client and servers run inside their network namespaces. Pod to pod through the bridge (pod IP) vs through the " +
		"Service's cluster IP (the node's nftables DNAT).\n\n")
	if err := c.traffic(ctx); err != nil {
		return err
	}
	if err := c.ruleSync(ctx); err != nil {
		return err
	}
	fmt.Printf("Load average at start %s, at end %s (the machine is shared; absolute numbers vary with it, the side-by-side ratios less).\n\n",
		load0, measure.LoadAvg())
	return nil
}

// waitNode waits for the node to be Ready with its images imported and
// for the default ServiceAccount, which pods need.
func (c *cluster) waitNode(ctx context.Context) error {
	return poll(90*time.Second, "node Ready with its images, and the default service account", func() bool {
		n, err := c.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		if _, err := c.cs.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return len(n.Status.Images) > 0
			}
		}
		return false
	})
}

// startPods runs the client and server pods and enters their network
// namespaces.
func (c *cluster) startPods(ctx context.Context) error {
	var err error
	for _, p := range []struct {
		name string
		nsr  **nsRunner
	}{{"nb-server", &c.server}, {"nb-client", &c.client}} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: namespace, Labels: map[string]string{"app": p.name}},
			Spec: corev1.PodSpec{
				NodeName:                      nodeName,
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "main", Image: imageTag, ImagePullPolicy: corev1.PullNever,
					Command: []string{"sleep", "3600"}}},
			},
		}
		if pod, err = c.cs.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create pod %s: %w", p.name, err)
		}
		var running *corev1.Pod
		if err := poll(90*time.Second, "pod "+p.name+" running", func() bool {
			running, err = c.cs.CoreV1().Pods(namespace).Get(ctx, p.name, metav1.GetOptions{})
			return err == nil && running.Status.Phase == corev1.PodRunning && running.Status.PodIP != ""
		}); err != nil {
			return err
		}
		pid, err := podPID(string(pod.UID))
		if err != nil {
			return err
		}
		h, err := netns.GetFromPid(pid)
		if err != nil {
			return fmt.Errorf("network namespace of pod %s (pid %d): %w", p.name, pid, err)
		}
		if *p.nsr, err = newNSRunner(h); err != nil {
			return fmt.Errorf("enter pod %s's network namespace: %w", p.name, err)
		}
		if p.name == "nb-server" {
			if c.serverIP, err = netip.ParseAddr(running.Status.PodIP); err != nil {
				return fmt.Errorf("pod %s's IP: %w", p.name, err)
			}
		}
	}
	return nil
}

// podPID finds a process of the pod with uid: any one shares the pod's
// network namespace. The pod's cgroup path holds its UID.
func podPID(uid string) (int, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cgroup"))
		if err == nil && strings.Contains(string(b), uid) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process in the cgroup of pod %s", uid)
}

// nsRunner runs functions on one OS thread inside a network namespace:
// the sockets they create belong to it, wherever they are used later.
type nsRunner struct {
	fns chan func()
	ns  netns.NsHandle
}

func newNSRunner(ns netns.NsHandle) (*nsRunner, error) {
	r := &nsRunner{fns: make(chan func()), ns: ns}
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with this goroutine
		// instead of running others in the pod's namespace.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for fn := range r.fns {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return r, nil
}

// run calls fn in the namespace and returns its error.
func (r *nsRunner) run(fn func() error) error {
	errc := make(chan error, 1)
	r.fns <- func() { errc <- fn() }
	return <-errc
}

// clone returns another runner in the same namespace, for concurrent
// clients.
func (r *nsRunner) clone() (*nsRunner, error) { return newNSRunner(r.ns) }

func (r *nsRunner) close() { close(r.fns) }

// poll calls ok until it returns true, every 50 ms, for at most timeout.
func poll(timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New(what + ": not within " + timeout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
