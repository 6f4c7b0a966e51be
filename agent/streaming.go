package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/orch-dev/orch/agent/streaming"
	"github.com/orch-dev/orch/runtime/container"
)

// Streaming routes of the node API: the kubelet's paths, which the API
// server proxies pods/exec, pods/attach and pods/portforward to. The wire
// protocols are package streaming's; this file finds the container or the
// pod's network namespace.
const (
	execPattern        = "/exec/{namespace}/{pod}/{container}"
	attachPattern      = "/attach/{namespace}/{pod}/{container}"
	portForwardPattern = "/portForward/{namespace}/{pod}"
)

// registerStreaming adds the streaming routes to the node API's mux. Each
// answers GET and POST, as kubectl uses both.
func (a *Agent) registerStreaming(mux *http.ServeMux) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		mux.HandleFunc(m+" "+execPattern, a.serveExec)
		mux.HandleFunc(m+" "+attachPattern, a.serveAttach)
		mux.HandleFunc(m+" "+portForwardPattern, a.servePortForward)
	}
}

func (a *Agent) serveExec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cmd := q["command"]
	if len(cmd) == 0 {
		writeTextError(w, http.StatusBadRequest, "you must specify a command")
		return
	}
	opts, err := streaming.ParseOptions(q)
	if err != nil {
		writeTextError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, ok := a.runningContainer(w, r)
	if !ok {
		return
	}
	streaming.ServeRemoteCommand(w, r, opts, func(ctx context.Context, s streaming.Streams) error {
		code, err := a.rt.Exec(ctx, id, container.ExecRequest{
			Args: cmd, Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, TTY: s.TTY, Resize: s.Resize,
		})
		if err != nil {
			return err
		}
		if code != 0 {
			return &streaming.ExitError{Command: cmd, Code: code}
		}
		return nil
	})
}

func (a *Agent) serveAttach(w http.ResponseWriter, r *http.Request) {
	opts, err := streaming.ParseOptions(r.URL.Query())
	if err != nil {
		writeTextError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, ok := a.runningContainer(w, r)
	if !ok {
		return
	}
	streaming.ServeRemoteCommand(w, r, opts, func(ctx context.Context, s streaming.Streams) error {
		return a.rt.Attach(ctx, id, container.AttachRequest{
			Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Resize: s.Resize,
		})
	})
}

// runningContainer finds the running container the request's path names,
// or answers as the kubelet does when there is none.
func (a *Agent) runningContainer(w http.ResponseWriter, r *http.Request) (string, bool) {
	ns, pod, name := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	var newest *container.ContainerStatus
	for _, c := range a.rt.ListContainers() {
		if c.State != container.StateRunning || c.Labels[labelPodNamespace] != ns ||
			c.Labels[labelPodName] != pod || c.Labels[labelContainerName] != name {
			continue
		}
		if newest == nil || c.CreatedAt.After(newest.CreatedAt) {
			newest = &c
		}
	}
	if newest == nil {
		writeTextError(w, http.StatusInternalServerError, fmt.Sprintf("container not found (%q)", name))
		return "", false
	}
	return newest.ID, true
}

func (a *Agent) servePortForward(w http.ResponseWriter, r *http.Request) {
	ns, pod := r.PathValue("namespace"), r.PathValue("pod")
	var sb *container.Sandbox
	for _, s := range a.rt.ListSandboxes() {
		if s.Ready && s.Labels[labelPodNamespace] == ns && s.Labels[labelPodName] == pod {
			sb = s
			break
		}
	}
	if sb == nil {
		writeTextError(w, http.StatusNotFound, fmt.Sprintf("pod %s/%s is not running on this node", ns, pod))
		return
	}
	netns := sb.NetNS
	// Errors name the pod as the kubelet's do: "to pod web, uid ...".
	streaming.ServePortForward(w, r, pod+", uid "+sb.PodUID, func(ctx context.Context, port uint16) (net.Conn, error) {
		return dialPodLocalhost(ctx, netns, port)
	})
}

// dialPodLocalhost dials the pod's loopback, IPv4 first then IPv6, as
// containerd's port forwarding does; the IPv4 error is the one reported.
func dialPodLocalhost(ctx context.Context, netns string, port uint16) (net.Conn, error) {
	p := strconv.Itoa(int(port))
	conn, err := dialInNetNS(ctx, netns, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return conn, nil
	}
	if conn6, err6 := dialInNetNS(ctx, netns, "tcp6", net.JoinHostPort("::1", p)); err6 == nil {
		return conn6, nil
	}
	return nil, err
}
