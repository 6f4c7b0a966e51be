package apiserver_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/apiserver"
)

// fakeNode is a node's log API: it records requests and answers with
// whatever the test sets, streaming lines it is fed.
type fakeNode struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []*url.URL
	code     int
	body     string
	lines    chan string // when set, streamed after body until closed
}

func newFakeNode(t *testing.T) *fakeNode {
	n := &fakeNode{code: http.StatusOK}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.requests = append(n.requests, r.URL)
		code, body, lines := n.code, n.body, n.lines
		n.mu.Unlock()
		w.WriteHeader(code)
		io.WriteString(w, body)
		w.(http.Flusher).Flush()
		if lines == nil {
			return
		}
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return
				}
				io.WriteString(w, l)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) last() *url.URL {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.requests) == 0 {
		return nil
	}
	return n.requests[len(n.requests)-1]
}

// hostRewriter sends every request to one address, as a node dialer does.
type hostRewriter struct {
	host string
	base http.RoundTripper
}

func (h hostRewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host = h.host
	return h.base.RoundTrip(r)
}

func withNode(name string, n *fakeNode) serverOption {
	return func(c *apiserver.Config) {
		c.NodeTransport = func(node string) (http.RoundTripper, error) {
			if node != name {
				return nil, fmt.Errorf("node %s is not connected (agents on other machines need the tunnel)", node)
			}
			u, _ := url.Parse(n.srv.URL)
			return hostRewriter{host: u.Host, base: n.srv.Client().Transport}, nil
		}
	}
}

func createPod(t *testing.T, ts *testServer, pod *corev1.Pod) {
	t.Helper()
	pod.APIVersion, pod.Kind = "v1", "Pod"
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	b, _ := json.Marshal(pod)
	resp, err := http.Post(ts.URL+"/api/v1/namespaces/"+pod.Namespace+"/pods", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		out, _ := io.ReadAll(resp.Body)
		t.Fatalf("create pod %s: %d %s", pod.Name, resp.StatusCode, out)
	}
}

func logPod(name, node string, annotations map[string]string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	p.Spec.NodeName = node
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
	}
	return p
}

func getLog(t *testing.T, ts *testServer, pod, query string) (int, string) {
	t.Helper()
	resp, err := http.Get(ts.URL + "/api/v1/namespaces/default/pods/" + pod + "/log?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var st metav1.Status
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("error answer is not a Status: %s", b)
		}
		return resp.StatusCode, st.Message
	}
	return resp.StatusCode, string(b)
}

func TestPodLogs(t *testing.T) {
	node := newFakeNode(t)
	node.body = "hello\n"
	ts := startServer(t, withNode("n1", node))
	createPod(t, ts, logPod("one", "n1", nil, "app"))
	createPod(t, ts, logPod("two", "n1", nil, "app", "side"))
	createPod(t, ts, logPod("annotated", "n1", map[string]string{"kubectl.kubernetes.io/default-container": "side"}, "app", "side"))
	withInit := logPod("init", "n1", nil, "app", "side")
	withInit.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox"}}
	createPod(t, ts, withInit)
	createPod(t, ts, logPod("pending", "", nil, "app"))
	createPod(t, ts, logPod("far", "n2", nil, "app"))

	tests := []struct {
		name, pod, query string
		code             int
		want             string // body or Status message
		wantPath         string // path the node was asked for
		wantQuery        string
	}{
		{name: "only container", pod: "one", code: 200, want: "hello\n", wantPath: "/containerLogs/default/one/app"},
		{name: "options passed on", pod: "one", query: "tailLines=3&timestamps=true&previous=true&sinceSeconds=5&limitBytes=10&follow=false",
			code: 200, want: "hello\n", wantPath: "/containerLogs/default/one/app",
			wantQuery: "limitBytes=10&previous=true&sinceSeconds=5&tailLines=3&timestamps=true"},
		{name: "named container", pod: "two", query: "container=side", code: 200, want: "hello\n", wantPath: "/containerLogs/default/two/side"},
		{name: "init container", pod: "init", query: "container=setup", code: 200, want: "hello\n", wantPath: "/containerLogs/default/init/setup"},
		{name: "default container annotation", pod: "annotated", code: 200, want: "hello\n", wantPath: "/containerLogs/default/annotated/side"},
		{name: "must choose", pod: "two", code: 400, want: "a container name must be specified for pod two, choose one of: [app side]"},
		{name: "must choose with init", pod: "init", code: 400, want: "a container name must be specified for pod init, choose one of: [app side] or one of the init containers: [setup]"},
		{name: "unknown container", pod: "one", query: "container=nope", code: 400, want: "container nope is not valid for pod one"},
		{name: "unscheduled", pod: "pending", code: 400, want: "pod pending does not have a host assigned"},
		{name: "node not connected", pod: "far", code: 503, want: "node n2 is not connected (agents on other machines need the tunnel)"},
		{name: "no such pod", pod: "ghost", code: 404, want: `pods "ghost" not found`},
		{name: "bad option", pod: "one", query: "tailLines=-2", code: 400, want: "tailLines: must be greater than or equal to 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := node.last()
			code, got := getLog(t, ts, tc.pod, tc.query)
			if code != tc.code || got != tc.want {
				t.Fatalf("got %d %q, want %d %q", code, got, tc.code, tc.want)
			}
			if tc.wantPath == "" {
				if node.last() != before {
					t.Errorf("node was asked %v", node.last())
				}
				return
			}
			u := node.last()
			if u == nil || u.Path != tc.wantPath || u.RawQuery != tc.wantQuery {
				t.Errorf("node asked %v, want %s?%s", u, tc.wantPath, tc.wantQuery)
			}
		})
	}
}

func TestPodLogsNodeErrors(t *testing.T) {
	node := newFakeNode(t)
	ts := startServer(t, withNode("n1", node))
	createPod(t, ts, logPod("web", "n1", nil, "app"))
	for _, tc := range []struct {
		code     int
		body     string
		wantCode int
		wantMsg  string
	}{
		{400, "previous terminated container \"app\" in pod \"web\" not found\n", 400, `previous terminated container "app" in pod "web" not found`},
		{404, "pod \"web\" does not exist\n", 404, `pod "web" does not exist`},
		{500, "disk on fire\n", 500, "Internal error occurred: disk on fire"},
	} {
		node.mu.Lock()
		node.code, node.body = tc.code, tc.body
		node.mu.Unlock()
		code, msg := getLog(t, ts, "web", "previous=true")
		if code != tc.wantCode || msg != tc.wantMsg {
			t.Errorf("node %d %q: got %d %q", tc.code, tc.body, code, msg)
		}
	}
}

func TestPodLogsFollowStreams(t *testing.T) {
	node := newFakeNode(t)
	node.body = "first\n"
	node.lines = make(chan string)
	ts := startServer(t, withNode("n1", node))
	createPod(t, ts, logPod("web", "n1", nil, "app"))

	resp, err := http.Get(ts.URL + "/api/v1/namespaces/default/pods/web/log?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	readLine := func() string {
		t.Helper()
		got := make(chan string, 1)
		go func() { l, _ := br.ReadString('\n'); got <- l }()
		select {
		case l := <-got:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no line within 10s: the proxy does not flush")
			return ""
		}
	}
	// Each line must arrive while the node still holds the stream open.
	if l := readLine(); l != "first\n" {
		t.Fatalf("got %q", l)
	}
	node.lines <- "second\n"
	if l := readLine(); l != "second\n" {
		t.Fatalf("got %q", l)
	}
	if q := node.last().Query().Get("follow"); q != "true" {
		t.Errorf("follow=%q sent to node", q)
	}
	close(node.lines)
	rest, err := io.ReadAll(br)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if len(rest) != 0 {
		t.Errorf("trailing %q", rest)
	}
}
