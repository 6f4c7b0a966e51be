package apiserver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream"

	"github.com/orch-dev/orch/server/registry"
)

// Streaming subresources: pods/exec, pods/attach and pods/portforward are
// upgraded connections (WebSocket or SPDY/3.1) between the client and the
// node. The API server checks the request, forwards the upgrade to the
// node's kubelet-style path and, once the node switches protocols, splices
// the two connections; the protocols themselves are the node's business,
// so the same path works over any transport that supports HTTP/1.1
// upgrades.

// serveNodeStream answers GET and POST of pods/NAME/{exec,attach,portforward}.
func (s *Server) serveNodeStream(w http.ResponseWriter, r *http.Request, res *registry.Resource, ri requestInfo) {
	gr := schema.GroupResource{Resource: res.Name + "/" + ri.Subresource}
	if ri.Verb != "get" && ri.Verb != "create" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(gr, ri.Verb))
		return
	}
	pod, ok := s.storedPod(w, r, res, ri)
	if !ok {
		return
	}
	path, query, err := nodeStreamLocation(pod, ri.Subresource, r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if pod.Spec.NodeName == "" {
		s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name)))
		return
	}
	if !httpstream.IsUpgradeRequest(r) {
		s.writeError(w, r, apierrors.NewBadRequest("Upgrade request required"))
		return
	}
	rt, err := s.nodeTransport(pod.Spec.NodeName)
	if err != nil {
		s.writeError(w, r, apierrors.NewServiceUnavailable(err.Error()))
		return
	}
	u := "http://" + url.PathEscape(pod.Spec.NodeName) + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	if err := proxyUpgrade(w, r, rt, u); err != nil {
		s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s: %s: %v", pod.Spec.NodeName, ri.Subresource, err)))
	}
}

// nodeStreamLocation is the node path and query of a streaming request,
// with the checks and messages of Kubernetes' streamLocation: the
// container (exec, attach) must be named unless the pod has one.
func nodeStreamLocation(pod *corev1.Pod, subresource string, q url.Values) (string, url.Values, error) {
	out := url.Values{}
	if subresource == "portforward" {
		for _, p := range q["ports"] {
			if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
				return "", nil, apierrors.NewBadRequest(fmt.Sprintf("invalid port %q: ports must be between 1 and 65535", p))
			}
			out.Add("port", p)
		}
		return "/portForward/" + url.PathEscape(pod.Namespace) + "/" + url.PathEscape(pod.Name), out, nil
	}
	container, err := logContainer(pod, q.Get("container"))
	if err != nil {
		return "", nil, err
	}
	if subresource == "exec" {
		out["command"] = q["command"]
	}
	// PodExecOptions' stdin, stdout, stderr and tty ("true" from kubectl)
	// become the kubelet's input, output, error and tty, set to "1".
	for from, to := range map[string]string{
		"stdin": corev1.ExecStdinParam, "stdout": corev1.ExecStdoutParam,
		"stderr": corev1.ExecStderrParam, "tty": corev1.ExecTTYParam,
	} {
		if b, err := strconv.ParseBool(q.Get(from)); err == nil && b {
			out.Set(to, "1")
		}
	}
	return "/" + subresource + "/" + url.PathEscape(pod.Namespace) + "/" + url.PathEscape(pod.Name) + "/" + url.PathEscape(container), out, nil
}

// clientCredentialHeaders are not passed to the node: the client's credentials are for
// the API server, the node trusts the transport.
var clientCredentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie"}

// proxyUpgrade sends r's upgrade to the node at u. A node that switches
// protocols is spliced to the client until either side ends; any other
// answer (a refusal that makes clients fall back from WebSocket to SPDY,
// or "container not found") is passed to the client as it is, as
// Kubernetes' apiserver does. An error means the node was not reached and
// nothing was written.
func proxyUpgrade(w http.ResponseWriter, r *http.Request, rt http.RoundTripper, u string) error {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u, nil)
	if err != nil {
		return err
	}
	out.Header = r.Header.Clone()
	for _, h := range clientCredentialHeaders {
		out.Header.Del(h)
	}
	resp, err := rt.RoundTrip(out)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "X-Content-Type-Options"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, maxNodeErrorBytes))
		return nil
	}
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return fmt.Errorf("the transport does not support upgraded connections")
	}
	defer backend.Close()
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Only HTTP/1.1 connections upgrade; the node has switched
		// already, so all that is left is to say so.
		http.Error(w, "unable to upgrade: "+err.Error(), http.StatusInternalServerError)
		return nil
	}
	defer client.Close()
	_ = client.SetDeadline(time.Time{}) // the session is as long as the client wants
	fmt.Fprintf(brw, "HTTP/1.1 %s\r\n", resp.Status)
	_ = resp.Header.Write(brw)
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return nil
	}
	splice(client, brw.Reader, backend)
	return nil
}

// splice copies both ways between the client (reading through its
// buffered reader first) and the node until one side ends, then closes
// both so that the other copy ends too.
func splice(client net.Conn, clientR *bufio.Reader, backend io.ReadWriteCloser) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			backend.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(backend, clientR)
		closeBoth()
	}()
	_, _ = io.Copy(client, backend)
	closeBoth()
	wg.Wait()
}
