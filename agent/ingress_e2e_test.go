package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/orch-dev/orch/internal/ingressclass"
	"github.com/orch-dev/orch/internal/netnstest"
	"github.com/orch-dev/orch/internal/testimage"
	"github.com/orch-dev/orch/netproxy/ingress"
)

const (
	ingressE2EDir        = "/tmp/orch-ingress-e2e"
	ingressE2ECgroupRoot = "/orch-ingress-e2e"
	ingressE2ENode       = "ingress-e2e"
	ingressE2ENodeIP     = "198.18.70.1/24"
)

// ingressE2EApps are two Deployments behind two Services and one Ingress
// with a host for each: alpha by service port number, beta by port name
// and with TLS from the Secret beta-tls.
const ingressE2EApps = `apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - name: httpd
        image: ` + e2eImage + `
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'mkdir -p /www/api /www/who && echo hello-from-%[1]s > /www/index.html && echo api-of-%[1]s > /www/api/index.html && hostname > /www/who/index.html && exec httpd -f -p 8080 -h /www']
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: web, port: 80, targetPort: 8080}]
`

const ingressE2EIngress = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: sites}
spec:
  tls:
  - hosts: [beta.example.com]
    secretName: beta-tls
  rules:
  - host: alpha.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
  - host: beta.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {name: web}}}}
      - {path: /api/index.html, pathType: Exact, backend: {service: {name: alpha, port: {name: web}}}}
`

// ingressE2EUpgrade is a pod that answers an HTTP Upgrade with 101 and
// then echoes lines upper-cased (busybox has no WebSocket server; the
// proxy passes any upgraded protocol through alike), behind Service
// "upgrade" and an Ingress of its own for host ws.example.com.
const ingressE2EUpgrade = `apiVersion: v1
kind: ConfigMap
metadata: {name: upgrade}
data:
  upgrade.sh: |
    #!/bin/sh
    # Read the request head up to its empty line, then switch protocols.
    while read -r line; do
      case "$line" in ""|"$(printf '\r')") break;; esac
    done
    printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'
    exec tr a-z A-Z
---
apiVersion: v1
kind: Pod
metadata: {name: upgrade, labels: {app: upgrade}}
spec:
  containers:
  - name: echo
    image: ` + e2eImage + `
    imagePullPolicy: IfNotPresent
    command: [nc, -ll, -p, "8080", -e, /cfg/upgrade.sh]
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes:
  - name: cfg
    configMap: {name: upgrade, defaultMode: 0755}
---
apiVersion: v1
kind: Service
metadata: {name: upgrade}
spec:
  selector: {app: upgrade}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: upgrade}
spec:
  rules:
  - host: ws.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: upgrade, port: {number: 80}}}}
`

// TestIngressE2E runs the real orch server and its node in a network
// namespace of their own and checks the built-in ingress controller with
// the real kubectl: requests to the node's port 80 reach the Deployment
// their Host header names, an Exact path of one host goes to the other
// Service, an unknown host gets 404, the TLS host answers on 443 with
// its Secret's certificate by SNI (others with the default certificate),
// and the Ingress's status shows the node's address while, and only
// while, its proxy serves (testIngressAdvertisement).
func TestIngressE2E(t *testing.T) {
	bin := e2eBinary(t, "kubectl")
	netnstest.Skip(t, "nft", "nsenter")
	keepHostNetwork(t)
	freshE2EDir(t, ingressE2EDir, ingressE2ECgroupRoot)
	ns := netnstest.New(t, "orching-node")
	nodeIP := netip.MustParsePrefix(ingressE2ENodeIP).Addr()
	netnstest.NewSwitch(t, "orching-sw").Attach(t, ns, "uplink", netip.MustParsePrefix(ingressE2ENodeIP))
	ns.MustRun(t, "ip", "route", "add", "10.43.0.0/16", "dev", "uplink")
	srv, _ := startNetServerProcess(t, bin, ns, ingressE2EDir, ingressE2ECgroupRoot, ingressE2ENode, "127.0.0.1", "auto")
	k := &kubectlRunner{ns: ns, kubeconfig: filepath.Join(ingressE2EDir, "kubeconfig.yaml"), cacheDir: filepath.Join(ingressE2EDir, "kube-cache")}
	cs := testIngressAdvertisement(t, bin, ns, k, srv, nodeIP)
	nodePodCIDR(t, cs, ingressE2ENode)
	deletePodsAtEnd(t, cs)

	cert, err := ingress.SelfSignedCertificate(time.Now(), "beta.example.com")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ingress.EncodePEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(ingressE2EDir, "beta.crt"), filepath.Join(ingressE2EDir, "beta.key")
	for f, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := k.run("create", "secret", "tls", "beta-tls", "--cert", certFile, "--key", keyFile); err != nil {
		t.Fatalf("kubectl create secret tls: %v\n%s", err, out)
	}
	manifest := fmt.Sprintf(ingressE2EApps, "alpha") + "---\n" + fmt.Sprintf(ingressE2EApps, "beta") + "---\n" + ingressE2EIngress + "---\n" + ingressE2EUpgrade
	if out, err := k.runIn(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	for _, d := range []string{"alpha", "beta"} {
		if out, err := k.run("rollout", "status", "deployment/"+d, "--timeout=120s"); err != nil {
			t.Fatalf("kubectl rollout status %s: %v\n%s", d, err, out)
		}
	}

	// Clients dial the node's address from inside its namespace.
	dial := func(ctx context.Context, network, _ string, port int) (net.Conn, error) {
		return dialInNetNS(ctx, ns.Path(), network, netip.AddrPortFrom(nodeIP, uint16(port)).String())
	}
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr, 80) }}}
	get := func(c *http.Client, url, host string) (int, string, error) {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return 0, "", err
		}
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body)), err
	}
	for _, tc := range []struct{ host, path, want string }{
		{"alpha.example.com", "/", "hello-from-alpha"},
		{"beta.example.com", "/", "hello-from-beta"},
		{"BETA.example.com:80", "/api/", "api-of-beta"}, // not the Exact path
		{"beta.example.com", "/api/index.html", "api-of-alpha"},
	} {
		// The node picks up the Ingress and the endpoints within moments;
		// the wait is for that, and decides by the answer reached.
		var code int
		var body string
		waitFor(t, 60*time.Second, tc.host+tc.path+" answered by "+tc.want, func() (bool, error) {
			var err error
			code, body, err = get(plain, "http://ingress"+tc.path, tc.host)
			return err == nil && code == 200 && body == tc.want, nil
		})
	}
	if code, body, err := get(plain, "http://ingress/", "unknown.example.com"); err != nil || code != http.StatusNotFound {
		t.Errorf("unknown host: %d %q %v, want 404", code, body, err)
	}

	// Requests are spread over both replicas (each serves its pod name
	// at /who/).
	pods := map[string]bool{}
	for range 20 {
		if code, body, err := get(plain, "http://ingress/who/", "alpha.example.com"); err == nil && code == 200 {
			pods[body] = true
		}
	}
	if len(pods) != 2 {
		t.Errorf("alpha's requests reached pods %v, want both replicas", pods)
	}

	// An Upgrade passes through to the pod, and the upgraded connection
	// outlives a change of the proxy's configuration.
	var (
		upgraded net.Conn
		br       *bufio.Reader
	)
	waitFor(t, 60*time.Second, "ws.example.com upgraded", func() (bool, error) {
		c, err := dial(context.Background(), "tcp", "", 80)
		if err != nil {
			return false, nil
		}
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		fmt.Fprint(c, "GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		r := bufio.NewReader(c)
		if resp, err := http.ReadResponse(r, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			c.Close()
			return false, nil
		}
		upgraded, br = c, r
		return true, nil
	})
	defer upgraded.Close()
	echo := func(msg string) {
		t.Helper()
		fmt.Fprintf(upgraded, "%s\n", msg)
		if got, err := br.ReadString('\n'); err != nil || got != strings.ToUpper(msg)+"\n" {
			t.Fatalf("upgraded connection: sent %q, got %q, %v", msg, got, err)
		}
	}
	echo("hello")
	extra := "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: extra}\nspec:\n  rules:\n" +
		"  - host: gamma.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}\n"
	if out, err := k.runIn(extra, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	waitFor(t, 60*time.Second, "gamma.example.com served (the new configuration in place)", func() (bool, error) {
		code, body, err := get(plain, "http://ingress/", "gamma.example.com")
		return err == nil && code == 200 && body == "hello-from-alpha", nil
	})
	echo("still here")

	// HTTPS: the TLS host gets its Secret's certificate, verified against
	// it; a host without one gets the default certificate.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	secure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "beta.example.com"},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dial(ctx, network, addr, 443)
		}}}
	waitFor(t, 30*time.Second, "https://beta.example.com answered with its certificate", func() (bool, error) {
		code, body, err := get(secure, "https://beta.example.com/", "beta.example.com")
		return err == nil && code == 200 && body == "hello-from-beta", nil
	})
	conn, err := dial(context.Background(), "tcp", "", 443)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(conn, &tls.Config{ServerName: "alpha.example.com", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake for alpha.example.com: %v", err)
	}
	if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != ingress.DefaultCertificateCN {
		t.Errorf("alpha.example.com (no TLS secret) answered with %q, want the default certificate", cn)
	}
	tc.Close()

	// The status controller gives the Ingress the node's address.
	waitFor(t, 60*time.Second, "the Ingress's status address", func() (bool, error) {
		out, err := k.run("get", "ingress", "sites", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
		return err == nil && strings.TrimSpace(out) == nodeIP.String(), nil
	})
	if out, err := k.run("get", "ingress", "sites"); err != nil || !strings.Contains(out, nodeIP.String()) || !strings.Contains(out, "80, 443") {
		t.Errorf("kubectl get ingress: %v\n%s", err, out)
	}

}

// testIngressAdvertisement, run before any pod exists (the server is
// restarted twice): the node is listed in an Ingress's status because its
// agent advertises its proxy. Killed (no chance to withdraw) and
// restarted while other programs hold ports 80 and 443, it serves no
// ingress: the new agent removes the stale advertisement and the status
// controller the node's address. Restarted with the ports free, it is
// listed again. It returns a clientset of the last server.
func testIngressAdvertisement(t *testing.T, bin string, ns *netnstest.NS, k *kubectlRunner, srv *e2eProcess, nodeIP netip.Addr) kubernetes.Interface {
	t.Helper()
	if out, err := k.runIn(ingressE2EIngress, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	listed := func(want string) func() (bool, error) {
		return func() (bool, error) {
			out, err := k.run("get", "node", ingressE2ENode, "-o", `jsonpath={.metadata.annotations.ingress\.orch\.dev/proxy}`)
			if err != nil || strings.TrimSpace(out) != map[bool]string{true: ingressclass.ProxyServing}[want != ""] {
				return false, nil
			}
			out, err = k.run("get", "ingress", "sites", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
			return err == nil && strings.TrimSpace(out) == want, nil
		}
	}
	waitFor(t, 60*time.Second, "the node advertised and listed", listed(nodeIP.String()))

	srv.kill()
	var holders []*e2eProcess
	for _, port := range []int{80, 443} {
		holders = append(holders, startE2EProcess(t, ns.NetCommand(context.Background(), testimage.BusyboxPath, "httpd", "-f", "-p", strconv.Itoa(port)),
			filepath.Join(ingressE2EDir, fmt.Sprintf("httpd-%d.log", port))))
		addr := netip.AddrPortFrom(nodeIP, uint16(port)).String()
		waitFor(t, 30*time.Second, "httpd on "+addr, func() (bool, error) {
			c, err := dialInNetNS(context.Background(), ns.Path(), "tcp", addr)
			if err == nil {
				c.Close()
			}
			return err == nil, nil
		})
	}
	srv, _ = startNetServerProcess(t, bin, ns, ingressE2EDir, ingressE2ECgroupRoot, ingressE2ENode, "127.0.0.1", "auto")
	waitFor(t, 60*time.Second, "the stale advertisement and the node's address gone", listed(""))

	srv.stop(t)
	for _, h := range holders {
		h.stop(t)
	}
	_, cs := startNetServerProcess(t, bin, ns, ingressE2EDir, ingressE2ECgroupRoot, ingressE2ENode, "127.0.0.1", "auto")
	waitFor(t, 60*time.Second, "the node advertised and listed again", listed(nodeIP.String()))
	return cs
}
