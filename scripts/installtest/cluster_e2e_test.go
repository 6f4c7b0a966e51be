package installtest

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orch-dev/orch/internal/netnstest"
	"github.com/orch-dev/orch/internal/testimage"
)

// The two-node install e2e test's fixed places: a killed earlier run's
// leftovers are found and removed by name.
const (
	clusterE2EDir     = "/tmp/orch-install-e2e"
	serverCgroupRoot  = "/orch-install-e2e-server"
	agentCgroupRoot   = "/orch-install-e2e-agent"
	clusterE2EImage   = "busybox:install-e2e"
	clusterE2EServer  = "oi-server"
	clusterE2EAgent   = "oi-agent"
	clusterE2ESwitch  = "oi-switch"
	systemdDefaultEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

var (
	clusterE2EServerIP = netip.MustParsePrefix("198.18.30.1/24")
	clusterE2EAgentIP  = netip.MustParsePrefix("198.18.30.2/24")
)

// TestInstallTwoNodesE2E is issue 9's "done when", done as README.md tells
// a new user: the installer one-liner, piped from curl off a release site
// on 127.0.0.1, installs a server into one temporary root and, with
// ORCH_URL and ORCH_TOKEN, an agent into another; each service is started
// exactly as its installed systemd unit says, the server in one network
// namespace and the agent in another; `kubectl get nodes` shows both
// Ready; `orch snapshot save`, a change, `orch snapshot restore` undo the
// change; the server, installed with --kill-pods-on-stop, takes its pod
// down when it stops, the agent (default) does not; orch-killall.sh and
// the uninstallers leave no process, mount, interface, nftables table or
// file behind.
//
// The paths the services use must lie in the temporary roots: the test
// writes each root's /etc/orch/config.yaml first (data-dir,
// write-kubeconfig, cgroup-root, ...) and passes
// INSTALL_ORCH_EXEC="--config ROOT/etc/orch/config.yaml", as a user with
// an unusual layout could. Under INSTALL_ORCH_ROOT the uninstallers leave
// network interfaces and nftables alone (a staging root's are not this
// machine's), so orch-killall.sh, which the uninstallers run on a real
// machine, is run first inside each node's network namespace.
func TestInstallTwoNodesE2E(t *testing.T) {
	if os.Getenv("ORCH_BIN") == "" {
		t.Skip("ORCH_BIN is not set (make test sets it)")
	}
	netnstest.Skip(t, "nft", "nsenter", "kubectl", "curl")
	if _, err := os.Stat(testimage.BusyboxPath); err != nil {
		t.Skipf("needs %s (apt-get install -y busybox-static)", testimage.BusyboxPath)
	}
	// orch-killall.sh stops the orch services of the machine it runs on.
	for _, p := range []string{"/etc/systemd/system/orch.service", "/etc/systemd/system/orch-agent.service", "/etc/init.d/orch", "/etc/init.d/orch-agent"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("orch is installed on this machine (%s): orch-killall.sh, which this test runs, would stop it", p)
		}
	}
	arch := goarch(t)
	c := newCluster(t, arch)

	sw := netnstest.NewSwitch(t, clusterE2ESwitch)
	srvNS, agentNS := netnstest.New(t, clusterE2EServer), netnstest.New(t, clusterE2EAgent)
	sw.Attach(t, srvNS, "eth0", clusterE2EServerIP)
	sw.Attach(t, agentNS, "eth0", clusterE2EAgentIP)

	// The server: the one-liner, then the service as its unit says.
	srvRoot := c.root("server", clusterE2EServer, serverCgroupRoot,
		"write-kubeconfig: "+filepath.Join(clusterE2EDir, "server", "etc/orch/orch.yaml")+"\n")
	// The server's node stops its pods when the service stops: the flag
	// goes into the unit through INSTALL_ORCH_EXEC, as README says.
	out := c.oneLiner(srvRoot, nil, "--kill-pods-on-stop")
	wantContains(t, "server install", out, "wrote /etc/systemd/system/orch.service", "wrote /usr/local/bin/orch-killall.sh")
	srvUnit := parseUnit(t, srvRoot, "/etc/systemd/system/orch.service")
	srv := c.start(srvNS, srvRoot, srvUnit, "server.log")
	kubeconfig := filepath.Join(srvRoot, "etc/orch/orch.yaml")
	srv.waitFile(kubeconfig)
	kubectl := &kubectlRunner{c: c, ns: srvNS, kubeconfig: kubeconfig, home: filepath.Join(clusterE2EDir, "kube")}

	// The agent, with the join token the README points to.
	token := strings.TrimSpace(readFile(t, filepath.Join(srvRoot, "var/lib/orch/server/token")))
	agentRoot := c.root("agent", clusterE2EAgent, agentCgroupRoot, "")
	serverURL := "https://" + clusterE2EServerIP.Addr().String() + ":6443"
	out = c.oneLiner(agentRoot, []string{"ORCH_URL='" + serverURL + "'", "ORCH_TOKEN='" + token + "'"}, "")
	wantContains(t, "agent install", out, "wrote /etc/systemd/system/orch-agent.service", "this machine joins "+serverURL)
	agentUnit := parseUnit(t, agentRoot, "/etc/systemd/system/orch-agent.service")
	if agentUnit.env["ORCH_JOIN"] != serverURL || agentUnit.env["ORCH_TOKEN"] != token {
		t.Errorf("agent env file %s has ORCH_JOIN %q and a token %q, want %s and the server's", agentUnit.envFile, agentUnit.env["ORCH_JOIN"], agentUnit.env["ORCH_TOKEN"], serverURL)
	}
	agent := c.start(agentNS, agentRoot, agentUnit, "agent.log")
	kubectl.waitNodesReady(t, clusterE2EServer, clusterE2EAgent)

	// A pod on each node, for the stop and killall checks below.
	if out, err := kubectl.runIn(sleeperPod("sleeper", clusterE2EAgent)+"---\n"+sleeperPod("server-sleeper", clusterE2EServer), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	kubectl.waitRunning(t, "sleeper", "server-sleeper")

	// Snapshot, change, restore: the change is gone, the nodes are back.
	srv.stop()
	orchBin := filepath.Join(srvRoot, "usr/local/bin/orch")
	srvConf := filepath.Join(srvRoot, "etc/orch/config.yaml")
	out = c.run(exec.Command(orchBin, "snapshot", "save", "--config", srvConf))
	m := regexp.MustCompile(`saved (\S+) \(\d+ bytes\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("orch snapshot save printed no file:\n%s", out)
	}
	wantContains(t, "orch snapshot ls", c.run(exec.Command(orchBin, "snapshot", "ls", "--config", srvConf)), filepath.Base(m[1]))
	srv = c.start(srvNS, srvRoot, srvUnit, "server.log")
	kubectl.waitNodesReady(t, clusterE2EServer, clusterE2EAgent)
	if out, err := kubectl.run("create", "configmap", "after-snapshot", "--from-literal=k=v"); err != nil {
		t.Fatalf("kubectl create configmap: %v\n%s", err, out)
	}
	srv.stop()
	c.run(exec.Command(orchBin, "snapshot", "restore", "--config", srvConf, m[1]))
	srv = c.start(srvNS, srvRoot, srvUnit, "server.log")
	kubectl.waitNodesReady(t, clusterE2EServer, clusterE2EAgent)
	if out, err := kubectl.run("get", "configmap", "after-snapshot"); err == nil || !strings.Contains(out, `"after-snapshot" not found`) {
		t.Errorf("after the restore, kubectl get configmap after-snapshot: %v\n%s", err, out)
	}
	kubectl.waitRunning(t, "sleeper", "server-sleeper")

	// Stopping the agent leaves its pod running (no --kill-pods-on-stop);
	// orch-killall.sh then takes everything down.
	agent.stop()
	if pids := cgroupProcs(agentCgroupRoot); len(pids) == 0 {
		t.Error("stopping the agent stopped its pods; without --kill-pods-on-stop they keep running")
	}
	c.uninstall(agentNS, agentRoot, agentCgroupRoot, "orch-agent-uninstall.sh")

	// --kill-pods-on-stop: stopping the server stopped its node's pod and
	// removed its processes, veth, address and mounts.
	srv.stop()
	if pids := cgroupProcs(serverCgroupRoot); len(pids) != 0 {
		t.Errorf("processes %v left under %s after the server stopped with --kill-pods-on-stop", pids, serverCgroupRoot)
	}
	if out := srvNS.MustRun(t, "ip", "-o", "link", "show", "master", "orch0"); strings.TrimSpace(out) != "" {
		t.Errorf("veths left on orch0 after the server stopped with --kill-pods-on-stop:\n%s", out)
	}
	if addrs, _ := filepath.Glob(filepath.Join(srvRoot, "var/lib/orch/agent/podnet/ipam/*/10.*")); len(addrs) != 0 {
		t.Errorf("pod addresses still allocated after the server stopped with --kill-pods-on-stop: %v", addrs)
	}
	if m := mountsUnder(t, srvRoot); len(m) != 0 {
		t.Errorf("mounts left after the server stopped with --kill-pods-on-stop: %v", m)
	}
	c.uninstall(srvNS, srvRoot, serverCgroupRoot, "orch-uninstall.sh")
}

// sleeperPod is a pod named name that sleeps on node (with the service
// account token volume every pod gets).
func sleeperPod(name, node string) string {
	return `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
  namespace: default
spec:
  nodeName: ` + node + `
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ` + clusterE2EImage + `
    command: ["sleep", "3600"]
`
}

// cluster is the test's release site and directories.
type cluster struct {
	t    *testing.T
	site string // http://127.0.0.1:PORT, serving install.sh and releases
	// running are the services started and not yet stopped by the test.
	running map[*service]bool
}

// newCluster removes a killed earlier run's leftovers (again when the test
// ends) and serves install.sh and the orch release on 127.0.0.1.
func newCluster(t *testing.T, arch string) *cluster {
	t.Helper()
	cleanupCluster(t)
	t.Cleanup(func() { cleanupCluster(t) })
	if err := os.MkdirAll(clusterE2EDir, 0o700); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(installScript)
	if err != nil {
		t.Fatal(err)
	}
	rel := &releases{}
	rel.publish("latest", arch, orchBinary, "")
	mux := http.NewServeMux()
	mux.HandleFunc("/install.sh", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(script) })
	mux.Handle("/", rel)
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return &cluster{t: t, site: srv.URL, running: map[*service]bool{}}
}

// root makes the temporary root of one machine with its
// /etc/orch/config.yaml (every path the service uses lies inside the
// root, pods go under cgroupRoot) and the test image to import.
func (c *cluster) root(name, nodeName, cgroupRoot, extra string) string {
	c.t.Helper()
	root := filepath.Join(clusterE2EDir, name)
	conf := "data-dir: " + filepath.Join(root, "var/lib/orch") + "\n" +
		"private-registry: " + filepath.Join(root, "etc/orch/registries.yaml") + "\n" +
		"node-name: " + nodeName + "\n" +
		"cgroup-root: " + cgroupRoot + "\n" + extra
	if err := os.MkdirAll(filepath.Join(root, "etc/orch"), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/orch/config.yaml"), []byte(conf), 0o600); err != nil {
		c.t.Fatal(err)
	}
	// The pods' image, where README says an air-gapped node imports from.
	importDir := filepath.Join(root, "var/lib/orch/agent/images/import")
	if err := os.MkdirAll(importDir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	if err := testimage.WriteBusybox(filepath.Join(importDir, "busybox.tar"), clusterE2EImage); err != nil {
		c.t.Fatal(err)
	}
	return root
}

// oneLiner runs README's `curl -sfL URL/install.sh | VARS sh -` for root,
// with INSTALL_ORCH_EXEC naming root's config file and extraFlags.
func (c *cluster) oneLiner(root string, vars []string, extraFlags string) string {
	c.t.Helper()
	cmd := exec.Command("sh", "-c", `curl -sfL "$SITE/install.sh" | `+strings.Join(vars, " ")+` sh -`)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + c.t.TempDir(),
		"SITE=" + c.site,
		"INSTALL_ORCH_ROOT=" + root,
		"INSTALL_ORCH_BASE_URL=" + c.site,
		// The fake init: the test reads the systemd unit and runs it.
		"INSTALL_ORCH_INIT=systemd",
		"INSTALL_ORCH_EXEC=--config " + filepath.Join(root, "etc/orch/config.yaml") + " " + extraFlags,
	}
	return c.run(cmd)
}

// run runs cmd and returns its output; it fails the test if cmd fails.
func (c *cluster) run(cmd *exec.Cmd) string {
	c.t.Helper()
	out, err := cmd.CombinedOutput()
	c.t.Logf("%s:\n%s", strings.Join(cmd.Args, " "), out)
	if err != nil {
		c.t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	return string(out)
}

// unit is what the fake init takes from an installed systemd unit.
type unit struct {
	exec    []string          // ExecStart, unquoted
	envFile string            // EnvironmentFile
	env     map[string]string // its settings
}

// parseUnit reads the systemd unit at path in root: ExecStart (with its
// continuation lines, single-quoted words and systemd's doubled $, % and
// backslash) and the EnvironmentFile's KEY='VALUE' lines.
func parseUnit(t *testing.T, root, path string) unit {
	t.Helper()
	text := strings.ReplaceAll(readFile(t, filepath.Join(root, path)), "\\\n", " ")
	var u unit
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "ExecStart="):
			u.exec = splitUnitWords(t, strings.TrimPrefix(line, "ExecStart="))
		case strings.HasPrefix(line, "EnvironmentFile="):
			u.envFile = strings.TrimPrefix(strings.TrimPrefix(line, "EnvironmentFile="), "-")
		}
	}
	if len(u.exec) == 0 || u.envFile == "" {
		t.Fatalf("%s has no ExecStart or EnvironmentFile:\n%s", path, text)
	}
	u.env = map[string]string{}
	for _, line := range strings.Split(readFile(t, filepath.Join(root, u.envFile)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && !strings.HasPrefix(line, "#") {
			u.env[k] = strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'")
		}
	}
	return u
}

func splitUnitWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "'") {
			if !strings.HasSuffix(f, "'") || len(f) < 2 {
				t.Fatalf("unsupported quoting in ExecStart word %q", f)
			}
			f = f[1 : len(f)-1]
		}
		f = strings.NewReplacer("$$", "$", "%%", "%", `\\`, `\`).Replace(f)
		words = append(words, f)
	}
	return words
}

// service is an installed orch started by the fake init.
type service struct {
	t      *testing.T
	c      *cluster
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// start runs the unit's ExecStart in ns, its binary from root, with
// systemd's default PATH and the unit's EnvironmentFile settings; its
// output goes to clusterE2EDir/logName.
func (c *cluster) start(ns *netnstest.NS, root string, u unit, logName string) *service {
	c.t.Helper()
	cmd := ns.NetCommand(context.Background(), filepath.Join(root, u.exec[0]), u.exec[1:]...)
	cmd.Env = []string{systemdDefaultEnv}
	for k, v := range u.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logPath := filepath.Join(clusterE2EDir, logName)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	s := &service{t: c.t, c: c, cmd: cmd, log: logPath, exited: make(chan struct{})}
	c.running[s] = true
	go func() { _ = cmd.Wait(); logf.Close(); close(s.exited) }()
	c.t.Cleanup(func() {
		s.signal(syscall.SIGTERM, 30*time.Second)
		if c.t.Failed() {
			c.t.Logf("%s:\n%s", logName, lastLines(readFileOrEmpty(logPath), 60))
		}
	})
	return s
}

// signal sends sig and waits up to grace before killing the process; it
// reports whether the process exited in time.
func (s *service) signal(sig syscall.Signal, grace time.Duration) bool {
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
		return true
	case <-time.After(grace):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return false
	}
}

// stop ends the service as systemd's `systemctl stop` would (SIGTERM to
// the main process: KillMode=process).
func (s *service) stop() {
	s.t.Helper()
	delete(s.c.running, s)
	if !s.signal(syscall.SIGTERM, 60*time.Second) {
		s.t.Errorf("%s did not stop within 60s of SIGTERM", s.cmd.Args[0])
	}
}

// waitFile waits for the service to write path.
func (s *service) waitFile(path string) {
	s.t.Helper()
	waitUntil(s.t, 60*time.Second, path, func() bool {
		s.c.checkRunning()
		_, err := os.Stat(path)
		return err == nil
	})
}

// checkRunning fails the test at once, with the log, if a service the
// test did not stop has exited: waiting on would only time out.
func (c *cluster) checkRunning() {
	c.t.Helper()
	for s := range c.running {
		select {
		case <-s.exited:
			c.t.Fatalf("%s exited:\n%s", strings.Join(s.cmd.Args, " "), lastLines(readFileOrEmpty(s.log), 60))
		default:
		}
	}
}

// uninstall runs orch-killall.sh in the node's namespace and then the
// uninstaller with --purge, and checks that nothing of orch is left: no
// process in its cgroups, no mount under its root, no orch0, VXLAN device
// or nftables table in its namespace, no file in its root.
func (c *cluster) uninstall(ns *netnstest.NS, root, cgroupRoot, uninstaller string) {
	c.t.Helper()
	t := c.t
	// What killall must remove is there.
	if _, err := ns.Run("ip", "link", "show", "orch0"); err != nil {
		t.Errorf("no orch0 before orch-killall.sh: %v", err)
	}
	tables := ns.MustRun(t, "nft", "list", "tables")
	wantContains(t, "nft tables before orch-killall.sh", tables, "table ip orch\n", "table ip orch-podnet\n")
	// A running pod has its root file system mounted under the data dir.
	if len(cgroupProcs(cgroupRoot)) > 0 && len(mountsUnder(t, root)) == 0 {
		t.Errorf("pods run under %s but nothing is mounted under %s", cgroupRoot, root)
	}

	killall := ns.NetCommand(context.Background(), "sh", filepath.Join(root, "usr/local/bin/orch-killall.sh"))
	killall.Env = []string{"PATH=" + os.Getenv("PATH"), "ORCH_CONFIG=" + filepath.Join(root, "etc/orch/config.yaml")}
	wantContains(t, "orch-killall.sh", c.run(killall), "orch is stopped")

	if pids := cgroupProcs(cgroupRoot); len(pids) != 0 {
		t.Errorf("processes %v left under cgroup %s", pids, cgroupRoot)
	}
	if m := mountsUnder(t, root); len(m) != 0 {
		t.Errorf("mounts left under %s: %v", root, m)
	}
	if out, err := ns.Run("ip", "-o", "link", "show"); err != nil || strings.Contains(out, "orch0") || strings.Contains(out, "orch.1") {
		t.Errorf("links left in %s: %v\n%s", ns.Name, err, out)
	}
	if out := ns.MustRun(t, "nft", "list", "tables"); strings.Contains(out, "orch") {
		t.Errorf("nft tables left in %s:\n%s", ns.Name, out)
	}

	uninstall := ns.NetCommand(context.Background(), "sh", filepath.Join(root, "usr/local/bin", uninstaller), "--purge")
	uninstall.Env = []string{"PATH=" + os.Getenv("PATH")}
	wantContains(t, uninstaller, c.run(uninstall), "is uninstalled")
	var left []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("files left after %s --purge: %v", uninstaller, left)
	}
	for _, d := range []string{"var/lib/orch", "etc/orch"} {
		if _, err := os.Stat(filepath.Join(root, d)); !os.IsNotExist(err) {
			t.Errorf("/%s still exists in %s after --purge (%v)", d, root, err)
		}
	}
}

// kubectlRunner runs the real kubectl in the server's namespace, as the
// README says: KUBECONFIG set to the kubeconfig the server wrote.
type kubectlRunner struct {
	c          *cluster
	ns         *netnstest.NS
	kubeconfig string
	home       string // discovery cache of its own (FACTS: 6 h cache)
}

func (k *kubectlRunner) run(args ...string) (string, error) { return k.runIn("", args...) }

func (k *kubectlRunner) runIn(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := k.ns.NetCommand(ctx, "kubectl", args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + k.home, "KUBECONFIG=" + k.kubeconfig}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitNodesReady waits for `kubectl get nodes` to list exactly these
// nodes, each Ready.
func (k *kubectlRunner) waitNodesReady(t *testing.T, names ...string) {
	t.Helper()
	var last string
	waitUntil(t, 180*time.Second, "kubectl get nodes: "+strings.Join(names, ", ")+" Ready", func() bool {
		k.c.checkRunning()
		out, err := k.run("get", "nodes")
		last = out
		if err != nil {
			return false
		}
		status := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 1 {
				status[f[0]] = f[1]
			}
		}
		if len(status) != len(names) {
			return false
		}
		for _, n := range names {
			if status[n] != "Ready" {
				return false
			}
		}
		return true
	})
	t.Logf("kubectl get nodes:\n%s", last)
}

// waitRunning waits for `kubectl get pod` to show each pod Running.
func (k *kubectlRunner) waitRunning(t *testing.T, pods ...string) {
	t.Helper()
	for _, p := range pods {
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := k.run("describe", "pod", p)
				t.Logf("kubectl describe pod %s:\n%s", p, out)
			}
		})
		waitUntil(t, 120*time.Second, "pod "+p+" Running", func() bool {
			k.c.checkRunning()
			out, err := k.run("get", "pod", p, "-o", "jsonpath={.status.phase}")
			return err == nil && out == "Running"
		})
	}
}

// waitUntil polls ok until it is true, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

// cgroupProcs lists the processes in cgroupRoot and below, in every
// mounted hierarchy (cgroup v2 and each v1 controller).
func cgroupProcs(cgroupRoot string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range append([]string{"/sys/fs/cgroup"}, dirs...) {
		_ = filepath.WalkDir(filepath.Join(h, cgroupRoot), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "cgroup.procs" {
				pids = append(pids, strings.Fields(readFileOrEmpty(p))...)
			}
			return nil
		})
	}
	return pids
}

// mountsUnder lists the mount points at or below dir, deepest last.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		mp := strings.ReplaceAll(fields[1], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// cleanupCluster kills what a run (this one, or a killed earlier one)
// left in the test's cgroups, unmounts and removes its directory. It never
// touches anything outside them.
func cleanupCluster(t *testing.T) {
	for _, root := range []string{serverCgroupRoot, agentCgroupRoot} {
		for range 50 {
			pids := cgroupProcs(root)
			if len(pids) == 0 {
				break
			}
			for _, p := range pids {
				var pid int
				if _, err := fmt.Sscan(p, &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*")
		for _, h := range append([]string{"/sys/fs/cgroup"}, dirs...) {
			removeDirs(filepath.Join(h, root))
		}
	}
	m := mountsUnder(t, clusterE2EDir)
	for i := len(m) - 1; i >= 0; i-- {
		_ = syscall.Unmount(m[i], syscall.MNT_DETACH)
	}
	if err := os.RemoveAll(clusterE2EDir); err != nil {
		t.Logf("remove %s: %v", clusterE2EDir, err)
	}
}

// removeDirs removes the (empty) directories under dir, deepest first: a
// cgroup directory can be removed only once it has no children.
func removeDirs(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readFileOrEmpty(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
