package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Mount is a bind mount from the host into a container.
type Mount struct {
	Source      string // absolute host path
	Destination string // absolute path in the container
	ReadOnly    bool
}

// ContainerConfig describes an app container to start in a sandbox.
type ContainerConfig struct {
	SandboxID string
	Name      string
	// Labels are stored and returned as they are (pod UID, container name,
	// restart count...).
	Labels map[string]string

	// Lower are the image's unpacked layer directories, top-most first
	// (image.Store.LowerDirs). The container writes to its own upper dir.
	Lower []string
	// Args is the command line, entrypoint and command already merged;
	// Args[0] is looked up in PATH inside the container.
	Args       []string
	Env        []string // KEY=VALUE; PATH is added when missing
	WorkingDir string   // default "/"
	UID, GID   uint32
	// AdditionalGIDs are supplementary groups.
	AdditionalGIDs []uint32

	// HostsPath, ResolvConfPath and HostnamePath are host files bind
	// mounted at /etc/hosts, /etc/resolv.conf and /etc/hostname.
	HostsPath, ResolvConfPath, HostnamePath string
	Mounts                                  []Mount
	ReadOnlyRootfs                          bool
	CapAdd, CapDrop                         []string
	// Privileged gives every capability and device, a writable /sys and
	// an unmasked /proc (securityContext.privileged).
	Privileged bool
	Resources  Resources

	// LogPath is the CRI log file for stdout and stderr; required. Its
	// directory must exist.
	LogPath string
	// LogMaxSize and LogMaxFiles bound it (0: 10 MiB and 5 files).
	LogMaxSize  int64
	LogMaxFiles int

	// Stdin keeps the process's stdin open for Attach; StdinOnce closes
	// it after the first attached client's input ends; TTY runs the
	// process on a pseudo-terminal (the pod spec's stdin, stdinOnce, tty).
	Stdin, StdinOnce, TTY bool
}

// State is a container's lifecycle state.
type State string

// Container states.
const (
	StateRunning State = "running"
	StateExited  State = "exited"
)

// ContainerStatus is what the runtime knows about a container.
type ContainerStatus struct {
	ID        string
	Name      string
	SandboxID string
	Labels    map[string]string
	State     State
	// Pid of the container's first process in the host PID namespace.
	Pid        int
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time // zero while running
	// ExitCode is 128+signal for a signalled process, as Kubernetes shows.
	ExitCode  int
	OOMKilled bool
	// Reason is Kubernetes' terminated reason: Completed, Error,
	// OOMKilled, or Unknown when the exit status was lost.
	Reason  string
	Message string
	LogPath string
}

type containerState struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	SandboxID  string            `json:"sandboxID"`
	Labels     map[string]string `json:"labels,omitempty"`
	LogPath    string            `json:"logPath"`
	CgroupPath string            `json:"cgroupPath"`
	Shim       procRef           `json:"shim"`
	Init       procRef           `json:"init"`
	CreatedAt  time.Time         `json:"createdAt"`
	StartedAt  time.Time         `json:"startedAt"`
	// Process defaults for Exec.
	Env            []string `json:"env,omitempty"`
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGIDs []uint32 `json:"additionalGIDs,omitempty"`
	WorkingDir     string   `json:"workingDir"`
}

// exitStatus is written by the shim when the container's init exits.
type exitStatus struct {
	ExitCode   int       `json:"exitCode"`
	OOMKilled  bool      `json:"oomKilled"`
	FinishedAt time.Time `json:"finishedAt"`
	Message    string    `json:"message,omitempty"`
}

// StartContainer creates a container on an overlayfs root, joins it to
// the sandbox's namespaces and cgroup, and starts it under a shim. It
// returns once the container's process runs.
func (r *Runtime) StartContainer(ctx context.Context, cfg ContainerConfig) (ContainerStatus, error) {
	if len(cfg.Args) == 0 {
		return ContainerStatus{}, fmt.Errorf("start container %q: no command", cfg.Name)
	}
	if cfg.LogPath == "" {
		return ContainerStatus{}, fmt.Errorf("start container %q: no log path", cfg.Name)
	}
	r.mu.Lock()
	s, ok := r.sandboxes[cfg.SandboxID]
	r.mu.Unlock()
	if !ok {
		return ContainerStatus{}, fmt.Errorf("start container %q: sandbox %s: %w", cfg.Name, cfg.SandboxID, ErrNotFound)
	}
	if !s.Pause.alive() {
		return ContainerStatus{}, fmt.Errorf("start container %q: sandbox %s: %w", cfg.Name, s.ID, ErrNotRunning)
	}
	env := cfg.Env
	if !hasEnv(env, "PATH") {
		env = append([]string{defaultPath}, env...)
	}
	wd := cfg.WorkingDir
	if wd == "" {
		wd = "/"
	}
	c := &containerState{
		ID:             newID(),
		Name:           cfg.Name,
		SandboxID:      s.ID,
		Labels:         cfg.Labels,
		LogPath:        cfg.LogPath,
		CreatedAt:      time.Now().UTC(),
		Env:            env,
		UID:            cfg.UID,
		GID:            cfg.GID,
		AdditionalGIDs: cfg.AdditionalGIDs,
		WorkingDir:     wd,
	}
	c.CgroupPath = path.Join(s.PodCgroup, c.ID)
	dir := r.containerDir(c.ID)
	fail := func(err error) (ContainerStatus, error) {
		r.cleanupContainerDir(c.ID)
		return ContainerStatus{}, fmt.Errorf("start container %q: %w", cfg.Name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	rootfs, err := mountOverlay(dir, cfg.Lower)
	if err != nil {
		return fail(err)
	}
	lc, err := libcontainerConfig(s, &cfg, rootfs, c.CgroupPath)
	if err != nil {
		return fail(err)
	}
	spec := shimSpec{
		Root:        r.libcontainerRoot(),
		ID:          c.ID,
		Config:      lc,
		Args:        cfg.Args,
		Env:         env,
		Cwd:         wd,
		UID:         cfg.UID,
		GID:         cfg.GID,
		Groups:      cfg.AdditionalGIDs,
		LogPath:     cfg.LogPath,
		LogMaxSize:  cfg.LogMaxSize,
		LogMaxFiles: cfg.LogMaxFiles,
		ExitPath:    filepath.Join(dir, "exit.json"),
		Stdin:       cfg.Stdin,
		StdinOnce:   cfg.StdinOnce,
		TTY:         cfg.TTY,
	}
	if err := writeJSON(filepath.Join(dir, "shim.json"), &spec); err != nil {
		return fail(err)
	}
	// Recorded before the shim starts so that a crash right after leaves
	// a container that Open finds and RemoveContainer can clean up.
	if err := writeJSON(filepath.Join(dir, "container.json"), c); err != nil {
		return fail(err)
	}
	shim, initPid, err := r.startShim(ctx, dir)
	if err != nil {
		return fail(err)
	}
	c.Shim = shim
	c.StartedAt = time.Now().UTC()
	if c.Init, err = newProcRef(initPid); err != nil {
		// Exited already; the shim records how.
		c.Init = procRef{Pid: initPid}
	}
	if err := writeJSON(filepath.Join(dir, "container.json"), c); err != nil {
		_ = r.kill(c, unix.SIGKILL)
		return fail(err)
	}
	r.mu.Lock()
	r.containers[c.ID] = c
	r.mu.Unlock()
	return r.status(c), nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// mountOverlay mounts dir/rootfs from the image's layers and the
// container's own upper and work dirs.
func mountOverlay(dir string, lower []string) (string, error) {
	upper, work, rootfs := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs")
	for _, d := range []string{upper, work, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if len(lower) == 0 {
		empty := filepath.Join(dir, "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return "", err
		}
		lower = []string{empty}
	}
	for _, l := range lower {
		if strings.ContainsAny(l, ":,") {
			return "", fmt.Errorf("layer dir %q: overlayfs cannot take ':' or ','", l)
		}
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount overlayfs on %s: %w", rootfs, err)
	}
	return rootfs, nil
}

// startShim runs the shim binary (orch-helper or orch) as the container's
// shim and waits for it to report the container's pid.
func (r *Runtime) startShim(ctx context.Context, dir string) (procRef, int, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return procRef{}, 0, err
	}
	defer readyR.Close()
	logf, err := os.OpenFile(filepath.Join(dir, "shim.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		readyW.Close()
		return procRef{}, 0, err
	}
	defer logf.Close()
	cmd := &exec.Cmd{
		Path:       r.cfg.ShimExe,
		Args:       []string{"orch", shimArg, dir},
		Env:        []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GOMAXPROCS=2"},
		Stdout:     logf,
		Stderr:     logf,
		ExtraFiles: []*os.File{readyW},
		// Its own session: the shim outlives the agent.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return procRef{}, 0, fmt.Errorf("start shim: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	shim := procRef{Pid: cmd.Process.Pid}
	if st, err := procStartTime(shim.Pid); err == nil {
		shim.Start = st
	}
	msg, err := readReady(ctx, readyR, 30*time.Second)
	if err != nil {
		_ = cmd.Process.Kill()
		return procRef{}, 0, err
	}
	pid, err := parseShimReady(msg)
	if err != nil {
		return procRef{}, 0, err
	}
	return shim, pid, nil
}

// Container returns a container's status.
func (r *Runtime) Container(id string) (ContainerStatus, error) {
	c, err := r.get(id)
	if err != nil {
		return ContainerStatus{}, err
	}
	return r.status(c), nil
}

// ListContainers returns the status of every container.
func (r *Runtime) ListContainers() []ContainerStatus {
	return r.listContainers(func(*containerState) bool { return true })
}

// ListContainersWithLabel returns the status of the containers whose
// label key is value, e.g. one pod's. A container's status costs a look
// at its processes and exit record: a pod worker asking for its own
// containers should not pay that for every container on the node.
func (r *Runtime) ListContainersWithLabel(key, value string) []ContainerStatus {
	return r.listContainers(func(c *containerState) bool {
		v, ok := c.Labels[key]
		return ok && v == value
	})
}

func (r *Runtime) listContainers(keep func(*containerState) bool) []ContainerStatus {
	r.mu.Lock()
	var cs []*containerState
	for _, c := range r.containers {
		if keep(c) {
			cs = append(cs, c)
		}
	}
	r.mu.Unlock()
	out := make([]ContainerStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, r.status(c))
	}
	return out
}

func (r *Runtime) get(id string) (*containerState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
	}
	return c, nil
}

func (r *Runtime) status(c *containerState) ContainerStatus {
	st := ContainerStatus{
		ID:        c.ID,
		Name:      c.Name,
		SandboxID: c.SandboxID,
		Labels:    c.Labels,
		Pid:       c.Init.Pid,
		CreatedAt: c.CreatedAt,
		StartedAt: c.StartedAt,
		LogPath:   c.LogPath,
		State:     StateRunning,
	}
	exitPath := filepath.Join(r.containerDir(c.ID), "exit.json")
	var ex exitStatus
	err := readJSON(exitPath, &ex)
	if err != nil && (c.Shim.alive() || c.Init.alive()) {
		return st
	}
	if err != nil {
		// The shim may have finished between the two looks.
		err = readJSON(exitPath, &ex)
	}
	st.State = StateExited
	if err != nil {
		st.ExitCode = 255
		st.Reason = "Unknown"
		st.Message = "the container's exit status was lost (its shim died)"
		return st
	}
	st.ExitCode, st.OOMKilled, st.FinishedAt, st.Message = ex.ExitCode, ex.OOMKilled, ex.FinishedAt, ex.Message
	switch {
	case ex.OOMKilled:
		st.Reason = "OOMKilled"
	case ex.ExitCode == 0:
		st.Reason = "Completed"
	default:
		st.Reason = "Error"
	}
	return st
}

// Wait blocks until the container has exited (or ctx ends) and returns its
// final status. It works the same for containers adopted after a restart.
func (r *Runtime) Wait(ctx context.Context, id string) (ContainerStatus, error) {
	c, err := r.get(id)
	if err != nil {
		return ContainerStatus{}, err
	}
	if err := c.Shim.wait(ctx); err != nil {
		return ContainerStatus{}, fmt.Errorf("wait for container %s: %w", id, err)
	}
	// A shim that died abnormally may leave its container running.
	if err := c.Init.wait(ctx); err != nil {
		return ContainerStatus{}, fmt.Errorf("wait for container %s: %w", id, err)
	}
	return r.status(c), nil
}

// Kill sends sig to the container's first process; SIGKILL kills every
// process of the container, also in a shared PID namespace. It returns
// ErrNotRunning when the container has exited.
func (r *Runtime) Kill(id string, sig syscall.Signal) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if err := r.kill(c, unix.Signal(sig)); err != nil {
		return fmt.Errorf("kill container %s with %v: %w", id, sig, err)
	}
	return nil
}

func (r *Runtime) kill(c *containerState, sig unix.Signal) error {
	lc, err := libcontainer.Load(r.libcontainerRoot(), c.ID)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			return ErrNotRunning
		}
		return err
	}
	if err := lc.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return ErrNotRunning
		}
		return err
	}
	return nil
}

// StopContainer sends SIGTERM, waits up to grace, then kills the
// container and waits for it to exit. A grace of 0 kills at once.
// Stopping an exited container is a no-op.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if grace > 0 {
		if err := r.kill(c, unix.SIGTERM); err != nil {
			if errors.Is(err, ErrNotRunning) {
				return nil
			}
			return fmt.Errorf("stop container %s: %w", id, err)
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		_, err := r.Wait(gctx, id)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stop container %s: %w", id, ctx.Err())
		}
	}
	if err := r.kill(c, unix.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if _, err := r.Wait(ctx, id); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

// RemoveContainer deletes an exited container: its cgroup, rootfs and
// state. The log file stays (the agent keeps it for --previous). A running
// container gives ErrRunning.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	c, err := r.get(id)
	if err != nil {
		return err
	}
	if st := r.status(c); st.State == StateRunning {
		return fmt.Errorf("remove container %s: %w", id, ErrRunning)
	}
	if err := r.cleanupContainerDir(id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	r.mu.Lock()
	delete(r.containers, id)
	r.mu.Unlock()
	return nil
}

// cleanupContainerDir undoes everything StartContainer may have done for
// id, tolerating any part being missing.
func (r *Runtime) cleanupContainerDir(id string) error {
	var errs []error
	if lc, err := libcontainer.Load(r.libcontainerRoot(), id); err == nil {
		cfg := lc.Config()
		if err := lc.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroy libcontainer state: %w", err))
		}
		if cfg.Cgroups != nil && cfg.Cgroups.Path != "" {
			// Destroy leaves cgroups of a stopped container behind in some
			// versions; removing twice is harmless.
			if err := removeCgroup(cfg.Cgroups.Path); err != nil {
				errs = append(errs, err)
			}
		}
	}
	dir := r.containerDir(id)
	var c containerState
	if readJSON(filepath.Join(dir, "container.json"), &c) == nil && c.CgroupPath != "" {
		if err := removeCgroup(c.CgroupPath); err != nil {
			errs = append(errs, err)
		}
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount %s: %w", rootfs, err))
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
