package installtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// orchBinary is the orch the release server hands out: $ORCH_BIN, or built
// once by TestMain.
var orchBinary []byte

// installScript and killallScript are the absolute paths of
// scripts/install.sh and scripts/orch-killall.sh.
var installScript, killallScript string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	abs, err := filepath.Abs("../install.sh")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	installScript = abs
	killallScript = filepath.Join(filepath.Dir(abs), "orch-killall.sh")
	bin := os.Getenv("ORCH_BIN")
	if bin == "" {
		dir, err := os.MkdirTemp("", "orch-installtest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "orch")
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "osusergo,netgo", "-o", bin, "../..")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build orch for the installer test: %v\n", err)
			return 1
		}
	}
	orchBinary, err = os.ReadFile(bin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "read orch binary: %v\n", err)
		return 1
	}
	return m.Run()
}

// releases is a fake release site: version → file name → content, served
// as BASE/download/VERSION/NAME and, for version "latest",
// BASE/latest/download/NAME (the GitHub releases layout).
type releases struct {
	mu       sync.Mutex
	files    map[string]map[string][]byte
	requests []string
}

func (r *releases) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req.URL.Path)
	parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/"), "/")
	var version, name string
	switch {
	case len(parts) == 3 && parts[0] == "latest" && parts[1] == "download":
		version, name = "latest", parts[2]
	case len(parts) == 3 && parts[0] == "download":
		version, name = parts[1], parts[2]
	default:
		http.NotFound(w, req)
		return
	}
	b, ok := r.files[version][name]
	if !ok {
		http.NotFound(w, req)
		return
	}
	_, _ = w.Write(b)
}

// publish makes bin the orch of version for arch, with a correct checksum
// file unless sum is given.
func (r *releases) publish(version, arch string, bin []byte, sum string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.files == nil {
		r.files = map[string]map[string][]byte{}
	}
	if r.files[version] == nil {
		r.files[version] = map[string][]byte{}
	}
	name := "orch-" + arch
	if sum == "" {
		sum = sha256Hex(bin)
	}
	r.files[version][name] = bin
	r.files[version]["sha256sum-"+arch+".txt"] = fmt.Appendf(nil, "%s  %s\n", sum, name)
}

func (r *releases) remove(version, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.files[version], name)
}

func (r *releases) takeRequests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.requests
	r.requests = nil
	return out
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func goarch(t *testing.T) string {
	t.Helper()
	switch runtime.GOARCH {
	case "amd64", "arm64":
		return runtime.GOARCH
	}
	t.Skipf("the installer publishes amd64 and arm64 only, this is %s", runtime.GOARCH)
	return ""
}

// env is a test installation: a root directory and a release site.
type env struct {
	t    *testing.T
	root string
	rel  *releases
	url  string
	// stubs is a directory put first on PATH, for fake commands.
	stubs string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	rel := &releases{}
	srv := httptest.NewServer(rel) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	stubs := t.TempDir()
	return &env{t: t, root: t.TempDir(), rel: rel, url: srv.URL, stubs: stubs}
}

// path is p inside the root.
func (e *env) path(p string) string {
	return filepath.Join(e.root, p)
}

// stub puts a fake command on the installer's PATH.
func (e *env) stub(name, script string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.stubs, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		e.t.Fatal(err)
	}
}

// run runs a script with a clean environment: only PATH and HOME from the
// test process (no ORCH_* leaking in), the root, the release site and the
// given variables. The host's kernel is not what these tests are about, so
// the checks are skipped unless the caller sets INSTALL_ORCH_SKIP_CHECKS.
func (e *env) run(script string, vars map[string]string, args ...string) (string, error) {
	e.t.Helper()
	environ := []string{
		"PATH=" + e.stubs + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + e.t.TempDir(),
		"TMPDIR=" + e.t.TempDir(),
		"INSTALL_ORCH_ROOT=" + e.root,
		"INSTALL_ORCH_BASE_URL=" + e.url,
		"INSTALL_ORCH_INIT=systemd",
		"INSTALL_ORCH_SKIP_START=true",
		"INSTALL_ORCH_SKIP_CHECKS=true",
	}
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	cmd := exec.Command("sh", append([]string{script}, args...)...)
	cmd.Env = environ
	cmd.Dir = e.t.TempDir()
	out, err := cmd.CombinedOutput()
	e.t.Logf("sh %s %s:\n%s", filepath.Base(script), strings.Join(args, " "), out)
	return string(out), err
}

func (e *env) install(vars map[string]string, args ...string) string {
	e.t.Helper()
	out, err := e.run(installScript, vars, args...)
	if err != nil {
		e.t.Fatalf("install.sh %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (e *env) uninstall(name string, args ...string) string {
	e.t.Helper()
	out, err := e.run(e.path("/usr/local/bin/"+name), nil, args...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func (e *env) read(p string) string {
	e.t.Helper()
	b, err := os.ReadFile(e.path(p))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// wantMode checks that p is a regular file with exactly this mode.
func (e *env) wantMode(p string, mode fs.FileMode) {
	e.t.Helper()
	fi, err := os.Stat(e.path(p))
	if err != nil {
		e.t.Fatalf("want %s installed: %v", p, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		e.t.Errorf("%s: mode %v, want regular file %v", p, fi.Mode(), mode)
	}
}

// files lists the regular files and symlinks under the root.
func (e *env) files() []string {
	e.t.Helper()
	var out []string
	err := filepath.WalkDir(e.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(e.root, p)
			out = append(out, "/"+rel)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func (e *env) wantFiles(want ...string) {
	e.t.Helper()
	sort.Strings(want)
	got := e.files()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Errorf("files under the root:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func wantNotContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("%s contains %q:\n%s", what, sub, s)
		}
	}
}

func TestServerSystemd(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")

	out := e.install(nil)
	wantContains(t, "output", out, "INSTALL_ORCH_ROOT is set: not enabling or starting orch")
	if got, want := e.rel.takeRequests(), []string{"/latest/download/sha256sum-" + arch + ".txt", "/latest/download/orch-" + arch}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("requests %v, want %v", got, want)
	}

	e.wantFiles(
		"/etc/systemd/system/orch.service",
		"/etc/systemd/system/orch.service.env",
		"/usr/local/bin/orch",
		"/usr/local/bin/orch-killall.sh",
		"/usr/local/bin/orch-uninstall.sh",
	)
	e.wantMode("/usr/local/bin/orch", 0o755)
	e.wantMode("/usr/local/bin/orch-uninstall.sh", 0o755)
	e.wantMode("/etc/systemd/system/orch.service", 0o644)
	e.wantMode("/etc/systemd/system/orch.service.env", 0o600)
	if got := e.read("/usr/local/bin/orch"); got != string(orchBinary) {
		t.Errorf("installed binary differs from the published one (%d bytes, want %d)", len(got), len(orchBinary))
	}

	unit := e.read("/etc/systemd/system/orch.service")
	wantContains(t, "orch.service", unit,
		"\n[Service]\n",
		"\nType=exec\n",
		"\nKillMode=process\n",
		"\nDelegate=yes\n",
		"\nRestart=always\n",
		"\nLimitNOFILE=1048576\n",
		"\nEnvironmentFile=-/etc/systemd/system/orch.service.env\n",
		"\nExecStart=/usr/local/bin/orch \\\n\tserver\n",
		"\nWantedBy=multi-user.target\n",
	)

	// The installed binary is the real orch and runs.
	if out, err := exec.Command(e.path("/usr/local/bin/orch"), "version").CombinedOutput(); err != nil {
		t.Errorf("installed orch version: %v\n%s", err, out)
	}
}

func TestExecFlagsAndServerToken(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")

	e.install(map[string]string{
		"INSTALL_ORCH_EXEC":         `--node-name 100%$HOME --debug`,
		"ORCH_TOKEN":                "s3cret",
		"ORCH_CLUSTER_CIDR":         "10.99.0.0/16",
		"INSTALL_ORCH_BIN_DIR":      "/opt/orch/bin",
		"UNRELATED_SETTING_IGNORED": "x",
	}, "server", `--write-kubeconfig-mode`, `0644`, `a\b`)

	unit := e.read("/etc/systemd/system/orch.service")
	// systemd expands %, $ and backslash escapes: they are doubled.
	wantContains(t, "orch.service", unit,
		"\nExecStart=/opt/orch/bin/orch \\\n\tserver \\\n\t'--node-name' \\\n\t'100%%$$HOME' \\\n\t'--debug' \\\n\t'--write-kubeconfig-mode' \\\n\t'0644' \\\n\t'a\\\\b'\n")
	wantNotContains(t, "orch.service", unit, "s3cret")

	envFile := e.read("/etc/systemd/system/orch.service.env")
	wantContains(t, "env file", envFile, "\nORCH_TOKEN='s3cret'\n", "\nORCH_CLUSTER_CIDR='10.99.0.0/16'\n")
	wantNotContains(t, "env file", envFile, "UNRELATED", "ORCH_JOIN")
	e.wantMode("/opt/orch/bin/orch", 0o755)
	e.wantMode("/opt/orch/bin/orch-uninstall.sh", 0o755)
	e.wantMode("/opt/orch/bin/orch-killall.sh", 0o755)
}

func TestAgent(t *testing.T) {
	t.Parallel()
	const url, token = "https://198.18.0.1:6443", "K10abc::server:0123"
	tests := []struct {
		name string
		vars map[string]string
		args []string
	}{
		{name: "environment", vars: map[string]string{"ORCH_URL": url, "ORCH_TOKEN": token}},
		{name: "ORCH_JOIN", vars: map[string]string{"ORCH_JOIN": url, "ORCH_TOKEN": token}},
		{name: "arguments", args: []string{"agent", "--join", url, "--token", token}},
		{name: "arguments with =", args: []string{"agent", "--join=" + url, "--token=" + token}},
		{name: "command in INSTALL_ORCH_EXEC", vars: map[string]string{"INSTALL_ORCH_EXEC": "agent", "ORCH_TOKEN": token}, args: []string{"--url", url}},
	}
	arch := goarch(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.rel.publish("latest", arch, orchBinary, "")
			e.install(tc.vars, tc.args...)

			e.wantFiles(
				"/etc/systemd/system/orch-agent.service",
				"/etc/systemd/system/orch-agent.service.env",
				"/usr/local/bin/orch",
				"/usr/local/bin/orch-killall.sh",
				"/usr/local/bin/orch-agent-uninstall.sh",
			)
			e.wantMode("/etc/systemd/system/orch-agent.service.env", 0o600)
			unit := e.read("/etc/systemd/system/orch-agent.service")
			wantContains(t, "orch-agent.service", unit,
				"\nExecStart=/usr/local/bin/orch \\\n\tagent\n",
				"\nKillMode=process\n",
				"\nEnvironmentFile=-/etc/systemd/system/orch-agent.service.env\n",
				"Description=orch agent (node of "+url+")")
			wantNotContains(t, "orch-agent.service", unit, token)
			envFile := e.read("/etc/systemd/system/orch-agent.service.env")
			wantContains(t, "env file", envFile, "\nORCH_JOIN='"+url+"'\n", "\nORCH_TOKEN='"+token+"'\n")
			// ORCH_URL is the installer's spelling; orch reads ORCH_JOIN.
			wantNotContains(t, "env file", envFile, "ORCH_URL")
		})
	}
}

func TestBadArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{name: "agent without URL", vars: map[string]string{"ORCH_TOKEN": "t"}, args: []string{"agent"}, want: "needs the server's URL"},
		{name: "agent without token", vars: map[string]string{"ORCH_URL": "https://198.18.0.1:6443"}, want: "needs the join token"},
		{name: "plain http", args: []string{"agent", "--join", "http://198.18.0.1:6443", "--token", "t"}, want: "must start with https://"},
		{name: "server with URL", args: []string{"server", "--join", "https://198.18.0.1:6443"}, want: "only for agents"},
		{name: "flag without value", args: []string{"agent", "--token"}, want: "--token needs a value"},
		{name: "conflicting commands", vars: map[string]string{"INSTALL_ORCH_EXEC": "server"}, args: []string{"agent"}, want: "INSTALL_ORCH_EXEC says server"},
		{name: "quote in flag", args: []string{"--node-name", "it's"}, want: "single quotes are not supported"},
		{name: "quote in setting", vars: map[string]string{"ORCH_NODE_NAME": "it's"}, want: "ORCH_NODE_NAME must not contain quotes"},
		{name: "unknown init", vars: map[string]string{"INSTALL_ORCH_INIT": "runit"}, want: "must be systemd, openrc or none"},
	}
	arch := goarch(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.rel.publish("latest", arch, orchBinary, "")
			out, err := e.run(installScript, tc.vars, tc.args...)
			if err == nil {
				t.Fatal("install.sh succeeded, want an error")
			}
			wantContains(t, "output", out, "[ERROR]", tc.want)
			// Found before any change.
			e.wantFiles()
		})
	}
}

func TestFailedDownloadKeepsOldInstall(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("v1.0.0", arch, orchBinary, "")
	e.install(map[string]string{"INSTALL_ORCH_VERSION": "v1.0.0"})
	before := e.files()

	newer := append(bytes.Clone(orchBinary), "v2"...)
	tests := []struct {
		name    string
		publish func()
		want    string
	}{
		{
			name:    "checksum mismatch",
			publish: func() { e.rel.publish("v2.0.0", arch, newer, sha256Hex(orchBinary)) },
			want:    "checksum mismatch for orch-" + arch + ": expected " + sha256Hex(orchBinary),
		},
		{
			name: "binary missing",
			publish: func() {
				e.rel.publish("v2.0.0", arch, newer, "")
				e.rel.remove("v2.0.0", "orch-"+arch)
			},
			want: "download of " + e.url + "/download/v2.0.0/orch-" + arch + " failed",
		},
		{
			name: "checksum file missing",
			publish: func() {
				e.rel.publish("v2.0.0", arch, newer, "")
				e.rel.remove("v2.0.0", "sha256sum-"+arch+".txt")
			},
			want: "download of " + e.url + "/download/v2.0.0/sha256sum-" + arch + ".txt failed",
		},
		{
			name: "checksum file without the binary",
			publish: func() {
				e.rel.publish("v2.0.0", arch, newer, "")
				e.rel.files["v2.0.0"]["sha256sum-"+arch+".txt"] = []byte(sha256Hex(newer) + "  orch-other\n")
			},
			want: "sha256sum-" + arch + ".txt has no line for orch-" + arch,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.publish()
			out, err := e.run(installScript, map[string]string{
				"INSTALL_ORCH_VERSION": "v2.0.0",
				"INSTALL_ORCH_EXEC":    "--debug",
			})
			if err == nil {
				t.Fatal("install.sh succeeded, want an error")
			}
			wantContains(t, "output", out, "[ERROR] "+tc.want)
			if got := e.read("/usr/local/bin/orch"); got != string(orchBinary) {
				t.Error("the old binary was replaced")
			}
			if after := e.files(); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("files changed: %v, before %v", after, before)
			}
			wantNotContains(t, "unit", e.read("/etc/systemd/system/orch.service"), "--debug")
		})
	}
}

func TestUpgradeInPlace(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	v2 := append(bytes.Clone(orchBinary), "v2"...)
	e.rel.publish("v1.0.0", arch, orchBinary, "")
	e.rel.publish("v2.0.0", arch, v2, "")

	e.install(map[string]string{"INSTALL_ORCH_VERSION": "v1.0.0"})
	unit1 := e.read("/etc/systemd/system/orch.service")
	uninstall1 := e.read("/usr/local/bin/orch-uninstall.sh")
	ino1 := inode(t, e.path("/usr/local/bin/orch"))

	// Same version again: nothing to replace.
	out := e.install(map[string]string{"INSTALL_ORCH_VERSION": "v1.0.0"})
	wantContains(t, "output", out, "already this version")
	if ino := inode(t, e.path("/usr/local/bin/orch")); ino != ino1 {
		t.Error("the binary was rewritten although it did not change")
	}

	e.install(map[string]string{"INSTALL_ORCH_VERSION": "v2.0.0"})
	if got := e.read("/usr/local/bin/orch"); got != string(v2) {
		t.Error("the binary was not upgraded to v2")
	}
	// Replaced by rename, so a running orch keeps its old file.
	if ino := inode(t, e.path("/usr/local/bin/orch")); ino == ino1 {
		t.Error("the binary was overwritten in place, want a new file renamed over it")
	}
	if got := e.read("/etc/systemd/system/orch.service"); got != unit1 {
		t.Errorf("unit changed on upgrade:\n%s\nwas:\n%s", got, unit1)
	}
	if got := e.read("/usr/local/bin/orch-uninstall.sh"); got != uninstall1 {
		t.Error("uninstaller changed on upgrade")
	}
	e.wantFiles(
		"/etc/systemd/system/orch.service",
		"/etc/systemd/system/orch.service.env",
		"/usr/local/bin/orch",
		"/usr/local/bin/orch-killall.sh",
		"/usr/local/bin/orch-uninstall.sh",
	)
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestArchitectures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		machine, arch, wantErr string
	}{
		{machine: "x86_64", arch: "amd64"},
		{machine: "aarch64", arch: "arm64"},
		{machine: "armv7l", wantErr: "no orch release for armv7l"},
		{machine: "riscv64", wantErr: "no orch release for riscv64"},
	}
	for _, tc := range tests {
		t.Run(tc.machine, func(t *testing.T) {
			e := newEnv(t)
			// A fake uname answers -m; the rest goes to the real one.
			e.stub("uname", fmt.Sprintf("if [ \"${1:-}\" = -m ]; then echo %s; exit; fi\nPATH=${PATH#*:} exec uname \"$@\"\n", tc.machine))
			bin := []byte("#!/bin/sh\necho orch for " + tc.machine + "\n")
			for _, a := range []string{"amd64", "arm64", "arm"} {
				e.rel.publish("latest", a, append(bytes.Clone(bin), a...), "")
			}
			out, err := e.run(installScript, nil)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatal("install.sh succeeded, want an error")
				}
				wantContains(t, "output", out, tc.wantErr)
				e.wantFiles()
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := e.read("/usr/local/bin/orch"), string(bin)+tc.arch; got != want {
				t.Errorf("installed %q, want %q", got, want)
			}
		})
	}
}

func TestSkipDownload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.url = "http://127.0.0.1:1" // nothing listens: a download would fail
	out, err := e.run(installScript, map[string]string{"INSTALL_ORCH_SKIP_DOWNLOAD": "true"})
	if err == nil {
		t.Fatal("install.sh succeeded without a binary")
	}
	wantContains(t, "output", out, "place the binary there first")
	e.wantFiles()

	if err := os.MkdirAll(e.path("/usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("/usr/local/bin/orch"), orchBinary, 0o755); err != nil {
		t.Fatal(err)
	}
	out = e.install(map[string]string{"INSTALL_ORCH_SKIP_DOWNLOAD": "true"})
	wantContains(t, "output", out, "using the existing /usr/local/bin/orch")
	e.wantFiles(
		"/etc/systemd/system/orch.service",
		"/etc/systemd/system/orch.service.env",
		"/usr/local/bin/orch",
		"/usr/local/bin/orch-killall.sh",
		"/usr/local/bin/orch-uninstall.sh",
	)
}

func TestOpenRC(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")
	e.install(map[string]string{"INSTALL_ORCH_INIT": "openrc", "INSTALL_ORCH_EXEC": `--node-name a$b`},
		"agent", "--join", "https://198.18.0.1:6443", "--token", "tok")

	e.wantFiles(
		"/etc/init.d/orch-agent",
		"/etc/orch/orch-agent.env",
		"/usr/local/bin/orch",
		"/usr/local/bin/orch-killall.sh",
		"/usr/local/bin/orch-agent-uninstall.sh",
	)
	e.wantMode("/etc/init.d/orch-agent", 0o755)
	e.wantMode("/etc/orch/orch-agent.env", 0o600)
	script := e.read("/etc/init.d/orch-agent")
	wantContains(t, "init script", script,
		"#!/sbin/openrc-run\n",
		"\nsupervisor=supervise-daemon\n",
		"\ncommand=\"/usr/local/bin/orch\"\n",
		"\ncommand_args=\"agent '--node-name' 'a\\$b'\"\n",
		`. "/etc/orch/orch-agent.env"`,
	)
	wantNotContains(t, "init script", script, "tok")

	// openrc-run sources the script and evals command_args: check with sh
	// that orch gets exactly its arguments and the env file's settings.
	check := `set -e; depend() { :; }; . "$1"` + "\n" +
		`eval "set -- $command_args"; printf '%s\n' "$@" "$ORCH_JOIN" "$ORCH_TOKEN"`
	script = strings.ReplaceAll(script, "/etc/orch/", e.path("/etc/orch")+"/")
	scriptPath := filepath.Join(t.TempDir(), "orch-agent")
	if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", check, "sh", scriptPath).CombinedOutput()
	if err != nil {
		t.Fatalf("source the init script: %v\n%s", err, out)
	}
	if got, want := string(out), "agent\n--node-name\na$b\nhttps://198.18.0.1:6443\ntok\n"; got != want {
		t.Errorf("orch would run with %q, want %q", got, want)
	}

	e.uninstall("orch-agent-uninstall.sh")
	e.wantFiles()
}

func TestUninstall(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")
	data := []string{"/var/lib/orch/server/db/state.db", "/etc/orch/orch.yaml"}

	install := func() {
		e.install(nil)
		for _, p := range data {
			if err := os.MkdirAll(filepath.Dir(e.path(p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(e.path(p), []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}

	install()
	mnt := mountUnderData(t, e)
	out := e.uninstall("orch-uninstall.sh")
	wantContains(t, "output", out, "orch (orch) is uninstalled")
	e.wantFiles(data...)
	if mnt != "" && mounted(t, mnt) {
		t.Errorf("%s is still mounted", mnt)
	}

	install()
	e.uninstall("orch-uninstall.sh", "--purge")
	e.wantFiles()
	for _, d := range []string{"/var/lib/orch", "/etc/orch"} {
		if _, err := os.Stat(e.path(d)); !os.IsNotExist(err) {
			t.Errorf("%s still exists after --purge (%v)", d, err)
		}
	}

	if _, err := e.run(installScript, nil); err != nil {
		t.Fatal(err)
	}
	if out, err := e.run(e.path("/usr/local/bin/orch-uninstall.sh"), nil, "--bogus"); err == nil {
		t.Errorf("uninstall accepted an unknown flag:\n%s", out)
	}
	e.wantMode("/usr/local/bin/orch", 0o755) // nothing removed
}

// mountUnderData mounts a tmpfs where a pod volume would be, when the test
// may mount (root), and returns its path.
func mountUnderData(t *testing.T, e *env) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: the uninstaller's unmounting is not tested")
		return ""
	}
	mnt := e.path("/var/lib/orch/agent/pods/uid-1/volumes/cache dir")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Logf("cannot mount tmpfs (%v): the uninstaller's unmounting is not tested", err)
		return ""
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return mnt
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	esc := strings.ReplaceAll(p, " ", `\040`)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == esc {
			return true
		}
	}
	return false
}

func TestServerAndAgentShareBinary(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")
	e.install(nil)
	e.install(nil, "agent", "--join", "https://198.18.0.1:6443", "--token", "t")
	e.uninstall("orch-agent-uninstall.sh", "--purge")
	e.wantFiles(
		"/etc/systemd/system/orch.service",
		"/etc/systemd/system/orch.service.env",
		"/usr/local/bin/orch",
		"/usr/local/bin/orch-killall.sh",
		"/usr/local/bin/orch-uninstall.sh",
	)
	e.uninstall("orch-uninstall.sh")
	e.wantFiles()
}

func TestShellcheck(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("shellcheck"); err != nil {
		if os.Geteuid() != 0 {
			t.Skip("shellcheck is not installed (apt-get install shellcheck; make deps does it)")
		}
		t.Fatal("shellcheck is not installed: run make deps (Debian package shellcheck)")
	}
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")
	e.install(nil)
	e.install(nil, "agent", "--join", "https://198.18.0.1:6443", "--token", "t")
	e.install(map[string]string{"INSTALL_ORCH_INIT": "openrc", "INSTALL_ORCH_BIN_DIR": "/openrc/bin"})
	for _, script := range []string{
		installScript,
		killallScript,
		e.path("/usr/local/bin/orch-killall.sh"),
		e.path("/usr/local/bin/orch-uninstall.sh"),
		e.path("/usr/local/bin/orch-agent-uninstall.sh"),
		e.path("/openrc/bin/orch-uninstall.sh"),
		e.path("/etc/init.d/orch"),
	} {
		out, err := exec.Command("shellcheck", "-s", "sh", script).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck -s sh %s: %v\n%s", script, err, out)
		}
	}
}

// nsWrapper runs "$@" in the caller's (private) mount namespace with /etc,
// /usr/local and /var as overlays whose upper directories, under $T, keep
// what the command wrote and deleted, and with empty /run (but for
// /run/systemd/system, so systemd is detected) and /sys/fs/cgroup. The host
// sees none of it. With POD set it also fakes a running pod: a process
// listed in /sys/fs/cgroup/orch/pod/cgroup.procs and a mount under
// /var/lib/orch, and reports afterwards whether they are gone.
const nsWrapper = `set -eu
T=$1
shift
for d in /etc /usr/local /var; do
	mount -t overlay overlay -o "lowerdir=$d,upperdir=$T/ov$d/upper,workdir=$T/ov$d/work" "$d"
done
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system
mount -t tmpfs tmpfs /sys/fs/cgroup
if [ -n "${NO_KERNEL_FEATURES:-}" ]; then
	# A kernel without memory cgroups, overlayfs, nf_tables and vxlan on a
	# Raspberry Pi (modprobe is a failing stub).
	printf 'nodev\tsysfs\nnodev\tproc\n' >"$T/filesystems"
	mount --bind "$T/filesystems" /proc/filesystems
	printf '#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t1\t1\nmemory\t0\t1\t0\n' >"$T/cgroups"
	mount --bind "$T/cgroups" /proc/cgroups
	mount -t tmpfs tmpfs /sys/module
	if [ -e /proc/config.gz ]; then mount --bind /dev/null /proc/config.gz; fi
	if [ -d /lib/modules ]; then mount -t tmpfs tmpfs /lib/modules; fi
	mkdir -p /boot
	mount -t tmpfs tmpfs /boot
	mkdir /boot/firmware
	echo 'console=serial0,115200 root=PARTUUID=1 rootwait' >/boot/firmware/cmdline.txt
fi
if [ -z "${POD:-}" ]; then
	exec "$@"
fi
mkdir -p /sys/fs/cgroup/orch/pod /var/lib/orch/agent/pods/uid/volumes/v
mount -t tmpfs tmpfs /var/lib/orch/agent/pods/uid/volumes/v
sleep 300 &
pid=$!
echo "$pid" >/sys/fs/cgroup/orch/pod/cgroup.procs
rc=0
"$@" || rc=$?
if [ ! -e "/proc/$pid" ] || [ "$(awk '{ print $3 }' "/proc/$pid/stat")" = Z ]; then
	echo "POD: killed"
else
	echo "POD: still running"
	kill "$pid"
fi
if grep -q ' /var/lib/orch/agent/pods/uid/volumes/v ' /proc/self/mounts; then
	echo "POD: still mounted"
else
	echo "POD: unmounted"
fi
exit "$rc"
`

// TestHostInstall installs and uninstalls for real, without
// INSTALL_ORCH_ROOT, in a private mount namespace whose /etc, /usr/local and
// /var are throw-away overlays: the installer detects systemd, runs the
// downloaded binary, enables and starts the service, and the uninstaller
// stops it, kills pods, unmounts and removes network state. systemctl, ip
// and nft are stubs that log their arguments, so the host's service manager,
// links and nftables are never touched.
func TestHostInstall(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e, ns := newNamespaceEnv(t)
	e.rel.publish("v1.0.0", arch, orchBinary, "")
	ns.run(map[string]string{"INSTALL_ORCH_VERSION": "v1.0.0", "ORCH_TOKEN": "tok"}, installScript)
	for _, p := range []string{"/usr/local/bin/orch", "/usr/local/bin/orch-killall.sh", "/usr/local/bin/orch-uninstall.sh", "/etc/systemd/system/orch.service", "/etc/systemd/system/orch.service.env"} {
		if _, err := os.Stat(ns.upper(p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if got, want := ns.takeCalls(), "systemctl daemon-reload\nsystemctl enable orch\nsystemctl restart orch\n"; got != want {
		t.Errorf("service manager calls:\n%s\nwant:\n%s", got, want)
	}

	out := ns.run(map[string]string{"POD": "1"}, "/usr/local/bin/orch-uninstall.sh", "--purge")
	wantContains(t, "uninstall output", out, "POD: killed", "POD: unmounted")
	got := ns.takeCalls()
	wantContains(t, "uninstall calls", got,
		"systemctl disable --now orch\n",
		"ip link delete orch0\n",
		"ip link delete orch.1\n",
		"nft delete table ip orch\n",
		"systemctl daemon-reload\n",
	)
	wantNotContains(t, "uninstall calls", got, "other.1")
	for _, p := range []string{"/usr/local/bin/orch", "/usr/local/bin/orch-killall.sh", "/usr/local/bin/orch-uninstall.sh", "/etc/systemd/system/orch.service", "/etc/systemd/system/orch.service.env"} {
		if _, err := os.Lstat(ns.upper(p)); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	// --purge deleted the data dir: the overlay records that as a
	// whiteout (a 0/0 character device) or an opaque empty directory.
	if fi, err := os.Lstat(ns.upper("/var/lib/orch")); err == nil && fi.IsDir() {
		if entries, _ := os.ReadDir(ns.upper("/var/lib/orch")); len(entries) != 0 {
			t.Errorf("/var/lib/orch not purged: %d entries left", len(entries))
		}
	}
}

func TestKernelChecks(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e, ns := newNamespaceEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")
	e.stub("modprobe", "exit 1\n")

	out, err := ns.runErr(map[string]string{"NO_KERNEL_FEATURES": "1", "INSTALL_ORCH_SKIP_CHECKS": ""}, installScript)
	if err == nil {
		t.Fatal("install.sh succeeded on a kernel without the features orch needs")
	}
	wantContains(t, "output", out,
		"[ERROR] this machine cannot run orch yet; fix these and run the installer again",
		"  - the memory cgroup controller is disabled: add 'cgroup_enable=memory cgroup_memory=1' to /boot/firmware/cmdline.txt and reboot\n",
		"  - overlayfs is missing",
		"  - nf_tables is missing",
		"[WARN]  vxlan is missing",
	)
	for _, d := range []string{"/etc", "/usr/local", "/var"} {
		if entries, _ := os.ReadDir(filepath.Join(ns.dir, "ov", d, "upper")); len(entries) != 0 {
			t.Errorf("the failed checks left changes in %s: %v", d, entries)
		}
	}
	if got := ns.takeCalls(); got != "" {
		t.Errorf("service manager called although the checks failed:\n%s", got)
	}

	out = ns.run(map[string]string{"NO_KERNEL_FEATURES": "1", "INSTALL_ORCH_SKIP_CHECKS": "true"}, installScript)
	wantContains(t, "output", out, "[WARN]  continuing despite failed checks", "starting orch")
}

// failingCheckConfig is an orch whose check-config finds a feature missing.
const failingCheckConfig = `#!/bin/sh
case $1 in
version) echo "orch v9.9.9" ;;
check-config)
	echo "Kernel:"
	echo "  MISSING  nf_tables (not found)"
	echo "           fix: modprobe nf_tables"
	echo "orch: check-config: required features are missing (see the MISSING lines above)" >&2
	exit 1
	;;
esac
`

// TestCheckConfigGatesInstall: the installer runs the downloaded binary's
// check-config before installing it; a MISSING line stops the install with
// the report and changes nothing, unless INSTALL_ORCH_SKIP_CHECKS is set.
func TestCheckConfigGatesInstall(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e, ns := newNamespaceEnv(t)
	e.rel.publish("latest", arch, []byte(failingCheckConfig), "")

	out, err := ns.runErr(map[string]string{"INSTALL_ORCH_SKIP_CHECKS": ""}, installScript)
	if err == nil {
		t.Fatal("install.sh succeeded although orch check-config failed")
	}
	if strings.Contains(out, "fix these and run the installer again") {
		t.Skip("this machine fails the installer's own shell checks first")
	}
	wantContains(t, "output", out,
		"[ERROR] this machine cannot run orch yet; fix the MISSING lines and run the installer again",
		"orch check-config says:\nKernel:\n  MISSING  nf_tables (not found)\n           fix: modprobe nf_tables\n",
	)
	for _, d := range []string{"/etc", "/usr/local", "/var"} {
		if entries, _ := os.ReadDir(filepath.Join(ns.dir, "ov", d, "upper")); len(entries) != 0 {
			t.Errorf("the failed check-config left changes in %s: %v", d, entries)
		}
	}
	if got := ns.takeCalls(); got != "" {
		t.Errorf("service manager called although check-config failed:\n%s", got)
	}

	out = ns.run(map[string]string{"INSTALL_ORCH_SKIP_CHECKS": "true"}, installScript)
	wantContains(t, "output", out,
		"[WARN]  continuing despite failed checks (INSTALL_ORCH_SKIP_CHECKS); orch check-config says:\nKernel:",
		"installed /usr/local/bin/orch")
	if got := ns.takeCalls(); !strings.Contains(got, "systemctl restart orch") {
		t.Errorf("service not started with INSTALL_ORCH_SKIP_CHECKS:\n%s", got)
	}
}

// namespace runs scripts in a private mount namespace (see nsWrapper) whose
// writes land in dir/ov/{etc,usr/local,var}/upper.
type namespace struct {
	t       *testing.T
	e       *env
	dir     string
	wrapper string
	calls   string
}

// newNamespaceEnv prepares a namespace whose systemctl, rc-service,
// rc-update, ip and nft are stubs logging to a file.
func newNamespaceEnv(t *testing.T) (*env, *namespace) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	e := newEnv(t)
	T := t.TempDir()
	for _, d := range []string{"/etc", "/usr/local", "/var"} {
		for _, sub := range []string{"upper", "work"} {
			if err := os.MkdirAll(filepath.Join(T, "ov", d, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	wrapper := filepath.Join(T, "ns.sh")
	if err := os.WriteFile(wrapper, []byte(nsWrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(T, "calls.log")
	logCall := `echo "$(basename "$0") $*" >>` + calls + "\n"
	e.stub("systemctl", logCall)
	e.stub("rc-service", logCall)
	e.stub("rc-update", logCall)
	e.stub("nft", logCall)
	e.stub("ip", logCall+`if [ "$*" = "-o link show type vxlan" ]; then
	echo "7: orch.1: <BROADCAST,MULTICAST,UP> mtu 1450 qdisc noqueue"
	echo "8: other.1@eth0: <BROADCAST,MULTICAST,UP> mtu 1450 qdisc noqueue"
fi
`)
	return e, &namespace{t: t, e: e, dir: T, wrapper: wrapper, calls: calls}
}

func (ns *namespace) takeCalls() string {
	b, _ := os.ReadFile(ns.calls)
	_ = os.Remove(ns.calls)
	return string(b)
}

// upper is where the overlay keeps p.
func (ns *namespace) upper(p string) string {
	for _, d := range []string{"/etc", "/usr/local", "/var"} {
		if rest, ok := strings.CutPrefix(p, d+"/"); ok {
			return filepath.Join(ns.dir, "ov", d, "upper", rest)
		}
	}
	ns.t.Fatalf("%s is outside the overlays", p)
	return ""
}

func (ns *namespace) run(vars map[string]string, script string, args ...string) string {
	ns.t.Helper()
	out, err := ns.runErr(vars, script, args...)
	if err != nil {
		ns.t.Fatalf("%s: %v", filepath.Base(script), err)
	}
	return out
}

// runErr runs sh script args in a new namespace, without INSTALL_ORCH_ROOT.
func (ns *namespace) runErr(vars map[string]string, script string, args ...string) (string, error) {
	ns.t.Helper()
	t, e, T, wrapper := ns.t, ns.e, ns.dir, ns.wrapper
	environ := []string{
		"PATH=" + e.stubs + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"TMPDIR=" + t.TempDir(),
		"INSTALL_ORCH_BASE_URL=" + e.url,
		"INSTALL_ORCH_SKIP_CHECKS=true",
	}
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", wrapper, T, "sh", script}, args...)...)
	cmd.Env = environ
	cmd.Dir = T
	out, err := cmd.CombinedOutput()
	t.Logf("%s %s:\n%s", filepath.Base(script), strings.Join(args, " "), out)
	return string(out), err
}

func TestReRunKeepsSettings(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")
	const envPath = "/etc/systemd/system/orch-agent.service.env"

	e.install(map[string]string{"ORCH_NODE_NAME": "pi-1", "ORCH_DEBUG": "true"},
		"agent", "--join", "https://198.18.0.1:6443", "--token", "tok")
	first := e.read(envPath)

	// The plain one-liner again, nothing set: still the same agent.
	out := e.install(nil)
	wantContains(t, "output", out, "upgrading the orch agent installed here")
	if got := e.read(envPath); got != first {
		t.Errorf("env file changed on a plain re-run:\n%s\nwas:\n%s", got, first)
	}
	e.wantFiles(
		"/etc/systemd/system/orch-agent.service",
		envPath,
		"/usr/local/bin/orch",
		"/usr/local/bin/orch-killall.sh",
		"/usr/local/bin/orch-agent-uninstall.sh",
	)

	// A setting given again replaces the old value; the others stay.
	e.install(map[string]string{"ORCH_NODE_NAME": "pi-2", "ORCH_TOKEN": "tok2"}, "agent")
	got := e.read(envPath)
	wantContains(t, "env file", got, "\nORCH_NODE_NAME='pi-2'\n", "\nORCH_DEBUG='true'\n", "\nORCH_TOKEN='tok2'\n", "\nORCH_JOIN='https://198.18.0.1:6443'\n")
	wantNotContains(t, "env file", got, "pi-1", "'tok'")
	if n := strings.Count(got, "ORCH_NODE_NAME="); n != 1 {
		t.Errorf("ORCH_NODE_NAME appears %d times:\n%s", n, got)
	}
}

// TestPipedAsNonRoot runs the installer the way users do, piped into sh,
// as an unprivileged user without INSTALL_ORCH_ROOT: it must stop at the
// root check.
func TestPipedAsNonRoot(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	script, err := os.ReadFile(installScript)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-s", "-", "server")
	cmd.Stdin = bytes.NewReader(script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "INSTALL_ORCH_BASE_URL=http://127.0.0.1:1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("install.sh succeeded as nobody:\n%s", out)
	}
	wantContains(t, "output", string(out), "[ERROR] run the installer as root")
}

// TestPiped checks that `curl ... | sh -s - agent ...` works: the script is
// read from standard input.
func TestPiped(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")
	script, err := os.ReadFile(installScript)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-s", "-", "agent", "--join", "https://198.18.0.1:6443", "--token", "tok")
	cmd.Stdin = bytes.NewReader(script)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"INSTALL_ORCH_ROOT=" + e.root,
		"INSTALL_ORCH_BASE_URL=" + e.url,
		"INSTALL_ORCH_INIT=none",
		"INSTALL_ORCH_SKIP_CHECKS=true",
	}
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
	// No init system: the env file goes to /etc/orch, no unit.
	e.wantFiles("/etc/orch/orch-agent.env", "/usr/local/bin/orch", "/usr/local/bin/orch-killall.sh", "/usr/local/bin/orch-agent-uninstall.sh")
	e.wantMode("/etc/orch/orch-agent.env", 0o600)
	e.uninstall("orch-agent-uninstall.sh")
	e.wantFiles()
}

// TestKillallInstalled checks that the installer installs
// scripts/orch-killall.sh byte for byte: install.sh, piped into sh, carries
// its own copy, which must not drift from the file reviewed and tested
// here.
func TestKillallInstalled(t *testing.T) {
	t.Parallel()
	arch := goarch(t)
	e := newEnv(t)
	e.rel.publish("latest", arch, orchBinary, "")
	e.install(nil)
	want, err := os.ReadFile(killallScript)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.read("/usr/local/bin/orch-killall.sh"); got != string(want) {
		t.Errorf("the installed orch-killall.sh differs from scripts/orch-killall.sh: copy the file into write_killall in install.sh")
	}
	e.wantMode("/usr/local/bin/orch-killall.sh", 0o755)
}
