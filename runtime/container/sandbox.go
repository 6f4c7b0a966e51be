package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/runtime/pause"
)

// SandboxConfig describes a pod sandbox to create.
type SandboxConfig struct {
	PodUID   string // cgroup directory name of the pod; required
	Hostname string // the pod's hostname (UTS namespace)
	// QOSClass is Guaranteed, Burstable or BestEffort (any case); it picks
	// the cgroup subtree.
	QOSClass string
	// ShareProcessNamespace gives the pod one PID namespace, with the pause
	// process as its PID 1 reaping orphans.
	ShareProcessNamespace bool
	// HostNetwork keeps the pod in the node's network and UTS namespaces
	// (spec.hostNetwork): its containers see the node's interfaces and
	// hostname, and Hostname is not applied.
	HostNetwork bool
	// Resources are pod-level limits on the pod cgroup (optional).
	Resources Resources
	// Labels are stored and returned as they are, e.g. pod name and
	// namespace, so the agent can map sandboxes back to pods after a
	// restart.
	Labels map[string]string
}

// Sandbox is a pod sandbox as the runtime knows it.
type Sandbox struct {
	ID     string
	PodUID string
	Labels map[string]string
	// Ready is true while the pause process runs.
	Ready bool
	// Pid is the pause process in the host PID namespace.
	Pid int
	// NetNS, IPCNS, UTSNS and PIDNS are /proc/<pid>/ns/* paths of the
	// pod's namespaces (PIDNS only with ShareProcessNamespace). They are
	// valid while Ready.
	NetNS, IPCNS, UTSNS, PIDNS string
	// PodCgroup is the absolute cgroup path of the pod.
	PodCgroup string
	CreatedAt time.Time
}

type sandboxState struct {
	ID          string            `json:"id"`
	PodUID      string            `json:"podUID"`
	Hostname    string            `json:"hostname"`
	SharePID    bool              `json:"sharePID"`
	HostNetwork bool              `json:"hostNetwork,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Pause       procRef           `json:"pause"`
	PodCgroup   string            `json:"podCgroup"`
	PauseCgroup string            `json:"pauseCgroup"`
	CreatedAt   time.Time         `json:"createdAt"`
}

func (s *sandboxState) nsPath(ns string) string {
	return "/proc/" + strconv.Itoa(s.Pause.Pid) + "/ns/" + ns
}

func (s *sandboxState) public() *Sandbox {
	out := &Sandbox{
		ID:        s.ID,
		PodUID:    s.PodUID,
		Labels:    s.Labels,
		Ready:     s.Pause.alive(),
		Pid:       s.Pause.Pid,
		NetNS:     s.nsPath("net"),
		IPCNS:     s.nsPath("ipc"),
		UTSNS:     s.nsPath("uts"),
		PodCgroup: s.PodCgroup,
		CreatedAt: s.CreatedAt,
	}
	if s.SharePID {
		out.PIDNS = s.nsPath("pid")
	}
	return out
}

// RunSandbox starts a pause process in new namespaces, inside the pod's
// cgroup, and records it. The returned NetNS is for the network code to
// wire up before app containers start.
func (r *Runtime) RunSandbox(ctx context.Context, cfg SandboxConfig) (*Sandbox, error) {
	if cfg.PodUID == "" || path.Base(cfg.PodUID) != cfg.PodUID || cfg.PodUID == ".." {
		return nil, fmt.Errorf("run sandbox: invalid pod UID %q", cfg.PodUID)
	}
	s := &sandboxState{
		ID:          newID(),
		PodUID:      cfg.PodUID,
		Hostname:    cfg.Hostname,
		SharePID:    cfg.ShareProcessNamespace,
		HostNetwork: cfg.HostNetwork,
		Labels:      cfg.Labels,
		PodCgroup:   r.podCgroup(cfg.QOSClass, cfg.PodUID),
		CreatedAt:   time.Now().UTC(),
	}
	s.PauseCgroup = path.Join(s.PodCgroup, s.ID)
	dir := r.sandboxDir(s.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run sandbox for pod %s: %w", cfg.PodUID, err)
	}
	ok := false
	defer func() {
		if !ok {
			if s.Pause.Pid > 0 {
				_ = s.Pause.signal(unix.SIGKILL)
			}
			_ = removeCgroup(s.PauseCgroup)
			_ = os.RemoveAll(dir)
		}
	}()

	v2 := isV2()
	if _, err := ensureCgroup(s.PodCgroup, cfg.Resources.cgroupResources(v2)); err != nil {
		return nil, fmt.Errorf("run sandbox for pod %s: %w", cfg.PodUID, err)
	}
	pauseCg, err := ensureCgroup(s.PauseCgroup, nil)
	if err != nil {
		return nil, fmt.Errorf("run sandbox for pod %s: %w", cfg.PodUID, err)
	}

	pid, err := r.startPause(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("run sandbox for pod %s: %w", cfg.PodUID, err)
	}
	if s.Pause, err = newProcRef(pid); err != nil {
		return nil, fmt.Errorf("run sandbox for pod %s: pause exited: %w", cfg.PodUID, err)
	}
	if err := pauseCg.Apply(pid); err != nil {
		return nil, fmt.Errorf("run sandbox for pod %s: move pause into cgroup: %w", cfg.PodUID, err)
	}
	// Persist before anyone can use it: an agent crash from here on must
	// find the sandbox to clean it up or adopt it.
	if err := writeJSON(path.Join(dir, "sandbox.json"), s); err != nil {
		return nil, fmt.Errorf("run sandbox for pod %s: record state: %w", cfg.PodUID, err)
	}
	ok = true
	r.mu.Lock()
	r.sandboxes[s.ID] = s
	r.mu.Unlock()
	return s.public(), nil
}

// startPause re-executes orch as the pause process in new namespaces (the
// node's network and UTS namespaces for a host-network pod) and waits
// until it has set the hostname.
func (r *Runtime) startPause(ctx context.Context, cfg SandboxConfig) (int, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer readyR.Close()
	args := []string{"orch", pause.Arg}
	flags := uintptr(unix.CLONE_NEWIPC)
	if !cfg.HostNetwork {
		// A host-network pod keeps the node's hostname too (its UTS
		// namespace), as in Kubernetes: setting it would rename the node.
		flags |= unix.CLONE_NEWNET | unix.CLONE_NEWUTS
		if cfg.Hostname != "" {
			args = append(args, "-hostname", cfg.Hostname)
		}
	}
	if cfg.ShareProcessNamespace {
		flags |= unix.CLONE_NEWPID
	}
	cmd := &exec.Cmd{
		Path:       r.cfg.Exe,
		Args:       args,
		Env:        []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GOMAXPROCS=1"},
		ExtraFiles: []*os.File{readyW},
		// A session of its own: the pause process outlives the agent and
		// gets no terminal signals meant for it.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Cloneflags: flags},
	}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return 0, fmt.Errorf("start pause: %w", err)
	}
	// Reap it if it exits while we are its parent.
	go func() { _ = cmd.Wait() }()

	msg, err := readReady(ctx, readyR, 10*time.Second)
	if err != nil || string(msg) != "ok" {
		_ = cmd.Process.Kill()
		if err == nil {
			err = errors.New(string(msg))
		}
		return 0, fmt.Errorf("start pause: %w", err)
	}
	return cmd.Process.Pid, nil
}

// readReady reads a helper's ready message until it closes its end.
func readReady(ctx context.Context, f *os.File, timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = f.SetReadDeadline(deadline)
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("wait for ready message: %w", err)
	}
	return b, nil
}

// Sandbox returns the sandbox with the given ID.
func (r *Runtime) Sandbox(id string) (*Sandbox, error) {
	r.mu.Lock()
	s, ok := r.sandboxes[id]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("sandbox %s: %w", id, ErrNotFound)
	}
	return s.public(), nil
}

// ListSandboxes returns every sandbox, ready or not.
func (r *Runtime) ListSandboxes() []*Sandbox {
	return r.listSandboxes(func(*sandboxState) bool { return true })
}

// PodSandboxes returns the sandboxes, ready or not, of the pod with the
// given SandboxConfig.PodUID, without looking at other pods' processes.
func (r *Runtime) PodSandboxes(podUID string) []*Sandbox {
	return r.listSandboxes(func(s *sandboxState) bool { return s.PodUID == podUID })
}

func (r *Runtime) listSandboxes(keep func(*sandboxState) bool) []*Sandbox {
	r.mu.Lock()
	var ss []*sandboxState
	for _, s := range r.sandboxes {
		if keep(s) {
			ss = append(ss, s)
		}
	}
	r.mu.Unlock()
	// public looks at the pause process in /proc: not under the lock.
	out := make([]*Sandbox, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.public())
	}
	return out
}

// StopSandbox kills the sandbox's containers and its pause process and
// waits for them. The pod's namespaces go away with the pause process
// unless the network code keeps a reference. Stopping twice is fine.
func (r *Runtime) StopSandbox(ctx context.Context, id string) error {
	r.mu.Lock()
	s, ok := r.sandboxes[id]
	var ctrs []string
	for _, c := range r.containers {
		if c.SandboxID == id {
			ctrs = append(ctrs, c.ID)
		}
	}
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("stop sandbox %s: %w", id, ErrNotFound)
	}
	for _, cid := range ctrs {
		if err := r.StopContainer(ctx, cid, 0); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("stop sandbox %s: %w", id, err)
		}
	}
	if err := s.Pause.signal(unix.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("stop sandbox %s: kill pause: %w", id, err)
	}
	if err := s.Pause.wait(ctx); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", id, err)
	}
	return nil
}

// RemoveSandbox stops the sandbox, removes its containers, cgroups and
// state. Removing an unknown sandbox returns ErrNotFound.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	if err := r.StopSandbox(ctx, id); err != nil {
		return err
	}
	r.mu.Lock()
	s := r.sandboxes[id]
	var ctrs []string
	podInUse := false
	for _, c := range r.containers {
		if c.SandboxID == id {
			ctrs = append(ctrs, c.ID)
		}
	}
	for _, o := range r.sandboxes {
		if o.ID != id && o.PodCgroup == s.PodCgroup {
			podInUse = true
		}
	}
	r.mu.Unlock()
	for _, cid := range ctrs {
		if err := r.RemoveContainer(ctx, cid); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("remove sandbox %s: %w", id, err)
		}
	}
	if err := removeCgroup(s.PauseCgroup); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	if !podInUse {
		if err := removeCgroup(s.PodCgroup); err != nil {
			return fmt.Errorf("remove sandbox %s: %w", id, err)
		}
	}
	if err := os.RemoveAll(r.sandboxDir(id)); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	r.mu.Lock()
	delete(r.sandboxes, id)
	r.mu.Unlock()
	return nil
}
