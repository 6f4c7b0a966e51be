package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/orch-dev/orch/runtime/container"
)

// staticE2E is the static pod part of TestAgentE2E: a manifest in the
// node's pod-manifests directory, its mirror pod and its container.
type staticE2E struct {
	t       *testing.T
	cs      kubernetes.Interface
	agent   *agentRun
	dir     string // DATA/agent/pod-manifests
	mirror  string // the mirror pod's name
	uid     types.UID
	running string // the container's ID
}

const staticE2EManifest = `apiVersion: v1
kind: Pod
metadata:
  name: static
  labels: {tier: node}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: ` + e2eImage + `
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 0.2; done']
    readinessProbe:
      exec: {command: ["true"]}
      periodSeconds: 1
`

// startStaticPod writes the manifest (and a broken one next to it) and
// waits for the pod to run and its mirror to show it Ready, in kubectl too.
func startStaticPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, agent *agentRun, dataDir string) *staticE2E {
	t.Helper()
	s := &staticE2E{t: t, cs: cs, agent: agent, dir: filepath.Join(dataDir, "agent", "pod-manifests"), mirror: "static-" + e2eNode}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"static.yaml": staticE2EManifest, "broken.yaml": "apiVersion: v1\nkind: Pod\nspec: {containers: 3}\n"} {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := waitPod(t, cs, s.mirror, 60*time.Second, "static pod's mirror Running and Ready", func(p *v1.Pod) bool {
		return isMirrorPod(p) && p.Status.Phase == v1.PodRunning && podReady(p)
	})
	s.uid = types.UID(m.Annotations[annotationConfigHash])
	own := m.OwnerReferences
	if m.Annotations[annotationConfigMirror] != string(s.uid) || m.Annotations[annotationConfigSource] != "file" || s.uid == m.UID ||
		len(own) != 1 || own[0].Kind != "Node" || own[0].Name != e2eNode || own[0].Controller == nil || !*own[0].Controller ||
		m.Spec.NodeName != e2eNode || m.Labels["tier"] != "node" || m.Spec.ServiceAccountName != "" {
		t.Errorf("mirror pod = %+v", m.ObjectMeta)
	}
	s.running = s.containerID(m)
	if st, err := agent.current().rt.Container(s.running); err != nil || st.State != container.StateRunning || st.Labels[labelPodUID] != string(s.uid) {
		t.Fatalf("static pod's container %s: %+v, %v", s.running, st, err)
	}
	k := &kubectlRunner{kubeconfig: filepath.Join(e2eDir, "kubeconfig.yaml"), cacheDir: filepath.Join(e2eDir, "kubectl-cache")}
	out, err := k.run("get", "pods", "--no-headers")
	if err != nil || !strings.Contains(out, s.mirror) || !strings.Contains(out, "1/1") {
		t.Errorf("kubectl get pods does not show %s Running and ready (err %v):\n%s", s.mirror, err, out)
	}
	waitFor(t, 30*time.Second, "FailedStaticPod event for the broken manifest", func() (bool, error) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Node"})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			if e.Reason == "FailedStaticPod" && strings.Contains(e.Message, "broken.yaml") && e.InvolvedObject.Name == e2eNode {
				return true, nil
			}
		}
		return false, nil
	})
	return s
}

func (s *staticE2E) containerID(m *v1.Pod) string {
	s.t.Helper()
	if len(m.Status.ContainerStatuses) != 1 || m.Status.ContainerStatuses[0].State.Running == nil {
		s.t.Fatalf("static pod's container statuses = %+v", m.Status.ContainerStatuses)
	}
	return strings.TrimPrefix(m.Status.ContainerStatuses[0].ContainerID, containerIDPrefix)
}

// deleteMirror deletes the mirror pod through the API as a user would:
// the agent creates it again and the container keeps running.
func (s *staticE2E) deleteMirror(ctx context.Context) {
	s.t.Helper()
	old, err := s.cs.CoreV1().Pods("default").Get(ctx, s.mirror, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.cs.CoreV1().Pods("default").Delete(ctx, s.mirror, metav1.DeleteOptions{}); err != nil {
		s.t.Fatal(err)
	}
	m := waitPod(s.t, s.cs, s.mirror, 60*time.Second, "mirror pod created again, Ready", func(p *v1.Pod) bool {
		return p.UID != old.UID && p.DeletionTimestamp == nil && p.Status.Phase == v1.PodRunning && podReady(p)
	})
	s.checkUnchanged(m, "deleting its mirror pod")
}

// checkUnchanged checks that the static pod runs its first container.
func (s *staticE2E) checkUnchanged(m *v1.Pod, after string) {
	s.t.Helper()
	if id := s.containerID(m); id != s.running || m.Status.ContainerStatuses[0].RestartCount != 0 {
		s.t.Errorf("static pod's container changed after %s: %s (restarts %d), was %s", after, id, m.Status.ContainerStatuses[0].RestartCount, s.running)
	}
	if st, err := s.agent.current().rt.Container(s.running); err != nil || st.State != container.StateRunning {
		s.t.Errorf("static pod's container after %s: %+v, %v", after, st, err)
	}
}

// afterRestart checks the static pod was adopted, not restarted, by a
// restarted agent.
func (s *staticE2E) afterRestart() {
	s.t.Helper()
	m := waitPod(s.t, s.cs, s.mirror, 30*time.Second, "static pod Ready after agent restart", podReady)
	s.checkUnchanged(m, "an agent restart")
}

// remove deletes the manifests: the pod stops and its mirror goes.
func (s *staticE2E) remove(ctx context.Context) {
	s.t.Helper()
	for _, name := range []string{"static.yaml", "broken.yaml"} {
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
			s.t.Fatal(err)
		}
	}
	waitFor(s.t, 60*time.Second, "static pod stopped and its mirror deleted", func() (bool, error) {
		_, err := s.cs.CoreV1().Pods("default").Get(ctx, s.mirror, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false, nil
		}
		for _, sb := range s.agent.current().rt.ListSandboxes() {
			if sb.PodUID == string(s.uid) {
				return false, nil
			}
		}
		return true, nil
	})
}
