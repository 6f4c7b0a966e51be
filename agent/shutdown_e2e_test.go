package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/orch-dev/orch/internal/cgrouptree"
	"github.com/orch-dev/orch/runtime/container"
)

const (
	killPodsE2EDir        = "/tmp/orch-killpods-e2e"
	killPodsE2ECgroupRoot = "/orch-killpods-e2e"
)

// TestKillPodsOnStopE2E stops an agent run with KillPodsOnStop (the real
// server, this package's agent in-process, real containers) and checks
// that its pod was stopped gracefully (the container's SIGTERM trap ran,
// within its grace period) and removed: no process, cgroup, mount, pod
// directory or runtime record is left, while the pod stays in the API for
// the next agent. TestAgentE2E covers the default, where pods survive.
func TestKillPodsOnStopE2E(t *testing.T) {
	bin := e2eBinary(t)
	freshE2EDir(t, killPodsE2EDir, killPodsE2ECgroupRoot)
	restCfg := startKillPodsServer(t, bin)
	cs := kubernetes.NewForConfigOrDie(restCfg)
	httpClient, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(killPodsE2EDir, "node")
	importBusybox(t, dataDir)
	outDir := filepath.Join(killPodsE2EDir, "out")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}

	run := startAgent(t, Config{
		ServerURL:      restCfg.Host,
		NodeName:       e2eNode,
		DataDir:        dataDir,
		HTTPClient:     httpClient,
		NodeIP:         "127.0.0.1",
		CgroupRoot:     killPodsE2ECgroupRoot,
		KillPodsOnStop: true,
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})

	// The trap answers SIGTERM after a second: inside the grace period of
	// 20 s, so it is not SIGKILLed first.
	pod := newPod("graceful", v1.Container{
		Name:         "c",
		Command:      []string{"sh", "-c", `trap 'sleep 1; echo graceful > /out/term; exit 0' TERM; echo started > /out/started; while true; do sleep 0.2; done`},
		VolumeMounts: []v1.VolumeMount{{Name: "out", MountPath: "/out"}},
	})
	pod.Spec.TerminationGracePeriodSeconds = new(int64)
	*pod.Spec.TerminationGracePeriodSeconds = 20
	pod.Spec.Volumes = []v1.Volume{{Name: "out", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: outDir}}}}
	createPod(t, cs, pod)
	running := waitPod(t, cs, "graceful", 60*time.Second, "Running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	waitFor(t, 30*time.Second, "the container's start marker", func() (bool, error) {
		_, err := os.Stat(filepath.Join(outDir, "started"))
		return err == nil, nil
	})
	a := run.current()
	var pids []int
	for _, s := range a.rt.ListSandboxes() {
		pids = append(pids, s.Pid)
	}
	for _, c := range a.rt.ListContainers() {
		if c.State == container.StateRunning {
			pids = append(pids, c.Pid)
		}
	}
	if len(pids) < 2 {
		t.Fatalf("want a pause and a container process, runtime has %v", pids)
	}

	run.stop()

	if b, err := os.ReadFile(filepath.Join(outDir, "term")); err != nil || strings.TrimSpace(string(b)) != "graceful" {
		t.Errorf("the container's SIGTERM trap did not finish (%v, %q): not stopped gracefully", err, b)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pod process %d still exists after the agent stopped (kill -0: %v)", pid, err)
		}
	}
	if n := len(a.rt.ListSandboxes()) + len(a.rt.ListContainers()); n != 0 {
		t.Errorf("the runtime still has %d sandboxes and containers", n)
	}
	for _, cg := range cgroupDirs(t, killPodsE2ECgroupRoot) {
		if pids := cgrouptree.PIDs(cg); len(pids) != 0 {
			t.Errorf("processes %v left in %s", pids, cg)
		}
		_ = filepath.WalkDir(cg, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.Contains(d.Name(), string(running.UID)) {
				t.Errorf("pod cgroup %s left behind", p)
			}
			return nil
		})
	}
	if mounts, err := mountsUnder(dataDir); err != nil || len(mounts) != 0 {
		t.Errorf("mounts left under the data dir: %v %v", mounts, err)
	}
	if _, err := os.Stat(a.podDir(running.UID)); !os.IsNotExist(err) {
		t.Errorf("pod directory %s left behind (%v)", a.podDir(running.UID), err)
	}
	// Stopping a node is not deleting its pods.
	if _, err := cs.CoreV1().Pods("default").Get(context.Background(), "graceful", metav1.GetOptions{}); err != nil {
		t.Errorf("the pod is gone from the API: %v", err)
	}
}

// startKillPodsServer runs `orch server --disable-agent` on a free
// 127.0.0.1 port with its files in killPodsE2EDir.
func startKillPodsServer(t *testing.T, bin string) *rest.Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	kubeconfig := filepath.Join(killPodsE2EDir, "kubeconfig.yaml")
	// An empty config file: none of this machine's /etc/orch may leak in.
	conf := filepath.Join(killPodsE2EDir, "config.yaml")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startE2EProcess(t, exec.Command(bin, "server", "--config", conf, "--disable-agent",
		"--data-dir", filepath.Join(killPodsE2EDir, "server"),
		"--bind-address", "127.0.0.1", "--https-listen-port", strconv.Itoa(port),
		"--write-kubeconfig", kubeconfig, "--node-name", e2eNode,
	), filepath.Join(killPodsE2EDir, "server.log"))
	srv.waitFile(t, kubeconfig)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
