package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/bench/measure"
	"github.com/orch-dev/orch/internal/netnstest"
)

// tunnelResults are the issue 8 measurements.
type tunnelResults struct {
	api                       apiLatencies
	execAgent, execServer     measure.Latencies
	kubectlFloor              measure.Latencies
	forwardMBps, directMBps   []float64
	cutNoticed, cutNotReady   time.Duration // from the cut
	restoreTunnel, restoreRdy time.Duration // from the restore
}

// probeAPI runs the API probe in the agent's namespace.
func (c *cluster) probeAPI(ctx context.Context) (apiLatencies, error) {
	self, err := os.Executable()
	if err != nil {
		return apiLatencies{}, err
	}
	var stdout, stderr bytes.Buffer
	cmd := c.agentNS.NetCommand(ctx, self, "-role", roleProbeAPI, "-server", c.serverURL, "-node", agentNode,
		"-ca", filepath.Join(c.agentData(), "agent", "ca.crt"),
		"-token-file", filepath.Join(c.serverData(), "server", "token"), "-requests", fmt.Sprint(c.o.requests))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return apiLatencies{}, fmt.Errorf("API probe: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var res apiLatencies
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return res, fmt.Errorf("API probe's answer: %w", err)
	}
	return res, nil
}

// execRoundTrips times `kubectl exec POD -- true` into a pod on each node,
// alternately, and `kubectl get --raw /readyz`, kubectl's own start-up
// plus one request, as the floor under both.
func (c *cluster) execRoundTrips(ctx context.Context, agentPod, serverPod string, r *tunnelResults) error {
	run := func(args ...string) (time.Duration, error) {
		t0 := time.Now()
		_, err := c.kubectl(ctx, args...)
		return time.Since(t0), err
	}
	for i := range c.o.execs + 2 {
		a, err := run("exec", agentPod, "--", "true")
		if err != nil {
			return err
		}
		s, err := run("exec", serverPod, "--", "true")
		if err != nil {
			return err
		}
		f, err := run("get", "--raw", "/readyz")
		if err != nil {
			return err
		}
		if i >= 2 { // the first ones fill kubectl's discovery cache
			r.execAgent, r.execServer, r.kubectlFloor = append(r.execAgent, a), append(r.execServer, s), append(r.kubectlFloor, f)
		}
	}
	return nil
}

// bulkPod serves a file of size MiB from a pod on the agent's node.
func bulkPod(mib int) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bulk", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:                      agentNode,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "httpd", Image: benchImage,
				Command: []string{"sh", "-c", fmt.Sprintf("mkdir -p /www && busybox dd if=/dev/zero of=/www/blob bs=1048576 count=%d 2>/dev/null && exec httpd -f -p 8080 -h /www", mib)},
			}},
		},
	}
}

// throughput downloads the bulk pod's file directly from its IP (the
// server's namespace routes to the agent's pods) and through `kubectl
// port-forward` (server, tunnel, agent, pod), three times each,
// alternately.
func (c *cluster) throughput(ctx context.Context, r *tunnelResults) error {
	if _, err := c.cs.CoreV1().Pods("default").Create(ctx, bulkPod(c.o.download), metav1.CreateOptions{}); err != nil {
		return err
	}
	var podIP string
	if err := poll(ctx, 120*time.Second, 250*time.Millisecond, "pod bulk Running", func() (bool, error) {
		p, err := c.cs.CoreV1().Pods("default").Get(ctx, "bulk", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		podIP = p.Status.PodIP
		return p.Status.Phase == corev1.PodRunning && podIP != "", nil
	}); err != nil {
		return err
	}
	want := int64(c.o.download) << 20
	directURL := "http://" + podIP + ":8080/blob"
	// dd needs a moment; the file is complete once httpd runs.
	if err := poll(ctx, 60*time.Second, 250*time.Millisecond, "the bulk pod's file", func() (bool, error) {
		n, _, err := download(ctx, directURL)
		return err == nil && n == want, nil
	}); err != nil {
		return err
	}

	pfCtx, stopPF := context.WithCancel(ctx)
	defer stopPF()
	var pfOut bytes.Buffer
	pf := c.kubectlCmd(pfCtx, "port-forward", "pod/bulk", "18081:8080")
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	if err := pf.Start(); err != nil {
		return err
	}
	pfDone := make(chan struct{})
	go func() { _ = pf.Wait(); close(pfDone) }()
	defer func() { stopPF(); <-pfDone }()
	forwardURL := "http://127.0.0.1:18081/blob"
	if err := poll(ctx, 60*time.Second, 250*time.Millisecond, "kubectl port-forward", func() (bool, error) {
		select {
		case <-pfDone:
			return false, fmt.Errorf("kubectl port-forward exited: %s", pfOut.String())
		default:
		}
		// kubectl listens once it is ready to forward.
		conn, err := net.DialTimeout("tcp", "127.0.0.1:18081", time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil, nil
	}); err != nil {
		return err
	}
	for range 3 {
		for _, d := range []struct {
			url string
			to  *[]float64
		}{{forwardURL, &r.forwardMBps}, {directURL, &r.directMBps}} {
			n, took, err := download(ctx, d.url)
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("GET %s: %d bytes, want %d", d.url, n, want)
			}
			*d.to = append(*d.to, float64(n)/(1<<20)/took.Seconds())
		}
	}
	return nil
}

// download GETs url and returns the body's size and the time it took.
func download(ctx context.Context, url string) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	// A fresh connection each time: the same for both paths.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	took := time.Since(t0)
	if err != nil {
		return n, took, err
	}
	if resp.StatusCode != http.StatusOK {
		return n, took, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return n, took, nil
}

// linkCut cuts the agent's link until the server has noticed (tunnel
// gone, node not Ready), restores it and times the way back.
func (c *cluster) linkCut(ctx context.Context, e *netnstest.Program, r *tunnelResults) error {
	serverLog, agentLog := c.server.logPath, c.agent.logPath
	disconnected := func() int { return countLines(serverLog, `msg="tunnel: node disconnected"`, "node="+agentNode) }
	connected := func() int { return countLines(serverLog, `msg="tunnel: node connected"`, "node="+agentNode) }
	lost := func() int { return countLines(agentLog, `msg="tunnel: connection to server lost"`) }
	d0, c0, l0 := disconnected(), connected(), lost()

	cut := time.Now()
	// Everything dropped both ways on the agent's eth0, as when an edge
	// box loses its uplink (the join e2e test does the same).
	restore := c.agentNS.CutLink(e, "eth0")
	err := poll(ctx, 180*time.Second, 50*time.Millisecond, "the cut noticed and the node not Ready", func() (bool, error) {
		if r.cutNoticed == 0 && disconnected() > d0 && lost() > l0 {
			r.cutNoticed = time.Since(cut)
		}
		if r.cutNotReady == 0 {
			if n, err := c.cs.CoreV1().Nodes().Get(ctx, agentNode, metav1.GetOptions{}); err == nil && !nodeReady(n) {
				r.cutNotReady = time.Since(cut)
			}
		}
		return r.cutNoticed > 0 && r.cutNotReady > 0, nil
	})
	restore(e)
	if err != nil {
		return err
	}
	restored := time.Now()
	return poll(ctx, 180*time.Second, 20*time.Millisecond, "the node Ready after the restore", func() (bool, error) {
		if r.restoreTunnel == 0 && connected() > c0 {
			r.restoreTunnel = time.Since(restored)
		}
		if r.restoreRdy == 0 {
			if n, err := c.cs.CoreV1().Nodes().Get(ctx, agentNode, metav1.GetOptions{}); err == nil && nodeReady(n) {
				r.restoreRdy = time.Since(restored)
			}
		}
		return r.restoreTunnel > 0 && r.restoreRdy > 0, nil
	})
}

// countLines counts the lines of path that contain all of subs.
func countLines(path string, subs ...string) int {
	b, _ := os.ReadFile(path)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// median of a few values.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// orchVersion is the version and commit lines of `orch version`: which
// build was measured.
func orchVersion(orch string) string {
	out, err := exec.Command(orch, "version").Output()
	if err != nil {
		return "unknown"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[:min(2, len(lines))], ", ")
}
