package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"

	"github.com/orch-dev/orch/runtime/logs"
)

// shimSpec is everything the shim needs, written by StartContainer to
// containers/<id>/shim.json.
type shimSpec struct {
	Root        string          `json:"root"` // libcontainer state root
	ID          string          `json:"id"`
	Config      *configs.Config `json:"config"`
	Args        []string        `json:"args"`
	Env         []string        `json:"env"`
	Cwd         string          `json:"cwd"`
	UID         uint32          `json:"uid"`
	GID         uint32          `json:"gid"`
	Groups      []uint32        `json:"groups,omitempty"`
	LogPath     string          `json:"logPath"`
	LogMaxSize  int64           `json:"logMaxSize,omitempty"`
	LogMaxFiles int             `json:"logMaxFiles,omitempty"`
	ExitPath    string          `json:"exitPath"`
	Stdin       bool            `json:"stdin,omitempty"`
	StdinOnce   bool            `json:"stdinOnce,omitempty"`
	TTY         bool            `json:"tty,omitempty"`
}

// shimReady is the shim's one message on its ready pipe.
type shimReady struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

func parseShimReady(b []byte) (int, error) {
	var m shimReady
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("shim: bad ready message %q: %w", b, err)
	}
	if m.Error != "" {
		return 0, errors.New(m.Error)
	}
	if m.Pid <= 0 {
		return 0, fmt.Errorf("shim: no pid in ready message")
	}
	return m.Pid, nil
}

// shimMain supervises one container: it creates and starts it with
// libcontainer (so it is the container's parent), copies its output to the
// CRI log, and writes exit.json when it exits. args: the container dir.
func shimMain(args []string) {
	ready := os.NewFile(3, "ready")
	say := func(m shimReady) {
		b, _ := json.Marshal(m)
		_, _ = ready.Write(b)
		_ = ready.Close()
	}
	if len(args) != 1 {
		say(shimReady{Error: "shim: want one argument, the container directory"})
		os.Exit(2)
	}
	var spec shimSpec
	if err := readJSON(args[0]+"/shim.json", &spec); err != nil {
		say(shimReady{Error: "shim: " + err.Error()})
		os.Exit(1)
	}
	code := runShim(&spec, func(pid int, err error) {
		if err != nil {
			say(shimReady{Error: err.Error()})
			return
		}
		say(shimReady{Pid: pid})
	})
	os.Exit(code)
}

func runShim(spec *shimSpec, started func(int, error)) int {
	logFile, err := logs.Open(spec.LogPath, logs.Options{MaxSize: spec.LogMaxSize, MaxFiles: spec.LogMaxFiles})
	if err != nil {
		started(0, err)
		return 1
	}
	defer logFile.Close()

	c, err := libcontainer.Create(spec.Root, spec.ID, spec.Config)
	if err != nil {
		started(0, fmt.Errorf("create container: %w", err))
		return 1
	}
	groups := make([]int, len(spec.Groups))
	for i, g := range spec.Groups {
		groups[i] = int(g)
	}
	p := &libcontainer.Process{
		Args:             spec.Args,
		Env:              spec.Env,
		Cwd:              spec.Cwd,
		UID:              int(spec.UID),
		GID:              int(spec.GID),
		AdditionalGroups: groups,
		Init:             true,
	}
	stdio, err := newShimStdio(spec, p)
	if err != nil {
		started(0, err)
		return 1
	}
	err = c.Run(p)
	// The container holds its ends now; ours would keep the log copiers
	// from ever seeing EOF. A TTY's master arrives once it runs.
	if serr := stdio.afterStart(err == nil); err == nil {
		err = serr
	}
	if err != nil {
		_ = c.Destroy()
		started(0, fmt.Errorf("start container: %w", err))
		return 1
	}
	pid, err := p.Pid()
	if err != nil {
		started(0, err)
		return 1
	}
	started(pid, nil)
	att := stdio.serveAttach(filepath.Dir(spec.ExitPath))

	var wg sync.WaitGroup
	for stream, r := range stdio.outputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := logFile.Copy(stream, att.tee(stream, r)); err != nil && !stdio.endOfTerminal(err) {
				fmt.Fprintf(os.Stderr, "shim %s: copy %s: %v\n", spec.ID, stream, err)
			}
		}()
	}

	ps, werr := p.Wait()
	ex := exitStatus{FinishedAt: time.Now().UTC()}
	switch {
	case ps != nil:
		ws := ps.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			ex.ExitCode = 128 + int(ws.Signal())
		} else {
			ex.ExitCode = ws.ExitStatus()
		}
	case werr != nil:
		ex.ExitCode = 255
		ex.Message = werr.Error()
	}
	ex.OOMKilled = oomKilled(spec.Config.Cgroups.Path)

	// Output of processes that outlive init (in a shared PID namespace)
	// is not waited for forever.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		stdio.closeOutputs()
	}
	att.close()
	if err := writeJSON(spec.ExitPath, &ex); err != nil {
		fmt.Fprintf(os.Stderr, "shim %s: record exit: %v\n", spec.ID, err)
		return 1
	}
	return 0
}
