package measure

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Server is an `orch server` process a benchmark started on 127.0.0.1.
type Server struct {
	cmd        *exec.Cmd
	Base       string        // https://127.0.0.1:PORT
	Kubeconfig string        // admin kubeconfig the server wrote
	Ready      time.Duration // from start to /readyz answering 200
}

// StartServer runs `orch server` with its data under dir, listening on a
// free port of 127.0.0.1, with no config file, plus extra flags; it
// returns once /readyz answers and the kubeconfig is written.
func StartServer(orch, dir string, extra ...string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	none := filepath.Join(dir, "none.yaml")
	if err := os.WriteFile(none, nil, 0o600); err != nil {
		return nil, err
	}
	s := &Server{Base: fmt.Sprintf("https://127.0.0.1:%d", port), Kubeconfig: filepath.Join(dir, "kubeconfig")}
	args := append([]string{"server", "--data-dir", filepath.Join(dir, "data"),
		"--bind-address", "127.0.0.1", "--https-listen-port", fmt.Sprint(port),
		"--write-kubeconfig", s.Kubeconfig, "--config", none}, extra...)
	s.cmd = exec.Command(orch, args...)
	s.cmd.Stderr = io.Discard
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", orch, err)
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: time.Second}
	for {
		resp, err := insecure.Get(s.Base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 30*time.Second {
			s.Stop()
			return nil, errors.New("server not ready after 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	s.Ready = time.Since(start)
	// The kubeconfig is written right after readiness.
	for i := 0; ; i++ {
		if _, err := os.Stat(s.Kubeconfig); err == nil {
			break
		}
		if i > 500 {
			s.Stop()
			return nil, fmt.Errorf("no kubeconfig at %s", s.Kubeconfig)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, nil
}

// Pid is the server's process ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to 10 s, then kills.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
