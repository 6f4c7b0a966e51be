package tunnel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// harness is a tunnel server on an httptest TLS server (HTTP/2, 127.0.0.1)
// with an API handler next to it, and agents connected to it.
type harness struct {
	t      testing.TB
	ts     *httptest.Server
	srv    *Server
	events chan string // "connect NODE" and "disconnect NODE: ERR"
	tcp    atomic.Int32
}

type harnessOptions struct {
	server ServerOptions
	api    http.Handler // mounted at /api/
}

func newHarness(t testing.TB, ho harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, events: make(chan string, 100)}
	so := ho.server
	so.NodeName = nodeFromCert
	so.Logger = quietLogger()
	so.OnConnect = func(node string) { h.event("connect " + node) }
	so.OnDisconnect = func(node string, err error) { h.event("disconnect " + node + ": " + err.Error()) }
	srv, err := NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	mux := http.NewServeMux()
	mux.Handle(PathPrefix, srv)
	if ho.api == nil {
		ho.api = echoAPI()
	}
	mux.Handle("/api/", ho.api)
	ts := httptest.NewUnstartedServer(mux)
	ts.EnableHTTP2 = true
	ts.Config.HTTP2 = ServerHTTP2Config()
	ts.Config.ErrorLog = slog.NewLogLogger(quietLogger().Handler(), slog.LevelError)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			h.tcp.Add(1)
		}
	}
	ts.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	ts.StartTLS()
	h.ts = ts
	t.Cleanup(func() {
		srv.Close()
		ts.CloseClientConnections()
		ts.Close()
	})
	return h
}

func (h *harness) event(e string) {
	select {
	case h.events <- e:
	default:
	}
}

// waitEvent waits for an event starting with prefix and returns it.
func (h *harness) waitEvent(prefix string, timeout time.Duration) string {
	h.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-h.events:
			if strings.HasPrefix(e, prefix) {
				return e
			}
		case <-deadline:
			h.t.Fatalf("no %q event within %s", prefix, timeout)
		}
	}
}

// nodeFromCert names the agent by its client certificate, as orch does.
func nodeFromCert(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", errors.New("no client certificate")
	}
	cn := r.TLS.PeerCertificates[0].Subject.CommonName
	node, ok := strings.CutPrefix(cn, "system:node:")
	if !ok {
		return "", errors.New("client certificate is not a node's")
	}
	return node, nil
}

// clientTLS returns a TLS config trusting the harness server and presenting
// a self-signed certificate for cn.
func (h *harness) clientTLS(cn string) *tls.Config {
	h.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		h.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		h.t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.ts.Certificate())
	return &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	}
}

// testAgent is a running Agent plus what the test needs to hurt its link.
type testAgent struct {
	*Agent
	dials  atomic.Int32
	mu     sync.Mutex
	conns  []*faultyConn
	cancel context.CancelFunc
	done   chan struct{}
}

type agentSetup struct {
	opts  AgentOptions
	serve func(net.Conn) // raw session conns instead of opts.Handler
	cn    string         // client certificate's CN; default system:node:NODE
}

// startAgent runs an agent for node against the harness server.
func (h *harness) startAgent(node string, setup agentSetup) *testAgent {
	h.t.Helper()
	ta := &testAgent{done: make(chan struct{})}
	opts := setup.opts
	opts.ServerURL = h.ts.URL
	if setup.cn == "" {
		setup.cn = "system:node:" + node
	}
	opts.TLSConfig = h.clientTLS(setup.cn)
	opts.Logger = quietLogger()
	setDefault(&opts.MinBackoff, 20*time.Millisecond)
	setDefault(&opts.MaxBackoff, 200*time.Millisecond)
	opts.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		ta.dials.Add(1)
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		fc := &faultyConn{Conn: c}
		ta.mu.Lock()
		ta.conns = append(ta.conns, fc)
		ta.mu.Unlock()
		return fc, nil
	}
	a, err := NewAgent(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	a.serve = setup.serve
	ta.Agent = a
	ctx, cancel := context.WithCancel(context.Background())
	ta.cancel = cancel
	go func() {
		defer close(ta.done)
		if err := a.Run(ctx); err != nil {
			h.t.Errorf("agent Run: %v", err)
		}
	}()
	h.t.Cleanup(ta.stop)
	return ta
}

func (ta *testAgent) stop() {
	ta.cancel()
	<-ta.done
}

// lastConn is the agent's current TCP connection.
func (ta *testAgent) lastConn() *faultyConn {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.conns[len(ta.conns)-1]
}

func waitClosed(t testing.TB, c <-chan struct{}, what string, timeout time.Duration) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(timeout):
		t.Fatalf("%s: not within %s", what, timeout)
	}
}

// faultyConn is a TCP conn a test can cut or black-hole.
type faultyConn struct {
	net.Conn
	blackholed atomic.Bool
	muted      atomic.Bool
}

// blackhole makes the link silently drop everything in both directions,
// like a pulled cable: no FIN, no RST.
func (c *faultyConn) blackhole() { c.blackholed.Store(true) }

// muteServer drops what the server sends, as a link dead one way; what
// the agent sends still arrives.
func (c *faultyConn) muteServer() { c.muted.Store(true) }

func (c *faultyConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !(c.blackholed.Load() || c.muted.Load()) {
			return n, err
		}
	}
}

func (c *faultyConn) Write(p []byte) (int, error) {
	if c.blackholed.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// echoAPI stands in for the API server: /api/echo returns the request body,
// /api/blob?n= returns n bytes, /api/proto the protocol and remote address.
func echoAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})
	mux.HandleFunc("/api/blob", func(w http.ResponseWriter, r *http.Request) {
		var n int64
		for _, ch := range r.URL.Query().Get("n") {
			n = n*10 + int64(ch-'0')
		}
		_, _ = io.CopyN(w, zeroReader{}, n)
	})
	mux.HandleFunc("/api/proto", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto+" "+nodeOrErr(r))
	})
	return mux
}

func nodeOrErr(r *http.Request) string {
	n, err := nodeFromCert(r)
	if err != nil {
		return err.Error()
	}
	return n
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// sessionHandler is the agent's session handler in tests: /hello answers
// plainly, /echo upgrades and echoes bytes, /flood upgrades and writes
// 64 MiB, /sink upgrades and neither reads nor writes until release closes.
func sessionHandler(release <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the agent: "+r.Method+" "+r.URL.RequestURI())
	})
	upgrade := func(w http.ResponseWriter) (net.Conn, io.Reader) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return nil, nil
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test-echo\r\n\r\n")
		return c, rw
	}
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c, br := upgrade(w)
		if c == nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, br)
	})
	mux.HandleFunc("/flood", func(w http.ResponseWriter, r *http.Request) {
		c, _ := upgrade(w)
		if c == nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, io.LimitReader(zeroReader{}, 64<<20))
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		c, _ := upgrade(w)
		if c == nil {
			return
		}
		defer c.Close()
		<-release
	})
	return mux
}

// upgradeSession opens a session to node through the server's transport and
// upgrades it to a raw byte stream (the path exec and port-forward take).
func upgradeSession(ctx context.Context, srv *Server, node, path string) (io.ReadWriteCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+node+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test-echo")
	resp, err := srv.Transport().RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return nil, errors.New("no upgrade: " + resp.Status)
	}
	return resp.Body.(io.ReadWriteCloser), nil
}
