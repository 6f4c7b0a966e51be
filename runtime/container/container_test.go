package container

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/internal/cgrouptree"
	"github.com/orch-dev/orch/runtime/logs"
)

// The test binary re-executes itself as libcontainer's init, the pause
// process and the shim, exactly as orch does.
func TestMain(m *testing.M) {
	Reexec()
	os.Exit(m.Run())
}

const (
	testCgroupRoot = "/orch-runtime-test"
	testStateDir   = "/tmp/orch-runtime-test"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: real namespaces, cgroups and overlayfs")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (apt-get install -y busybox-static)")
	}
}

// cleanupLeftovers kills and removes whatever a killed earlier run (or
// this one) left: processes in the test cgroups, overlay mounts, state.
func cleanupLeftovers(t *testing.T) {
	t.Helper()
	if err := cgrouptree.Clean(testCgroupRoot); err != nil {
		t.Logf("clean cgroups: %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], testStateDir+"/") {
			_ = unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(testStateDir); err != nil {
		t.Logf("remove %s: %v", testStateDir, err)
	}
}

// busyboxRootfs makes a one-layer root filesystem from the host's static
// busybox.
func busyboxRootfs(t *testing.T, dir string) string {
	t.Helper()
	for _, d := range []string{"bin", "etc", "tmp", "www", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"sh", "httpd", "wget", "sleep", "cat", "echo", "hostname", "ls", "id"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", app)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "www/index.html"), []byte("hello from httpd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newTestRuntime(t *testing.T) *Runtime {
	t.Helper()
	r, err := Open(Config{StateDir: filepath.Join(testStateDir, "state"), CgroupRoot: testCgroupRoot})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readLog(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l, err := logs.ParseLine(sc.Bytes())
		if err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out[l.Stream] += string(l.Message) + "\n"
	}
	return out
}

func TestPod(t *testing.T) {
	requireRoot(t)
	cleanupLeftovers(t)
	t.Cleanup(func() { cleanupLeftovers(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	lower := busyboxRootfs(t, filepath.Join(testStateDir, "layer"))
	logDir := filepath.Join(testStateDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(ctx, SandboxConfig{PodUID: "pod-1", Hostname: "web-0", QOSClass: "Burstable", Labels: map[string]string{"name": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.RemoveSandbox(context.Background(), sb.ID); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("RemoveSandbox: %v", err)
		}
	})
	if !sb.Ready || sb.NetNS != "/proc/"+strconv.Itoa(sb.Pid)+"/ns/net" {
		t.Fatalf("sandbox = %+v", sb)
	}
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	podNet, _ := os.Readlink(sb.NetNS)
	if hostNet == podNet {
		t.Fatalf("pod shares the host network namespace %s", podNet)
	}
	// The pod netns has only lo, down: bring it up as the network code will.
	if out, err := exec.Command("nsenter", "--net="+sb.NetNS, "/bin/busybox", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}

	start := func(name string, res Resources, args ...string) ContainerStatus {
		t.Helper()
		st, err := r.StartContainer(ctx, ContainerConfig{
			SandboxID: sb.ID, Name: name, Lower: []string{lower}, Args: args,
			Env: []string{"GREETING=hi"}, LogPath: filepath.Join(logDir, name+".log"),
			Resources: res, Labels: map[string]string{"container": name},
		})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		if st.State != StateRunning && st.State != StateExited {
			t.Fatalf("start %s: state %q", name, st.State)
		}
		return st
	}
	wait := func(id string) ContainerStatus {
		t.Helper()
		st, err := r.Wait(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	httpd := start("httpd", Resources{CPUShares: MilliCPUToShares(100)}, "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www")

	t.Run("localhost shared", func(t *testing.T) {
		st := start("wget", Resources{}, "sh", "-c",
			"for i in $(seq 1 50); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1")
		st = wait(st.ID)
		if st.ExitCode != 0 || st.Reason != "Completed" {
			t.Errorf("wget exit = %d %s: %v", st.ExitCode, st.Reason, readLog(t, st.LogPath))
		}
		if got := readLog(t, st.LogPath)[logs.Stdout]; got != "hello from httpd\n" {
			t.Errorf("wget stdout = %q", got)
		}
		// The host's loopback must not answer: the server is in the pod.
		if out, err := exec.Command("/bin/busybox", "wget", "-q", "-T", "1", "-O", "-", "http://127.0.0.1:8080/").CombinedOutput(); err == nil && strings.Contains(string(out), "hello from httpd") {
			t.Errorf("pod httpd reachable from the host namespace")
		}
	})

	t.Run("privileged", func(t *testing.T) {
		probe := `grep CapEff /proc/self/status; [ -e /dev/kmsg ] && echo kmsg`
		run := func(name string, privileged bool) string {
			t.Helper()
			st, err := r.StartContainer(ctx, ContainerConfig{SandboxID: sb.ID, Name: name, Lower: []string{lower},
				Args: []string{"sh", "-c", probe}, LogPath: filepath.Join(logDir, name+".log"), Privileged: privileged})
			if err != nil {
				t.Fatalf("start %s: %v", name, err)
			}
			if st = wait(st.ID); st.ExitCode != 0 && st.ExitCode != 1 {
				t.Fatalf("%s: %+v %v", name, st, readLog(t, st.LogPath))
			}
			return readLog(t, st.LogPath)[logs.Stdout]
		}
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		var hostCaps string
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "CapEff:") {
				hostCaps = l
			}
		}
		priv, plain := run("privileged", true), run("unprivileged", false)
		if want := hostCaps + "\nkmsg\n"; priv != want {
			t.Errorf("privileged container sees %q, want %q (all capabilities, host devices)", priv, want)
		}
		if strings.Contains(plain, hostCaps) || strings.Contains(plain, "kmsg") {
			t.Errorf("unprivileged container sees %q", plain)
		}
	})

	t.Run("exit code and logs", func(t *testing.T) {
		st := start("fail", Resources{}, "sh", "-c", `echo "out $GREETING"; echo err >&2; hostname; exit 3`)
		st = wait(st.ID)
		if st.ExitCode != 3 || st.Reason != "Error" || st.State != StateExited || st.FinishedAt.IsZero() {
			t.Errorf("status = %+v", st)
		}
		got := readLog(t, st.LogPath)
		if got[logs.Stdout] != "out hi\nweb-0\n" || got[logs.Stderr] != "err\n" {
			t.Errorf("logs = %q", got)
		}
		if err := r.RemoveContainer(ctx, st.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Container(st.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("after remove: %v", err)
		}
	})

	t.Run("exec", func(t *testing.T) {
		var out, errb bytes.Buffer
		code, err := r.Exec(ctx, httpd.ID, ExecRequest{
			Args:  []string{"sh", "-c", "cat; echo \"$GREETING $EXTRA\"; echo e >&2; exit 5"},
			Env:   []string{"EXTRA=there"},
			Stdin: strings.NewReader("input\n"), Stdout: &out, Stderr: &errb,
		})
		if err != nil {
			t.Fatal(err)
		}
		if code != 5 || out.String() != "input\nhi there\n" || errb.String() != "e\n" {
			t.Errorf("exec = %d, %q, %q", code, out.String(), errb.String())
		}
	})

	t.Run("exec with a terminal", func(t *testing.T) {
		var first bytes.Buffer
		code, err := r.Exec(ctx, httpd.ID, ExecRequest{
			Args: []string{"sh", "-c", "stty size; tty"}, Stdout: &first, TTY: true,
			Size: TerminalSize{Width: 80, Height: 24},
		})
		if err != nil || code != 0 || !strings.HasPrefix(first.String(), "24 80\r\n/dev/pts/") {
			t.Errorf("exec -t stty = %d, %v, %q", code, err, first.String())
		}

		stdinR, stdinW := io.Pipe()
		resize := make(chan TerminalSize)
		var out syncBuffer
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			code, err := r.Exec(ctx, httpd.ID, ExecRequest{
				Args:  []string{"sh", "-c", `read x; stty size; echo "got $x $TERM"; exit 7`},
				Stdin: stdinR, Stdout: &out, TTY: true, Resize: resize,
			})
			done <- result{code, err}
		}()
		// The second send is taken only once the first size is set.
		resize <- TerminalSize{Width: 100, Height: 30}
		resize <- TerminalSize{Width: 100, Height: 30}
		if _, err := stdinW.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		res := <-done
		stdinW.Close()
		if res.err != nil {
			t.Fatal(res.err)
		}
		got := out.String()
		if res.code != 7 || !strings.Contains(got, "30 100\r\ngot hello xterm\r\n") {
			t.Errorf("exec -t = %d, %q", res.code, got)
		}
	})

	t.Run("attach", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			cfg        ContainerConfig
			wantStdout string
			wantStderr string
		}{{
			name: "pipes",
			cfg: ContainerConfig{Stdin: true, StdinOnce: true, Args: []string{"sh", "-c",
				`while read l; do echo "got $l"; echo "err $l" >&2; done; echo bye`}},
			wantStdout: "got a\ngot b\nbye\n", wantStderr: "err a\nerr b\n",
		}, {
			name: "terminal",
			cfg: ContainerConfig{Stdin: true, StdinOnce: true, TTY: true, Args: []string{"sh", "-c",
				`stty -echo; echo ready; read l; stty size; echo "got $l"`}},
			wantStdout: "30 100\r\ngot a\r\n", // "ready" came before the attach
		}} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := tc.cfg
				cfg.SandboxID, cfg.Name, cfg.Lower = sb.ID, "attach-"+tc.name, []string{lower}
				cfg.LogPath = filepath.Join(logDir, cfg.Name+".log")
				st, err := r.StartContainer(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if cfg.TTY {
					// Once the prompt is in the log it was sent to the
					// clients attached then: none.
					for deadline := time.Now().Add(30 * time.Second); !strings.Contains(readLog(t, cfg.LogPath)[logs.Stdout], "ready"); time.Sleep(20 * time.Millisecond) {
						if time.Now().After(deadline) {
							t.Fatal("no prompt in the log")
						}
					}
				}
				stdinR, stdinW := io.Pipe()
				resize := make(chan TerminalSize)
				var stdout, stderr syncBuffer
				done := make(chan error, 1)
				go func() {
					done <- r.Attach(ctx, st.ID, AttachRequest{Stdin: stdinR, Stdout: &stdout, Stderr: &stderr, Resize: resize})
				}()
				if cfg.TTY {
					// The second send is taken once the first is on the
					// socket, ahead of the input.
					resize <- TerminalSize{Width: 100, Height: 30}
					resize <- TerminalSize{Width: 100, Height: 30}
				}
				if _, err := io.WriteString(stdinW, "a\n"); err != nil {
					t.Fatal(err)
				}
				if !cfg.TTY {
					_, _ = io.WriteString(stdinW, "b\n")
				}
				stdinW.Close() // StdinOnce: the end of our input closes the container's stdin
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if st := wait(st.ID); st.ExitCode != 0 {
					t.Errorf("exit code %d", st.ExitCode)
				}
				if stdout.String() != tc.wantStdout || stderr.String() != tc.wantStderr {
					t.Errorf("attached stdout %q, stderr %q; want %q, %q", stdout.String(), stderr.String(), tc.wantStdout, tc.wantStderr)
				}
			})
		}
	})

	t.Run("OOMKilled", func(t *testing.T) {
		st := start("hog", Resources{MemoryLimit: 32 << 20}, "sh", "-c", "a=0123456789; while :; do a=$a$a; done")
		st = wait(st.ID)
		if !st.OOMKilled || st.Reason != "OOMKilled" || st.ExitCode != 137 {
			t.Errorf("status = %+v", st)
		}
	})

	t.Run("restore after agent restart", func(t *testing.T) {
		before, err := r.Container(httpd.ID)
		if err != nil || before.State != StateRunning {
			t.Fatalf("httpd before restart: %+v, %v", before, err)
		}
		r2 := newTestRuntime(t)
		after, err := r2.Container(httpd.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.State != StateRunning || after.Pid != before.Pid || !after.StartedAt.Equal(before.StartedAt) {
			t.Fatalf("after restart %+v, before %+v", after, before)
		}
		if sb2, err := r2.Sandbox(sb.ID); err != nil || !sb2.Ready || sb2.Pid != sb.Pid {
			t.Fatalf("sandbox after restart: %+v, %v", sb2, err)
		}
		var out bytes.Buffer
		if code, err := r2.Exec(ctx, httpd.ID, ExecRequest{Args: []string{"wget", "-q", "-O", "-", "http://127.0.0.1:8080/"}, Stdout: &out}); err != nil || code != 0 {
			t.Fatalf("exec after restart: %d, %v", code, err)
		}
		if err := r2.StopContainer(ctx, httpd.ID, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		st, err := r2.Wait(ctx, httpd.ID)
		if err != nil {
			t.Fatal(err)
		}
		// httpd is PID 1 of its PID namespace without a SIGTERM handler, so
		// it ignores SIGTERM and is killed when the grace period ends.
		if st.State != StateExited || st.ExitCode != 128+int(syscall.SIGKILL) {
			t.Errorf("httpd after stop: %+v", st)
		}
		if err := r2.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
		if len(r2.ListContainers()) != 0 || len(r2.ListSandboxes()) != 0 {
			t.Errorf("left after RemoveSandbox: %v %v", r2.ListContainers(), r2.ListSandboxes())
		}
		if left, err := cgrouptree.Dirs(testCgroupRoot + "/pods/burstable/pod-1"); err != nil || len(left) != 0 {
			t.Errorf("pod cgroup left: %v %v", left, err)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A host-network pod stays in the node's network and UTS namespaces: its
// containers see the node's interfaces and hostname, and the pod's
// hostname does not rename the node.
func TestHostNetworkPod(t *testing.T) {
	requireRoot(t)
	cleanupLeftovers(t)
	t.Cleanup(func() { cleanupLeftovers(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	lower := busyboxRootfs(t, filepath.Join(testStateDir, "layer"))
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(ctx, SandboxConfig{PodUID: "pod-hostnet", Hostname: "not-the-node", QOSClass: "BestEffort", HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.RemoveSandbox(context.Background(), sb.ID); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("RemoveSandbox: %v", err)
		}
	})
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	hostUTS, _ := os.Readlink("/proc/self/ns/uts")
	if podNet, _ := os.Readlink(sb.NetNS); podNet != hostNet {
		t.Errorf("pause process in network namespace %s, want the host's %s", podNet, hostNet)
	}
	if now, _ := os.Hostname(); now != hostname {
		t.Fatalf("the sandbox renamed the host from %q to %q", hostname, now)
	}

	logPath := filepath.Join(testStateDir, "hostnet.log")
	st, err := r.StartContainer(ctx, ContainerConfig{SandboxID: sb.ID, Name: "c", Lower: []string{lower},
		Args: []string{"sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname"}, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	st, err = r.Wait(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := readLog(t, st.LogPath)[logs.Stdout]
	if want := hostNet + "\n" + hostUTS + "\n" + hostname + "\n"; st.ExitCode != 0 || out != want {
		t.Errorf("container: exit %d, printed %q, want %q (stderr %q)", st.ExitCode, out, want, readLog(t, st.LogPath)[logs.Stderr])
	}
}
