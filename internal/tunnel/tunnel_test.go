package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const waitLong = 10 * time.Second

func getBody(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

func TestAPIRequestsShareTheTunnelConnection(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := h.startAgent("node-a", agentSetup{})
	waitClosed(t, a.Connected(), "agent connected", waitLong)

	if got, want := getBody(t, a.Client(), h.ts.URL+"/api/proto"), "HTTP/2.0 node-a"; got != want {
		t.Errorf("API request: got %q, want %q", got, want)
	}
	body := bytes.Repeat([]byte("orch"), 100_000)
	resp, err := a.Client().Post(h.ts.URL+"/api/echo", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Errorf("POST echo: %d bytes back (err %v), want %d", len(got), err, len(body))
	}
	if n := h.tcp.Load(); n != 1 {
		t.Errorf("server saw %d TCP connections, want 1 (control stream and API calls on one)", n)
	}
	if n := a.dials.Load(); n != 1 {
		t.Errorf("agent dialed %d times, want 1", n)
	}
}

func TestSessionPlainHTTP(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := h.startAgent("node-a", agentSetup{opts: AgentOptions{Handler: sessionHandler(nil)}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	if !h.srv.IsConnected("node-a") {
		t.Fatal("server does not list node-a")
	}

	cases := []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"Transport by host", &http.Client{Transport: h.srv.Transport()}, "http://node-a/hello?x=1"},
		{"RoundTripper by node", &http.Client{Transport: h.srv.RoundTripper("node-a")}, "http://ignored.example/hello?x=1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 { // pooled conns are reused
				if got, want := getBody(t, tc.client, tc.url), "hello from the agent: GET /hello?x=1"; got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			}
		})
	}
}

func TestSessionLongBidirectionalStream(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := h.startAgent("node-a", agentSetup{opts: AgentOptions{Handler: sessionHandler(nil)}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)

	s, err := upgradeSession(context.Background(), h.srv, "node-a", "/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const size = 32 << 20
	data := make([]byte, size)
	_, _ = rand.Read(data)
	writeErr := make(chan error, 1)
	go func() {
		// Write while the echo comes back: both directions at once.
		_, err := io.Copy(s, bytes.NewReader(data))
		writeErr <- err
	}()
	got := sha256.New()
	if _, err := io.CopyN(got, s, size); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(got.Sum(nil), want[:]) {
		t.Fatal("echoed bytes differ from the sent ones")
	}
}

func TestConcurrentSessionsWhileAPICallsFlow(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := h.startAgent("node-a", agentSetup{opts: AgentOptions{Handler: sessionHandler(nil)}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)

	stopAPI := make(chan struct{})
	var apiCalls atomic.Int32
	apiErr := make(chan error, 1)
	go func() {
		defer close(apiErr)
		for {
			select {
			case <-stopAPI:
				return
			default:
			}
			resp, err := a.Client().Get(h.ts.URL + "/api/proto")
			if err != nil {
				apiErr <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			apiCalls.Add(1)
		}
	}()

	const sessions = 50
	const perSession = 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Go(func() {
			s, err := upgradeSession(context.Background(), h.srv, "node-a", "/echo")
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			defer s.Close()
			payload := bytes.Repeat([]byte{byte(i)}, perSession)
			go func() { _, _ = s.Write(payload) }()
			got := make([]byte, perSession)
			if _, err := io.ReadFull(s, got); err != nil {
				errs <- fmt.Errorf("session %d: read: %w", i, err)
				return
			}
			if !bytes.Equal(got, payload) {
				errs <- fmt.Errorf("session %d: echoed bytes differ", i)
			}
		})
	}
	wg.Wait()
	close(stopAPI)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-apiErr; err != nil {
		t.Errorf("API call during sessions: %v", err)
	}
	if apiCalls.Load() == 0 {
		t.Error("no API call completed while the sessions ran")
	}
	t.Logf("%d API calls completed during %d sessions", apiCalls.Load(), sessions)
}

// A session whose two readers both stall must not stall the agent's API
// calls, which share the connection: each HTTP/2 stream has its own window.
func TestStalledSessionDoesNotBlockAPICalls(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	release := make(chan struct{})
	defer close(release)
	a := h.startAgent("node-a", agentSetup{opts: AgentOptions{Handler: sessionHandler(release)}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)

	// Server to agent: the agent's /sink handler never reads.
	sink, err := upgradeSession(context.Background(), h.srv, "node-a", "/sink")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	go func() { _, _ = io.Copy(sink, io.LimitReader(zeroReader{}, 64<<20)) }()

	// Agent to server: the agent's /flood handler writes, the server never
	// reads.
	flood, err := upgradeSession(context.Background(), h.srv, "node-a", "/flood")
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()

	time.Sleep(300 * time.Millisecond) // let both fill their windows
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for i := range 5 {
		upload := make([]byte, 2<<20)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.ts.URL+"/api/echo", bytes.NewReader(upload))
		resp, err := a.Client().Do(req)
		if err != nil {
			t.Fatalf("API call %d with a stalled session: %v", i, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != int64(len(upload)) {
			t.Fatalf("API call %d: %d bytes back, err %v", i, n, err)
		}
	}
}

func TestAgentReconnectsAfterConnectionLoss(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := h.startAgent("node-a", agentSetup{opts: AgentOptions{Handler: sessionHandler(nil)}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	h.waitEvent("connect node-a", waitLong)
	client := &http.Client{Transport: h.srv.RoundTripper("node-a")}
	getBody(t, client, "http://node-a/hello")

	for round := 1; round <= 3; round++ {
		down := a.Disconnected()
		if err := a.lastConn().Conn.Close(); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, down, "agent noticed the lost connection", waitLong)
		if e := h.waitEvent("disconnect node-a", waitLong); !strings.Contains(e, "node-a") {
			t.Fatalf("unexpected event %q", e)
		}
		waitClosed(t, a.Connected(), "agent reconnected", waitLong)
		h.waitEvent("connect node-a", waitLong)
		if got, want := getBody(t, client, "http://node-a/hello"), "hello from the agent: GET /hello"; got != want {
			t.Fatalf("round %d: session after reconnect: got %q", round, got)
		}
		getBody(t, a.Client(), h.ts.URL+"/api/proto")
		if got := a.dials.Load(); got != int32(round+1) {
			t.Errorf("round %d: %d dials, want %d", round, got, round+1)
		}
	}
}

func TestAgentBacksOffWhileServerRefuses(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	// A certificate that is not a node's is refused with 401 on every attempt.
	a := h.startAgent("node-a", agentSetup{cn: "someone", opts: AgentOptions{
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 400 * time.Millisecond,
	}})
	time.Sleep(1500 * time.Millisecond)
	a.stop()
	select {
	case <-a.Connected():
		t.Fatal("agent reports a connection the server refused")
	default:
	}
	// Without back-off there would be hundreds; with it 50+100+200+400... ms.
	if n := a.dials.Load(); n < 3 || n > 12 {
		t.Errorf("%d attempts in 1.5s, want between 3 and 12", n)
	}
	if h.srv.IsConnected("node-a") {
		t.Error("server lists a node it refused")
	}
}

func TestBlackholedLinkIsDetectedByBothEnds(t *testing.T) {
	// The server's limit is well below the agent's so that each end finds
	// out on its own rather than from the other closing the conn.
	h := newHarness(t, harnessOptions{server: ServerOptions{AgentTimeout: 500 * time.Millisecond}})
	a := h.startAgent("node-a", agentSetup{opts: AgentOptions{
		Handler:           sessionHandler(nil),
		HeartbeatInterval: 100 * time.Millisecond,
		PingTimeout:       time.Second,
	}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	h.waitEvent("connect node-a", waitLong)
	down := a.Disconnected()

	start := time.Now()
	a.lastConn().blackhole()
	e := h.waitEvent("disconnect node-a", waitLong)
	if !strings.Contains(e, "no heartbeat") {
		t.Errorf("server's reason: %q, want a missed heartbeat", e)
	}
	t.Logf("server noticed after %s: %s", time.Since(start).Round(time.Millisecond), e)
	if _, err := h.srv.Dial(context.Background(), "node-a"); err == nil {
		// A reconnect may already have happened; only a live node may answer.
		if !h.srv.IsConnected("node-a") {
			t.Error("Dial succeeded to a disconnected node")
		}
	}
	waitClosed(t, down, "agent noticed the dead link", waitLong)
	t.Logf("agent noticed after %s", time.Since(start).Round(time.Millisecond))
	waitClosed(t, a.Connected(), "agent reconnected", waitLong)
	getBody(t, &http.Client{Transport: h.srv.RoundTripper("node-a")}, "http://node-a/hello")
}

// TestServerFollowsTheAgentsHeartbeat: the agent names its heartbeat
// interval (orch agent --tunnel-keepalive) and the server drops it after
// 1.5 silent intervals, whatever its own default for agents that name none.
func TestServerFollowsTheAgentsHeartbeat(t *testing.T) {
	h := newHarness(t, harnessOptions{server: ServerOptions{AgentTimeout: time.Hour}})
	a := h.startAgent("node-a", agentSetup{opts: AgentOptions{
		Handler:           sessionHandler(nil),
		HeartbeatInterval: time.Second,
		PingTimeout:       time.Hour, // the server, not the agent, must notice
	}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	h.waitEvent("connect node-a", waitLong)
	a.lastConn().blackhole()
	if e := h.waitEvent("disconnect node-a", waitLong); !strings.Contains(e, "no heartbeat from agent for 1.5s") {
		t.Errorf("server's reason: %q, want 1.5 of the agent's 1s heartbeat", e)
	}
}

func TestAgentTimeout(t *testing.T) {
	s := &Server{opts: ServerOptions{AgentTimeout: 15 * time.Second}}
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"10s", 15 * time.Second},
		{"1m", 90 * time.Second},
		{"", 15 * time.Second},      // an agent that names none
		{"500ms", 15 * time.Second}, // below 1s
		{"1h", 15 * time.Second},    // above 10 minutes
		{"often", 15 * time.Second}, // not a duration
		{"-10s", 15 * time.Second},  // negative
	} {
		r := httptest.NewRequest(http.MethodPost, controlPath, nil)
		if tc.header != "" {
			r.Header.Set(heartbeatHeader, tc.header)
		}
		if got := s.agentTimeout(r); got != tc.want {
			t.Errorf("heartbeat %q: timeout %s, want %s", tc.header, got, tc.want)
		}
	}
}

// TestHeartbeatsAreAnswered: the server answers each heartbeat on the
// control stream, the only keepalive of the tunnel, by which the agent
// knows the link works.
func TestHeartbeatsAreAnswered(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	tr := &http.Transport{TLSClientConfig: h.clientTLS("system:node:node-p"), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	body, beats := io.Pipe()
	defer beats.Close()
	req, _ := http.NewRequest(http.MethodPost, h.ts.URL+controlPath, body)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	for i := range 3 {
		if _, err := io.WriteString(beats, msgPing+"\n"); err != nil {
			t.Fatal(err)
		}
		line, err := lines.ReadString('\n')
		if err != nil || line != msgPong+"\n" {
			t.Fatalf("answer to heartbeat %d: %q, %v", i, line, err)
		}
	}
}

// TestAgentDropsSilentServer: an agent whose heartbeats go unanswered
// (its link dead one way) drops the connection and dials again.
func TestAgentDropsSilentServer(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := h.startAgent("node-a", agentSetup{opts: AgentOptions{
		Handler:           sessionHandler(nil),
		HeartbeatInterval: 100 * time.Millisecond,
		PingTimeout:       200 * time.Millisecond,
	}})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	down := a.Disconnected()
	a.lastConn().muteServer()
	waitClosed(t, down, "agent dropped the silent link", waitLong)
	waitClosed(t, a.Connected(), "agent reconnected", waitLong)
}

func TestDialNodeWithoutControlStream(t *testing.T) {
	h := newHarness(t, harnessOptions{})

	// An HTTP/2 client with a node's certificate that never opened the
	// control stream: its API calls work, but it cannot be dialed.
	tr := &http.Transport{TLSClientConfig: h.clientTLS("system:node:node-x"), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	if got := getBody(t, &http.Client{Transport: tr}, h.ts.URL+"/api/proto"); got != "HTTP/2.0 node-x" {
		t.Fatalf("API call: %q", got)
	}

	_, err := h.srv.Dial(context.Background(), "node-x")
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Dial: %v, want ErrNotConnected", err)
	}
	if want := `node "node-x" is not connected`; err.Error() != want {
		t.Errorf("Dial error %q, want %q", err, want)
	}
	_, err = (&http.Client{Transport: h.srv.Transport()}).Get("http://node-x/hello")
	if !errors.Is(err, ErrNotConnected) || !strings.Contains(err.Error(), `node "node-x" is not connected`) {
		t.Errorf("request through Transport: %v", err)
	}

	// A stopped agent is forgotten as well.
	a := h.startAgent("node-a", agentSetup{})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	a.stop()
	h.waitEvent("disconnect node-a", waitLong)
	if _, err := h.srv.Dial(context.Background(), "node-a"); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Dial to stopped agent: %v", err)
	}
	if _, err := a.Client().Get(h.ts.URL + "/api/proto"); !errors.Is(err, ErrNotConnected) {
		t.Errorf("API call of a stopped agent: %v, want ErrNotConnected", err)
	}
}

func TestServerRefusesBadTunnelRequests(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a := h.startAgent("node-a", agentSetup{})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	h2 := &http.Transport{TLSClientConfig: h.clientTLS("system:node:node-b"), ForceAttemptHTTP2: true}
	defer h2.CloseIdleConnections()
	h1 := &http.Transport{TLSClientConfig: h.clientTLS("system:node:node-b")}
	h1.Protocols = new(http.Protocols)
	h1.Protocols.SetHTTP1(true)
	defer h1.CloseIdleConnections()
	anon := &http.Transport{TLSClientConfig: h.clientTLS("someone"), ForceAttemptHTTP2: true}
	defer anon.CloseIdleConnections()

	cases := []struct {
		name   string
		tr     http.RoundTripper
		method string
		path   string
		want   int
	}{
		{"HTTP/1.1 control", h1, http.MethodPost, controlPath, http.StatusHTTPVersionNotSupported},
		{"GET control", h2, http.MethodGet, controlPath, http.StatusMethodNotAllowed},
		{"not a node", anon, http.MethodPost, controlPath, http.StatusUnauthorized},
		{"unknown stream", h2, http.MethodPost, streamPathPrefix + "0123", http.StatusNotFound},
		{"unknown path", h2, http.MethodPost, PathPrefix + "nope", http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, h.ts.URL+tc.path, strings.NewReader(""))
			resp, err := tc.tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// A stream id belongs to the node it was announced to: another node that
// names it gets 404 and the session is not hijacked.
func TestStreamIDIsBoundToItsNode(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ids := make(chan string, 1)
	// A hand-made agent that reads the control stream but lets node-b
	// answer the open request.
	tr := &http.Transport{TLSClientConfig: h.clientTLS("system:node:node-a"), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, h.ts.URL+controlPath, pr)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	go func() {
		var verb, id string
		if _, err := fmt.Fscan(resp.Body, &verb, &id); err == nil {
			ids <- id
		}
	}()
	dialErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := h.srv.Dial(ctx, "node-a")
		dialErr <- err
	}()
	id := <-ids
	other := &http.Transport{TLSClientConfig: h.clientTLS("system:node:node-b"), ForceAttemptHTTP2: true}
	defer other.CloseIdleConnections()
	sreq, _ := http.NewRequest(http.MethodPost, h.ts.URL+streamPathPrefix+id, strings.NewReader(""))
	sresp, err := other.RoundTrip(sreq)
	if err != nil {
		t.Fatal(err)
	}
	sresp.Body.Close()
	if sresp.StatusCode != http.StatusNotFound {
		t.Errorf("node-b answering node-a's stream: %d, want 404", sresp.StatusCode)
	}
	if err := <-dialErr; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial: %v, want a deadline error", err)
	}
}

func TestNewerControlStreamReplacesOlder(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	a1 := h.startAgent("node-a", agentSetup{opts: AgentOptions{Handler: sessionHandler(nil), MinBackoff: time.Hour}})
	waitClosed(t, a1.Connected(), "first agent connected", waitLong)
	down := a1.Disconnected()
	a2 := h.startAgent("node-a", agentSetup{opts: AgentOptions{Handler: sessionHandler(nil)}})
	waitClosed(t, a2.Connected(), "second agent connected", waitLong)
	waitClosed(t, down, "first agent dropped", waitLong)
	if got := h.srv.Nodes(); len(got) != 1 || got[0] != "node-a" {
		t.Errorf("Nodes() = %v", got)
	}
	getBody(t, &http.Client{Transport: h.srv.RoundTripper("node-a")}, "http://node-a/hello")
}

// rawPair returns the two ends of one session: the server's and the agent's.
// Each pair has its own agent, named node.
func rawPair(t testing.TB, h *harness, node string) (server, agent net.Conn) {
	t.Helper()
	conns := make(chan net.Conn, 1)
	a := h.startAgent(node, agentSetup{serve: func(c net.Conn) { conns <- c }})
	waitClosed(t, a.Connected(), "agent connected", waitLong)
	s, err := h.srv.Dial(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	c := <-conns
	t.Cleanup(func() { s.Close(); c.Close() })
	return s, c
}

func TestStreamConnSemantics(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	s, c := rawPair(t, h, "node-a")

	t.Run("both directions", func(t *testing.T) {
		for _, p := range []struct{ from, to net.Conn }{{s, c}, {c, s}} {
			if _, err := p.from.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(p.to, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("read %q, %v", buf, err)
			}
		}
	})

	t.Run("read deadline interrupts a blocked read and can be lifted", func(t *testing.T) {
		for _, conn := range []net.Conn{s, c} {
			start := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, err := conn.Read(make([]byte, 1))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read after deadline: %v, want a timeout", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("read deadline took %s", d)
			}
			_ = conn.SetReadDeadline(time.Time{})
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
			t.Fatalf("read after lifting the deadline: %v", err)
		}
	})

	t.Run("past write deadline fails at once", func(t *testing.T) {
		_ = s.SetWriteDeadline(time.Now().Add(-time.Second))
		if _, err := s.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write: %v, want deadline exceeded", err)
		}
		_ = s.SetWriteDeadline(time.Time{})
	})

	t.Run("half-close either way", func(t *testing.T) {
		s2, c2 := rawPair(t, h, "node-b")
		for _, p := range []struct{ closer, peer net.Conn }{{c, s}, {s2, c2}} {
			if err := p.closer.(halfCloser).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if n, err := p.peer.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after the peer's CloseWrite: %d, %v, want EOF", n, err)
			}
			if _, err := p.peer.Write([]byte("still")); err != nil {
				t.Fatalf("write after the peer's CloseWrite: %v", err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(p.closer, buf); err != nil || string(buf) != "still" {
				t.Fatalf("half-closed end read %q, %v", buf, err)
			}
		}
	})

	t.Run("close ends the peer and itself", func(t *testing.T) {
		if _, err := s.Write([]byte("last")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		got, err := io.ReadAll(c)
		if string(got) != "last" {
			t.Errorf("agent read %q (err %v), want the bytes written before Close", got, err)
		}
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v, want net.ErrClosed", err)
		}
		if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close: %v, want net.ErrClosed", err)
		}
	})
}

// Close must release a Write blocked by flow control, and the server's
// handler must not touch the ResponseWriter afterwards (-race checks it).
func TestCloseReleasesBlockedWrite(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, side := range []string{"server", "agent"} {
		t.Run(side, func(t *testing.T) {
			s, c := rawPair(t, h, "node-"+side)
			w := s
			if side == "agent" {
				w = c
			}
			done := make(chan error, 1)
			go func() {
				_, err := w.Write(make([]byte, 32<<20)) // far beyond the windows; nobody reads
				done <- err
			}()
			time.Sleep(200 * time.Millisecond)
			w.Close()
			select {
			case err := <-done:
				if err == nil {
					t.Error("blocked Write succeeded after Close")
				}
			case <-time.After(waitLong):
				t.Fatal("Close did not release the blocked Write")
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const min, max = 100 * time.Millisecond, 2 * time.Second
	cases := []struct {
		attempt  int
		random   float64
		wantLow  time.Duration
		wantHigh time.Duration
	}{
		{0, 0, 50 * time.Millisecond, 50 * time.Millisecond},
		{0, 1, 100 * time.Millisecond, 100 * time.Millisecond},
		{1, 0.5, 150 * time.Millisecond, 150 * time.Millisecond},
		{3, 0, 400 * time.Millisecond, 400 * time.Millisecond},
		{5, 1, max, max},
		{5, 0, max / 2, max / 2},
		{40, 0.5, max * 3 / 4, max * 3 / 4},
		{1000, 1, max, max},
	}
	for _, tc := range cases {
		got := backoff(tc.attempt, min, max, func() float64 { return tc.random })
		if got < tc.wantLow || got > tc.wantHigh {
			t.Errorf("backoff(%d, random %v) = %s, want %s..%s", tc.attempt, tc.random, got, tc.wantLow, tc.wantHigh)
		}
	}
}

func TestNewAgentValidatesOptions(t *testing.T) {
	cases := []struct {
		name string
		opts AgentOptions
		want string
	}{
		{"http URL", AgentOptions{ServerURL: "http://h:1"}, "want https"},
		{"no host", AgentOptions{ServerURL: "https://"}, "want https"},
		{"bad URL", AgentOptions{ServerURL: "https://h:1/%zz"}, "server URL"},
		{"no TLS", AgentOptions{ServerURL: "https://h:1"}, "TLSConfig is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewAgent(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := NewServer(ServerOptions{}); err == nil {
		t.Error("NewServer without NodeName succeeded")
	}
}
