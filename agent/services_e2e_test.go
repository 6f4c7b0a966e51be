package agent

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orch-dev/orch/internal/netnstest"
)

const (
	netE2EDir        = "/tmp/orch-net-e2e"
	netE2ECgroupRoot = "/orch-net-e2e"
	netE2ENode       = "net-e2e"
	// netE2ENodeIP is the node's address inside its namespace; the test
	// namespace has no route anywhere else.
	netE2ENodeIP = "198.18.0.1/24"
)

// hostNetworkState is the host namespace's routes and nftables tables,
// which the test must leave as they were.
// keepHostNetwork fails t, when it ends, if the host namespace's routes
// or nft tables are not as they were when it was called: an e2e test
// touches only the namespaces it made.
func keepHostNetwork(t *testing.T) {
	t.Helper()
	before := hostNetworkState(t)
	t.Cleanup(func() {
		if after := hostNetworkState(t); after != before {
			t.Errorf("the host namespace's routes or nft tables changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

func hostNetworkState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"ip", "-o", "route", "show", "table", "all"}, {"nft", "list", "tables"}} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Skipf("%s: %v (apt-get install -y iproute2 nftables)", strings.Join(args, " "), err)
		}
		b.Write(out)
	}
	return b.String()
}

// startOrch runs orch with args in ns's network namespace (cgroups and
// mounts are the host's, as for a real node), logging to dir/logName,
// and stops it when the test ends.
func startOrch(t *testing.T, bin string, ns *netnstest.NS, dir, logName string, args ...string) *e2eProcess {
	t.Helper()
	return startE2EProcess(t, ns.NetCommand(context.Background(), bin, args...), filepath.Join(dir, logName))
}

// clientIn returns a clientset from kubeconfig whose connections are
// made inside ns.
func clientIn(t *testing.T, kubeconfig string, ns *netnstest.NS) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialInNetNS(ctx, ns.Path(), network, addr)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// startNetServer runs `orch server` with its node and the pod network
// backend in ns, its pods under cgroupRoot (its config file,
// dir/config.yaml, suits an agent too), and returns a clientset that
// reaches it there.
func startNetServer(t *testing.T, bin string, ns *netnstest.NS, dir, cgroupRoot, nodeName, bindIP, backend string) kubernetes.Interface {
	t.Helper()
	_, cs := startNetServerProcess(t, bin, ns, dir, cgroupRoot, nodeName, bindIP, backend)
	return cs
}

// startNetServerProcess is startNetServer with extra arguments for orch,
// also returning the process, for tests that restart it (with the same
// dir, again with this).
func startNetServerProcess(t *testing.T, bin string, ns *netnstest.NS, dir, cgroupRoot, nodeName, bindIP, backend string, extra ...string) (*e2eProcess, kubernetes.Interface) {
	t.Helper()
	data := filepath.Join(dir, "server")
	importBusybox(t, data)
	conf := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(conf, []byte("flannel-backend: "+backend+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig.yaml")
	if err := os.Remove(kubeconfig); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err) // a restart waits for the new one
	}
	srv := startOrch(t, bin, ns, dir, "server.log", append([]string{"server", "--config", conf, "--data-dir", data,
		"--bind-address", bindIP, "--https-listen-port", "6443",
		"--write-kubeconfig", kubeconfig, "--node-name", nodeName, "--cgroup-root", cgroupRoot}, extra...)...)
	srv.waitFile(t, kubeconfig)
	return srv, clientIn(t, kubeconfig, ns)
}

// netAgentArgs are the arguments of `orch agent --join serverURL` for
// node name, joining the server that startNetServer runs with its files
// in dir, with the same config file (and so the same backend), its data
// in dir/name and its pods under cgroupRoot. Starting it again with them
// restarts the node on its stored certificate.
func netAgentArgs(t *testing.T, dir, serverURL, name, cgroupRoot string) []string {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(dir, "server", "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{"agent", "--config", filepath.Join(dir, "config.yaml"),
		"--join", serverURL, "--token", strings.TrimSpace(string(token)),
		"--node-name", name, "--data-dir", filepath.Join(dir, name), "--cgroup-root", cgroupRoot}
}

// runToCompletion runs a one-shot busybox pod and returns its output; the
// pod must succeed.
func runToCompletion(t *testing.T, cs kubernetes.Interface, node, name string, script string) string {
	t.Helper()
	pod := newPod(name, v1.Container{Name: "main", Command: []string{"sh", "-c", script}})
	pod.Spec.NodeName = node
	pod.Spec.RestartPolicy = v1.RestartPolicyNever
	createPod(t, cs, pod)
	p := waitPod(t, cs, name, 90*time.Second, "finished", func(p *v1.Pod) bool {
		return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
	})
	out, _ := cs.CoreV1().Pods("default").GetLogs(name, &v1.PodLogOptions{}).DoRaw(context.Background())
	if p.Status.Phase != v1.PodSucceeded {
		t.Fatalf("pod %s (%s) failed; output:\n%s", name, script, out)
	}
	return string(out)
}

// TestPodNetworkE2E runs the real orch server and its node in a network
// namespace of their own: pods get addresses from the node's podCIDR,
// reach each other by IP, and reach a Service by its DNS name through
// the node-local DNS server and the nftables service proxy.
func TestPodNetworkE2E(t *testing.T) {
	bin := e2eBinary(t)
	netnstest.Skip(t, "nft", "nsenter")
	keepHostNetwork(t)
	// Its own cgroup root, so that whatever the node leaves running
	// when it stops (a stopped node keeps its pods) is killed.
	freshE2EDir(t, netE2EDir, netE2ECgroupRoot)

	ns := netnstest.New(t, "orchnet-node")
	netnstest.NewSwitch(t, "orchnet-sw").Attach(t, ns, "uplink", netip.MustParsePrefix(netE2ENodeIP))
	// What a default route does on a real node: packets to service
	// addresses get past routing to the proxy's filter chains (here they
	// go no further than the test's switch).
	ns.MustRun(t, "ip", "route", "add", "10.43.0.0/16", "dev", "uplink")
	cs := startNetServer(t, bin, ns, netE2EDir, netE2ECgroupRoot, netE2ENode, "127.0.0.1", "auto")
	ctx := context.Background()

	podCIDR := nodePodCIDR(t, cs, netE2ENode)
	deletePodsAtEnd(t, cs)
	webIP := startWeb(t, cs, netE2ENode, podCIDR)
	out := runToCompletion(t, cs, netE2ENode, "by-ip", "ip -4 -o addr show eth0 && ping -c 1 -W 5 "+webIP.String()+" && "+httpGet(webIP.String()))
	if !strings.Contains(out, "hello-from-web") || !strings.Contains(out, "1 packets received") {
		t.Errorf("by-ip output:\n%s", out)
	}
	if !strings.Contains(out, "inet "+podCIDR.Addr().Next().Next().Next().String()+"/24") {
		t.Errorf("client address not the third of %s:\n%s", podCIDR, out)
	}

	// And through the Service by its DNS name (node-local DNS, then the
	// proxy's DNAT to the pod).
	out = runToCompletion(t, cs, netE2ENode, "by-name", "cat /etc/resolv.conf && nslookup web.default.svc.cluster.local && "+httpGetByName("web.default.svc.cluster.local")+" && "+httpGetByName("web"))
	websvc, err := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "hello-from-web") != 2 || !strings.Contains(out, "nameserver 10.43.0.10") ||
		!strings.Contains(out, "Address: "+websvc.Spec.ClusterIP) {
		t.Errorf("by-name output:\n%s", out)
	}

	// A NodePort answers on the node's address and on its 127.0.0.1.
	np := createHTTPService(t, cs, "web-np", "web", v1.ServiceTypeNodePort)
	nodeIP := netip.MustParsePrefix(netE2ENodeIP).Addr()
	for _, addr := range []netip.Addr{nodeIP, netip.MustParseAddr("127.0.0.1")} {
		target := netip.AddrPortFrom(addr, uint16(np.Spec.Ports[0].NodePort)).String()
		waitFor(t, 30*time.Second, "NodePort "+target, func() (bool, error) {
			body, err := httpGetIn(ctx, ns, target)
			return err == nil && strings.Contains(body, "hello-from-web"), nil
		})
	}

	// A Service without endpoints refuses at once instead of timing out.
	createHTTPService(t, cs, "empty", "nothing", v1.ServiceTypeClusterIP)
	// The node programs a new Service within moments of its creation;
	// until then its address is not yet known here, so ask a few times.
	out = runToCompletion(t, cs, netE2ENode, "refused",
		"for i in $(seq 20); do if out=$("+httpGet("empty")+" 2>&1); then exit 1; fi; echo \"$out\"; "+
			"case \"$out\" in *'Connection refused'*) exit 0;; esac; sleep 1; done; exit 1")
	if !strings.Contains(out, "Connection refused") {
		t.Errorf("connecting to a Service without endpoints:\n%s", out)
	}

	// Hairpin: a pod reaches itself through its own Service.
	hairpin := newPod("hairpin", v1.Container{Name: "main", Command: []string{"sh", "-c",
		"mkdir -p /www && echo hello-from-hairpin > /www/index.html && httpd -p 80 -h /www && " +
			"for i in $(seq 60); do " + httpGet("hairpin") + " | grep -q hello-from-hairpin && exit 0; sleep 1; done; exit 1"}})
	hairpin.Labels = map[string]string{"app": "hairpin"}
	hairpin.Spec.NodeName = netE2ENode
	hairpin.Spec.RestartPolicy = v1.RestartPolicyNever
	createHTTPService(t, cs, "hairpin", "hairpin", v1.ServiceTypeClusterIP)
	createPod(t, cs, hairpin)
	if p := waitPod(t, cs, "hairpin", 90*time.Second, "finished", func(p *v1.Pod) bool {
		return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
	}); p.Status.Phase != v1.PodSucceeded {
		t.Errorf("the hairpin pod could not reach itself through its Service")
	}
}

// deletePodsAtEnd deletes the test's pods before the nodes stop (a
// stopped agent leaves its pods running) and waits until they are gone.
func deletePodsAtEnd(t *testing.T, cs kubernetes.Interface) { deleteWorkloadsAtEnd(t, cs, "default") }

// deleteWorkloadsAtEnd deletes, when the test ends and before the nodes
// stop, the Deployments, ReplicaSets and StatefulSets of namespace (so
// that nothing recreates its pods) and then its pods, and waits until the
// pods are gone.
func deleteWorkloadsAtEnd(t *testing.T, cs kubernetes.Interface, namespace string) {
	ctx := context.Background()
	t.Cleanup(func() {
		all, now := metav1.ListOptions{}, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}
		_ = cs.AppsV1().Deployments(namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, all)
		_ = cs.AppsV1().StatefulSets(namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, all)
		_ = cs.AppsV1().ReplicaSets(namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, all)
		_ = cs.CoreV1().Pods(namespace).DeleteCollection(ctx, now, all)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			l, err := cs.CoreV1().Pods(namespace).List(ctx, all)
			if err == nil && len(l.Items) == 0 {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Errorf("pods of namespace %s not gone within 60s", namespace)
	})
}

// startWeb runs a busybox httpd pod "web" on node behind a ClusterIP
// Service "web" and returns the pod's address, checked to be in podCIDR.
func startWeb(t *testing.T, cs kubernetes.Interface, node string, podCIDR netip.Prefix) netip.Addr {
	t.Helper()
	web := newPod("web", v1.Container{
		Name:    "httpd",
		Command: []string{"sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"},
		ReadinessProbe: &v1.Probe{
			ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
			PeriodSeconds: 1,
		},
	})
	web.Labels = map[string]string{"app": "web"}
	web.Spec.NodeName = node
	createPod(t, cs, web)
	createHTTPService(t, cs, "web", "web", v1.ServiceTypeClusterIP)
	p := waitPod(t, cs, "web", 90*time.Second, "ready", podReady)
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil || !podCIDR.Contains(ip) {
		t.Fatalf("web pod IP %q is not in its node's podCIDR %s", p.Status.PodIP, podCIDR)
	}
	return ip
}

// createHTTPService creates Service name of type typ, port 80 to port 80
// of the pods labelled app=app.
func createHTTPService(t *testing.T, cs kubernetes.Interface, name, app string, typ v1.ServiceType) *v1.Service {
	t.Helper()
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{"app": app},
			Ports:    []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
	out, err := cs.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
	return out
}

// httpGet is a shell command fetching / from host:80. busybox-static's
// wget crashes in static glibc's NSS here; nc with a hand-written request
// does the same over TCP.
func httpGet(host string) string { return httpGetPath(host, "/") }

// httpGetPath is httpGet of path.
func httpGetPath(host, path string) string {
	return "printf 'GET " + path + " HTTP/1.0\\r\\n\\r\\n' | nc -w 5 " + host + " 80"
}

// httpGetByName is httpGet of a Service by DNS name with three attempts
// of 20 s each: the node programs a new Service moments after it is
// created, and the test checks that the name resolves and answers, not
// the first packet.
func httpGetByName(host string) string {
	return `(for i in 1 2 3; do timeout 20 sh -c "` + httpGet(host) + `" && exit 0; done; exit 1)`
}

// httpGetIn fetches / from addr, connecting from inside ns.
func httpGetIn(ctx context.Context, ns *netnstest.NS, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dialInNetNS(ctx, ns.Path(), "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// nodePodCIDR waits for node to be Ready with a podCIDR and returns it.
func nodePodCIDR(t *testing.T, cs kubernetes.Interface, node string) netip.Prefix {
	t.Helper()
	var podCIDR netip.Prefix
	waitFor(t, 90*time.Second, "node "+node+" Ready with a podCIDR", func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil || n.Spec.PodCIDR == "" {
			return false, nil
		}
		podCIDR, err = netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil {
			return false, err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady {
				return c.Status == v1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	return podCIDR
}

// The two-node network e2e: the server with its node and a joined agent,
// each in its own namespace on one switch.
const (
	net2E2EDir        = "/tmp/orch-net2-e2e"
	net2E2EServer     = "orchnet2-s"
	net2E2EAgent      = "orchnet2-a"
	net2E2ECgroupRoot = "/orch-net2-e2e"
)

// TestPodNetworkTwoNodesE2E: a pod on the server's node reaches a pod on
// a joined agent's node by its address and through a Service by DNS
// name, with each backend (host-gw routes, or VXLAN although the nodes
// share a segment).
func TestPodNetworkTwoNodesE2E(t *testing.T) {
	bin := e2eBinary(t)
	netnstest.Skip(t, "nft", "nsenter")
	for _, backend := range []string{"host-gw", "vxlan"} {
		t.Run(backend, func(t *testing.T) { testTwoNodes(t, bin, backend) })
	}
}

func testTwoNodes(t *testing.T, bin, backend string) {
	keepHostNetwork(t)
	freshE2EDir(t, net2E2EDir, net2E2ECgroupRoot)

	sw := netnstest.NewSwitch(t, "orchnet2-sw")
	srvNS, agentNS := netnstest.New(t, net2E2EServer), netnstest.New(t, net2E2EAgent)
	sw.Attach(t, srvNS, "eth0", netip.MustParsePrefix("198.18.20.1/24"))
	sw.Attach(t, agentNS, "eth0", netip.MustParsePrefix("198.18.20.2/24"))

	cs := startNetServer(t, bin, srvNS, net2E2EDir, net2E2ECgroupRoot+"/server", net2E2EServer, "198.18.20.1", backend)
	importBusybox(t, filepath.Join(net2E2EDir, net2E2EAgent))
	startOrch(t, bin, agentNS, net2E2EDir, net2E2EAgent+".log",
		netAgentArgs(t, net2E2EDir, "https://198.18.20.1:6443", net2E2EAgent, net2E2ECgroupRoot+"/agent")...)

	serverCIDR := nodePodCIDR(t, cs, net2E2EServer)
	agentCIDR := nodePodCIDR(t, cs, net2E2EAgent)
	if serverCIDR.Overlaps(agentCIDR) {
		t.Fatalf("nodes got overlapping podCIDRs %s and %s", serverCIDR, agentCIDR)
	}
	deletePodsAtEnd(t, cs)
	webIP := startWeb(t, cs, net2E2EAgent, agentCIDR)
	wantDev := map[string]string{"host-gw": "dev eth0", "vxlan": "dev orch.1"}[backend]
	waitFor(t, 30*time.Second, "route to the agent's pods "+wantDev, func() (bool, error) {
		out, err := srvNS.Run("ip", "route", "show", agentCIDR.String())
		return err == nil && strings.Contains(out, wantDev), nil
	})

	out := runToCompletion(t, cs, net2E2EServer, "cross-ip", "ping -c 1 -W 5 "+webIP.String()+" && "+httpGet(webIP.String()))
	if !strings.Contains(out, "hello-from-web") || !strings.Contains(out, "1 packets received") {
		t.Errorf("cross-node by IP:\n%s", out)
	}
	out = runToCompletion(t, cs, net2E2EServer, "cross-name", httpGetByName("web.default.svc.cluster.local"))
	if !strings.Contains(out, "hello-from-web") {
		t.Errorf("cross-node by service name:\n%s", out)
	}
}
