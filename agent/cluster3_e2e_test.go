package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/orch-dev/orch/internal/ingressclass"
	"github.com/orch-dev/orch/internal/netnstest"
)

// The three-node acceptance run of the pod network (issue 7): the server
// with its own node and two agents joined with a token, each orch in a
// network namespace of its own on one switch.
const (
	net3E2EDir        = "/tmp/orch-net3-e2e"
	net3E2ECgroupRoot = "/orch-net3-e2e"
	// net3Namespace holds everything the checks create.
	net3Namespace = "jds"
	// net3Requests is how many requests a check that counts answering
	// pods sends: with random balancing over three ready pods, the chance
	// that one of them gets none of 30 is 3·(2/3)^30 ≈ 2·10⁻⁵.
	net3Requests = 30
)

// TestThreeNodesE2E is issue 7's acceptance: with each backend, three
// nodes (the server's and two joined agents) and the real kubectl, pods
// reach each other across nodes with their source addresses kept; a
// Deployment behind a ClusterIP Service is reached by DNS name from
// another node with the requests spread over its replicas; a replica
// failing its readiness probe leaves the rotation; a NodePort answers on
// every node from a node's host side; sessionAffinity ClientIP holds a
// client to one pod; a Service without endpoints refuses at once;
// NetworkPolicy denies and then allows across nodes; an agent killed and
// restarted keeps open connections through Services and its rules; a
// headless Service gives StatefulSet pods their names. The host's
// network namespace ends as it began.
func TestThreeNodesE2E(t *testing.T) {
	bin := e2eBinary(t, "kubectl")
	netnstest.Skip(t, "nft", "nsenter")
	for _, backend := range []string{"vxlan", "host-gw"} {
		t.Run(backend, func(t *testing.T) {
			keepHostNetwork(t)
			c := startNet3Cluster(t, bin, backend)
			for _, check := range net3Checks() {
				if !t.Run(check.name, func(t *testing.T) { check.run(c, t) }) && check.needed {
					t.Fatalf("%s failed; the checks after it build on it", check.name)
				}
			}
		})
	}
}

// net3Check is one acceptance check on a running cluster.
type net3Check struct {
	name string
	run  func(c *net3Cluster, t *testing.T)
	// needed says the checks after this one rely on its outcome.
	needed bool
}

// net3Checks are the checks, in the order they run on each backend's
// cluster. They share its workloads (net3Workloads) and leave them as
// they found them, except the last, which turns Service web headless.
// New checks (the Ingress one is next) go before "headless".
func net3Checks() []net3Check {
	return []net3Check{
		{name: "pod-to-pod", run: (*net3Cluster).checkPodToPod, needed: true},
		{name: "service-by-name", run: (*net3Cluster).checkServiceByName},
		{name: "readiness", run: (*net3Cluster).checkReadiness},
		{name: "nodeport", run: (*net3Cluster).checkNodePort},
		{name: "session-affinity", run: (*net3Cluster).checkSessionAffinity},
		{name: "no-endpoints", run: (*net3Cluster).checkNoEndpoints},
		{name: "network-policy", run: (*net3Cluster).checkNetworkPolicy},
		{name: "agent-restart", run: (*net3Cluster).checkAgentRestart},
		{name: "ingress", run: (*net3Cluster).checkIngress},
		{name: "headless", run: (*net3Cluster).checkHeadless},
	}
}

// net3Node is one node of the cluster: its namespace, address and, for a
// joined agent, how to start it again.
type net3Node struct {
	name    string
	ns      *netnstest.NS
	ip      netip.Addr
	podCIDR netip.Prefix
	// probe is the name of the probe pod on this node and probeIP its
	// address.
	probe   string
	probeIP string
	// args and proc are the agent's command line and process (nil for
	// the server's node).
	args []string
	proc *e2eProcess
}

// net3Cluster is a running three-node cluster.
type net3Cluster struct {
	// t is the test the cluster lives as long as: processes started for
	// it stop when it ends, not when the check that started them does.
	t       *testing.T
	bin     string
	cs      kubernetes.Interface
	kubectl *kubectlRunner
	// nodes are the server's node and the two agents, in that order.
	nodes []*net3Node
}

func (c *net3Cluster) server() *net3Node { return c.nodes[0] }
func (c *net3Cluster) agent1() *net3Node { return c.nodes[1] }
func (c *net3Cluster) agent2() *net3Node { return c.nodes[2] }

// startNet3Cluster builds the network, starts the server with its node
// and joins the two agents, waits for all three Ready with disjoint
// podCIDRs and routes to each other's pods by the backend's means, and
// starts the test's workloads.
func startNet3Cluster(t *testing.T, bin, backend string) *net3Cluster {
	t.Helper()
	freshE2EDir(t, net3E2EDir, net3E2ECgroupRoot)
	c := &net3Cluster{t: t, bin: bin}
	sw := netnstest.NewSwitch(t, "o3-sw")
	for i, name := range []string{"o3-server", "o3-agent1", "o3-agent2"} {
		n := &net3Node{name: name, ns: netnstest.New(t, name), ip: netip.AddrFrom4([4]byte{198, 18, 30, byte(i + 1)}), probe: "probe-" + strconv.Itoa(i)}
		sw.Attach(t, n.ns, "eth0", netip.PrefixFrom(n.ip, 24))
		// What a default route does on a real node: packets from the
		// host side to service addresses get past routing to the
		// proxy's chains (here they go no further than the switch).
		n.ns.MustRun(t, "ip", "route", "add", "10.43.0.0/16", "dev", "eth0")
		c.nodes = append(c.nodes, n)
	}
	srv := c.server()
	c.cs = startNetServer(t, bin, srv.ns, net3E2EDir, net3E2ECgroupRoot+"/server", srv.name, srv.ip.String(), backend)
	c.kubectl = &kubectlRunner{ns: srv.ns, kubeconfig: filepath.Join(net3E2EDir, "kubeconfig.yaml"), cacheDir: filepath.Join(net3E2EDir, "kube-cache")}
	serverURL := "https://" + srv.ip.String() + ":6443"
	for _, n := range c.nodes[1:] {
		importBusybox(t, filepath.Join(net3E2EDir, n.name))
		n.args = netAgentArgs(t, net3E2EDir, serverURL, n.name, net3E2ECgroupRoot+"/"+n.name)
		n.proc = startOrch(t, bin, n.ns, net3E2EDir, n.name+".log", n.args...)
	}
	for _, n := range c.nodes {
		n.podCIDR = nodePodCIDR(t, c.cs, n.name)
	}
	for i, a := range c.nodes {
		for _, b := range c.nodes[i+1:] {
			if a.podCIDR.Overlaps(b.podCIDR) {
				t.Fatalf("nodes %s and %s got overlapping podCIDRs %s and %s", a.name, b.name, a.podCIDR, b.podCIDR)
			}
		}
	}
	// Each node routes the others' pods over the switch (host-gw) or
	// the VXLAN device.
	wantDev := map[string]string{"host-gw": "dev eth0", "vxlan": "dev orch.1"}[backend]
	for _, n := range c.nodes {
		for _, other := range c.nodes {
			if other == n {
				continue
			}
			waitFor(t, 30*time.Second, n.name+"'s route to "+other.name+"'s pods "+wantDev, func() (bool, error) {
				out, err := n.ns.Run("ip", "route", "show", other.podCIDR.String())
				return err == nil && strings.Contains(out, wantDev), nil
			})
		}
	}
	deleteWorkloadsAtEnd(t, c.cs, net3Namespace)
	c.apply(t, net3Workloads(c))
	c.waitReadyPods(t, "app in (probe,web,echo)", 3+3+2)
	for _, n := range c.nodes {
		p, err := c.cs.CoreV1().Pods(net3Namespace).Get(context.Background(), n.probe, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !n.podCIDR.Contains(ip) {
			t.Fatalf("pod %s has address %q, not one of its node's podCIDR %s", n.probe, p.Status.PodIP, n.podCIDR)
		}
		n.probeIP = p.Status.PodIP
	}
	return c
}

// net3Serve is the script of the test's HTTP pods: busybox httpd on port
// 80 serving a page naming the pod, /ready for the readiness probe (the
// test removes it to fail the probe) and /cgi-bin/who, which answers
// "pod=NAME from=CLIENT-ADDRESS".
const net3Serve = `mkdir -p /www/cgi-bin && echo ok > /www/ready && echo "hello-from-web pod=$(hostname)" > /www/index.html &&
printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho "pod=$(hostname) from=$REMOTE_ADDR"\n' > /www/cgi-bin/who &&
chmod +x /www/cgi-bin/who && exec httpd -f -p 80 -h /www`

// net3PodSpec is the spec of a pod running net3Serve, ready while its
// /ready is there.
func net3PodSpec(indent string) string {
	spec := `terminationGracePeriodSeconds: 1
containers:
- name: c
  image: ` + e2eImage + `
  imagePullPolicy: IfNotPresent
  command: ["sh", "-c", ` + strconv.Quote(net3Serve) + `]
  readinessProbe: {httpGet: {path: /ready, port: 80}, periodSeconds: 1}
`
	return indent + strings.ReplaceAll(strings.TrimSuffix(spec, "\n"), "\n", "\n"+indent) + "\n"
}

// net3Workloads is what every check works with, in namespace jds: a probe
// pod on each node (which serves net3Serve and is where requests come
// from); Deployment web, three replicas on the nodes other than agent-1
// so that agent-1's probe reaches all of them across nodes, behind
// Service web, a NodePort web-np and web-sticky with sessionAffinity
// ClientIP; Service empty without endpoints; and an echo server (nc
// running cat) on each agent behind Services echo-1 and echo-2.
func net3Workloads(c *net3Cluster) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: " + net3Namespace + "}\n")
	for i, n := range c.nodes {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: {app: probe, node: %q}}\nspec:\n  nodeName: %s\n%s",
			n.probe, net3Namespace, strconv.Itoa(i), n.name, net3PodSpec("  "))
	}
	fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: kubernetes.io/hostname, operator: NotIn, values: [%[2]s]}]
%[3]s`, net3Namespace, c.agent1().name, net3PodSpec("      "))
	for _, svc := range []struct{ name, app, extra string }{
		{"web", "web", ""},
		{"web-np", "web", "type: NodePort"},
		{"web-sticky", "web", "sessionAffinity: ClientIP"},
		{"empty", "nothing", ""},
	} {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec:\n  selector: {app: %s}\n  ports: [{name: http, port: 80, targetPort: 80}]\n",
			svc.name, net3Namespace, svc.app)
		if svc.extra != "" {
			b.WriteString("  " + svc.extra + "\n")
		}
	}
	for i, n := range c.nodes[1:] {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: echo-%[1]d, namespace: %[2]s, labels: {app: echo, echo: "%[1]d"}}
spec:
  nodeName: %[3]s
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: %[4]s, imagePullPolicy: IfNotPresent, command: [nc, -ll, -p, "7000", -e, cat]}
---
apiVersion: v1
kind: Service
metadata: {name: echo-%[1]d, namespace: %[2]s}
spec:
  selector: {echo: "%[1]d"}
  ports: [{port: 7000, targetPort: 7000}]
`, i+1, net3Namespace, n.name, e2eImage)
	}
	return b.String()
}

// apply runs kubectl apply with manifests.
func (c *net3Cluster) apply(t *testing.T, manifests string) {
	t.Helper()
	if out, err := c.kubectl.runIn(manifests, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\nmanifests:\n%s", err, out, manifests)
	}
}

// waitReadyPods waits until n pods matching selector in jds are Ready
// and none is not, and returns them.
func (c *net3Cluster) waitReadyPods(t *testing.T, selector string, n int) []v1.Pod {
	t.Helper()
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		l, err := c.cs.CoreV1().Pods(net3Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err == nil && len(l.Items) == n && !slices.ContainsFunc(l.Items, func(p v1.Pod) bool {
			return !podReady(&p) || p.DeletionTimestamp != nil
		}) {
			return l.Items
		}
		if time.Now().After(deadline) {
			out, _ := c.kubectl.run("describe", "pods", "-n", net3Namespace, "-l", selector)
			t.Fatalf("not %d ready pods %s within 120s (%v):\n%s", n, selector, err, out)
		}
	}
}

// exec runs script in pod's container with kubectl exec and returns its
// output.
func (c *net3Cluster) exec(pod, script string) (string, error) {
	out, err := c.kubectl.run("exec", "-n", net3Namespace, pod, "--", "sh", "-c", script)
	if err != nil {
		return out, fmt.Errorf("kubectl exec %s -- sh -c %q: %w", pod, script, err)
	}
	return out, nil
}

// who asks host's /cgi-bin/who count times from pod and returns how
// often each pod answered, and the client addresses they saw.
func (c *net3Cluster) who(pod, host string, count int) (answers map[string]int, from map[string]bool, err error) {
	out, err := c.exec(pod, "for i in $(seq "+strconv.Itoa(count)+"); do "+httpGetPath(host, "/cgi-bin/who")+"; done")
	if err != nil {
		return nil, nil, err
	}
	answers, from = parseWho(out)
	return answers, from, nil
}

// parseWho reads answers of /cgi-bin/who: how often each pod answered,
// and the client addresses they saw.
func parseWho(out string) (answers map[string]int, from map[string]bool) {
	answers, from = map[string]int{}, map[string]bool{}
	for _, f := range strings.Fields(out) {
		if name, ok := strings.CutPrefix(f, "pod="); ok {
			answers[name]++
		} else if addr, ok := strings.CutPrefix(f, "from="); ok {
			// httpd listens on IPv6 and names IPv4 clients in their
			// mapped form, "[::ffff:10.42.0.2]".
			if a, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
				addr = a.Unmap().String()
			}
			from[addr] = true
		}
	}
	return answers, from
}

// service returns Service name of jds.
func (c *net3Cluster) service(t *testing.T, name string) *v1.Service {
	t.Helper()
	svc, err := c.cs.CoreV1().Services(net3Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// checkPodToPod: every node's probe pod reaches every other node's by
// its address, and the answering pod sees the client's own pod address
// (no masquerade between pods).
func (c *net3Cluster) checkPodToPod(t *testing.T) {
	for _, src := range c.nodes {
		// One kubectl exec per client: each answer names its pod.
		var script []string
		for _, dst := range c.nodes {
			if dst != src {
				script = append(script, httpGetPath(dst.probeIP, "/cgi-bin/who"))
			}
		}
		out, err := c.exec(src.probe, strings.Join(script, "; "))
		if err != nil {
			t.Errorf("from %s: %v\n%s", src.name, err, out)
			continue
		}
		answers, from := parseWho(out)
		if len(from) != 1 || !from[src.probeIP] {
			t.Errorf("the other pods saw %s (%s) from %v, want its own address %s", src.probe, src.name, from, src.probeIP)
		}
		for _, dst := range c.nodes {
			if dst != src && answers[dst.probe] != 1 {
				t.Errorf("%s (%s) → %s (%s, %s): no answer:\n%s", src.probe, src.name, dst.probe, dst.probeIP, dst.name, out)
			}
		}
	}
}

// checkServiceByName: agent-1's probe resolves web.jds.svc.cluster.local
// to Service web's ClusterIP and its requests by that name reach every
// replica (all on other nodes), which see the probe's address.
func (c *net3Cluster) checkServiceByName(t *testing.T) {
	const name = "web." + net3Namespace + ".svc.cluster.local"
	web := c.service(t, "web")
	client := c.agent1()
	out, err := c.exec(client.probe, "nslookup "+name)
	if err != nil || !strings.Contains(out, "Address: "+web.Spec.ClusterIP) {
		t.Errorf("nslookup %s in %s: %v\n%s\nwant the ClusterIP %s", name, client.probe, err, out, web.Spec.ClusterIP)
	}
	replicas := c.waitReadyPods(t, "app=web", 3)
	answers, from, err := c.who(client.probe, name, net3Requests)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range replicas {
		total += answers[p.Name]
		if answers[p.Name] == 0 {
			t.Errorf("replica %s (node %s) got none of %d requests to %s: %v", p.Name, p.Spec.NodeName, net3Requests, name, answers)
		}
	}
	if total != net3Requests {
		t.Errorf("%d of %d requests to %s answered by web's replicas: %v", total, net3Requests, name, answers)
	}
	// Service traffic between pods is not masqueraded either.
	if len(from) != 1 || !from[client.probeIP] {
		t.Errorf("the replicas saw requests from %v, want the client pod's address %s", from, client.probeIP)
	}
}

// checkReadiness: a replica whose readiness probe fails leaves Service
// web's endpoints and gets no more requests; once it passes again it is
// back in the rotation.
func (c *net3Cluster) checkReadiness(t *testing.T) {
	ctx := context.Background()
	replicas := c.waitReadyPods(t, "app=web", 3)
	victim := replicas[0]
	client := c.agent1().probe
	host := c.service(t, "web").Spec.ClusterIP
	if _, err := c.exec(victim.Name, "rm /www/ready"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "web's endpoints without "+victim.Name, func() (bool, error) {
		return !c.endpointReady(ctx, "web", victim.Status.PodIP), nil
	})
	// The nodes follow the endpoints within moments: wait for a round
	// without the replica, then another must have none either.
	for round := 0; ; round++ {
		answers, _, err := c.who(client, host, net3Requests)
		if err != nil {
			t.Fatal(err)
		}
		if answers[victim.Name] == 0 {
			t.Logf("round %d of %d requests without %s: %v", round, net3Requests, victim.Name, answers)
			break
		}
		if round == 10 {
			t.Fatalf("%s still answers through Service web after failing its readiness probe: %v", victim.Name, answers)
		}
		time.Sleep(time.Second)
	}
	answers, _, err := c.who(client, host, net3Requests)
	if err != nil {
		t.Fatal(err)
	}
	if answers[victim.Name] != 0 || len(answers) != 2 {
		t.Errorf("requests after %s became unready: %v, want the two other replicas only", victim.Name, answers)
	}

	if _, err := c.exec(victim.Name, "echo ok > /www/ready"); err != nil {
		t.Fatal(err)
	}
	c.waitReadyPods(t, "app=web", 3)
	waitFor(t, 60*time.Second, victim.Name+" back in Service web's rotation", func() (bool, error) {
		answers, _, err := c.who(client, host, net3Requests)
		return err == nil && answers[victim.Name] > 0, nil
	})
}

// endpointReady says whether ip is a ready endpoint of Service svc.
func (c *net3Cluster) endpointReady(ctx context.Context, svc, ip string) bool {
	l, err := c.cs.DiscoveryV1().EndpointSlices(net3Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return true
	}
	for _, sl := range l.Items {
		for _, ep := range sl.Endpoints {
			if slices.Contains(ep.Addresses, ip) && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				return true
			}
		}
	}
	return false
}

// checkNodePort: from the host side of agent-1's namespace, NodePort
// web-np answers on every node's address and on agent-1's 127.0.0.1,
// though no replica runs on agent-1.
func (c *net3Cluster) checkNodePort(t *testing.T) {
	port := uint16(c.service(t, "web-np").Spec.Ports[0].NodePort)
	targets := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	for _, n := range c.nodes {
		targets = append(targets, n.ip)
	}
	for _, addr := range targets {
		target := netip.AddrPortFrom(addr, port).String()
		waitFor(t, 30*time.Second, "NodePort "+target+" from "+c.agent1().name, func() (bool, error) {
			body, err := httpGetIn(context.Background(), c.agent1().ns, target)
			return err == nil && strings.Contains(body, "hello-from-web pod=web-"), nil
		})
	}
}

// checkIngress: one Ingress of the built-in class routes two hosts to two
// Services, web (three replicas on the server's node and agent-2) and
// probes (the probe pods of every node), and each node's ingress proxy
// answers it on port 80 of its address for a client outside the cluster
// (agent-2's host side), reaching pods on other nodes.
func (c *net3Cluster) checkIngress(t *testing.T) {
	c.apply(t, `apiVersion: v1
kind: Service
metadata: {name: probes, namespace: `+net3Namespace+`}
spec:
  selector: {app: probe}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: two-hosts, namespace: `+net3Namespace+`}
spec:
  rules:
  - host: web.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}]
  - host: probes.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: probes, port: {number: 80}}}}]
`)
	client := c.agent2().ns
	get := func(node netip.Addr, host string) (string, error) {
		conn, err := dialInNetNS(context.Background(), client.Path(), "tcp4", netip.AddrPortFrom(node, 80).String())
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /cgi-bin/who HTTP/1.0\r\nHost: %s\r\n\r\n", host)
		body, err := io.ReadAll(conn)
		return string(body), err
	}
	for _, n := range c.nodes {
		for host, prefix := range map[string]string{"web.example.com": "web-", "probes.example.com": "probe-"} {
			var answers map[string]int
			waitFor(t, 60*time.Second, host+" through "+n.name+"'s ingress proxy", func() (bool, error) {
				seen := map[string]int{}
				for range 10 {
					body, err := get(n.ip, host)
					if err != nil {
						return false, nil
					}
					got, _ := parseWho(body)
					for pod, k := range got {
						seen[pod] += k
					}
				}
				answers = seen
				for pod := range seen {
					if !strings.HasPrefix(pod, prefix) {
						return false, fmt.Errorf("%s via %s answered by %s, not a %s* pod: %v", host, n.name, pod, prefix, seen)
					}
				}
				return len(seen) > 1, nil // spread over the Service's pods
			})
			t.Logf("%s via %s: %v", host, n.name, answers)
		}
	}
	if out, err := c.kubectl.run("delete", "ingress", "two-hosts", "-n", net3Namespace); err != nil {
		t.Errorf("kubectl delete ingress: %v\n%s", err, out)
	}
}

// checkSessionAffinity: every request of one client to web-sticky
// (sessionAffinity ClientIP) reaches the same replica.
func (c *net3Cluster) checkSessionAffinity(t *testing.T) {
	host := c.service(t, "web-sticky").Spec.ClusterIP
	for _, n := range []*net3Node{c.agent1(), c.server()} {
		answers, _, err := c.who(n.probe, host, net3Requests)
		if err != nil {
			t.Fatal(err)
		}
		if len(answers) != 1 {
			t.Errorf("%s's requests to web-sticky (sessionAffinity ClientIP) reached %d replicas: %v", n.probe, len(answers), answers)
		}
	}
}

// checkNoEndpoints: Service empty has no endpoints; connecting to it
// fails at once with "connection refused" (the proxy's ICMP reject), not
// by a timeout, from agent-1's host side and from its pod.
func (c *net3Cluster) checkNoEndpoints(t *testing.T) {
	addr := netip.AddrPortFrom(netip.MustParseAddr(c.service(t, "empty").Spec.ClusterIP), 80).String()
	// The deadline is only there to tell a refusal from a hang: a
	// timed-out dial fails with a different error.
	dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := dialInNetNS(dctx, c.agent1().ns.Path(), "tcp", addr)
	t.Logf("dial %s (Service empty) from %s's host side: %v after %v", addr, c.agent1().name, err, time.Since(start))
	if err == nil {
		conn.Close()
		t.Errorf("connected to %s, Service empty, which has no endpoints", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s (Service empty, no endpoints) from %s: %v, want connection refused", addr, c.agent1().name, err)
	}
	out, err := c.exec(c.agent1().probe, "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 "+strings.ReplaceAll(addr, ":", " ")+" 2>&1; true")
	if err != nil || !strings.Contains(out, "Connection refused") {
		t.Errorf("nc to Service empty from %s: %v\n%s\nwant Connection refused", c.agent1().probe, err, out)
	}
}

// Policies of checkNetworkPolicy: deny all ingress in jds, then let pods
// with role=client reach agent-2's probe on port 80.
const (
	net3DenyAll = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: jds}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`
	net3AllowClients = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: probe-2-from-clients, namespace: jds}
spec:
  podSelector: {matchLabels: {node: "2"}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    ports:
    - {protocol: TCP, port: 80}
`
)

// checkNetworkPolicy: NetworkPolicy across nodes, client on agent-1,
// server pod on agent-2. A default-deny policy stops agent-1's probe;
// a policy allowing pods labelled role=client lets it through once it
// carries the label, while the server node's probe stays refused; with
// the policies gone everyone gets through again.
func (c *net3Cluster) checkNetworkPolicy(t *testing.T) {
	client, other, target := c.agent1().probe, c.server().probe, c.agent2()
	// reach is a shell condition: pod's request to the target answers
	// within 2 s.
	reach := "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 " + target.probeIP + " 80 | grep -q pod=" + target.probe
	// until runs cond in pod until it holds, at most 20 times (which
	// stays within kubectl's 90 s): rules follow a policy within
	// moments; the test decides by the state reached, not how soon.
	until := func(pod, what, cond string) {
		t.Helper()
		if out, err := c.exec(pod, "for i in $(seq 20); do if "+cond+"; then exit 0; fi; sleep 1; done; exit 1"); err != nil {
			t.Errorf("%s → %s (%s) never %s: %v\n%s", pod, target.probe, target.name, what, err, out)
		}
	}
	until(client, "answered before any policy", reach)
	defer func() {
		if out, err := c.kubectl.run("delete", "-n", net3Namespace, "networkpolicies", "--all"); err != nil {
			t.Errorf("kubectl delete networkpolicies: %v\n%s", err, out)
		}
		if out, err := c.kubectl.run("label", "-n", net3Namespace, "pod", client, "role-"); err != nil {
			t.Errorf("kubectl label: %v\n%s", err, out)
		}
	}()
	c.apply(t, net3DenyAll)
	until(client, "refused under default-deny", "! "+reach)
	c.apply(t, net3AllowClients)
	if out, err := c.kubectl.run("label", "-n", net3Namespace, "pod", client, "role=client"); err != nil {
		t.Fatalf("kubectl label: %v\n%s", err, out)
	}
	until(client, "answered once labelled role=client", reach)
	if out, err := c.exec(other, "if "+reach+"; then exit 1; fi"); err != nil {
		t.Errorf("%s (no role=client) reached %s through the policies: %v\n%s", other, target.probe, err, out)
	}
	if out, err := c.kubectl.run("delete", "-n", net3Namespace, "networkpolicies", "--all"); err != nil {
		t.Fatalf("kubectl delete networkpolicies: %v\n%s", err, out)
	}
	until(other, "answered after the policies were deleted", reach)
}

// echoConn is a TCP connection to an echo Service held open across an
// agent restart.
type echoConn struct {
	what string
	conn net.Conn
	r    *bufio.Reader
}

// dialEcho connects from ns to Service name's ClusterIP (port 7000),
// retrying until the proxy answers.
func (c *net3Cluster) dialEcho(t *testing.T, ns *netnstest.NS, name string) *echoConn {
	t.Helper()
	addr := net.JoinHostPort(c.service(t, name).Spec.ClusterIP, "7000")
	e := &echoConn{what: ns.Name + " → Service " + name + " (" + addr + ")"}
	waitFor(t, 30*time.Second, e.what, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := dialInNetNS(ctx, ns.Path(), "tcp", addr)
		if err != nil {
			return false, nil
		}
		e.conn, e.r = conn, bufio.NewReader(conn)
		return true, nil
	})
	t.Cleanup(func() { e.conn.Close() })
	e.roundTrip(t, "hello")
	return e
}

// roundTrip sends line and expects it back.
func (e *echoConn) roundTrip(t *testing.T, line string) {
	t.Helper()
	_ = e.conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintln(e.conn, line); err != nil {
		t.Errorf("%s: send %q: %v", e.what, line, err)
		return
	}
	got, err := e.r.ReadString('\n')
	if err != nil || strings.TrimSpace(got) != line {
		t.Errorf("%s: sent %q, got %q (%v)", e.what, line, got, err)
	}
}

// checkAgentRestart ends agent-1's orch, first with SIGKILL (a crash),
// then with SIGTERM (a service restart), and starts it again each time.
// Two connections opened before through Services stay open and carry
// data while it is down and after: one from agent-1's host side (agent-1's
// own rules translate it) to the echo pod on agent-2, one from the
// server's host side to the echo pod on agent-1. While the agent is down
// its rules stay in place (a new connection through a Service works);
// after the restarts it programs a new Service.
func (c *net3Cluster) checkAgentRestart(t *testing.T) {
	a := c.agent1()
	conns := []*echoConn{c.dialEcho(t, a.ns, "echo-2"), c.dialEcho(t, c.server().ns, "echo-1")}
	webAddr := net.JoinHostPort(c.service(t, "web").Spec.ClusterIP, "80")
	for _, end := range []struct {
		signal string
		end    func(p *e2eProcess)
	}{
		{"SIGKILL", func(p *e2eProcess) { p.kill() }},
		{"SIGTERM", func(p *e2eProcess) { p.stop(t) }},
	} {
		registered := countInFile(a.proc.log, "node registered")
		advertised := c.proxyAdvert(t, a.name)
		end.end(a.proc)
		if end.signal == "SIGTERM" && advertised != "" {
			// A service stop withdraws the node's ingress proxy from the
			// Ingresses' status at once, over the tunnel it still holds.
			if got := c.proxyAdvert(t, a.name); got != "" {
				t.Errorf("after SIGTERM, agent-1's Node still has %s=%q: the agent did not withdraw it as it stopped", ingressclass.ProxyAnnotation, got)
			}
		}
		for _, e := range conns {
			e.roundTrip(t, "agent-down-after-"+end.signal)
		}
		if body, err := httpGetIn(context.Background(), a.ns, webAddr); err != nil || !strings.Contains(body, "hello-from-web") {
			t.Errorf("with agent-1 ended by %s, a new connection from its host side to Service web (%s): %v\n%s", end.signal, webAddr, err, body)
		}
		a.proc = startOrch(c.t, c.bin, a.ns, net3E2EDir, a.name+".log", a.args...)
		waitFor(t, 60*time.Second, "agent-1 restarted after "+end.signal, func() (bool, error) {
			select {
			case <-a.proc.exited:
				return false, fmt.Errorf("the restarted agent exited; see %s", a.proc.log)
			default:
			}
			return countInFile(a.proc.log, "node registered") > registered, nil
		})
		for _, e := range conns {
			e.roundTrip(t, "agent-restarted-after-"+end.signal)
		}
	}
	// The restarted agent's proxy works: it programs a Service created
	// after the restart.
	c.apply(t, `apiVersion: v1
kind: Service
metadata: {name: echo-2-new, namespace: jds}
spec:
  selector: {echo: "2"}
  ports: [{port: 7000, targetPort: 7000}]
`)
	c.dialEcho(t, a.ns, "echo-2-new").roundTrip(t, "new-service")
	for _, e := range conns {
		e.roundTrip(t, "at-the-end")
	}
}

// proxyAdvert is node's ingress proxy advertisement (empty when none).
func (c *net3Cluster) proxyAdvert(t *testing.T, node string) string {
	t.Helper()
	out, err := c.kubectl.run("get", "node", node, "-o", "jsonpath={.metadata.annotations."+strings.ReplaceAll(ingressclass.ProxyAnnotation, ".", `\.`)+"}")
	if err != nil {
		t.Fatalf("kubectl get node %s: %v\n%s", node, err, out)
	}
	return strings.TrimSpace(out)
}

// checkHeadless replaces Service web with a headless one governing
// StatefulSet web: from agent-1's probe, web-0.web.jds.svc.cluster.local
// resolves to pod web-0's address and reaches it, and
// web.jds.svc.cluster.local resolves to both pods' addresses.
func (c *net3Cluster) checkHeadless(t *testing.T) {
	if out, err := c.kubectl.run("delete", "-n", net3Namespace, "service", "web"); err != nil {
		t.Fatalf("kubectl delete service web: %v\n%s", err, out)
	}
	c.apply(t, `apiVersion: v1
kind: Service
metadata: {name: web, namespace: jds}
spec:
  clusterIP: None
  selector: {app: web-sts}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: jds}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web-sts}}
  template:
    metadata: {labels: {app: web-sts}}
    spec:
`+net3PodSpec("      "))
	pods := c.waitReadyPods(t, "app=web-sts", 2)
	ips := map[string]string{}
	for _, p := range pods {
		ips[p.Name] = p.Status.PodIP
	}
	client := c.agent1().probe
	const svcName = "web." + net3Namespace + ".svc.cluster.local"
	podName := "web-0." + svcName
	// The node's DNS follows the new Service and endpoints within
	// moments.
	lookup := func(name string, want ...string) {
		t.Helper()
		var out string
		waitFor(t, 30*time.Second, name+" resolved in "+client+" to "+strings.Join(want, ", "), func() (bool, error) {
			var err error
			out, err = c.exec(client, "nslookup "+name)
			n := 0
			for _, ip := range ips {
				if strings.Contains(out, "Address: "+ip+"\n") {
					n++
				}
			}
			for _, ip := range want {
				if !strings.Contains(out, "Address: "+ip+"\n") {
					return false, nil
				}
			}
			return err == nil && n == len(want), nil
		})
	}
	lookup(podName, ips["web-0"])
	lookup(svcName, ips["web-0"], ips["web-1"])
	answers, _, err := c.who(client, podName, 3)
	if err != nil || answers["web-0"] != 3 {
		t.Errorf("requests to %s from %s: %v (%v), want all from web-0", podName, client, answers, err)
	}
}
