package ingress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testCert makes a self-signed certificate for cn, PEM encoded.
func testCert(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	cert, err := SelfSignedCertificate(time.Now(), cn)
	if err != nil {
		t.Fatal(err)
	}
	if certPEM, keyPEM, err = EncodePEM(cert); err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// backendObjects points Service name's port 80 at the given listeners.
func backendObjects(name string, addrs ...string) (*v1.Service, *discoveryv1.EndpointSlice) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name},
		Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}}}}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "web", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	var port int32
	empty := ""
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		port = int32(ap.Port()) // every test backend of one Service listens on one port
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{ap.Addr().String()}})
	}
	slice.Ports = []discoveryv1.EndpointPort{{Name: &empty, Port: &port}}
	return svc, slice
}

// echo answers with its name and what it was asked.
func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s host=%s path=%s xff=%s proto=%s xhost=%s", name, r.Host, r.URL.Path,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	})
}

// listenOn starts handler on a fresh loopback address (127.0.0.N, all on
// one port so that one Service port reaches them all).
func listenOn(t *testing.T, ip string, port int, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func newProxy(t testing.TB) *Proxy {
	t.Helper()
	p, err := New(Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serve runs p on loopback HTTP and HTTPS listeners.
func serve(t *testing.T, p *Proxy) (httpAddr, httpsAddr string) {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, hl, sl) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return hl.Addr().String(), sl.Addr().String()
}

func get(t *testing.T, c *http.Client, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProxyRoutes(t *testing.T) {
	a := listenOn(t, "127.0.0.1", 0, echo("a"))
	b := listenOn(t, "127.0.0.1", 0, echo("b"))
	svcA, sliceA := backendObjects("a", a)
	svcB, sliceB := backendObjects("b", b)
	svcNone, sliceNone := backendObjects("none")
	ing := ingress("i", 0,
		rule("a.com", path("/", networkingv1.PathTypePrefix, "a")),
		rule("b.com", path("/", networkingv1.PathTypePrefix, "b"), path("/none", networkingv1.PathTypePrefix, "none")))
	p := newProxy(t)
	p.Update(Build(Objects{Ingresses: []*networkingv1.Ingress{ing},
		Services: []*v1.Service{svcA, svcB, svcNone}, EndpointSlices: []*discoveryv1.EndpointSlice{sliceA, sliceB, sliceNone}}))
	httpAddr, _ := serve(t, p)
	c := &http.Client{Timeout: 10 * time.Second}

	for _, tc := range []struct {
		host, path string
		code       int
		body       string
	}{
		{"a.com", "/x", 200, "a host=a.com path=/x xff=127.0.0.1 proto=http xhost=a.com"},
		{"b.com:80", "/y", 200, "b host=b.com:80 path=/y xff=127.0.0.1 proto=http xhost=b.com:80"},
		{"b.com", "/none", 503, "Service Unavailable\n"},
		{"c.com", "/", 404, "404 page not found\n"},
	} {
		code, body := get(t, c, "http://"+httpAddr+tc.path, tc.host)
		if code != tc.code || body != tc.body {
			t.Errorf("%s%s: %d %q, want %d %q", tc.host, tc.path, code, body, tc.code, tc.body)
		}
	}

	// The client's own forwarding headers are not trusted.
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/", nil)
	req.Host = "a.com"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "xff=127.0.0.1 ") {
		t.Errorf("X-Forwarded-For from the client passed on: %q", body)
	}
}

// TestProxyRetriesAnotherEndpoint: an endpoint that refuses connections
// (gone before the Config caught up) costs no request.
func TestProxyRetriesAnotherEndpoint(t *testing.T) {
	live := listenOn(t, "127.0.0.1", 0, echo("live"))
	port := netip.MustParseAddrPort(live).Port()
	dead, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // now it refuses
	svc, slice := backendObjects("a", live, deadAddr)
	p := newProxy(t)
	p.Update(Build(Objects{Ingresses: []*networkingv1.Ingress{ingress("i", 0, rule("", path("/", networkingv1.PathTypePrefix, "a")))},
		Services: []*v1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{slice}}))
	httpAddr, _ := serve(t, p)
	// No keep-alive: every request picks and dials anew.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 6 {
		if code, body := get(t, c, "http://"+httpAddr+"/", "x"); code != 200 || !strings.HasPrefix(body, "live ") {
			t.Fatalf("request %d: %d %q, want 200 from the live endpoint", i, code, body)
		}
	}
	// The refusing endpoint is now tried last.
	if got := p.down.last([]string{deadAddr, live}); got[0] != live {
		t.Errorf("after a failed dial the order is %v, want the live endpoint first", got)
	}

	// With every endpoint gone the answer is 502.
	svc, slice = backendObjects("a", deadAddr)
	p.Update(Build(Objects{Ingresses: []*networkingv1.Ingress{ingress("i", 0, rule("", path("/", networkingv1.PathTypePrefix, "a")))},
		Services: []*v1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{slice}}))
	if code, _ := get(t, c, "http://"+httpAddr+"/", "x"); code != http.StatusBadGateway {
		t.Errorf("all endpoints refusing: %d, want 502", code)
	}
}

func TestProxyLoadBalances(t *testing.T) {
	var addrs []string
	port := 0
	for i := range 3 {
		a := listenOn(t, fmt.Sprintf("127.0.0.%d", i+1), port, echo(fmt.Sprintf("ep%d", i)))
		port = int(netip.MustParseAddrPort(a).Port())
		addrs = append(addrs, a)
	}
	svc, slice := backendObjects("a", addrs...)
	p := newProxy(t)
	p.Update(Build(Objects{Ingresses: []*networkingv1.Ingress{ingress("i", 0, rule("", path("/", networkingv1.PathTypePrefix, "a")))},
		Services: []*v1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{slice}}))
	httpAddr, _ := serve(t, p)
	c := &http.Client{Timeout: 10 * time.Second}
	seen := map[string]int{}
	for range 9 {
		_, body := get(t, c, "http://"+httpAddr+"/", "x")
		name, _, _ := strings.Cut(body, " ")
		seen[name]++
	}
	if len(seen) != 3 {
		t.Errorf("requests reached %v, want all three endpoints", seen)
	}
}

func TestProxyTLSBySNI(t *testing.T) {
	a := listenOn(t, "127.0.0.1", 0, echo("a"))
	svc, slice := backendObjects("a", a)
	crt, key := testCert(t, "secure.com")
	ing := ingress("i", 0, rule("secure.com", path("/", networkingv1.PathTypePrefix, "a")), rule("plain.com", path("/", networkingv1.PathTypePrefix, "a")))
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"secure.com"}, SecretName: "cert"}}
	p := newProxy(t)
	p.Update(Build(Objects{Ingresses: []*networkingv1.Ingress{ing}, Services: []*v1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{slice},
		Secrets: []*v1.Secret{{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "cert"}, Type: v1.SecretTypeTLS,
			Data: map[string][]byte{v1.TLSCertKey: crt, v1.TLSPrivateKeyKey: key}}}}))
	_, httpsAddr := serve(t, p)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(crt)
	for _, tc := range []struct{ sni, wantCN, proto string }{
		{"secure.com", "secure.com", "h2"},
		{"plain.com", DefaultCertificateCN, "h2"},
		{"", DefaultCertificateCN, "http/1.1"},
	} {
		conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true, NextProtos: []string{tc.proto}})
		if err != nil {
			t.Fatalf("handshake for %q: %v", tc.sni, err)
		}
		cs := conn.ConnectionState()
		conn.Close()
		if cn := cs.PeerCertificates[0].Subject.CommonName; cn != tc.wantCN {
			t.Errorf("SNI %q answered with %q, want %q", tc.sni, cn, tc.wantCN)
		}
		if cs.NegotiatedProtocol != tc.proto {
			t.Errorf("SNI %q: protocol %q, want %q", tc.sni, cs.NegotiatedProtocol, tc.proto)
		}
	}

	// A verifying client trusting the secret's certificate gets through,
	// over HTTP/2, with X-Forwarded-Proto https.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "secure.com"},
	}}
	req, _ := http.NewRequest("GET", "https://"+httpsAddr+"/s", nil)
	req.Host = "secure.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "proto=https") || resp.ProtoMajor != 2 {
		t.Errorf("HTTPS request: %s %d %q, want 200 over HTTP/2 with proto=https", resp.Proto, resp.StatusCode, body)
	}
}

// TestProxyWebSocket: an Upgrade passes through and the connection then
// carries bytes both ways, and survives a Config update.
func TestProxyWebSocket(t *testing.T) {
	ws := listenOn(t, "127.0.0.1", 0, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		// Echo lines back upper-cased until the client closes.
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			rw.WriteString(strings.ToUpper(line))
			rw.Flush()
		}
	}))
	svc, slice := backendObjects("ws", ws)
	objs := Objects{Ingresses: []*networkingv1.Ingress{ingress("i", 0, rule("ws.com", path("/", networkingv1.PathTypePrefix, "ws")))},
		Services: []*v1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{slice}}
	p := newProxy(t)
	p.Update(Build(objs))
	httpAddr, _ := serve(t, p)

	conn, err := net.DialTimeout("tcp", httpAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(conn, "GET /chat HTTP/1.1\r\nHost: ws.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	roundTrip := func(msg string) {
		t.Helper()
		fmt.Fprintf(conn, "%s\n", msg)
		got, err := br.ReadString('\n')
		if err != nil || got != strings.ToUpper(msg)+"\n" {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
	roundTrip("hello")
	// The Service loses its endpoints: new requests get 503, the
	// upgraded connection keeps going.
	objs.EndpointSlices = nil
	p.Update(Build(objs))
	if code, _ := get(t, &http.Client{Timeout: 10 * time.Second}, "http://"+httpAddr+"/", "ws.com"); code != http.StatusServiceUnavailable {
		t.Errorf("after the update: %d, want 503", code)
	}
	roundTrip("still here")
}

// TestProxyUpdateKeepsInFlight: a request that started before an update
// finishes at the backend it was routed to, while new requests follow
// the new Config.
func TestProxyUpdateKeepsInFlight(t *testing.T) {
	release := make(chan struct{})
	slow := listenOn(t, "127.0.0.1", 0, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		fmt.Fprint(w, "old-start ")
		http.NewResponseController(w).Flush()
		<-release
		fmt.Fprint(w, "old-end")
	}))
	fresh := listenOn(t, "127.0.0.1", 0, echo("new"))
	oldSvc, oldSlice := backendObjects("old", slow)
	newSvc, newSlice := backendObjects("new", fresh)
	objs := func(svc string) Objects {
		return Objects{Ingresses: []*networkingv1.Ingress{ingress("i", 0, rule("", path("/", networkingv1.PathTypePrefix, svc)))},
			Services: []*v1.Service{oldSvc, newSvc}, EndpointSlices: []*discoveryv1.EndpointSlice{oldSlice, newSlice}}
	}
	p := newProxy(t)
	p.Update(Build(objs("old")))
	httpAddr, _ := serve(t, p)
	c := &http.Client{Timeout: 30 * time.Second}

	resp, err := c.Get("http://" + httpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, len("old-start "))
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	p.Update(Build(objs("new")))
	if _, body := get(t, c, "http://"+httpAddr+"/", "x"); !strings.HasPrefix(body, "new ") {
		t.Errorf("request after the update: %q, want the new backend", body)
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "old-end" {
		t.Errorf("request in flight across the update: %q, %v", rest, err)
	}
}

// TestProxyConcurrentUpdates runs requests while the Config changes
// (for -race).
func TestProxyConcurrentUpdates(t *testing.T) {
	a := listenOn(t, "127.0.0.1", 0, echo("a"))
	svc, slice := backendObjects("a", a)
	objs := Objects{Ingresses: []*networkingv1.Ingress{ingress("i", 0, rule("", path("/", networkingv1.PathTypePrefix, "a")))},
		Services: []*v1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{slice}}
	p := newProxy(t)
	p.Update(Build(objs))
	h := httptest.NewServer(p)
	defer h.Close()
	var updater, clients sync.WaitGroup
	stop := make(chan struct{})
	updater.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				p.Update(Build(objs))
			}
		}
	})
	for range 4 {
		clients.Go(func() {
			for range 25 {
				resp, err := h.Client().Get(h.URL + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d during updates", resp.StatusCode)
				}
			}
		})
	}
	clients.Wait()
	close(stop)
	updater.Wait()
}

func TestUnreachableLast(t *testing.T) {
	now := time.Unix(1000, 0)
	u := &unreachable{now: func() time.Time { return now }}
	eps := []string{"a", "b", "c"}
	if got := u.last(eps); !slices.Equal(got, eps) {
		t.Errorf("nothing failed: %v", got)
	}
	u.mark("a")
	u.mark("b")
	if got, want := u.last(eps), []string{"c", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("a and b failed: %v, want %v", got, want)
	}
	if !slices.Equal(eps, []string{"a", "b", "c"}) {
		t.Errorf("the backend's endpoints were reordered: %v", eps)
	}
	now = now.Add(failTimeout)
	if got := u.last(eps); !slices.Equal(got, eps) {
		t.Errorf("after failTimeout: %v, want the round-robin order again", got)
	}
	u.mark("c") // and the expired ones are forgotten
	if len(u.until) != 1 {
		t.Errorf("expired failures kept: %v", u.until)
	}
}

// TestProxyRetryKeepsBody: a request body reaches the endpoint tried
// after a refused one whole.
func TestProxyRetryKeepsBody(t *testing.T) {
	live := listenOn(t, "127.0.0.1", 0, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %q", b)
	}))
	port := netip.MustParseAddrPort(live).Port()
	dead, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	svc, slice := backendObjects("a", live, deadAddr)
	p := newProxy(t)
	p.Update(Build(Objects{Ingresses: []*networkingv1.Ingress{ingress("i", 0, rule("", path("/", networkingv1.PathTypePrefix, "a")))},
		Services: []*v1.Service{svc}, EndpointSlices: []*discoveryv1.EndpointSlice{slice}}))
	httpAddr, _ := serve(t, p)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 4 { // the second starts at the refusing endpoint (round robin)
		resp, err := c.Post("http://"+httpAddr+"/", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != `got "payload"` {
			t.Errorf("POST %d: %d %q, want the body passed on whole", i, resp.StatusCode, b)
		}
	}
}
