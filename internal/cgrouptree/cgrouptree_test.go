package cgrouptree

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestDirsRefusesAWholeHierarchy(t *testing.T) {
	for _, root := range []string{"", "/", ".", "/..", "//"} {
		if dirs, err := Dirs(root); err == nil {
			t.Errorf("Dirs(%q) = %v, want an error", root, dirs)
		}
	}
}

func TestKillRefusesWhatIsNotBelowAHierarchyRoot(t *testing.T) {
	refused := []string{Mount, Mount + "/", Mount + "/.", t.TempDir()}
	// Every mounted hierarchy's root: v1 controllers or hybrid's unified.
	hierarchies, _ := filepath.Glob(Mount + "/*")
	for _, h := range hierarchies {
		if isCgroup(h) && mountPoint(t, h) {
			refused = append(refused, h)
		}
	}
	for _, dir := range refused {
		if err := Kill(dir); err == nil {
			t.Errorf("Kill(%q) succeeded, want a refusal", dir)
		}
	}
	if err := Kill(filepath.Join(Mount, "orch-cgrouptree-no-such-group")); err != nil {
		t.Errorf("Kill of a missing cgroup: %v", err)
	}
}

func mountPoint(t *testing.T, dir string) bool {
	t.Helper()
	var st, parent syscall.Stat_t
	if syscall.Stat(dir, &st) != nil || syscall.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

func TestPIDsReadsTheWholeTree(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"cgroup.procs":          "10\n11\n",
		"a/cgroup.procs":        "12\n",
		"a/b/cgroup.procs":      "13\nnot-a-pid\n0\n-4\n",
		"c/cgroup.procs":        "",
		"c/cgroup.threads":      "99\n", // threads are not processes to kill
		"c/d/notify_on_release": "1\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := PIDs(dir)
	slices.Sort(got)
	if want := []int{10, 11, 12, 13}; !slices.Equal(got, want) {
		t.Errorf("PIDs = %v, want %v", got, want)
	}
	if got := PIDs(filepath.Join(dir, "missing")); len(got) != 0 {
		t.Errorf("PIDs of a missing dir = %v", got)
	}
}

func TestRemoveDeepestFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"a/b/c", "a/d", "e"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := Remove(dir); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", dir, err)
	}
	// What cannot be removed stays and is reported.
	if err := os.MkdirAll(filepath.Join(dir, "busy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busy", "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir); err == nil {
		t.Error("Remove of a non-empty directory reported no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "busy", "file")); err != nil {
		t.Errorf("the file below was touched: %v", err)
	}
}

// TestCleanRealCgroup puts a process of its own into a nested cgroup of a
// test root and cleans that root: the process is killed, the cgroups are
// gone, and nothing outside them was signalled.
func TestCleanRealCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	const root = "/orch-cgrouptree-test"
	if err := Clean(root); err != nil { // a killed earlier run's
		t.Fatal(err)
	}
	var hierarchy string
	for _, h := range []string{Mount + "/unified", Mount + "/pids", Mount} {
		if isCgroup(h) {
			hierarchy = h
			break
		}
	}
	if hierarchy == "" {
		t.Skip("no cgroup hierarchy with cgroup.procs under " + Mount)
	}
	leaf := filepath.Join(hierarchy, root, "pod", "container")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = Clean(root) })

	inside := exec.Command("sleep", "600")
	outside := exec.Command("sleep", "600")
	for _, cmd := range []*exec.Cmd{inside, outside} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = outside.Process.Kill(); _ = outside.Wait() })
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(inside.Process.Pid)), 0o644); err != nil {
		_ = inside.Process.Kill()
		_ = inside.Wait()
		t.Skipf("cannot move a process into %s: %v", leaf, err)
	}
	dirs, err := Dirs(root)
	if err != nil || !slices.Contains(dirs, filepath.Join(hierarchy, root)) {
		t.Fatalf("Dirs = %v, %v; want %s among them", dirs, err, filepath.Join(hierarchy, root))
	}
	if got := PIDs(filepath.Join(hierarchy, root)); !slices.Equal(got, []int{inside.Process.Pid}) {
		t.Errorf("PIDs = %v, want [%d]", got, inside.Process.Pid)
	}

	if err := Clean(root); err != nil {
		t.Fatalf("Clean: %v", err)
	}
	err = inside.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the process in the cgroup ended with %v, want SIGKILL", err)
	}
	if _, err := os.Stat(filepath.Join(hierarchy, root)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s still there: %v", filepath.Join(hierarchy, root), err)
	}
	// Not signalled: still running (a killed one would be a zombie).
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(outside.Process.Pid) + "/stat"); err != nil || !strings.Contains(string(stat), ") S ") {
		t.Errorf("the process outside the cgroup is not asleep any more: %q, %v", stat, err)
	}
}
