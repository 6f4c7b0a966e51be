package pause

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary links this package, so running it as `pause.test pause
// ...` runs the C pause process, as `orch pause ...` does.

// start runs the pause process with args in a UTS namespace of its own
// and returns it with what it reported on ReadyFD.
func start(t *testing.T, args ...string) (*exec.Cmd, string) {
	return startIn(t, syscall.CLONE_NEWUTS, args...)
}

func startIn(t *testing.T, cloneflags uintptr, args ...string) (*exec.Cmd, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a UTS namespace")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(os.Args[0], append([]string{Arg}, args...)...)
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	msg, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, string(msg)
}

func TestPauseRunsUntilSIGTERM(t *testing.T) {
	cmd, msg := start(t, "-hostname", "web-0")
	if msg != "ok" {
		t.Fatalf("ready message %q, want ok", msg)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	host, err := exec.Command("nsenter", "--uts=/proc/"+pid+"/ns/uts", "hostname").Output()
	if err != nil {
		t.Fatalf("hostname in the pause process's namespace: %v", err)
	}
	if got := strings.TrimSpace(string(host)); got != "web-0" {
		t.Errorf("hostname in the pause process's namespace %q, want web-0", got)
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	// No Go runtime: one thread, no heap arenas.
	if !strings.Contains(string(status), "Threads:\t1\n") {
		t.Errorf("the pause process runs more than one thread:\n%s", status)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the pause process did not exit on SIGTERM")
	}
}

func TestPauseBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-hostname"}, "pause: -hostname needs a value"},
		{[]string{"--verbose"}, `pause: unknown argument "--verbose"`},
		{[]string{"-hostname", strings.Repeat("h", 70)}, `pause: set hostname "` + strings.Repeat("h", 70) + `": Invalid argument`},
		{[]string{"a", "b", "c", "d", "e", "f", "g"}, "pause: too many arguments"},
	} {
		cmd, msg := start(t, tc.args...)
		if msg != tc.want {
			t.Errorf("pause %q reported %q, want %q", tc.args, msg, tc.want)
		}
		if err := cmd.Wait(); err == nil {
			t.Errorf("pause %q exited 0, want 1", tc.args)
		}
	}
}

// As PID 1 of a pod's shared PID namespace, the pause process inherits
// the orphans of the pod's containers and must collect them when they exit.
func TestPauseReapsOrphans(t *testing.T) {
	cmd, msg := startIn(t, syscall.CLONE_NEWUTS|syscall.CLONE_NEWPID)
	if msg != "ok" {
		t.Fatalf("ready message %q, want ok", msg)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	// sh starts a short sleep and exits at once: the sleep is orphaned
	// and reparented to the namespace's PID 1.
	if out, err := exec.Command("nsenter", "--pid=/proc/"+pid+"/ns/pid", "sh", "-c", "sleep 0.3 & exit 0").CombinedOutput(); err != nil {
		t.Fatalf("orphan a process in the namespace: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		children := childrenOf(t, pid)
		if len(children) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of the pause process still there (zombies if state Z): %v", children)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// childrenOf returns "pid state" of the processes whose parent is ppid.
func childrenOf(t *testing.T, ppid string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var children []string
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue // not a process, or gone
		}
		var state, parent string
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "State:\t"); ok {
				state = v
			} else if v, ok := strings.CutPrefix(line, "PPid:\t"); ok {
				parent = v
			}
		}
		if parent == ppid {
			children = append(children, e.Name()+" "+state)
		}
	}
	return children
}
