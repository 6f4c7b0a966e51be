package streaming

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/moby/spdystream"
	"k8s.io/apimachinery/pkg/util/httpstream"
)

// spdyUpgrade is the Upgrade token of a SPDY/3.1 session.
const spdyUpgrade = "SPDY/3.1"

// upgradeSPDY switches r's connection to a server-side SPDY/3.1 session.
// Each stream the client opens is accepted (its reply sent) and handed to
// onStream, which may block: later frames of the connection wait for it.
// On failure the client has been answered and nil is returned.
func upgradeSPDY(w http.ResponseWriter, r *http.Request, onStream func(*spdystream.Stream)) *spdystream.Connection {
	if !httpstream.IsUpgradeRequest(r) || !strings.EqualFold(r.Header.Get("Upgrade"), spdyUpgrade) {
		http.Error(w, fmt.Sprintf("unable to upgrade: missing upgrade headers in request: %#v", r.Header), http.StatusBadRequest)
		return nil
	}
	w.Header().Add("Connection", "Upgrade")
	w.Header().Add("Upgrade", spdyUpgrade)
	w.WriteHeader(http.StatusSwitchingProtocols)
	// Hijacking sends the 101 written above.
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil
	}
	sc, err := serveSPDY(bufferedConn{Conn: conn, r: rw.Reader}, onStream)
	if err != nil {
		conn.Close()
		return nil
	}
	return sc
}

// serveSPDY runs a server-side SPDY/3.1 session on conn; see upgradeSPDY.
func serveSPDY(conn net.Conn, onStream func(*spdystream.Stream)) (*spdystream.Connection, error) {
	sc, err := spdystream.NewConnection(conn, true)
	if err != nil {
		return nil, fmt.Errorf("spdy session: %w", err)
	}
	go sc.Serve(func(st *spdystream.Stream) {
		if err := st.SendReply(http.Header{}, false); err != nil {
			_ = st.Reset()
			return
		}
		onStream(st)
	})
	return sc, nil
}

// bufferedConn reads what the HTTP server had already buffered before
// the connection itself.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
