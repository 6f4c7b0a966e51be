// Package cgrouptree cleans up the cgroup tree a test or benchmark gave
// its containers: it finds the tree in every mounted hierarchy, kills the
// processes in it and removes its cgroups, deepest first.
//
// It only ever signals PIDs read from the cgroup.procs files of the tree
// it is given, and it refuses a hierarchy's root (/sys/fs/cgroup or a v1
// mount such as /sys/fs/cgroup/cpu): a caller whose cgroup lookup came
// back empty must not kill every process on the machine.
package cgrouptree

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mount is where the cgroup hierarchies are mounted: v2 at Mount itself,
// or v1 (and a hybrid host's v2 "unified") one directory below it.
const Mount = "/sys/fs/cgroup"

// Dirs returns the directory of the cgroup named root (a path below a
// hierarchy's root, such as "/orch-e2e") in every mounted hierarchy where
// it exists. cpu and cpuacct are separate v1 mounts on some hosts and one
// (cpu,cpuacct) on others; the links between them are skipped so that a
// tree is not listed twice.
func Dirs(root string) ([]string, error) {
	rel := strings.Trim(filepath.Clean("/"+root), "/")
	if rel == "" {
		return nil, fmt.Errorf("cgroup root %q names a whole hierarchy", root)
	}
	hierarchies, err := os.ReadDir(Mount)
	if err != nil {
		return nil, fmt.Errorf("list cgroup hierarchies: %w", err)
	}
	candidates := []string{filepath.Join(Mount, rel)}
	for _, h := range hierarchies {
		if h.IsDir() { // a symlink (cpu -> cpu,cpuacct) is not
			candidates = append(candidates, filepath.Join(Mount, h.Name(), rel))
		}
	}
	var dirs []string
	for _, dir := range candidates {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() && isCgroup(dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs, nil
}

// isCgroup reports whether dir is a cgroup (v2 at /sys/fs/cgroup/NAME is a
// cgroup; a v1 hierarchy's name under a tmpfs is not).
func isCgroup(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "cgroup.procs"))
	return err == nil
}

// PIDs lists the processes in the cgroup dir and the cgroups below it.
func PIDs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil // the cgroup went away meanwhile
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if pid, err := strconv.Atoi(strings.TrimSpace(s.Text())); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// checkBelowRoot refuses a directory that is not a cgroup strictly below
// a hierarchy's root.
func checkBelowRoot(dir string) error {
	dir = filepath.Clean(dir)
	if !strings.HasPrefix(dir, Mount+"/") {
		return fmt.Errorf("%s is not a cgroup below %s", dir, Mount)
	}
	var st, parent syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	if err := syscall.Stat(filepath.Dir(dir), &parent); err != nil {
		return err
	}
	// A hierarchy's root is a mount point: its parent is on another file
	// system (the tmpfs at /sys/fs/cgroup, or /sys itself for v2).
	if st.Dev != parent.Dev || dir == Mount {
		return fmt.Errorf("%s is the root of a cgroup hierarchy: refusing to kill every process in it", dir)
	}
	return nil
}

// Kill sends SIGKILL to the processes in the cgroup dir and below until
// none is left, and fails if some are still there after a few seconds (a
// process in uninterruptible sleep) or if dir is a hierarchy's root. It
// never signals the calling process. A dir that does not exist is
// already clean.
func Kill(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := checkBelowRoot(dir); err != nil {
		return err
	}
	self := os.Getpid()
	var left []int
	for range 250 { // 5 s: a killed process leaves its cgroup once reaped
		left = left[:0]
		for _, pid := range PIDs(dir) {
			if pid != self {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("processes %v still in %s after SIGKILL", left, dir)
}

// Remove removes the cgroup dir and the cgroups below it, deepest first
// (a cgroup with children cannot be removed). A cgroup that still has
// processes stays; the first such failure is returned.
func Remove(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var first error
	for i := len(dirs) - 1; i >= 0; i-- {
		// rmdir, not os.Remove: a cgroup directory holds its interface
		// files, which only rmdir of the directory itself removes.
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
		}
	}
	return first
}

// Clean kills the processes in the cgroup named root in every hierarchy
// and removes its cgroups: what a test runs before it starts (to clear a
// killed earlier run's leftovers) and when it ends.
func Clean(root string) error {
	dirs, err := Dirs(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range dirs {
		if err := Kill(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := Remove(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
