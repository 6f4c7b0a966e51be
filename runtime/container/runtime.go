// Package container runs pods on one machine with libcontainer: a pod
// sandbox is a pause process (orch re-executed) that owns the pod's
// network, IPC and UTS (and, when shared, PID) namespaces; app containers
// run on an overlayfs root and join those namespaces.
//
// Every container is started and supervised by its own small shim process
// (orch-helper, see helper.go, or orch re-executed, as "container-shim"):
// the shim is the container's parent, writes its stdout/stderr to a CRI
// log file and records its exit status on disk. Shims and pause processes
// run in their own sessions, so the agent may exit or crash without taking
// pods with it; Open reads the state directory back and the new Runtime
// carries on where the old one stopped.
//
// State directory layout (Config.StateDir):
//
//	libcontainer/<container-id>/   libcontainer's own state
//	sandboxes/<sandbox-id>/sandbox.json
//	containers/<container-id>/container.json   what was started
//	containers/<container-id>/shim.json        the shim's instructions
//	containers/<container-id>/exit.json        written by the shim at exit
//	containers/<container-id>/{upper,work,rootfs}  overlayfs
//	helper/orch-helper-<hash>                  the shim binary (helper.go)
//
// Cgroups are absolute: CgroupRoot/pods/<qos>/<pod-uid>/<id>, for the
// pause process and for each container. The package does not know about
// Kubernetes objects; the agent translates pod specs into the request
// types here.
package container

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// Errors callers can test for with errors.Is.
var (
	ErrNotFound   = errors.New("not found")
	ErrNotRunning = errors.New("not running")
	ErrRunning    = errors.New("still running")
)

// Config configures a Runtime.
type Config struct {
	// StateDir holds the runtime's state (e.g. DATA/agent/runtime). It must
	// be on a filesystem that supports overlayfs upper dirs.
	StateDir string
	// CgroupRoot is the absolute cgroup under which pods are placed;
	// default "/orch".
	CgroupRoot string
	// Exe is the orch binary to re-execute for pause processes (and shims
	// when there is no helper); default os.Executable(). It must handle
	// Reexec.
	Exe string
	// ShimExe is the binary started as each container's shim (which
	// libcontainer re-executes as the container's init); it must handle
	// Reexec. Default: the small runtime/helper built into orch by `make
	// build`, installed under StateDir/helper; Exe in builds without it.
	ShimExe string
	// Logger receives diagnostics; default slog.Default().
	Logger *slog.Logger
}

// Runtime runs sandboxes and containers. It is safe for concurrent use.
type Runtime struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	sandboxes  map[string]*sandboxState
	containers map[string]*containerState
}

// Open creates the state directory if needed and restores every sandbox
// and container recorded in it, running or not. Nothing is started or
// stopped: call it before acting on desired state.
func Open(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("container runtime: StateDir is required")
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/orch"
	}
	if !filepath.IsAbs(cfg.CgroupRoot) {
		// Relative cgroup paths would nest under the agent's own cgroup.
		return nil, fmt.Errorf("container runtime: CgroupRoot %q must be absolute", cfg.CgroupRoot)
	}
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("container runtime: find own executable: %w", err)
		}
		cfg.Exe = exe
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, d := range []string{"libcontainer", "sandboxes", "containers"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("container runtime: %w", err)
		}
	}
	if cfg.ShimExe == "" {
		cfg.ShimExe = cfg.Exe
		// A sibling of libcontainer/, never its parent (see installHelper).
		exe, err := installHelper(filepath.Join(cfg.StateDir, "helper"), helperGz)
		switch {
		case err != nil:
			cfg.Logger.Warn("container shims run the whole orch binary, slower to start", "err", err)
		case exe != "":
			cfg.ShimExe = exe
		}
	}
	r := &Runtime{
		cfg:        cfg,
		log:        cfg.Logger,
		sandboxes:  map[string]*sandboxState{},
		containers: map[string]*containerState{},
	}
	if err := r.restore(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Runtime) restore() error {
	ents, err := os.ReadDir(filepath.Join(r.cfg.StateDir, "sandboxes"))
	if err != nil {
		return fmt.Errorf("restore sandboxes: %w", err)
	}
	for _, e := range ents {
		var s sandboxState
		if err := readJSON(filepath.Join(r.sandboxDir(e.Name()), "sandbox.json"), &s); err != nil {
			// A sandbox whose record never got written did not start.
			r.log.Warn("dropping incomplete sandbox state", "id", e.Name(), "err", err)
			_ = os.RemoveAll(r.sandboxDir(e.Name()))
			continue
		}
		r.sandboxes[s.ID] = &s
	}
	ents, err = os.ReadDir(filepath.Join(r.cfg.StateDir, "containers"))
	if err != nil {
		return fmt.Errorf("restore containers: %w", err)
	}
	for _, e := range ents {
		var c containerState
		if err := readJSON(filepath.Join(r.containerDir(e.Name()), "container.json"), &c); err != nil {
			r.log.Warn("dropping incomplete container state", "id", e.Name(), "err", err)
			r.cleanupContainerDir(e.Name())
			continue
		}
		r.containers[c.ID] = &c
	}
	return nil
}

func (r *Runtime) libcontainerRoot() string { return filepath.Join(r.cfg.StateDir, "libcontainer") }
func (r *Runtime) sandboxDir(id string) string {
	return filepath.Join(r.cfg.StateDir, "sandboxes", id)
}
func (r *Runtime) containerDir(id string) string {
	return filepath.Join(r.cfg.StateDir, "containers", id)
}

// newID returns a random 32-hex-digit identifier, the form libcontainer
// and CRI tools expect.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// writeJSON writes v to path atomically (temp file, fsync, rename), so a
// crash leaves either the old or the new record.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
