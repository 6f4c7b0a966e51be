package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// streamCloseGrace bounds how long a session the agent closed may take
// to be read to its end by the server before its streams are reset.
const streamCloseGrace = 10 * time.Second

// AgentOptions configures an [Agent].
type AgentOptions struct {
	// ServerURL is the server's base URL, https://HOST:PORT. Required.
	ServerURL string

	// TLSConfig verifies the server and presents the agent's client
	// certificate. Required. NextProtos is managed by the agent.
	TLSConfig *tls.Config

	// Handler serves the sessions the server opens (logs, exec, attach,
	// port-forward, stats) as HTTP/1.1 over the tunnel; it may Hijack.
	// Nil answers 404 to everything.
	Handler http.Handler

	// HeartbeatInterval is the period of the agent's heartbeats on the
	// control stream; the server answers each at once. The server drops an
	// agent silent for 1.5 intervals (the agent names its interval when it
	// opens the control stream), and the agent drops a connection
	// on which nothing came back for HeartbeatInterval + PingTimeout, so
	// either end notices a dead link within about that sum. Defaults 10s
	// and 5s: a dead link is noticed within ~15 s, as issue 8 asks, for
	// two small frames every 10 s.
	HeartbeatInterval time.Duration
	PingTimeout       time.Duration

	// DialTimeout bounds the TCP and TLS handshakes. Default 10s.
	DialTimeout time.Duration

	// MinBackoff and MaxBackoff bound the jittered exponential back-off
	// between connection attempts. Defaults 500ms and 15s.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// DialContext dials the TCP connection; nil uses net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Agent is the agent's end of the tunnel: it keeps one HTTP/2 connection to
// the server up, carries the agent's API calls on it ([Agent.Client]) and
// serves the sessions the server asks for with AgentOptions.Handler.
type Agent struct {
	opts      AgentOptions
	log       *slog.Logger
	base      string // scheme://host:port, for the tunnel's own requests
	addr      string // host:port to dial
	transport *http.Transport
	client    *http.Client
	running   atomic.Bool

	// serve, if set, takes session conns instead of the HTTP server; for
	// tests that need raw byte streams.
	serve func(net.Conn)

	// lastRead is when bytes last came from the server (UnixNano): a
	// link busy with other streams is alive even if a heartbeat's answer
	// waits behind their data.
	lastRead atomic.Int64

	mu   sync.Mutex
	cc   *http.ClientConn // nil while disconnected
	up   chan struct{}    // closed while connected
	down chan struct{}    // closed while disconnected
}

// NewAgent returns an Agent; call Run to connect.
func NewAgent(opts AgentOptions) (*Agent, error) {
	u, err := url.Parse(opts.ServerURL)
	if err != nil {
		return nil, fmt.Errorf("tunnel: server URL %q: %w", opts.ServerURL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("tunnel: server URL %q: want https://HOST[:PORT]", opts.ServerURL)
	}
	if opts.TLSConfig == nil {
		return nil, errors.New("tunnel: AgentOptions.TLSConfig is required")
	}
	if opts.Handler == nil {
		opts.Handler = http.NotFoundHandler()
	}
	setDefault(&opts.HeartbeatInterval, 10*time.Second)
	setDefault(&opts.PingTimeout, 5*time.Second)
	setDefault(&opts.DialTimeout, 10*time.Second)
	setDefault(&opts.MinBackoff, 500*time.Millisecond)
	setDefault(&opts.MaxBackoff, 15*time.Second)
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	a := &Agent{
		opts: opts,
		log:  opts.Logger,
		base: "https://" + u.Host,
		addr: addr,
		up:   make(chan struct{}),
		down: make(chan struct{}),
	}
	close(a.down)

	var protos http.Protocols
	protos.SetHTTP2(true)
	dial := opts.DialContext
	if dial == nil {
		// No TCP keepalive probes: the heartbeats keep the link busy and
		// find it dead (connect), so probes would only add bytes.
		dial = (&net.Dialer{KeepAlive: -1}).DialContext
	}
	a.transport = &http.Transport{
		Protocols:       &protos,
		TLSClientConfig: opts.TLSConfig.Clone(),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &activityConn{Conn: c, last: &a.lastRead}, nil
		},
		TLSHandshakeTimeout: opts.DialTimeout,
		// No HTTP/2 PINGs (SendPingTimeout 0) for the same reason.
		HTTP2: &http.HTTP2Config{
			// A link that takes no bytes at all is as dead as one that
			// answers no heartbeats.
			WriteByteTimeout: opts.HeartbeatInterval + opts.PingTimeout,
		},
	}
	a.client = &http.Client{Transport: agentRoundTripper{a}}
	return a, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Client returns an http.Client whose requests all go over the tunnel's
// connection, whatever host their URL names (use ServerURL). While the
// tunnel is down requests fail at once with an error matching
// [ErrNotConnected]; requests in flight when the link drops fail too.
func (a *Agent) Client() *http.Client { return a.client }

// Connected returns a channel that is closed while the tunnel is up (the
// control stream is established); while it is down, the channel closes at
// the next connect.
func (a *Agent) Connected() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.up
}

// Disconnected returns a channel that is closed while the tunnel is down;
// while it is up, the channel closes when the connection is lost. Watches
// opened over the tunnel break then; relist after the next Connected.
func (a *Agent) Disconnected() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.down
}

func (a *Agent) current() *http.ClientConn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cc
}

func (a *Agent) setConnected(cc *http.ClientConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cc = cc
	close(a.up)
	a.down = make(chan struct{})
}

func (a *Agent) setDisconnected() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cc = nil
	close(a.down)
	a.up = make(chan struct{})
}

type agentRoundTripper struct{ a *Agent }

func (rt agentRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	cc := rt.a.current()
	if cc == nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("tunnel: %s %s: server is %w", req.Method, req.URL.Path, ErrNotConnected)
	}
	return cc.RoundTrip(req)
}

// Run keeps the tunnel up until ctx ends, reconnecting with jittered
// exponential back-off, and serves sessions meanwhile. It returns nil when
// ctx ends; it can be called only once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("tunnel: Agent.Run called twice")
	}
	sessions := newSessionListener()
	serve := a.serve
	var wg sync.WaitGroup
	if serve == nil {
		srv := &http.Server{
			Handler:     a.opts.Handler,
			IdleTimeout: time.Minute,
			ErrorLog:    slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
			BaseContext: func(net.Listener) context.Context { return ctx },
		}
		wg.Go(func() { _ = srv.Serve(sessions) })
		defer func() {
			srv.Close() // also closes sessions
			wg.Wait()
		}()
		serve = sessions.deliver
	}

	for attempt := 0; ; attempt++ {
		established, err := a.connect(ctx, serve)
		if ctx.Err() != nil {
			return nil
		}
		if established {
			attempt = 0
		}
		delay := backoff(attempt, a.opts.MinBackoff, a.opts.MaxBackoff, rand.Float64)
		a.log.Warn("tunnel: connection to server lost", "server", a.addr, "err", err, "retryIn", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// backoff returns the pause before connection attempt number attempt+1:
// exponential from min to max, the upper half of it random so that agents
// cut off together do not come back together.
func backoff(attempt int, min, max time.Duration, random func() float64) time.Duration {
	d := max
	if attempt < 32 {
		if e := min << uint(attempt); e > 0 && e < max {
			d = e
		}
	}
	return d/2 + time.Duration(random()*float64(d/2))
}

// connect runs one connection: dial, control stream, sessions, until the
// connection fails or ctx ends. established reports whether the control
// stream came up.
func (a *Agent) connect(ctx context.Context, serve func(net.Conn)) (established bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, a.opts.DialTimeout)
	cc, err := a.transport.NewClientConn(dctx, "https", a.addr)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect to %s: %w", a.addr, err)
	}
	stopClose := context.AfterFunc(ctx, func() { cc.Close() })
	defer stopClose()

	heartbeats, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+controlPath, heartbeats)
	if err != nil {
		cc.Close()
		return false, fmt.Errorf("control request: %w", err)
	}
	req.Header.Set(heartbeatHeader, a.opts.HeartbeatInterval.String())
	resp, err := cc.RoundTrip(req)
	if err != nil {
		cc.Close()
		return false, fmt.Errorf("open control stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		cc.Close()
		return false, fmt.Errorf("server refused the tunnel: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}

	a.setConnected(cc)
	a.log.Info("tunnel: connected to server", "server", a.addr)
	var wg sync.WaitGroup
	stopBeats := make(chan struct{})
	wg.Go(func() {
		t := time.NewTicker(a.opts.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if _, err := io.WriteString(pw, msgPing+"\n"); err != nil {
					return
				}
			case <-stopBeats:
				return
			}
		}
	})
	// Anything from the server (the answers to the heartbeats, opens,
	// other streams' data) proves the link alive; a silence longer than a
	// heartbeat and its answer's timeout means it is dead even if TCP has
	// not noticed.
	silence := a.opts.HeartbeatInterval + a.opts.PingTimeout
	var silent atomic.Bool
	var watchdog *time.Timer
	watchdog = time.AfterFunc(silence, func() {
		if quiet := time.Since(time.Unix(0, a.lastRead.Load())); quiet < silence {
			watchdog.Reset(silence - quiet)
			return
		}
		silent.Store(true)
		cc.Close()
	})

	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		verb, arg, _ := strings.Cut(sc.Text(), " ")
		if verb == msgOpen && arg != "" {
			wg.Go(func() { a.openStream(ctx, cc, arg, serve) })
		}
	}
	watchdog.Stop()
	err = sc.Err()
	switch {
	case silent.Load():
		err = fmt.Errorf("no answer from the server for %s", silence)
	case err == nil:
		err = errors.New("server ended the control stream")
	}

	// Order matters: closing the connection releases stream requests that
	// are still waiting for an answer.
	close(stopBeats)
	pw.Close()
	resp.Body.Close()
	cc.Close()
	wg.Wait()
	a.setDisconnected()
	return true, fmt.Errorf("control stream: %w", err)
}

// openStream answers the server's "open <id>" with the session's two
// halves (see Server.serveStream for why two) and hands the resulting conn
// to serve.
func (a *Agent) openStream(ctx context.Context, cc *http.ClientConn, id string, serve func(net.Conn)) {
	ctx, cancel := context.WithCancel(ctx)
	upBody, pw := io.Pipe()
	var up, down *http.Response
	fail := func(what string, err error) {
		cancel() // resets whatever half is open
		pw.Close()
		for _, r := range []*http.Response{up, down} {
			if r != nil {
				r.Body.Close()
			}
		}
		a.log.Debug("tunnel: open session stream", "id", id, "half", what, "err", err)
	}
	base := a.base + streamPathPrefix + url.PathEscape(id) + "/"
	var err error
	if up, err = a.roundTripHalf(ctx, cc, base+halfUp, upBody); err != nil {
		fail(halfUp, err)
		return
	}
	if down, err = a.roundTripHalf(ctx, cc, base+halfDown, http.NoBody); err != nil {
		fail(halfDown, err)
		return
	}
	// The up half's response carries nothing, but closing it early would
	// reset the up stream: it is closed with the session.
	serve(newStreamConn(down.Body, agentStreamWriter{pw}, tunnelAddr("agent"), tunnelAddr("server"), func() {
		// End the up stream with END_STREAM after what was written (an
		// exec's exit status is often the last thing written before
		// closing): resetting it now would drop what the transport has not
		// sent yet.
		pw.Close()
		go a.finishStream(up, down, cancel)
	}))
}

// finishStream ends a session the agent closed once the server has read
// all of it: the server ends the up stream's response when its side of
// the session closes, which it does after reading the up stream's EOF.
// Until then the down stream stays open too, because a reset down stream
// makes the server abandon the session, unread data included. A server
// that never finishes gets both streams reset after streamCloseGrace.
func (a *Agent) finishStream(up, down *http.Response, cancel context.CancelFunc) {
	t := time.AfterFunc(streamCloseGrace, cancel)
	_, _ = io.Copy(io.Discard, up.Body)
	t.Stop()
	cancel()
	up.Body.Close()
	down.Body.Close()
}

func (a *Agent) roundTripHalf(ctx context.Context, cc *http.ClientConn, url string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("server answered %s", resp.Status)
	}
	return resp, nil
}

// activityConn records when bytes were last read from the server.
type activityConn struct {
	net.Conn
	last *atomic.Int64
}

func (c *activityConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// agentStreamWriter writes the agent-to-server half of a session into the
// up stream's request body.
type agentStreamWriter struct{ pw *io.PipeWriter }

func (w agentStreamWriter) Write(p []byte) (int, error) { return w.pw.Write(p) }
func (w agentStreamWriter) abort()                      { w.pw.CloseWithError(os.ErrDeadlineExceeded) }
func (w agentStreamWriter) closeWrite() error           { return w.pw.Close() }

// sessionListener hands session conns to the agent's http.Server.
type sessionListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newSessionListener() *sessionListener {
	return &sessionListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *sessionListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *sessionListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *sessionListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *sessionListener) Addr() net.Addr { return tunnelAddr("agent") }
