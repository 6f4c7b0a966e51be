package server

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestKubectlStreamingE2E runs the real orch server (ORCH_BIN) with its
// node and drives the streaming subresources with the real kubectl: exec
// (WebSocket v5, and SPDY where kubectl falls back), exec -i and -it,
// cp both ways, port-forward to a pod's httpd (WebSocket-tunnelled
// SPDY), and attach -i. It shares the
// logs e2e test's server harness and directory.
func TestKubectlStreamingE2E(t *testing.T) {
	bin := requireNodeE2E(t, "kubectl", "script")
	data := filepath.Join(logsE2EDir, "data")
	importBusybox(t, data, "busybox:exec")
	k := &kubectlRunner{t: t, kubeconfig: startLogsServer(t, bin, data), cacheDir: filepath.Join(logsE2EDir, "cache")}
	t.Cleanup(func() {
		if out, err := k.run(nil, "delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"); err != nil {
			t.Logf("delete pods: %v\n%s", err, out)
		}
	})
	k.eventually("the node", func() bool {
		out, _ := k.run(nil, "get", "nodes")
		return strings.Contains(out, " Ready ")
	})
	k.must(nil, "run", "web", "--image=busybox:exec", "--image-pull-policy=Never", "--",
		// The test image links few applets; tar (kubectl cp), md5sum and
		// tty come from busybox itself.
		"sh", "-c", "busybox --install -s /bin && mkdir -p /www && echo hello from httpd > /www/index.html && exec httpd -f -p 8080 -h /www")
	k.eventually("web to run", func() bool {
		out, _ := k.run(nil, "get", "pod", "web", "-o", "jsonpath={.status.phase}")
		return out == "Running"
	})

	t.Run("exec exit code", func(t *testing.T) {
		out, err := k.run(nil, "exec", "web", "--", "sh", "-c", "echo hi; exit 3")
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 3 || out != "hi\ncommand terminated with exit code 3\n" {
			t.Errorf("exec = %v, %q; want exit code 3 and \"hi\\n\"", err, out)
		}
	})
	t.Run("exec over SPDY", func(t *testing.T) {
		// kubectl's switch to skip the WebSocket attempt.
		out, err := k.runEnv([]string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}, strings.NewReader("in\n"),
			"exec", "-i", "web", "--", "sh", "-c", "cat; exit 5")
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 5 || !strings.HasPrefix(out, "in\n") {
			t.Errorf("exec over SPDY = %v, %q; want exit code 5 and \"in\\n\"", err, out)
		}
	})
	t.Run("exec stdin", func(t *testing.T) {
		out := k.must(strings.NewReader("one\ntwo\n"), "exec", "-i", "web", "--", "sh", "-c", "wc -l; echo err >&2")
		if strings.TrimSpace(strings.Replace(out, "err\n", "", 1)) != "2" || !strings.Contains(out, "err\n") {
			t.Errorf("exec -i = %q", out)
		}
	})
	t.Run("exec tty", func(t *testing.T) {
		// script gives kubectl a terminal, so -t gets a real TTY; the
		// quotes keep the echoed command line from matching.
		// kubectl sends script's terminal size, which the pod's stty
		// reads back. Both protocols: WebSocket, then SPDY as fallback.
		for _, env := range []string{"", "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false "} {
			cmdline := fmt.Sprintf("stty cols 101 rows 31; %skubectl --kubeconfig %s --cache-dir %s exec -it web -- sh -c 'tty; stty size; exit 4'",
				env, k.kubeconfig, k.cacheDir)
			cmd := exec.Command("script", "-qec", cmdline, "/dev/null")
			stdin, err := cmd.StdinPipe() // open until the session ends: EOF would be typed
			if err != nil {
				t.Fatal(err)
			}
			outb, err := cmd.CombinedOutput()
			stdin.Close()
			out := string(outb)
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 4 || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "31 101\r\n") {
				t.Errorf("%sexec -it = %v, %q; want exit code 4, a pts and the size 31 101", env, err, out)
			}
		}
	})
	t.Run("exec errors", func(t *testing.T) {
		if out, err := k.run(nil, "exec", "nope", "--", "true"); err == nil || !strings.Contains(out, `pods "nope" not found`) {
			t.Errorf("exec into a missing pod = %v, %q", err, out)
		}
		if out, err := k.run(nil, "exec", "web", "-c", "other", "--", "true"); err == nil || !strings.Contains(out, "container other is not valid for pod web") {
			t.Errorf("exec into a missing container = %v, %q", err, out)
		}
	})
	t.Run("exec into a waiting container", func(t *testing.T) {
		// A crash-looping pod is Running, so kubectl asks; the node has no
		// running container and answers as the kubelet does.
		k.must(nil, "run", "crash", "--image=busybox:exec", "--image-pull-policy=Never", "--", "sh", "-c", "exit 1")
		k.eventually("crash to back off", func() bool {
			out, _ := k.run(nil, "get", "pod", "crash", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}")
			return out == "CrashLoopBackOff"
		})
		out, err := k.run(nil, "exec", "crash", "--", "true")
		if want := `error: unable to upgrade connection: container not found ("crash")`; err == nil || !strings.Contains(out, want) {
			t.Errorf("exec = %v, %q; want %q", err, out, want)
		}
	})
	t.Run("cp", func(t *testing.T) {
		src := filepath.Join(logsE2EDir, "cp-in.txt")
		want := strings.Repeat("copied through kubectl cp\n", 1000)
		if err := os.WriteFile(src, []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		k.must(nil, "cp", src, "web:/tmp/in.txt")
		if out := k.must(nil, "exec", "web", "--", "md5sum", "/tmp/in.txt"); !strings.HasPrefix(out, md5Hex(t, want)) {
			t.Errorf("md5sum of the copied file = %q", out)
		}
		dst := filepath.Join(logsE2EDir, "cp-out.txt")
		k.must(nil, "cp", "web:/tmp/in.txt", dst)
		if got, err := os.ReadFile(dst); err != nil || string(got) != want {
			t.Errorf("copied back %d bytes, %v", len(got), err)
		}
	})
	t.Run("attach", func(t *testing.T) {
		// kubectl run -i without attaching makes a container with stdin
		// and stdinOnce; attach -i feeds it and ends when it exits.
		k.must(nil, "run", "reader", "-i", "--attach=false", "--restart=Never", "--image=busybox:exec", "--image-pull-policy=Never",
			"--", "sh", "-c", `while read l; do echo "got $l"; done; echo bye`)
		k.eventually("reader to run", func() bool {
			out, _ := k.run(nil, "get", "pod", "reader", "-o", "jsonpath={.status.phase}")
			return out == "Running"
		})
		out := k.must(strings.NewReader("x\ny\n"), "attach", "-i", "reader")
		if !strings.Contains(out, "got x\ngot y\nbye\n") {
			t.Errorf("attach -i = %q", out)
		}
	})
	t.Run("port-forward", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		pf := exec.CommandContext(ctx, "kubectl", "--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir,
			"port-forward", "pod/web", "--address", "127.0.0.1", ":8080")
		stdout, err := pf.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		pf.Stderr = &stderr
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = pf.Wait() }()
		// "Forwarding from 127.0.0.1:PORT -> 8080"
		line := make([]byte, 256)
		n, _ := stdout.Read(line)
		m := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`).FindSubmatch(line[:n])
		if m == nil {
			t.Fatalf("port-forward printed %q, stderr %q", line[:n], stderr.String())
		}
		client := &http.Client{Timeout: 20 * time.Second}
		resp, err := client.Get("http://" + net.JoinHostPort("127.0.0.1", string(m[1])) + "/index.html")
		if err != nil {
			t.Fatalf("GET through port-forward: %v (stderr %q)", err, stderr.String())
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "hello from httpd\n" {
			t.Errorf("GET through port-forward = %s %q", resp.Status, body)
		}
	})
}

// kubectlRunner runs the real kubectl against one test server.
type kubectlRunner struct {
	t                    *testing.T
	kubeconfig, cacheDir string
}

// run runs kubectl with stdin (may be nil) and returns its combined output.
func (k *kubectlRunner) run(stdin io.Reader, args ...string) (string, error) {
	return k.runEnv(nil, stdin, args...)
}

// runEnv is run with extra environment variables.
func (k *kubectlRunner) runEnv(env []string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir}, args...)...)
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (k *kubectlRunner) must(stdin io.Reader, args ...string) string {
	k.t.Helper()
	out, err := k.run(stdin, args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// eventually polls ok with a generous deadline.
func (k *kubectlRunner) eventually(what string, ok func() bool) {
	k.t.Helper()
	for deadline := time.Now().Add(90 * time.Second); !ok(); time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			out, _ := k.run(nil, "get", "pods", "-o", "wide")
			k.t.Fatalf("timed out waiting for %s\n%s", what, out)
		}
	}
}

func md5Hex(t *testing.T, s string) string {
	t.Helper()
	return fmt.Sprintf("%x", md5.Sum([]byte(s)))
}
