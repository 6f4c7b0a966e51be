package agent

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/orch-dev/orch/internal/netnstest"
)

const (
	lbE2EDir        = "/tmp/orch-lb-e2e"
	lbE2ECgroupRoot = "/orch-lb-e2e"
	lbE2ENode       = "lb-e2e"
	// lbE2ENodeIP is the node's address; lbE2EClientIP a machine beside
	// it on the same switch; lbE2EExternalIP the node's --node-external-ip
	// (a NAT's address in real life: not on any interface here).
	lbE2ENodeIP     = "198.18.0.1/24"
	lbE2EClientIP   = "198.18.0.2/24"
	lbE2EExternalIP = "198.18.7.1"
	// lbE2EPort is the LoadBalancer port; 80 and 443 are the ingress
	// proxy's.
	lbE2EPort = 8080
)

// TestServiceLBE2E runs the real orch server and its node in a network
// namespace with a client namespace beside it: a LoadBalancer Service gets
// the node's --node-external-ip in its status and answers on the node's
// addresses from outside and from the node itself; a second one on the
// same port stays Pending with an event saying why until the first is
// gone; a pod's hostPort answers on the node's addresses and goes with
// the pod.
func TestServiceLBE2E(t *testing.T) {
	bin := e2eBinary(t)
	netnstest.Skip(t, "nft", "nsenter")
	keepHostNetwork(t)
	freshE2EDir(t, lbE2EDir, lbE2ECgroupRoot)

	node := netnstest.New(t, "orchlb-node")
	client := netnstest.New(t, "orchlb-cl")
	sw := netnstest.NewSwitch(t, "orchlb-sw")
	sw.Attach(t, node, "uplink", netip.MustParsePrefix(lbE2ENodeIP))
	sw.Attach(t, client, "uplink", netip.MustParsePrefix(lbE2EClientIP))
	// What a default route does on a real node: packets to service
	// addresses and to the external address get past routing to the
	// proxy's rules.
	node.MustRun(t, "ip", "route", "add", "10.43.0.0/16", "dev", "uplink")
	node.MustRun(t, "ip", "route", "add", lbE2EExternalIP+"/32", "dev", "uplink")
	// The setting as an ORCH_ variable, which the node's process inherits.
	t.Setenv("ORCH_NODE_EXTERNAL_IP", lbE2EExternalIP)
	cs := startNetServer(t, bin, node, lbE2EDir, lbE2ECgroupRoot, lbE2ENode, "127.0.0.1", "auto")
	ctx := context.Background()

	podCIDR := nodePodCIDR(t, cs, lbE2ENode)
	n, err := cs.CoreV1().Nodes().Get(ctx, lbE2ENode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeExternalIP, Address: lbE2EExternalIP}) {
		t.Fatalf("node addresses %v lack ExternalIP %s", n.Status.Addresses, lbE2EExternalIP)
	}
	deletePodsAtEnd(t, cs)
	startWeb(t, cs, lbE2ENode, podCIDR)

	// A LoadBalancer Service: the node's external address in its status,
	// the port open on every node address.
	createLBService(t, cs, "web-lb", lbE2EPort)
	waitFor(t, 30*time.Second, "web-lb's load balancer ingress", func() (bool, error) {
		ips, err := lbIngress(cs, "web-lb")
		return slices.Equal(ips, []string{lbE2EExternalIP}), err
	})
	nodeIP := netip.MustParsePrefix(lbE2ENodeIP).Addr()
	lbAddrs := []struct {
		from *netnstest.NS
		addr netip.Addr
	}{
		{client, nodeIP},
		{node, nodeIP},
		{node, netip.MustParseAddr("127.0.0.1")},
		{node, netip.MustParseAddr(lbE2EExternalIP)},
	}
	for _, c := range lbAddrs {
		target := netip.AddrPortFrom(c.addr, lbE2EPort).String()
		waitFor(t, 30*time.Second, "web-lb on "+target+" from "+c.from.Name, func() (bool, error) {
			body, err := httpGetIn(ctx, c.from, target)
			return err == nil && strings.Contains(body, "hello-from-web"), nil
		})
	}

	// And from a pod, by the node's address and the advertised one.
	out := runToCompletion(t, cs, lbE2ENode, "lb-from-pod",
		httpGetPort(nodeIP.String(), lbE2EPort)+" && "+httpGetPort(lbE2EExternalIP, lbE2EPort))
	if strings.Count(out, "hello-from-web") != 2 {
		t.Errorf("web-lb from a pod:\n%s", out)
	}

	// A second one on the same port stays Pending and says why.
	createLBService(t, cs, "web-lb2", lbE2EPort)
	waitFor(t, 30*time.Second, "an event on web-lb2 naming web-lb", func() (bool, error) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web-lb2"})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == "UnAvailableLoadBalancer" && strings.Contains(e.Message, "port 8080/TCP is already used by LoadBalancer service default/web-lb") {
				return true, nil
			}
		}
		return false, nil
	})
	if ips, err := lbIngress(cs, "web-lb2"); err != nil || len(ips) != 0 {
		t.Fatalf("web-lb2 (port taken): ingress %v, %v; want none", ips, err)
	}
	// Once the port is free, it is the second's.
	if err := cs.CoreV1().Services("default").Delete(ctx, "web-lb", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "web-lb2's ingress after web-lb went", func() (bool, error) {
		ips, err := lbIngress(cs, "web-lb2")
		return slices.Equal(ips, []string{lbE2EExternalIP}), err
	})
	waitFor(t, 30*time.Second, "web-lb2 from the client", func() (bool, error) {
		body, err := httpGetIn(ctx, client, netip.AddrPortFrom(nodeIP, lbE2EPort).String())
		return err == nil && strings.Contains(body, "hello-from-web"), nil
	})

	// hostPort: nodeIP:8081 (and 127.0.0.1 and the external address on
	// the node) reach the pod's port 80, from outside and from the node. Its second
	// container is ready once the pod reached itself that way (hairpin).
	hp := newPod("hostport", v1.Container{
		Name:    "httpd",
		Command: []string{"sh", "-c", "mkdir -p /www && echo hello-from-hostport > /www/index.html && exec httpd -f -p 80 -h /www"},
		Ports:   []v1.ContainerPort{{ContainerPort: 80, HostPort: 8081, Protocol: v1.ProtocolTCP}},
		ReadinessProbe: &v1.Probe{
			ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
			PeriodSeconds: 1,
		},
	})
	hp.Spec.Containers = append(hp.Spec.Containers, v1.Container{
		Name:  "hairpin",
		Image: hp.Spec.Containers[0].Image, ImagePullPolicy: v1.PullIfNotPresent,
		Command: []string{"sh", "-c", "until " + httpGetPort(nodeIP.String(), 8081) + " | grep -q hello-from-hostport; do sleep 1; done; " +
			"touch /tmp/hairpin-ok; exec sleep 3600"},
		ReadinessProbe: &v1.Probe{
			ProbeHandler:  v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"cat", "/tmp/hairpin-ok"}}},
			PeriodSeconds: 1,
		},
	})
	hp.Spec.NodeName = lbE2ENode
	createPod(t, cs, hp)
	waitPod(t, cs, "hostport", 90*time.Second, "ready (its own hostPort reached through the node address)", podReady)
	hostPortAddrs := []struct {
		from *netnstest.NS
		addr netip.Addr
	}{
		{client, nodeIP},
		{node, nodeIP},
		{node, netip.MustParseAddr("127.0.0.1")},
		{node, netip.MustParseAddr(lbE2EExternalIP)},
	}
	for _, c := range hostPortAddrs {
		target := netip.AddrPortFrom(c.addr, 8081).String()
		waitFor(t, 30*time.Second, "hostPort "+target+" from "+c.from.Name, func() (bool, error) {
			body, err := httpGetIn(ctx, c.from, target)
			return err == nil && strings.Contains(body, "hello-from-hostport"), nil
		})
	}
	// The mapping goes with the pod: the node itself refuses the port.
	zero := int64(0)
	if err := cs.CoreV1().Pods("default").Delete(ctx, "hostport", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "host port 8081 closed after the pod went", func() (bool, error) {
		_, err := httpGetIn(ctx, client, netip.AddrPortFrom(nodeIP, 8081).String())
		return err != nil && strings.Contains(err.Error(), "connection refused"), nil
	})
}

// httpGetPort is httpGet of host:port.
func httpGetPort(host string, port int) string {
	return "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 " + host + " " + strconv.Itoa(port)
}

// createLBService creates a LoadBalancer Service name on port, to port 80
// of the app=web pods.
func createLBService(t *testing.T, cs kubernetes.Interface, name string, port int32) {
	t.Helper()
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.ServiceSpec{
			Type:     v1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports:    []v1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(80)}},
		},
	}
	if _, err := cs.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
}

// lbIngress returns the ingress IPs of Service default/name.
func lbIngress(cs kubernetes.Interface, name string) ([]string, error) {
	svc, err := cs.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, i := range svc.Status.LoadBalancer.Ingress {
		ips = append(ips, i.IP)
	}
	return ips, nil
}
