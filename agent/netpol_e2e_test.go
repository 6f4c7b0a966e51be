package agent

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/netnstest"
)

const (
	netpolE2EDir        = "/tmp/orch-netpol-e2e"
	netpolE2ECgroupRoot = "/orch-netpol-e2e"
	netpolE2ENode       = "netpol-e2e"
	netpolE2ENodeIP     = "198.18.60.1/24"
)

// Policies the test applies with kubectl: deny all ingress in the
// namespace, then let pods labelled app=client reach the web pods' port 80.
const (
	denyAllIngress = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`
	allowClients = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
    ports:
    - {protocol: TCP, port: 80}
`
)

// TestNetworkPolicyE2E runs the real orch server and its node in a
// network namespace of their own and checks NetworkPolicy enforcement
// with the real kubectl: a default-deny policy stops a client pod's
// requests to a web pod, by pod IP and through its Service (policies
// apply after the service DNAT), while the node's readiness probes still
// reach the pod and a pod still reaches itself through its Service; a
// policy allowing pods by label lets a labelled client
// through and nobody else.
func TestNetworkPolicyE2E(t *testing.T) {
	bin := e2eBinary(t, "kubectl")
	netnstest.Skip(t, "nft", "nsenter")
	keepHostNetwork(t)
	freshE2EDir(t, netpolE2EDir, netpolE2ECgroupRoot)
	ns := netnstest.New(t, "orchnp-node")
	netnstest.NewSwitch(t, "orchnp-sw").Attach(t, ns, "uplink", netip.MustParsePrefix(netpolE2ENodeIP))
	ns.MustRun(t, "ip", "route", "add", "10.43.0.0/16", "dev", "uplink")
	cs := startNetServer(t, bin, ns, netpolE2EDir, netpolE2ECgroupRoot, netpolE2ENode, "127.0.0.1", "auto")
	k := &kubectlRunner{ns: ns, kubeconfig: filepath.Join(netpolE2EDir, "kubeconfig.yaml"), cacheDir: filepath.Join(netpolE2EDir, "kube-cache")}
	ctx := context.Background()

	podCIDR := nodePodCIDR(t, cs, netpolE2ENode)
	deletePodsAtEnd(t, cs)
	webIP := startWeb(t, cs, netpolE2ENode, podCIDR)
	svc, err := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{webIP.String(), svc.Spec.ClusterIP}
	// get succeeds if host:80 answers with the web page within 2 s.
	get := func(host string) string {
		return "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 " + host + " 80 | grep -q hello-from-web"
	}
	allDenied := "! " + get(targets[0]) + " && ! " + get(targets[1])
	allAnswer := get(targets[0]) + " && " + get(targets[1])
	// Rules follow a policy within moments; the loops give them time and
	// decide by the state reached, not by how soon.
	untilDenied := "for i in $(seq 30); do if " + allDenied + "; then echo denied; exit 0; fi; sleep 1; done; exit 1"
	untilAnswer := "for i in $(seq 30); do if " + allAnswer + "; then echo answered; exit 0; fi; sleep 1; done; exit 1"

	runToCompletion(t, cs, netpolE2ENode, "before", untilAnswer)

	if out, err := k.runIn(denyAllIngress, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	runToCompletion(t, cs, netpolE2ENode, "denied", untilDenied)
	// The web pod's readiness probe (every second, from the node) kept
	// passing while every pod's traffic to it was dropped.
	if p, err := cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{}); err != nil || !podReady(p) {
		t.Errorf("web pod not ready under a default-deny policy (node probes must pass): %v", err)
	}

	// A pod cannot block access to itself: under default-deny a pod still
	// reaches itself through its own Service (hairpin, after the DNAT).
	hairpinSvc := createHTTPService(t, cs, "hairpin", "hairpin", v1.ServiceTypeClusterIP)
	hairpin := newPod("hairpin", v1.Container{Name: "main", Command: []string{"sh", "-c",
		"mkdir -p /www && echo hello-from-web > /www/index.html && httpd -p 80 -h /www && " +
			"for i in $(seq 30); do " + get(hairpinSvc.Spec.ClusterIP) + " && exit 0; sleep 1; done; exit 1"}})
	hairpin.Labels = map[string]string{"app": "hairpin"}
	hairpin.Spec.NodeName = netpolE2ENode
	hairpin.Spec.RestartPolicy = v1.RestartPolicyNever
	createPod(t, cs, hairpin)
	if p := waitPod(t, cs, "hairpin", 90*time.Second, "finished", func(p *v1.Pod) bool {
		return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
	}); p.Status.Phase != v1.PodSucceeded {
		t.Errorf("under default-deny a pod could not reach itself through its Service")
	}

	if out, err := k.runIn(allowClients, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if out, err := k.run("get", "networkpolicies"); err != nil || !strings.Contains(out, "web-from-clients") {
		t.Errorf("kubectl get networkpolicies: %v\n%s", err, out)
	}
	if out, err := k.run("run", "client", "--image="+e2eImage, "--image-pull-policy=IfNotPresent",
		"--labels=app=client", "--restart=Never", "--command", "--", "sh", "-c", untilAnswer); err != nil {
		t.Fatalf("kubectl run: %v\n%s", err, out)
	}
	p := waitPod(t, cs, "client", 90*time.Second, "finished", func(p *v1.Pod) bool {
		return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
	})
	if p.Status.Phase != v1.PodSucceeded {
		out, _ := k.run("logs", "client")
		rules, _ := ns.Run("nft", "list", "table", "ip", "orch-netpol")
		t.Fatalf("a pod labelled app=client was not let through:\n%s\n%s", out, rules)
	}
	// A pod without the label is still refused.
	runToCompletion(t, cs, netpolE2ENode, "unlabelled", "if "+allDenied+"; then echo denied; else exit 1; fi")

	// Without policies everyone gets through again.
	if out, err := k.run("delete", "networkpolicies", "--all"); err != nil {
		t.Fatalf("kubectl delete: %v\n%s", err, out)
	}
	runToCompletion(t, cs, netpolE2ENode, "after", untilAnswer)
}
