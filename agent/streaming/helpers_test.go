package streaming

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moby/spdystream"
	"golang.org/x/net/websocket"
)

// dialSPDY upgrades a request for path on srv to SPDY/3.1 offering
// protocol, as client-go's SPDY round tripper does, and returns the
// client side of the session and the negotiated protocol.
func dialSPDY(t *testing.T, srv *httptest.Server, path, protocol string) (*spdystream.Connection, string) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: %s\r\n\r\n", path, protocol)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("upgrade: %s %q", resp.Status, b)
	}
	sc, err := spdystream.NewConnection(bufferedConn{Conn: conn, r: br}, false)
	if err != nil {
		t.Fatal(err)
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	t.Cleanup(func() { sc.Close() })
	return sc, resp.Header.Get("X-Stream-Protocol-Version")
}

// createStream opens a client stream with the given header pairs and
// waits for the server's reply.
func createStream(t *testing.T, sc *spdystream.Connection, kv ...string) *spdystream.Stream {
	t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	st, err := sc.CreateStream(h, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitTimeout(30 * time.Second); err != nil {
		t.Fatalf("stream %v: %v", kv, err)
	}
	return st
}

// dialWebSocket opens a WebSocket to path on srv offering protocol.
func dialWebSocket(t *testing.T, srv *httptest.Server, path, protocol string) *websocket.Conn {
	t.Helper()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + path
	cfg, err := websocket.NewConfig(url, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{protocol}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	_ = ws.SetDeadline(time.Now().Add(30 * time.Second))
	return ws
}
