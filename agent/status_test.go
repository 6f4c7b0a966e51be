package agent

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/runtime/container"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func running(id string) *container.ContainerStatus {
	return &container.ContainerStatus{ID: id, State: container.StateRunning, StartedAt: t0}
}

func exited(id string, code int, reason string) *container.ContainerStatus {
	return &container.ContainerStatus{ID: id, State: container.StateExited, StartedAt: t0, FinishedAt: t0.Add(time.Second), ExitCode: code, Reason: reason}
}

func testPod(policy v1.RestartPolicy, init []string, app ...string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}}
	p.Spec.RestartPolicy = policy
	for _, n := range init {
		p.Spec.InitContainers = append(p.Spec.InitContainers, v1.Container{Name: n, Image: "busybox"})
	}
	for _, n := range app {
		p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: n, Image: "busybox"})
	}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue}}
	return p
}

func condMap(st v1.PodStatus) map[v1.PodConditionType]v1.PodCondition {
	m := map[v1.PodConditionType]v1.PodCondition{}
	for _, c := range st.Conditions {
		m[c.Type] = c
	}
	return m
}

func TestComputePodStatus(t *testing.T) {
	tests := []struct {
		name       string
		pod        *v1.Pod
		sandbox    bool
		init, app  []containerView
		wantPhase  v1.PodPhase
		wantReady  v1.ConditionStatus
		wantInit   v1.ConditionStatus
		wantReason map[string]string // container -> state reason ("running" when running)
		wantMsg    string            // Ready condition message
	}{
		{
			name:       "creating",
			pod:        testPod(v1.RestartPolicyAlways, nil, "web"),
			app:        []containerView{{name: "web"}},
			wantPhase:  v1.PodPending,
			wantReady:  v1.ConditionFalse,
			wantInit:   v1.ConditionTrue,
			wantReason: map[string]string{"web": reasonContainerCreating},
			wantMsg:    "containers with unready status: [web]",
		},
		{
			name:       "running and ready",
			pod:        testPod(v1.RestartPolicyAlways, nil, "web", "db"),
			sandbox:    true,
			app:        []containerView{{name: "web", current: running("a"), ready: true, started: true}, {name: "db", current: running("b"), ready: true, started: true}},
			wantPhase:  v1.PodRunning,
			wantReady:  v1.ConditionTrue,
			wantInit:   v1.ConditionTrue,
			wantReason: map[string]string{"web": "running", "db": "running"},
		},
		{
			name:    "crash loop",
			pod:     testPod(v1.RestartPolicyAlways, nil, "web"),
			sandbox: true,
			app: []containerView{{name: "web", current: exited("a", 1, "Error"), restartCount: 2,
				waiting: &v1.ContainerStateWaiting{Reason: reasonCrashLoopBackOff, Message: "back-off 20s"}}},
			wantPhase:  v1.PodRunning,
			wantReady:  v1.ConditionFalse,
			wantInit:   v1.ConditionTrue,
			wantReason: map[string]string{"web": reasonCrashLoopBackOff},
			wantMsg:    "containers with unready status: [web]",
		},
		{
			name:       "completed",
			pod:        testPod(v1.RestartPolicyNever, nil, "job"),
			sandbox:    true,
			app:        []containerView{{name: "job", current: exited("a", 0, "Completed")}},
			wantPhase:  v1.PodSucceeded,
			wantReady:  v1.ConditionFalse,
			wantInit:   v1.ConditionTrue,
			wantReason: map[string]string{"job": "Completed"},
		},
		{
			name:       "failed never",
			pod:        testPod(v1.RestartPolicyNever, nil, "job", "side"),
			sandbox:    true,
			app:        []containerView{{name: "job", current: exited("a", 2, "Error")}, {name: "side", current: exited("b", 0, "Completed")}},
			wantPhase:  v1.PodFailed,
			wantReady:  v1.ConditionFalse,
			wantInit:   v1.ConditionTrue,
			wantReason: map[string]string{"job": "Error", "side": "Completed"},
			wantMsg:    "containers with unready status: [job side]",
		},
		{
			name:       "onfailure restarting",
			pod:        testPod(v1.RestartPolicyOnFailure, nil, "job"),
			sandbox:    true,
			app:        []containerView{{name: "job", current: exited("a", 137, "OOMKilled")}},
			wantPhase:  v1.PodRunning,
			wantReady:  v1.ConditionFalse,
			wantInit:   v1.ConditionTrue,
			wantReason: map[string]string{"job": "OOMKilled"},
			wantMsg:    "containers with unready status: [job]",
		},
		{
			name:       "init running",
			pod:        testPod(v1.RestartPolicyAlways, []string{"setup", "migrate"}, "web"),
			sandbox:    true,
			init:       []containerView{{name: "setup", current: exited("i", 0, "Completed")}, {name: "migrate", current: running("j")}},
			app:        []containerView{{name: "web", waiting: &v1.ContainerStateWaiting{Reason: reasonPodInitializing}}},
			wantPhase:  v1.PodPending,
			wantReady:  v1.ConditionFalse,
			wantInit:   v1.ConditionFalse,
			wantReason: map[string]string{"setup": "Completed", "migrate": "running", "web": reasonPodInitializing},
			wantMsg:    "containers with unready status: [web]",
		},
		{
			name:       "init failed never",
			pod:        testPod(v1.RestartPolicyNever, []string{"setup"}, "web"),
			sandbox:    true,
			init:       []containerView{{name: "setup", current: exited("i", 1, "Error")}},
			app:        []containerView{{name: "web", waiting: &v1.ContainerStateWaiting{Reason: reasonPodInitializing}}},
			wantPhase:  v1.PodFailed,
			wantReady:  v1.ConditionFalse,
			wantInit:   v1.ConditionFalse,
			wantReason: map[string]string{"setup": "Error", "web": reasonPodInitializing},
			wantMsg:    "containers with unready status: [web]",
		},
		{
			name:       "image pull back-off",
			pod:        testPod(v1.RestartPolicyAlways, nil, "web"),
			sandbox:    true,
			app:        []containerView{{name: "web", waiting: &v1.ContainerStateWaiting{Reason: reasonImagePullBackOff}}},
			wantPhase:  v1.PodPending,
			wantReady:  v1.ConditionFalse,
			wantInit:   v1.ConditionTrue,
			wantReason: map[string]string{"web": reasonImagePullBackOff},
			wantMsg:    "containers with unready status: [web]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := computePodStatus(statusInput{pod: tt.pod, now: t0, sandboxReady: tt.sandbox, hostIP: "198.18.0.1", init: tt.init, app: tt.app})
			if st.Phase != tt.wantPhase {
				t.Errorf("phase = %s, want %s", st.Phase, tt.wantPhase)
			}
			conds := condMap(st)
			if c := conds[v1.PodReady]; c.Status != tt.wantReady || c.Message != tt.wantMsg {
				t.Errorf("Ready = %s %q, want %s %q", c.Status, c.Message, tt.wantReady, tt.wantMsg)
			}
			if conds[v1.ContainersReady].Status != tt.wantReady {
				t.Errorf("ContainersReady = %s, want %s", conds[v1.ContainersReady].Status, tt.wantReady)
			}
			if c := conds[v1.PodInitialized]; c.Status != tt.wantInit {
				t.Errorf("Initialized = %s (%s), want %s", c.Status, c.Message, tt.wantInit)
			}
			if conds[v1.PodReadyToStartContainers].Status != boolStatus(tt.sandbox) {
				t.Errorf("PodReadyToStartContainers = %s", conds[v1.PodReadyToStartContainers].Status)
			}
			if conds[v1.PodScheduled].Status != v1.ConditionTrue {
				t.Errorf("PodScheduled condition lost")
			}
			all := append(append([]v1.ContainerStatus{}, st.InitContainerStatuses...), st.ContainerStatuses...)
			for _, cs := range all {
				want := tt.wantReason[cs.Name]
				got := ""
				switch {
				case cs.State.Running != nil:
					got = "running"
				case cs.State.Waiting != nil:
					got = cs.State.Waiting.Reason
				case cs.State.Terminated != nil:
					got = cs.State.Terminated.Reason
				}
				if got != want {
					t.Errorf("container %s state = %q, want %q", cs.Name, got, want)
				}
			}
		})
	}
}

func TestComputePodStatusDetails(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, nil, "web", "api")
	prev := exited("old", 137, "Error")
	st := computePodStatus(statusInput{pod: pod, now: t0, sandboxReady: true, hostIP: "198.18.0.1", podIP: "10.42.0.5",
		app: []containerView{
			{name: "web", image: "docker.io/library/busybox:latest", imageID: "sha256:abc", current: running("new"), previous: prev, restartCount: 3, ready: true, started: true},
			{name: "api", current: exited("x", 1, "Error"), restartCount: 1, waiting: &v1.ContainerStateWaiting{Reason: reasonCrashLoopBackOff}},
		}})
	// App container statuses are sorted by name.
	if st.ContainerStatuses[0].Name != "api" || st.ContainerStatuses[1].Name != "web" {
		t.Fatalf("order = %s, %s", st.ContainerStatuses[0].Name, st.ContainerStatuses[1].Name)
	}
	web := st.ContainerStatuses[1]
	if web.ContainerID != "orch://new" || web.RestartCount != 3 || !web.Ready || web.Started == nil || !*web.Started {
		t.Errorf("web status = %+v", web)
	}
	if web.LastTerminationState.Terminated == nil || web.LastTerminationState.Terminated.ExitCode != 137 || web.LastTerminationState.Terminated.ContainerID != "orch://old" {
		t.Errorf("web last state = %+v", web.LastTerminationState)
	}
	api := st.ContainerStatuses[0]
	if api.State.Waiting == nil || api.LastTerminationState.Terminated == nil || api.LastTerminationState.Terminated.ExitCode != 1 {
		t.Errorf("api: crash loop must show the exited instance as last state: %+v", api)
	}
	if st.PodIP != "10.42.0.5" || len(st.PodIPs) != 1 || st.HostIP != "198.18.0.1" || st.StartTime == nil {
		t.Errorf("addresses/start = %q %v %q %v", st.PodIP, st.PodIPs, st.HostIP, st.StartTime)
	}
	// Transition times survive when a condition does not change.
	before := metav1.NewTime(t0.Add(-time.Hour))
	pod.Status = st
	for i := range pod.Status.Conditions {
		pod.Status.Conditions[i].LastTransitionTime = before
	}
	again := computePodStatus(statusInput{pod: pod, now: t0.Add(time.Minute), sandboxReady: true,
		app: []containerView{{name: "web", current: running("new"), ready: true, started: true}, {name: "api", current: running("y"), ready: true, started: true}}})
	c := condMap(again)
	rtsc, ready := c[v1.PodReadyToStartContainers], c[v1.PodReady]
	if !rtsc.LastTransitionTime.Equal(&before) {
		t.Errorf("unchanged condition got a new transition time")
	}
	if ready.Status != v1.ConditionTrue || ready.LastTransitionTime.Equal(&before) {
		t.Errorf("changed Ready condition must get a new transition time: %+v", ready)
	}
}

func TestQOSClass(t *testing.T) {
	res := func(req, lim string) v1.ResourceRequirements {
		r := v1.ResourceRequirements{Requests: v1.ResourceList{}, Limits: v1.ResourceList{}}
		if req != "" {
			r.Requests[v1.ResourceCPU] = resource.MustParse(req)
			r.Requests[v1.ResourceMemory] = resource.MustParse(req + "Mi")
		}
		if lim != "" {
			r.Limits[v1.ResourceCPU] = resource.MustParse(lim)
			r.Limits[v1.ResourceMemory] = resource.MustParse(lim + "Mi")
		}
		return r
	}
	tests := []struct {
		req, lim string
		want     v1.PodQOSClass
	}{
		{"", "", v1.PodQOSBestEffort},
		{"1", "1", v1.PodQOSGuaranteed},
		{"1", "2", v1.PodQOSBurstable},
		{"1", "", v1.PodQOSBurstable},
	}
	for _, tt := range tests {
		p := testPod(v1.RestartPolicyAlways, nil, "c")
		p.Spec.Containers[0].Resources = res(tt.req, tt.lim)
		if got := qosClass(p); got != tt.want {
			t.Errorf("req %q lim %q: %s, want %s", tt.req, tt.lim, got, tt.want)
		}
	}
}
