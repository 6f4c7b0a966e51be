package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
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
	proxyFeatDir        = "/tmp/orch-proxyfeat-e2e"
	proxyFeatCgroupRoot = "/orch-proxyfeat-e2e"
	proxyFeatNode       = "pf-node"
)

var (
	proxyFeatNodeIP    = netip.MustParsePrefix("198.18.44.1/24")
	proxyFeatOutsideIP = netip.MustParsePrefix("198.18.44.2/24")
	// proxyFeatExternalIP is a Service's spec.externalIPs entry, routed
	// to the node by the outside client.
	proxyFeatExternalIP = netip.MustParseAddr("198.19.44.10")
)

// TestServiceProxyFeaturesE2E runs the real orch server and its node in
// a namespace of their own, with a client outside the cluster on the
// same switch, and checks what the proxy does for traffic from outside:
// a NodePort with externalTrafficPolicy Local keeps the client's address,
// one with Cluster masquerades it, a Service's external IP answers; and
// that the node writes its tables again after someone deletes them with
// nft(8).
func TestServiceProxyFeaturesE2E(t *testing.T) {
	bin := e2eBinary(t)
	netnstest.Skip(t, "nft", "nsenter")
	keepHostNetwork(t)
	freshE2EDir(t, proxyFeatDir, proxyFeatCgroupRoot)

	sw := netnstest.NewSwitch(t, "orchpf-sw")
	node, outside := netnstest.New(t, "orchpf-node"), netnstest.New(t, "orchpf-out")
	sw.Attach(t, node, "uplink", proxyFeatNodeIP)
	sw.Attach(t, outside, "eth0", proxyFeatOutsideIP)
	// As a default route would on a real node (see TestPodNetworkE2E).
	node.MustRun(t, "ip", "route", "add", "10.43.0.0/16", "dev", "uplink")
	// The outside client sends external-IP traffic to the node, as a
	// router in front of a cluster would.
	outside.MustRun(t, "ip", "route", "add", proxyFeatExternalIP.String()+"/32", "via", proxyFeatNodeIP.Addr().String())

	cs := startNetServer(t, bin, node, proxyFeatDir, proxyFeatCgroupRoot, proxyFeatNode, "127.0.0.1", "auto")
	nodePodCIDR(t, cs, proxyFeatNode)
	deletePodsAtEnd(t, cs)
	startWho(t, cs)

	client := proxyFeatOutsideIP.Addr().String()
	nodeAddr := proxyFeatNodeIP.Addr().String()
	t.Run("externalTrafficPolicy Local keeps the client address", func(t *testing.T) {
		svc := createWhoService(t, cs, "who-local", func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		})
		if from := waitWho(t, outside, netip.AddrPortFrom(netip.MustParseAddr(nodeAddr), uint16(svc.Spec.Ports[0].NodePort))); from != client {
			t.Errorf("the pod saw the connection from %s, want the client's %s", from, client)
		}
	})
	t.Run("externalTrafficPolicy Cluster masquerades", func(t *testing.T) {
		svc := createWhoService(t, cs, "who-cluster", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeNodePort })
		from := waitWho(t, outside, netip.AddrPortFrom(netip.MustParseAddr(nodeAddr), uint16(svc.Spec.Ports[0].NodePort)))
		if from == client {
			t.Errorf("the pod saw the client's own address %s: not masqueraded", from)
		}
		t.Logf("the pod saw the connection from %s", from)
	})
	t.Run("external IP", func(t *testing.T) {
		createWhoService(t, cs, "who-ext", func(s *v1.Service) { s.Spec.ExternalIPs = []string{proxyFeatExternalIP.String()} })
		if from := waitWho(t, outside, netip.AddrPortFrom(proxyFeatExternalIP, 80)); from == client {
			t.Errorf("the pod saw the client's own address %s: not masqueraded", from)
		}
	})
	t.Run("tables deleted by hand are written again", func(t *testing.T) {
		// The service proxy's, the NetworkPolicy and the pod masquerade
		// tables: the agent hears of the deletion from the kernel's
		// nftables events (nftwatch) and writes each again at once.
		tables := []string{"orch", "orch-netpol", "orch-podnet"}
		for _, table := range tables {
			if _, err := node.Run("nft", "list", "table", "ip", table); err != nil {
				t.Fatalf("before: %v", err)
			}
		}
		start := time.Now()
		for _, table := range tables {
			node.MustRun(t, "nft", "delete", "table", "ip", table)
		}
		for _, table := range tables {
			waitFor(t, 30*time.Second, "table ip "+table+" written again", func() (bool, error) {
				_, err := node.Run("nft", "list", "table", "ip", table)
				return err == nil, nil
			})
			t.Logf("table ip %s back %v after its deletion", table, time.Since(start).Round(time.Millisecond))
		}
		svc, err := cs.CoreV1().Services("default").Get(context.Background(), "who-local", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if from := waitWho(t, outside, netip.AddrPortFrom(netip.MustParseAddr(nodeAddr), uint16(svc.Spec.Ports[0].NodePort))); from != client {
			t.Errorf("after the resync the pod saw %s, want %s", from, client)
		}
	})
}

// startWho runs pod "who" (label app=who): busybox httpd whose CGI
// /cgi-bin/who answers "from=ADDRESS" with the address the connection
// came from.
func startWho(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	script := `mkdir -p /www/cgi-bin && echo ok > /www/index.html && ` +
		`printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "from=$REMOTE_ADDR"\n' > /www/cgi-bin/who && ` +
		`chmod 755 /www/cgi-bin/who && exec httpd -f -p 80 -h /www`
	who := newPod("who", v1.Container{
		Name:    "httpd",
		Command: []string{"sh", "-c", script},
		ReadinessProbe: &v1.Probe{
			ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/cgi-bin/who", Port: intstr.FromInt32(80)}},
			PeriodSeconds: 1,
		},
	})
	who.Labels = map[string]string{"app": "who"}
	who.Spec.NodeName = proxyFeatNode
	createPod(t, cs, who)
	waitPod(t, cs, "who", 90*time.Second, "ready", podReady)
}

// createWhoService creates Service name for the who pod, port 80, with
// edit applied to it first.
func createWhoService(t *testing.T, cs kubernetes.Interface, name string, edit func(*v1.Service)) *v1.Service {
	t.Helper()
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.ServiceSpec{
			Selector: map[string]string{"app": "who"},
			Ports:    []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
	edit(svc)
	out, err := cs.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
	return out
}

// waitWho asks the who pod at addr, from ns, until it answers (the node
// programs a new Service moments after its creation), and returns the
// address the pod saw.
func waitWho(t *testing.T, ns *netnstest.NS, addr netip.AddrPort) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return dialInNetNS(ctx, ns.Path(), network, a)
		},
		DisableKeepAlives: true,
	}}
	var from string
	waitFor(t, 60*time.Second, fmt.Sprintf("%s answering from %s", addr, ns.Name), func() (bool, error) {
		resp, err := client.Get("http://" + addr.String() + "/cgi-bin/who")
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false, nil
		}
		// httpd listens on IPv6 and names IPv4 peers "[::ffff:a.b.c.d]".
		s, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "from=")
		a, err := netip.ParseAddr(strings.Trim(s, "[]"))
		if !ok || err != nil {
			return false, fmt.Errorf("who answered %q", b)
		}
		from = a.Unmap().String()
		return true, nil
	})
	return from
}
