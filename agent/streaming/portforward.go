package streaming

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moby/spdystream"
	"golang.org/x/net/websocket"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
)

// Port forwarding protocols: SPDY's subprotocol, and the WebSocket
// subprotocol kubectl 1.31+ tries first, which carries the same SPDY
// session in binary messages.
const (
	PortForwardProtocolV1 = "portforward.k8s.io"
	tunnelProtocol        = "SPDY/3.1+" + PortForwardProtocolV1
)

// DialFunc connects to port inside the pod.
type DialFunc func(ctx context.Context, port uint16) (net.Conn, error)

// ServePortForward serves a port forwarding session for pod (as errors
// name it): SPDY/3.1
// directly or tunnelled in a WebSocket. Each forwarded connection is a
// pair of streams sharing a requestID, "data" and "error"; a failed dial
// is reported as text on the error stream, as the kubelet words it. It
// returns when the client ends the session.
func ServePortForward(w http.ResponseWriter, r *http.Request, pod string, dial DialFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pf := &portForwarder{pod: pod, dial: dial, ctx: ctx, cancel: cancel, pairs: map[string]*streamPair{}}
	if wsstream.IsWebSocketRequest(r) {
		if !wsstream.IsWebSocketRequestWithTunnelingProtocol(r) {
			// The old channel-per-port WebSocket form: kubectl never
			// needs it, and a 400 sends clients to SPDY.
			http.Error(w, "port forwarding over WebSocket needs the "+tunnelProtocol+" subprotocol", http.StatusBadRequest)
			return
		}
		pf.serveTunnel(w, r)
		return
	}
	if _, err := httpstream.Handshake(r, w, []string{PortForwardProtocolV1}); err != nil {
		return // Handshake has answered the client
	}
	sc := upgradeSPDY(w, r, pf.addStream)
	if sc == nil {
		return
	}
	pf.run(sc)
}

// serveTunnel accepts the WebSocket and runs the SPDY session inside it.
func (pf *portForwarder) serveTunnel(w http.ResponseWriter, r *http.Request) {
	srv := websocket.Server{
		Handshake: func(cfg *websocket.Config, _ *http.Request) error {
			for _, p := range cfg.Protocol {
				if p == tunnelProtocol {
					cfg.Protocol = []string{tunnelProtocol}
					return nil
				}
			}
			return fmt.Errorf("no supported subprotocol in %v", cfg.Protocol)
		},
		Handler: func(ws *websocket.Conn) {
			ws.PayloadType = websocket.BinaryFrame
			sc, err := serveSPDY(ws, pf.addStream)
			if err != nil {
				return
			}
			pf.run(sc)
		},
	}
	srv.ServeHTTP(w, r)
}

// portForwarder is one port forwarding session.
type portForwarder struct {
	pod  string
	dial DialFunc
	// ctx ends the forwarded connections when the session ends; a hijacked
	// request's context does not.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	pairs  map[string]*streamPair // by requestID, until complete
	closed bool                   // no more pairs start
	wg     sync.WaitGroup
}

// streamPair is one forwarded connection's two streams.
type streamPair struct {
	id          string
	data, error *spdystream.Stream
	timer       *time.Timer
}

// run serves the session until the client or the idle timeout ends it.
func (pf *portForwarder) run(sc *spdystream.Connection) {
	sc.SetIdleTimeout(IdleTimeout)
	<-sc.CloseChan()
	pf.cancel()
	pf.mu.Lock()
	pf.closed = true
	for id, p := range pf.pairs {
		p.timer.Stop()
		delete(pf.pairs, id)
	}
	pf.mu.Unlock()
	pf.wg.Wait()
}

// addStream files a new stream under its requestID and starts forwarding
// once the pair is complete. A pair left incomplete is dropped after
// StreamCreationTimeout.
func (pf *portForwarder) addStream(st *spdystream.Stream) {
	id := st.Headers().Get(corev1.PortForwardRequestIDHeader)
	if id == "" {
		// Protocol v1 clients always send it; without it streams
		// cannot be paired.
		_ = st.Reset()
		return
	}
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if pf.closed {
		_ = st.Reset()
		return
	}
	p := pf.pairs[id]
	if p == nil {
		p = &streamPair{id: id}
		p.timer = time.AfterFunc(StreamCreationTimeout, func() { pf.dropIncomplete(id) })
		pf.pairs[id] = p
	}
	switch st.Headers().Get(corev1.StreamType) {
	case corev1.StreamTypeData:
		p.data = st
	case corev1.StreamTypeError:
		p.error = st
	default:
		_ = st.Reset()
		return
	}
	if p.data == nil || p.error == nil {
		return
	}
	p.timer.Stop()
	delete(pf.pairs, id)
	pf.wg.Add(1)
	go func() {
		defer pf.wg.Done()
		pf.forward(pf.ctx, p)
	}()
}

func (pf *portForwarder) dropIncomplete(id string) {
	pf.mu.Lock()
	p := pf.pairs[id]
	delete(pf.pairs, id)
	pf.mu.Unlock()
	if p == nil {
		return
	}
	for _, st := range []*spdystream.Stream{p.data, p.error} {
		if st != nil {
			_ = st.Reset()
		}
	}
}

// forward connects one pair to the pod's port and copies both ways until
// the pod's side ends.
func (pf *portForwarder) forward(ctx context.Context, p *streamPair) {
	defer p.error.Close()
	defer p.data.Close()
	portStr := p.data.Headers().Get(corev1.PortHeader)
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		fmt.Fprintf(p.error, "invalid port %q in stream request %s", portStr, p.id)
		return
	}
	conn, err := pf.dial(ctx, uint16(port))
	if err != nil {
		fmt.Fprintf(p.error, "error forwarding port %d to pod %s: %v", port, pf.pod, err)
		return
	}
	defer conn.Close()
	go func() {
		_, _ = io.Copy(conn, p.data)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite() // the client is done sending
		}
	}()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_, _ = io.Copy(p.data, conn)
}
