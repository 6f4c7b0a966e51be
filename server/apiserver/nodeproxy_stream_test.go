package apiserver_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// upgradeNode is a node's streaming API: it records each request and
// either refuses it as the kubelet does ("container not found") or
// switches protocols and echoes what it reads.
type upgradeNode struct {
	mu     sync.Mutex
	last   *http.Request
	refuse string // when set, answered with 500 and this text
}

func newUpgradeNode(t *testing.T) (*upgradeNode, *fakeNode) {
	n := &upgradeNode{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.last = r.Clone(r.Context())
		refuse := n.refuse
		n.mu.Unlock()
		if refuse != "" {
			http.Error(w, refuse, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", r.Header.Get("Upgrade"))
		w.Header().Set("X-Stream-Protocol-Version", r.Header.Get("X-Stream-Protocol-Version"))
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(conn, brw)
	}))
	t.Cleanup(srv.Close)
	return n, &fakeNode{srv: srv}
}

func (n *upgradeNode) request() *http.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last
}

// upgrade sends an upgrade request for a pod subresource over a raw
// connection, as client-go does, and returns the answer and the
// connection (nil unless it switched protocols).
func upgrade(t *testing.T, ts *testServer, method, path string, header map[string]string) (*http.Response, string, net.Conn, *bufio.Reader) {
	t.Helper()
	u, _ := url.Parse(ts.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, u.Host)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, "", conn, br
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	msg := string(body)
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		msg = st.Message
	}
	return resp, msg, nil, nil
}

var spdyUpgrade = map[string]string{
	"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
	"X-Stream-Protocol-Version": "v4.channel.k8s.io", "Authorization": "Bearer secret-of-the-client",
}

func TestPodStreamingProxy(t *testing.T) {
	node, fn := newUpgradeNode(t)
	ts := startServer(t, withNode("n1", fn))
	createPod(t, ts, logPod("one", "n1", nil, "app"))
	createPod(t, ts, logPod("two", "n1", nil, "app", "side"))
	createPod(t, ts, logPod("pending", "", nil, "app"))

	for _, tc := range []struct {
		name, method, path string
		wantPath           string
		wantQuery          url.Values
	}{
		{name: "exec", method: "POST",
			path:     "/api/v1/namespaces/default/pods/one/exec?command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&stderr=false&tty=true",
			wantPath: "/exec/default/one/app", wantQuery: url.Values{"command": {"sh", "-c", "echo hi"}, "input": {"1"}, "output": {"1"}, "tty": {"1"}}},
		{name: "exec named container", method: "GET",
			path:     "/api/v1/namespaces/default/pods/two/exec?container=side&command=true&stdout=1&stderr=1",
			wantPath: "/exec/default/two/side", wantQuery: url.Values{"command": {"true"}, "output": {"1"}, "error": {"1"}}},
		{name: "attach", method: "POST",
			path:     "/api/v1/namespaces/default/pods/one/attach?stdin=true&stdout=true&command=ignored",
			wantPath: "/attach/default/one/app", wantQuery: url.Values{"input": {"1"}, "output": {"1"}}},
		{name: "portforward", method: "POST",
			path:     "/api/v1/namespaces/default/pods/one/portforward?ports=8080&ports=53",
			wantPath: "/portForward/default/one", wantQuery: url.Values{"port": {"8080", "53"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, msg, conn, br := upgrade(t, ts, tc.method, tc.path, spdyUpgrade)
			if conn == nil {
				t.Fatalf("answer %s %q", resp.Status, msg)
			}
			if got := resp.Header.Get("X-Stream-Protocol-Version"); got != "v4.channel.k8s.io" {
				t.Errorf("negotiated protocol %q not passed back", got)
			}
			r := node.request()
			if r.Method != tc.method || r.URL.Path != tc.wantPath || r.URL.Query().Encode() != tc.wantQuery.Encode() {
				t.Errorf("node asked %s %s, want %s?%s", r.Method, r.URL, tc.wantPath, tc.wantQuery.Encode())
			}
			if r.Header.Get("Authorization") != "" || r.Header.Get("Upgrade") != "SPDY/3.1" {
				t.Errorf("node got headers %v", r.Header)
			}
			// Both directions are spliced: the node echoes.
			if _, err := io.WriteString(conn, "ping\n"); err != nil {
				t.Fatal(err)
			}
			if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
				t.Errorf("echo = %q, %v", line, err)
			}
		})
	}

	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		refuse             string
		code               int
		want               string
	}{
		{name: "no upgrade", method: "POST", path: "/api/v1/namespaces/default/pods/one/exec?command=true&stdout=true",
			code: 400, want: "Upgrade request required"},
		{name: "must choose", method: "POST", path: "/api/v1/namespaces/default/pods/two/exec?command=true&stdout=true", header: spdyUpgrade,
			code: 400, want: "a container name must be specified for pod two, choose one of: [app side]"},
		{name: "unknown container", method: "POST", path: "/api/v1/namespaces/default/pods/one/attach?container=x&stdout=true", header: spdyUpgrade,
			code: 400, want: "container x is not valid for pod one"},
		{name: "unscheduled", method: "POST", path: "/api/v1/namespaces/default/pods/pending/exec?command=true&stdout=true", header: spdyUpgrade,
			code: 400, want: "pod pending does not have a host assigned"},
		{name: "no such pod", method: "POST", path: "/api/v1/namespaces/default/pods/ghost/portforward", header: spdyUpgrade,
			code: 404, want: `pods "ghost" not found`},
		{name: "bad port", method: "POST", path: "/api/v1/namespaces/default/pods/one/portforward?ports=0", header: spdyUpgrade,
			code: 400, want: `invalid port "0": ports must be between 1 and 65535`},
		{name: "wrong verb", method: "DELETE", path: "/api/v1/namespaces/default/pods/one/exec", header: spdyUpgrade,
			code: 405},
		{name: "node refuses", method: "POST", path: "/api/v1/namespaces/default/pods/one/exec?command=true&stdout=true", header: spdyUpgrade,
			refuse: `container not found ("app")`, code: 500, want: "container not found (\"app\")\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node.mu.Lock()
			node.refuse = tc.refuse
			node.mu.Unlock()
			resp, msg, conn, _ := upgrade(t, ts, tc.method, tc.path, tc.header)
			if conn != nil || resp.StatusCode != tc.code || (tc.want != "" && msg != tc.want) {
				t.Errorf("answer %s %q, want %d %q", resp.Status, msg, tc.code, tc.want)
			}
		})
	}
}

func TestPodStreamingNodeNotConnected(t *testing.T) {
	_, fn := newUpgradeNode(t)
	ts := startServer(t, withNode("n1", fn))
	createPod(t, ts, logPod("far", "n2", nil, "app"))
	resp, msg, _, _ := upgrade(t, ts, "POST", "/api/v1/namespaces/default/pods/far/exec?command=true&stdout=true", spdyUpgrade)
	if resp.StatusCode != http.StatusServiceUnavailable || msg != "node n2 is not connected (agents on other machines need the tunnel)" {
		t.Errorf("answer %s %q", resp.Status, msg)
	}
}
