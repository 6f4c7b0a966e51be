package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/orch-dev/orch/runtime/container"
)

// probeOutputLimit bounds what a probe or hook's output contributes to
// events.
const probeOutputLimit = 10 << 10

// containerProbes runs the startup, liveness and readiness probes of one
// container instance and holds their verdicts.
type containerProbes struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	started    bool
	ready      bool
	killKind   string // "liveness" or "startup" once one failed
	startedCh  chan struct{}
	closedOnce sync.Once
}

func (p *containerProbes) isReady() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready
}

func (p *containerProbes) isStarted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

func (p *containerProbes) killRequested() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killKind, p.killKind != ""
}

func (p *containerProbes) markStarted() {
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	p.closedOnce.Do(func() { close(p.startedCh) })
}

func (p *containerProbes) stop() {
	p.cancel()
	p.wg.Wait()
}

// syncProbes starts probers for running containers that have probes and
// stops those of containers that are no longer running.
func (w *podWorker) syncProbes(ctx context.Context, pod *v1.Pod) {
	live := map[string]bool{}
	for name, list := range w.podContainers() {
		if len(list) == 0 || list[0].State != container.StateRunning {
			continue
		}
		cur := list[0]
		c := specContainer(pod, name)
		if c == nil || (c.StartupProbe == nil && c.LivenessProbe == nil && c.ReadinessProbe == nil) {
			continue
		}
		live[cur.ID] = true
		w.watchContainer(ctx, cur.ID)
		if _, ok := w.probes[cur.ID]; ok {
			continue
		}
		w.probes[cur.ID] = w.startProbes(ctx, pod, c, cur)
	}
	for id, p := range w.probes {
		if !live[id] {
			p.stop()
			delete(w.probes, id)
		}
	}
	// Containers without probes still need exit notifications after an
	// agent restart.
	for _, list := range w.podContainers() {
		if len(list) > 0 && list[0].State == container.StateRunning {
			w.watchContainer(ctx, list[0].ID)
		}
	}
}

func (w *podWorker) stopProbes() {
	for id, p := range w.probes {
		p.stop()
		delete(w.probes, id)
	}
}

func (w *podWorker) startProbes(ctx context.Context, pod *v1.Pod, c *v1.Container, cur container.ContainerStatus) *containerProbes {
	pctx, cancel := context.WithCancel(ctx)
	p := &containerProbes{cancel: cancel, startedCh: make(chan struct{})}
	if c.StartupProbe == nil {
		p.markStarted()
	}
	if c.ReadinessProbe == nil {
		// Without a readiness probe a container is ready once started.
		go func() {
			select {
			case <-p.startedCh:
				p.mu.Lock()
				p.ready = true
				p.mu.Unlock()
				w.wake()
			case <-pctx.Done():
			}
		}()
	}
	run := func(kind string, probe *v1.Probe) {
		if probe == nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			w.probeLoop(pctx, pod, c, cur, kind, probe, p)
		}()
	}
	run("startup", c.StartupProbe)
	run("liveness", c.LivenessProbe)
	run("readiness", c.ReadinessProbe)
	return p
}

// probeLoop runs one probe at its period and applies its thresholds.
func (w *podWorker) probeLoop(ctx context.Context, pod *v1.Pod, c *v1.Container, cur container.ContainerStatus, kind string, probe *v1.Probe, p *containerProbes) {
	if kind != "startup" {
		select {
		case <-p.startedCh:
		case <-ctx.Done():
			return
		}
	}
	period := secondsOr(probe.PeriodSeconds, 10)
	timeout := secondsOr(probe.TimeoutSeconds, 1)
	successes, failures := int32(0), int32(0)
	successThreshold := max(probe.SuccessThreshold, 1)
	failureThreshold := max(probe.FailureThreshold, 1)
	if probe.FailureThreshold == 0 {
		failureThreshold = 3
	}
	// initialDelaySeconds counts from the container's start.
	delay := time.Duration(probe.InitialDelaySeconds)*time.Second - time.Since(cur.StartedAt)
	if delay > 0 {
		if !sleepOrDone(ctx, delay) {
			return
		}
	}
	ref := fieldPath(pod, c)
	title := strings.ToUpper(kind[:1]) + kind[1:]
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		ok, out := w.runProbe(pctx, pod, c, cur.ID, probe)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if ok {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
			w.a.events.podEvent(pod, ref, v1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", title, out)
		}
		switch kind {
		case "startup":
			if successes >= successThreshold {
				p.markStarted()
				w.wake()
				return
			}
			if failures >= failureThreshold {
				p.mu.Lock()
				p.killKind = kind
				p.mu.Unlock()
				w.wake()
				return
			}
		case "liveness":
			if failures >= failureThreshold {
				p.mu.Lock()
				p.killKind = kind
				p.mu.Unlock()
				w.wake()
				return
			}
		case "readiness":
			changed := false
			p.mu.Lock()
			if successes >= successThreshold && !p.ready {
				p.ready, changed = true, true
			} else if failures >= failureThreshold && p.ready {
				p.ready, changed = false, true
			}
			p.mu.Unlock()
			if changed {
				w.wake()
			}
		}
		if !sleepOrDone(ctx, period) {
			return
		}
	}
}

func secondsOr(v int32, def int32) time.Duration {
	if v <= 0 {
		v = def
	}
	return time.Duration(v) * time.Second
}

func sleepOrDone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runProbe runs one probe attempt; out explains a failure.
func (w *podWorker) runProbe(ctx context.Context, pod *v1.Pod, c *v1.Container, id string, probe *v1.Probe) (bool, string) {
	h := probe.ProbeHandler
	switch {
	case h.Exec != nil:
		return w.execProbe(ctx, id, h.Exec.Command)
	case h.HTTPGet != nil:
		return w.httpProbe(ctx, pod, c, h.HTTPGet)
	case h.TCPSocket != nil:
		return w.tcpProbe(ctx, pod, c, h.TCPSocket)
	case h.GRPC != nil:
		// Not supported yet: treated as passing so pods using it still run.
		return true, ""
	}
	return true, ""
}

type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := probeOutputLimit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (w *podWorker) execProbe(ctx context.Context, id string, cmd []string) (bool, string) {
	var out limitedBuffer
	code, err := w.a.rt.Exec(ctx, id, container.ExecRequest{Args: cmd, Stdout: &out, Stderr: &out})
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Sprintf("command %q timed out", strings.Join(cmd, " "))
		}
		return false, err.Error()
	}
	if code != 0 {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = fmt.Sprintf("command %q exited with %d", strings.Join(cmd, " "), code)
		}
		return false, msg
	}
	return true, ""
}

// probeTarget resolves host and port of an httpGet or tcpSocket handler;
// the dial happens inside the pod's network namespace, so without a pod
// IP the pod's own loopback is the target.
func (w *podWorker) probeTarget(c *v1.Container, host string, port intstr.IntOrString) (string, error) {
	if host == "" {
		host = w.podIP
	}
	if host == "" {
		host = "127.0.0.1"
	}
	p, err := resolvePort(c, port)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

func resolvePort(c *v1.Container, port intstr.IntOrString) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("unknown port name %q", port.StrVal)
}

func (w *podWorker) netns() string {
	for _, s := range w.podSandboxes() {
		if s.Ready {
			return s.NetNS
		}
	}
	return ""
}

func (w *podWorker) tcpProbe(ctx context.Context, pod *v1.Pod, c *v1.Container, h *v1.TCPSocketAction) (bool, string) {
	addr, err := w.probeTarget(c, h.Host, h.Port)
	if err != nil {
		return false, err.Error()
	}
	conn, err := dialInNetNS(ctx, w.netns(), "tcp", addr)
	if err != nil {
		return false, err.Error()
	}
	conn.Close()
	return true, ""
}

// httpGet performs an httpGet action inside the pod's network namespace.
func (w *podWorker) httpGet(ctx context.Context, c *v1.Container, h *v1.HTTPGetAction) (*http.Response, []byte, error) {
	addr, err := w.probeTarget(c, h.Host, h.Port)
	if err != nil {
		return nil, nil, err
	}
	scheme := strings.ToLower(string(h.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := h.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: addr}
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
	} else {
		u.Path = path
	}
	ns := w.netns()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return dialInNetNS(ctx, ns, network, a)
		},
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet: probes do not verify
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", "kube-probe/1.33")
	req.Header.Set("Accept", "*/*")
	for _, hd := range h.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, probeOutputLimit))
	return resp, body, nil
}

func (w *podWorker) httpProbe(ctx context.Context, pod *v1.Pod, c *v1.Container, h *v1.HTTPGetAction) (bool, string) {
	resp, body, err := w.httpGet(ctx, c, h)
	if err != nil {
		return false, err.Error()
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode) + bodySuffix(body)
}

func bodySuffix(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return "\n" + string(b)
}

// runHandler runs a lifecycle hook (exec or httpGet) within timeout.
func (w *podWorker) runHandler(ctx context.Context, pod *v1.Pod, c *v1.Container, id string, h *v1.LifecycleHandler, timeout time.Duration) (string, error) {
	hctx, cancel := context.WithTimeout(ctx, max(timeout, minKillGrace))
	defer cancel()
	switch {
	case h.Exec != nil:
		var out limitedBuffer
		code, err := w.a.rt.Exec(hctx, id, container.ExecRequest{Args: h.Exec.Command, Stdout: &out, Stderr: &out})
		if err != nil {
			return out.String(), err
		}
		if code != 0 {
			return out.String(), fmt.Errorf("command %q exited with %d: %s", strings.Join(h.Exec.Command, " "), code, out.String())
		}
		return "", nil
	case h.HTTPGet != nil:
		resp, body, err := w.httpGet(hctx, c, h.HTTPGet)
		if err != nil {
			return "", err
		}
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return string(body), fmt.Errorf("HTTP lifecycle hook (%s) for Container %q in Pod %q failed - error: received status code %d", h.HTTPGet.Path, c.Name, pod.Name, resp.StatusCode)
		}
		return "", nil
	case h.Sleep != nil:
		sleepOrDone(hctx, time.Duration(h.Sleep.Seconds)*time.Second)
		return "", nil
	}
	return "", nil
}
