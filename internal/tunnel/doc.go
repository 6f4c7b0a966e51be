// Package tunnel carries all traffic between an orch agent and the orch
// server over one TLS connection that the agent opens, so agents need no
// inbound port and work behind NAT.
//
// The agent speaks HTTP/2 as a client on that connection:
//
//   - Its API calls are ordinary HTTP/2 requests ([Agent.Client]).
//   - It keeps one long-lived control request open:
//     POST /tunnel/v1/control. The request body carries the agent's
//     heartbeats ("ping\n" lines); the response body carries the server's
//     commands, one per line, and its answer to each heartbeat ("pong\n").
//     The heartbeats are the tunnel's only keepalive (no HTTP/2 PINGs, no
//     TCP keepalive probes): each end drops a link on which the other has
//     been silent too long, even when TCP has not noticed, and an idle
//     tunnel costs two small frames per heartbeat interval. The agent
//     names its interval in the request's X-Orch-Tunnel-Heartbeat header
//     and the server allows 1.5 intervals of silence (AgentTimeout for
//     agents that name none). Unknown lines are ignored on both sides so
//     either end can add messages later.
//   - For "open <id>\n" the agent issues two requests, one per direction:
//     POST /tunnel/v1/stream/<id>/up, whose request body is the
//     agent-to-server byte stream, and POST /tunnel/v1/stream/<id>/down,
//     whose response body is the server-to-agent one. The server pairs them
//     with the waiting [Server.Dial], which returns them as one [net.Conn].
//     (One full-duplex stream would be simpler, but net/http's HTTP/2 server
//     queues a stream's WINDOW_UPDATE behind its own flow-blocked DATA, so
//     an echoing peer deadlocks; see Server.serveStream.)
//
// Each session has its own HTTP/2 streams with their own flow-control windows, so
// a slow or stalled session never blocks the agent's API calls or other
// sessions (given the connection window from [ServerHTTP2Config]).
//
// On the agent the session conns are served by an ordinary [http.Handler]
// speaking HTTP/1.1 (so Hijack works and SPDY/WebSocket upgrades for exec,
// attach and port-forward pass through unchanged); on the server,
// [Server.Transport] and [Server.RoundTripper] send HTTP/1.1 requests over
// such conns.
//
// The package authenticates nobody: the server learns the agent's node name
// from a caller-supplied function of the request, and the agent trusts
// whatever server its tls.Config verifies.
package tunnel

const (
	// PathPrefix is where [Server] must be mounted on the server's mux.
	PathPrefix = "/tunnel/v1/"

	controlPath      = PathPrefix + "control"
	streamPathPrefix = PathPrefix + "stream/"

	// heartbeatHeader carries the agent's heartbeat interval (a Go
	// duration) on the control request.
	heartbeatHeader = "X-Orch-Tunnel-Heartbeat"

	msgOpen = "open"
	msgPing = "ping"
	msgPong = "pong"

	halfUp   = "up"
	halfDown = "down"
)
