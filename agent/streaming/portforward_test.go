package streaming

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/spdystream"
	"golang.org/x/net/websocket"
	corev1 "k8s.io/api/core/v1"
)

// newPortForwardServer serves port forwarding to an echo server on
// 127.0.0.1; other ports refuse. It returns the echo port.
func newPortForwardServer(t *testing.T) (*httptest.Server, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	echoPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ServePortForward(w, r, "web, uid 1234", func(ctx context.Context, port uint16) (net.Conn, error) {
			if port != echoPort {
				return nil, fmt.Errorf("dial tcp4 127.0.0.1:%d: connect: connection refused", port)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		})
	}))
	t.Cleanup(srv.Close)
	return srv, echoPort
}

// forwardPair opens the error and data streams of one forwarded
// connection, as kubectl does.
func forwardPair(t *testing.T, sc *spdystream.Connection, port uint16, id int) (errStream, data *spdystream.Stream) {
	t.Helper()
	p, rid := strconv.Itoa(int(port)), strconv.Itoa(id)
	errStream = createStream(t, sc, corev1.StreamType, corev1.StreamTypeError, corev1.PortHeader, p, corev1.PortForwardRequestIDHeader, rid)
	errStream.Close() // kubectl only reads it
	data = createStream(t, sc, corev1.StreamType, corev1.StreamTypeData, corev1.PortHeader, p, corev1.PortForwardRequestIDHeader, rid)
	return errStream, data
}

// checkForwarding echoes through one pair and checks a refused port's
// error message on another.
func checkForwarding(t *testing.T, sc *spdystream.Connection, echoPort uint16) {
	t.Helper()
	_, data := forwardPair(t, sc, echoPort, 0)
	if _, err := data.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(data, got); err != nil || string(got) != "ping" {
		t.Errorf("echo = %q, %v", got, err)
	}
	data.Close()

	errStream, _ := forwardPair(t, sc, 1, 1)
	msg, _ := io.ReadAll(errStream)
	if want := "error forwarding port 1 to pod web, uid 1234: dial tcp4 127.0.0.1:1: connect: connection refused"; string(msg) != want {
		t.Errorf("error stream = %q, want %q", msg, want)
	}
}

func TestPortForwardSPDY(t *testing.T) {
	srv, echoPort := newPortForwardServer(t)
	sc, protocol := dialSPDY(t, srv, "/portForward/default/web", PortForwardProtocolV1)
	if protocol != PortForwardProtocolV1 {
		t.Fatalf("negotiated %q", protocol)
	}
	checkForwarding(t, sc, echoPort)
}

// TestPortForwardTunnel is kubectl 1.31+'s first attempt: the SPDY
// session inside WebSocket binary messages.
func TestPortForwardTunnel(t *testing.T) {
	srv, echoPort := newPortForwardServer(t)
	ws := dialWebSocket(t, srv, "/portForward/default/web", tunnelProtocol)
	if got := ws.Config().Protocol; len(got) != 1 || got[0] != tunnelProtocol {
		t.Fatalf("negotiated %v", got)
	}
	ws.PayloadType = websocket.BinaryFrame
	sc, err := spdystream.NewConnection(ws, false)
	if err != nil {
		t.Fatal(err)
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	t.Cleanup(func() { sc.Close() })
	checkForwarding(t, sc, echoPort)
}

// TestPortForwardRefusals: the old channel-per-port WebSocket form and a
// request without upgrade are refused, so clients fall back or fail
// clearly.
func TestPortForwardRefusals(t *testing.T) {
	srv, _ := newPortForwardServer(t)
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{name: "channel WebSocket", headers: map[string]string{
			"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
			"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "v4.channel.k8s.io",
		}, want: "needs the SPDY/3.1+portforward.k8s.io subprotocol"},
		{name: "no upgrade", headers: map[string]string{"X-Stream-Protocol-Version": PortForwardProtocolV1},
			want: "unable to upgrade: missing upgrade headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/portForward/default/web", nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			client := &http.Client{Timeout: 30 * time.Second}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
				t.Errorf("answer %s %q", resp.Status, b)
			}
		})
	}
}
