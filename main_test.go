package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/orch-dev/orch/internal/config"
	"github.com/orch-dev/orch/internal/testimage"
	"github.com/orch-dev/orch/internal/version"
)

// TestMain lets tests run this test binary as `orch` itself, to check exit
// codes, stderr and signal handling of the real main.
func TestMain(m *testing.M) {
	if os.Getenv("ORCH_TEST_AS_MAIN") == "1" {
		os.Args = append([]string{"orch"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// orchCommand runs this test binary as `orch args...` with an empty config
// file, so the machine's /etc/orch/config.yaml cannot interfere.
func orchCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(cleanEnv(), "ORCH_TEST_AS_MAIN=1", "ORCH_CONFIG="+empty)
	return cmd
}

// cleanEnv is the environment without ORCH_* settings of the developer.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORCH_") {
			env = append(env, kv)
		}
	}
	return env
}

func runApp(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ORCH_") {
			t.Setenv(k, "")
		}
	}
	empty := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ORCH_CONFIG", empty)
	var out, errOut bytes.Buffer
	err = newApp(&out, &errOut).RunContext(context.Background(), append([]string{"orch"}, args...))
	return out.String(), errOut.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := runApp(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if out != version.Get().String() {
		t.Errorf("version printed %q, want %q", out, version.Get().String())
	}
	for _, want := range []string{"orch version ", "git commit: ", "go version: go1.", "kubernetes api: v1.33.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output %q lacks %q", out, want)
		}
	}
	if _, _, err := runApp(t, "version", "extra"); err == nil {
		t.Error("version with an argument succeeded")
	}
}

func TestCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "bad port", args: []string{"server", "--https-listen-port", "abc"},
			want: []string{`bad configuration: https-listen-port: "abc" is not a port number (from flag --https-listen-port)`}},
		{name: "several problems listed", args: []string{"server", "--https-listen-port", "0", "--data-dir", "rel"},
			want: []string{"bad configuration:\n  ", "\n  ", "https-listen-port:", "data-dir:"}},
		{name: "unknown flag", args: []string{"server", "--https-port", "1"},
			want: []string{"flag provided but not defined: -https-port (see `orch server --help`)"}},
		{name: "unknown command", args: []string{"serve"},
			want: []string{`unknown command "serve" (see ` + "`orch --help`)"}},
		{name: "unknown global flag", args: []string{"--verbose"},
			want: []string{"flag provided but not defined: -verbose (see `orch --help`)"}},
		{name: "agent without join", args: []string{"agent", "--token", "t"},
			want: []string{"join: required"}},
		{name: "missing --config", args: []string{"server", "--config", "/nonexistent/orch.yaml"},
			want: []string{"config: open /nonexistent/orch.yaml: no such file or directory (from flag --config)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runApp(t, tt.args...)
			if err == nil {
				t.Fatal("succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

// TestAgentJoinUnreachable: a join that cannot reach the server fails
// with the reason, after the start line.
func TestAgentJoinUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	_, stderr, err := runApp(t, "agent", "--join", url, "--token", "t", "--node-name", "n1", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "join "+url+": fetch the server's CA") {
		t.Fatalf("err = %v, want a failed join", err)
	}
	if !strings.Contains(stderr, "starting orch agent") || !strings.Contains(stderr, "server="+url) {
		t.Errorf("log %q lacks the start line", stderr)
	}
}

func TestHelpShowsEnvAndDefaults(t *testing.T) {
	out, _, err := runApp(t, "server", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range config.ServerOptions() {
		if !strings.Contains(out, "--"+o.Name) || !strings.Contains(out, "$"+o.EnvVar()) {
			t.Errorf("help lacks --%s or $%s:\n%s", o.Name, o.EnvVar(), out)
		}
	}
	if !strings.Contains(out, `(default: "6443")`) {
		t.Errorf("help lacks the port default:\n%s", out)
	}
}

// TestSourcesReportsOnlyGivenFlags guards precedence: a flag left at its
// default must not reach config, or it would hide env and file values.
func TestSourcesReportsOnlyGivenFlags(t *testing.T) {
	tests := []struct {
		args []string
		want map[string]string
	}{
		{args: nil, want: map[string]string{}},
		{args: []string{"--https-listen-port", "7443", "--debug"}, want: map[string]string{"https-listen-port": "7443", "debug": "true"}},
		{args: []string{"--disable-agent=false", "--data-dir=/srv"}, want: map[string]string{"disable-agent": "false", "data-dir": "/srv"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var got map[string]string
			app := &cli.App{Commands: []*cli.Command{{
				Name:  "server",
				Flags: flagsFor(config.ServerOptions()),
				Action: func(c *cli.Context) error {
					got = sources(c, config.ServerOptions()).Flags
					return nil
				},
			}}}
			if err := app.Run(append([]string{"orch", "server"}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("flags = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExitCodeAndStderr(t *testing.T) {
	cmd := orchCommand(t, "server", "--https-listen-port", "70000")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit = %v, want exit code 1", err)
	}
	want := "orch: bad configuration: https-listen-port: port 70000 is out of range 1-65535 (from flag --https-listen-port)\n"
	if stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

// TestServerStopsOnSIGTERM starts a real control plane on 127.0.0.1 and
// checks that SIGTERM stops it cleanly with exit code 0.
func TestServerStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	dir := t.TempDir()
	port := freePort(t)
	cmd := orchCommand(t, "server", "--disable-agent", "--data-dir", filepath.Join(dir, "data"),
		"--bind-address", "127.0.0.1", "--https-listen-port", fmt.Sprint(port),
		"--write-kubeconfig", filepath.Join(dir, "kubeconfig"), "--node-name", "sigterm-test")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("server exited before it was ready: %v\n%s", waitErr, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 30s\n%s", stderr.String())
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("server exited with %v after SIGTERM\n%s", waitErr, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("server still running 15s after SIGTERM\n%s", stderr.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestImagesCommands(t *testing.T) {
	if _, err := os.Stat(testimage.BusyboxPath); err != nil {
		t.Skip("busybox-static is not installed")
	}
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "busybox.tar")
	if err := testimage.WriteBusybox(tarPath, "busybox:1.36"); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := newApp(&out, &errOut).Run(append([]string{"orch", "images"}, args...))
		return out.String() + errOut.String(), err
	}
	data := "--data-dir=" + filepath.Join(dir, "data")
	if out, err := run("import", data, tarPath); err != nil || !strings.Contains(out, "imported docker.io/library/busybox:1.36") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if out, err := run("ls", data); err != nil || !strings.Contains(out, "docker.io/library/busybox:1.36") || !strings.Contains(out, "linux/") {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	if out, err := run("import", data, filepath.Join(dir, "missing.tar")); err == nil {
		t.Fatalf("importing a missing file succeeded:\n%s", out)
	}
	if out, err := run("rm", data, "busybox:1.36"); err != nil || !strings.Contains(out, "removed busybox:1.36") {
		t.Fatalf("rm: %v\n%s", err, out)
	}
	if out, _ := run("ls", data); strings.Contains(out, "busybox") {
		t.Fatalf("image still listed after rm:\n%s", out)
	}
	if _, err := run("ls", "--data-dir=relative/dir"); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("relative data dir: %v", err)
	}
}
