package tunnel

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrNotConnected is matched (errors.Is) by the errors of [Server.Dial] for
// a node without a live tunnel and of [Agent.Client] requests while the
// agent's tunnel is down.
var ErrNotConnected = errors.New("not connected")

// NotConnectedError is returned by [Server.Dial] when the node has no live
// tunnel.
type NotConnectedError struct{ Node string }

func (e *NotConnectedError) Error() string { return fmt.Sprintf("node %q is not connected", e.Node) }

// Is makes errors.Is(err, ErrNotConnected) true.
func (e *NotConnectedError) Is(target error) bool { return target == ErrNotConnected }

// ServerOptions configures a [Server].
type ServerOptions struct {
	// NodeName returns the node name of the agent that sent r, typically
	// from its verified client certificate. An error refuses the request
	// with 401 and the error's text. Required.
	NodeName func(r *http.Request) (string, error)

	// OpenTimeout bounds how long Dial waits for the agent to open the
	// stream it was asked for. Default 10s.
	OpenTimeout time.Duration

	// AgentTimeout is how long an agent that does not name its heartbeat
	// interval may stay silent on its control stream before the server
	// drops it; agents that name it get 1.5 intervals. Default 15s.
	AgentTimeout time.Duration

	// OnConnect and OnDisconnect, if set, are called when a node's control
	// stream is established and when the node's current one ends (err says
	// why). They run on the control stream's goroutine; keep them short.
	OnConnect    func(node string)
	OnDisconnect func(node string, err error)

	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Server is the server's end of the tunnels: an http.Handler for
// [PathPrefix], a registry of connected agents, and a dialer of sessions to
// them. It is safe for concurrent use.
type Server struct {
	opts      ServerOptions
	log       *slog.Logger
	transport *http.Transport

	mu      sync.Mutex
	agents  map[string]*agentSession  // node name → current control stream
	pending map[string]*pendingStream // stream id → Dial waiting for it
	closed  bool
}

// agentSession is one control stream of one agent.
type agentSession struct {
	node  string
	opens chan string   // stream ids to announce to the agent
	done  chan struct{} // closed when the control stream has ended
	stop  chan error    // asks the handler to end the stream (buffered 1)
}

// pendingStream is a session being set up: the Dial waiting for it and
// the halves of it the agent has brought so far.
type pendingStream struct {
	node     string
	conn     chan *streamConn // buffered 1; receives the session once both halves are in
	released chan struct{}    // closed when the session ends or is abandoned
	once     sync.Once

	// Guarded by Server.mu.
	up   io.Reader           // agent-to-server bytes
	down *serverStreamWriter // server-to-agent bytes
}

func (p *pendingStream) release() { p.once.Do(func() { close(p.released) }) }

// NewServer returns a Server; mount it with mux.Handle(PathPrefix, s).
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.NodeName == nil {
		return nil, errors.New("tunnel: ServerOptions.NodeName is required")
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = 10 * time.Second
	}
	if opts.AgentTimeout <= 0 {
		opts.AgentTimeout = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		agents:  map[string]*agentSession{},
		pending: map[string]*pendingStream{},
	}
	s.transport = s.newTransport()
	return s, nil
}

// ServerHTTP2Config is the HTTP/2 configuration the server's http.Server
// should use (http.Server.HTTP2) so that sessions cannot block each other:
// the server returns connection-level flow-control credit only when a
// handler reads, so with net/http's default connection window (1 MiB, the
// same as one stream's) a single session whose reader stalls would freeze
// every upload on that agent's connection, API requests included.
func ServerHTTP2Config() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          1000,
		MaxReceiveBufferPerStream:     1 << 20,
		MaxReceiveBufferPerConnection: 1 << 30, // credit, not memory: streams bound the memory
		// Ending a silent agent's control stream leaves its TCP conn
		// behind; pings on idle conns reap it (and any client's dead conn).
		SendPingTimeout: 30 * time.Second,
		PingTimeout:     15 * time.Second,
	}
}

// ServeHTTP serves the agents' control and stream requests under
// [PathPrefix].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "tunnel requests must be POST", http.StatusMethodNotAllowed)
		return
	}
	if r.ProtoMajor != 2 {
		// Full-duplex streams need HTTP/2; HTTP/1.1 would deadlock.
		http.Error(w, "the tunnel requires HTTP/2", http.StatusHTTPVersionNotSupported)
		return
	}
	node, err := s.opts.NodeName(r)
	if err != nil {
		http.Error(w, fmt.Sprintf("tunnel: %v", err), http.StatusUnauthorized)
		return
	}
	if node == "" {
		http.Error(w, "tunnel: no node name for this client", http.StatusUnauthorized)
		return
	}
	switch {
	case r.URL.Path == controlPath:
		s.serveControl(w, r, node)
	case strings.HasPrefix(r.URL.Path, streamPathPrefix):
		s.serveStream(w, r, node, strings.TrimPrefix(r.URL.Path, streamPathPrefix))
	default:
		http.NotFound(w, r)
	}
}

// serveControl runs one agent's control stream until it ends.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request, node string) {
	sess := &agentSession{
		node:  node,
		opens: make(chan string),
		done:  make(chan struct{}),
		stop:  make(chan error, 1),
	}
	defer close(sess.done)
	if old, err := s.register(sess); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	} else if old != nil {
		select {
		case old.stop <- errors.New("replaced by a newer control stream from the same node"):
		default: // already stopping
		}
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	err := rc.Flush()
	if err == nil {
		s.log.Info("tunnel: node connected", "node", node, "remote", r.RemoteAddr)
		if s.opts.OnConnect != nil {
			s.opts.OnConnect(node)
		}
		err = s.controlLoop(w, rc, r, sess, s.agentTimeout(r))
	}
	if s.unregister(sess) {
		s.log.Info("tunnel: node disconnected", "node", node, "err", err)
		if s.opts.OnDisconnect != nil {
			s.opts.OnDisconnect(node, err)
		}
	}
}

// agentTimeout is how long the agent of control request r may stay
// silent: 1.5 of the heartbeat intervals it names (between 1 s and 10 min),
// else AgentTimeout.
func (s *Server) agentTimeout(r *http.Request) time.Duration {
	d, err := time.ParseDuration(r.Header.Get(heartbeatHeader))
	if err != nil || d < time.Second || d > 10*time.Minute {
		return s.opts.AgentTimeout
	}
	return d * 3 / 2
}

func (s *Server) controlLoop(w io.Writer, rc *http.ResponseController, r *http.Request, sess *agentSession, timeout time.Duration) error {
	beats := make(chan struct{}, 1)
	readDone := make(chan error, 1)
	go func() {
		// Any line proves the agent is alive; today only "ping" is sent.
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			select {
			case beats <- struct{}{}:
			default:
			}
		}
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		readDone <- err
	}()
	idle := time.NewTimer(timeout)
	defer idle.Stop()
	for {
		select {
		case <-beats:
			idle.Reset(timeout)
			// The answer is the agent's proof that the link still works
			// (see AgentOptions.HeartbeatInterval).
			if _, err := io.WriteString(w, msgPong+"\n"); err != nil {
				return fmt.Errorf("write to control stream: %w", err)
			}
			if err := rc.Flush(); err != nil {
				return fmt.Errorf("flush control stream: %w", err)
			}
		case id := <-sess.opens:
			if _, err := fmt.Fprintf(w, "%s %s\n", msgOpen, id); err != nil {
				return fmt.Errorf("write to control stream: %w", err)
			}
			if err := rc.Flush(); err != nil {
				return fmt.Errorf("flush control stream: %w", err)
			}
		case err := <-readDone:
			return fmt.Errorf("control stream closed by agent: %w", err)
		case <-idle.C:
			return fmt.Errorf("no heartbeat from agent for %s", timeout)
		case err := <-sess.stop:
			return err
		case <-r.Context().Done():
			return fmt.Errorf("agent connection lost: %w", context.Cause(r.Context()))
		}
	}
}

func (s *Server) register(sess *agentSession) (old *agentSession, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("tunnel server is shutting down")
	}
	old = s.agents[sess.node]
	s.agents[sess.node] = sess
	return old, nil
}

// unregister removes sess if it is still the node's current session.
func (s *Server) unregister(sess *agentSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agents[sess.node] != sess {
		return false
	}
	delete(s.agents, sess.node)
	return true
}

// serveStream serves one half of a session and keeps it open as long as
// the session lives.
//
// A session is two HTTP/2 streams, one per direction, because net/http's
// server queues a stream's WINDOW_UPDATE behind that stream's own pending
// DATA: on one full-duplex stream, a server write blocked by the agent's
// window would stop the agent's writes, and an agent that echoes would
// deadlock. With one direction per stream the server never has DATA queued
// on a stream it must grant window for.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, node, rest string) {
	id, half, _ := strings.Cut(rest, "/")
	if half != halfUp && half != halfDown {
		http.NotFound(w, r)
		return
	}
	rc := http.NewResponseController(w)
	sw := &serverStreamWriter{w: w, rc: rc, closed: make(chan struct{})}

	s.mu.Lock()
	p := s.pending[id]
	if p == nil || p.node != node {
		// Also when another node names the id: do not tell it the id exists.
		s.mu.Unlock()
		http.Error(w, "tunnel: no session is waiting for this stream", http.StatusNotFound)
		return
	}
	if (half == halfUp && p.up != nil) || (half == halfDown && p.down != nil) {
		s.mu.Unlock()
		http.Error(w, "tunnel: this half of the session is already open", http.StatusConflict)
		return
	}
	if half == halfUp {
		p.up = r.Body
	} else {
		p.down = sw
	}
	var conn *streamConn
	if p.up != nil && p.down != nil {
		delete(s.pending, id)
		conn = newStreamConn(p.up, p.down, tunnelAddr("server"), tunnelAddr(node), p.release)
	}
	s.mu.Unlock()

	w.WriteHeader(http.StatusOK)
	flushErr := rc.Flush()
	if conn != nil {
		p.conn <- conn
	}
	if flushErr != nil {
		p.release()
	}
	select {
	case <-p.released:
	case <-sw.closed: // the down half was closed for writing
	case <-r.Context().Done():
		p.release()
	}
	if half == halfDown {
		sw.finish()
	}
}

// serverStreamWriter writes the server-to-agent half of a session: the
// response of the down stream.
type serverStreamWriter struct {
	w      io.Writer
	rc     *http.ResponseController
	mu     sync.Mutex // held by Write; finish waits for it
	done   bool       // the handler is returning: w is off limits
	closed chan struct{}
	once   sync.Once
}

func (sw *serverStreamWriter) Write(p []byte) (int, error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.done {
		return 0, net.ErrClosed
	}
	n, err := sw.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, sw.rc.Flush()
}

func (sw *serverStreamWriter) abort() {
	// A write deadline in the past resets the stream at once, which
	// releases a Write blocked on flow control.
	_ = sw.rc.SetWriteDeadline(time.Unix(1, 0))
}

// closeWrite ends the down stream; the agent reads io.EOF.
func (sw *serverStreamWriter) closeWrite() error {
	sw.once.Do(func() { close(sw.closed) })
	return nil
}

// finish waits for a Write in progress and bars new ones: the
// ResponseWriter must not be used once the handler returns.
func (sw *serverStreamWriter) finish() {
	if !sw.mu.TryLock() {
		sw.abort() // a Write blocked on flow control would hold us forever
		sw.mu.Lock()
	}
	sw.done = true
	sw.mu.Unlock()
}

// Dial opens a new session to the agent of node: a byte stream served on
// the agent by its session handler. It fails with a [NotConnectedError] if
// the node has no tunnel, and if the agent does not answer within
// OpenTimeout or ctx ends.
func (s *Server) Dial(ctx context.Context, node string) (net.Conn, error) {
	s.mu.Lock()
	sess := s.agents[node]
	s.mu.Unlock()
	if sess == nil {
		return nil, &NotConnectedError{Node: node}
	}
	id, err := newStreamID()
	if err != nil {
		return nil, err
	}
	p := &pendingStream{node: node, conn: make(chan *streamConn, 1), released: make(chan struct{})}
	s.mu.Lock()
	s.pending[id] = p
	s.mu.Unlock()

	timer := time.NewTimer(s.opts.OpenTimeout)
	defer timer.Stop()
	fail := func(err error) (net.Conn, error) {
		s.mu.Lock()
		_, waiting := s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
		if waiting {
			p.release() // lets a half that did arrive go
		} else {
			// Both halves arrived meanwhile; nobody will use the session.
			(<-p.conn).Close()
		}
		return nil, fmt.Errorf("tunnel: open session to node %q: %w", node, err)
	}
	select {
	case sess.opens <- id:
	case <-sess.done:
		return fail(&NotConnectedError{Node: node})
	case <-timer.C:
		return fail(fmt.Errorf("control stream busy for %s", s.opts.OpenTimeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	select {
	case c := <-p.conn:
		return c, nil
	case <-sess.done:
		return fail(&NotConnectedError{Node: node})
	case <-timer.C:
		return fail(fmt.Errorf("agent did not open the stream within %s", s.opts.OpenTimeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

func newStreamID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("tunnel: stream id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// IsConnected reports whether node has a live control stream.
func (s *Server) IsConnected(node string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agents[node] != nil
}

// Nodes returns the names of the connected nodes, sorted.
func (s *Server) Nodes() []string {
	s.mu.Lock()
	nodes := make([]string, 0, len(s.agents))
	for n := range s.agents {
		nodes = append(nodes, n)
	}
	s.mu.Unlock()
	sort.Strings(nodes)
	return nodes
}

// Close ends every control stream and refuses new ones, so that
// http.Server.Shutdown does not wait for them forever. Sessions already
// open end with their HTTP/2 connections.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	sessions := make([]*agentSession, 0, len(s.agents))
	for _, sess := range s.agents {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		select {
		case sess.stop <- errors.New("tunnel server is shutting down"):
		default:
		}
		<-sess.done
	}
	s.transport.CloseIdleConnections()
	return nil
}

// Transport returns the server's shared HTTP/1.1 transport to agents: the
// request URL's host is the node name and the scheme is http, as in
// http://NODE/containerLogs/ns/pod/c. Connections are pooled per node and
// protocol upgrades (SPDY, WebSocket) work, so it can back an
// httputil.ReverseProxy.
func (s *Server) Transport() http.RoundTripper { return s.transport }

// RoundTripper returns a RoundTripper that sends every request to node,
// whatever host the request URL names.
func (s *Server) RoundTripper(node string) http.RoundTripper {
	return nodeRoundTripper{t: s.transport, node: node}
}

func (s *Server) newTransport() *http.Transport {
	var protos http.Protocols
	protos.SetHTTP1(true)
	return &http.Transport{
		Protocols: &protos,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			node, _, err := net.SplitHostPort(addr)
			if err != nil {
				node = addr
			}
			return s.Dial(ctx, node)
		},
		DisableCompression:    true, // logs and streams are passed through as they are
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // logs -f and exec answer when they please
	}
}

type nodeRoundTripper struct {
	t    *http.Transport
	node string
}

func (rt nodeRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme = "http"
	r.URL.Host = rt.node
	if r.Host == "" {
		r.Host = rt.node
	}
	return rt.t.RoundTrip(r)
}
