package registry

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func newTestPod() *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
	}
	defaultPod(pod)
	return pod
}

func TestPodDefaults(t *testing.T) {
	r := coreResource(t, "pods")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{
			HostNetwork: true,
			Containers: []corev1.Container{{
				Name: "app", Image: "nginx",
				Ports: []corev1.ContainerPort{{ContainerPort: 80}},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("0.0001"), corev1.ResourceMemory: resource.MustParse("64Mi")}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{}}},
			}},
		},
		Status: corev1.PodStatus{PodIP: "10.42.0.5"},
	}
	r.Default(pod)
	s := pod.Spec
	c := s.Containers[0]
	checks := []struct {
		name      string
		got, want interface{}
	}{
		{"restartPolicy", s.RestartPolicy, corev1.RestartPolicyAlways},
		{"dnsPolicy", s.DNSPolicy, corev1.DNSClusterFirst},
		{"schedulerName", s.SchedulerName, "default-scheduler"},
		{"terminationGracePeriodSeconds", *s.TerminationGracePeriodSeconds, int64(30)},
		{"enableServiceLinks", *s.EnableServiceLinks, true},
		{"priority", *s.Priority, int32(0)},
		{"preemptionPolicy", *s.PreemptionPolicy, corev1.PreemptLowerPriority},
		{"serviceAccountName", s.ServiceAccountName, "default"},
		{"serviceAccount", s.DeprecatedServiceAccount, "default"},
		{"imagePullPolicy", c.ImagePullPolicy, corev1.PullAlways},
		{"terminationMessagePath", c.TerminationMessagePath, "/dev/termination-log"},
		{"port protocol", c.Ports[0].Protocol, corev1.ProtocolTCP},
		{"hostPort", c.Ports[0].HostPort, int32(80)},
		{"cpu limit rounded", c.Resources.Limits.Cpu().String(), "1m"},
		{"cpu request from limit", c.Resources.Requests.Cpu().String(), "1m"},
		{"memory request from limit", c.Resources.Requests.Memory().String(), "64Mi"},
		{"probe period", c.ReadinessProbe.PeriodSeconds, int32(10)},
		{"probe path", c.ReadinessProbe.HTTPGet.Path, "/"},
		{"podIPs mirrors podIP", pod.Status.PodIPs, []corev1.PodIP{{IP: "10.42.0.5"}}},
	}
	for _, ck := range checks {
		if sprint(ck.got) != sprint(ck.want) {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}

	// The deprecated serviceAccount field alone names the account.
	old := &corev1.Pod{Spec: corev1.PodSpec{DeprecatedServiceAccount: "builder", PriorityClassName: "system-node-critical"}}
	r.Default(old)
	if old.Spec.ServiceAccountName != "builder" || *old.Spec.Priority != 2000001000 {
		t.Errorf("serviceAccountName %q priority %d", old.Spec.ServiceAccountName, *old.Spec.Priority)
	}
}

func TestPodQOSClass(t *testing.T) {
	rl := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		return l
	}
	cases := []struct {
		name       string
		containers []corev1.ResourceRequirements
		want       corev1.PodQOSClass
	}{
		{"nothing", []corev1.ResourceRequirements{{}}, corev1.PodQOSBestEffort},
		{"limits only (requests defaulted)", []corev1.ResourceRequirements{{Limits: rl("1", "1Gi")}}, corev1.PodQOSGuaranteed},
		{"requests below limits", []corev1.ResourceRequirements{{Limits: rl("1", "1Gi"), Requests: rl("500m", "1Gi")}}, corev1.PodQOSBurstable},
		{"cpu limit only", []corev1.ResourceRequirements{{Limits: rl("1", "")}}, corev1.PodQOSBurstable},
		{"one of two containers limited", []corev1.ResourceRequirements{{Limits: rl("1", "1Gi")}, {}}, corev1.PodQOSBurstable},
		{"zero requests are ignored", []corev1.ResourceRequirements{{Requests: rl("0", "0")}}, corev1.PodQOSBestEffort},
	}
	r := coreResource(t, "pods")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}
			for i, res := range tc.containers {
				pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: string(rune('a' + i)), Image: "x", Resources: res})
			}
			r.Default(pod)
			r.PrepareForCreate(pod)
			if pod.Status.QOSClass != tc.want || pod.Status.Phase != corev1.PodPending {
				t.Errorf("status = %s/%s, want Pending/%s", pod.Status.Phase, pod.Status.QOSClass, tc.want)
			}
		})
	}
}

func TestPodPrepareForCreateSchedulingGates(t *testing.T) {
	pod := newTestPod()
	pod.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}}
	pod.Status.Phase = corev1.PodRunning
	coreResource(t, "pods").PrepareForCreate(pod)
	if len(pod.Status.Conditions) != 1 || pod.Status.Conditions[0].Reason != "SchedulingGated" {
		t.Fatalf("conditions = %+v", pod.Status.Conditions)
	}
	if got := podRow(pod)[2]; got != "SchedulingGated" {
		t.Errorf("STATUS = %v, want SchedulingGated", got)
	}
}

func TestPodPrepareForUpdateAndStatus(t *testing.T) {
	r := coreResource(t, "pods")
	old := newTestPod()
	old.Generation = 1
	old.Status = corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBestEffort}
	old.OwnerReferences = []metav1.OwnerReference{{Name: "rs", UID: "u1"}}

	upd := old.DeepCopy()
	upd.Status.Phase = corev1.PodFailed
	upd.Spec.Containers[0].Image = "nginx:1.28"
	r.PrepareForUpdate(upd, old)
	if upd.Status.Phase != corev1.PodRunning {
		t.Errorf("main update changed status")
	}
	if upd.Generation != 2 {
		t.Errorf("generation = %d, want 2 after a spec change", upd.Generation)
	}

	st := old.DeepCopy()
	st.Spec.NodeName = "elsewhere"
	st.OwnerReferences = nil
	st.Status.Phase = corev1.PodSucceeded
	st.Status.QOSClass = ""
	r.PrepareForStatusUpdate(st, old)
	if st.Spec.NodeName != "" || len(st.OwnerReferences) != 1 || st.Status.Phase != corev1.PodSucceeded || st.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("status update: nodeName %q owners %d phase %s qos %s", st.Spec.NodeName, len(st.OwnerReferences), st.Status.Phase, st.Status.QOSClass)
	}
}

func TestValidatePod(t *testing.T) {
	r := coreResource(t, "pods")
	pod := newTestPod()
	checkErrors(t, r.Validate(pod))

	pod.Spec.Containers[0].Image = " nginx"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.300"}}
	checkErrors(t, r.Validate(pod),
		"spec.containers[0].image: FieldValueInvalid",
		"status.podIPs[0].ip: FieldValueInvalid")

	// A Pod's host-network ports must carry their hostPort.
	pod = newTestPod()
	pod.Spec.HostNetwork = true
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 81, Protocol: "TCP"}}
	checkErrors(t, r.Validate(pod), "spec.containers[0].ports[0].containerPort: FieldValueInvalid")
}

func TestValidatePodUpdate(t *testing.T) {
	r := coreResource(t, "pods")
	base := func() *corev1.Pod {
		p := newTestPod()
		p.Spec.NodeName = "node-1"
		p.Spec.ActiveDeadlineSeconds = ptr.To(int64(100))
		p.Spec.Tolerations = []corev1.Toleration{{Key: "a", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: ptr.To(int64(30))}}
		return p
	}
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string
	}{
		{name: "image change", mutate: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.28" }},
		{name: "shorter deadline", mutate: func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To(int64(50)) }},
		{name: "longer deadline", mutate: func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To(int64(500)) },
			want: []string{"spec.activeDeadlineSeconds: FieldValueInvalid"}},
		{name: "deadline removed", mutate: func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = nil },
			want: []string{"spec.activeDeadlineSeconds: FieldValueInvalid"}},
		{name: "toleration added, seconds changed", mutate: func(p *corev1.Pod) {
			p.Spec.Tolerations[0].TolerationSeconds = ptr.To(int64(10))
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "b", Operator: "Exists"})
		}},
		{name: "toleration removed", mutate: func(p *corev1.Pod) { p.Spec.Tolerations = nil },
			want: []string{"spec.tolerations: FieldValueForbidden"}},
		{name: "container added", mutate: func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0])
		}, want: []string{"spec.containers: FieldValueForbidden"}},
		{name: "ports changed", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, Protocol: "TCP"}}
		}, want: []string{"spec: FieldValueForbidden"}},
		{name: "nodeName changed", mutate: func(p *corev1.Pod) { p.Spec.NodeName = "node-2" },
			want: []string{"spec: FieldValueForbidden"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := base()
			pod := old.DeepCopy()
			tc.mutate(pod)
			checkErrors(t, r.ValidateUpdate(pod, old), tc.want...)
		})
	}

	// The message is Kubernetes' own, followed by a diff.
	old := base()
	pod := old.DeepCopy()
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	errs := r.ValidateUpdate(pod, old)
	const want = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Detail, want) || !strings.Contains(errs[0].Detail, `+ "restartPolicy": "Never"`) {
		t.Errorf("detail = %q", errs)
	}

	// Raising a negative grace period to 1 is allowed.
	old = base()
	old.Spec.TerminationGracePeriodSeconds = ptr.To(int64(-1))
	pod = old.DeepCopy()
	pod.Spec.TerminationGracePeriodSeconds = ptr.To(int64(1))
	checkErrors(t, r.ValidateUpdate(pod, old))
}

func TestPodEphemeralContainersSubresource(t *testing.T) {
	r := coreResource(t, "pods")
	old := newTestPod()
	upd := old.DeepCopy()
	upd.Labels = map[string]string{"sneaky": "change"}
	upd.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debug", Image: "busybox", ImagePullPolicy: "IfNotPresent", TerminationMessagePolicy: "File"}}}
	r.PrepareForSubresource["ephemeralcontainers"](upd, old)
	if len(upd.Spec.EphemeralContainers) != 1 || upd.Labels != nil {
		t.Fatalf("ephemeral containers %d, labels %v", len(upd.Spec.EphemeralContainers), upd.Labels)
	}
	checkErrors(t, r.Validate(upd))
	checkErrors(t, r.ValidateUpdate(upd, old))

	// A main update cannot add them.
	main := old.DeepCopy()
	main.Spec.EphemeralContainers = upd.Spec.EphemeralContainers
	r.PrepareForUpdate(main, old)
	if len(main.Spec.EphemeralContainers) != 0 {
		t.Errorf("main update added ephemeral containers")
	}
	// Changing an existing one is forbidden.
	changed := upd.DeepCopy()
	changed.Spec.EphemeralContainers[0].Image = "alpine"
	checkErrors(t, r.ValidateUpdate(changed, upd), "spec.ephemeralContainers[0]: FieldValueForbidden")
}

func TestPodRow(t *testing.T) {
	created := metav1.NewTime(time.Now().Add(-5 * time.Minute))
	finished := metav1.NewTime(time.Now().Add(-2 * time.Minute))
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	base := func() *corev1.Pod {
		p := newTestPod()
		p.CreationTimestamp = created
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "busybox"})
		return p
	}
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []interface{}
	}{
		{name: "pending", mutate: func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending },
			want: []interface{}{"web", "0/2", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "running and ready", mutate: func(p *corev1.Pod) {
			p.Spec.NodeName = "node-1"
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.42.0.5"}},
				ContainerStatuses: []corev1.ContainerStatus{
					{Name: "app", Ready: true, State: running, RestartCount: 2,
						LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: finished}}},
					{Name: "side", Ready: true, State: running},
				}}
		}, want: []interface{}{"web", "2/2", "Running", "2 (2m ago)", "5m", "10.42.0.5", "node-1", "<none>", "<none>"}},
		{name: "waiting reason wins", mutate: func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}, RestartCount: 4},
				{Name: "side", Ready: true, State: running},
			}}
		}, want: []interface{}{"web", "1/2", "CrashLoopBackOff", "4", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "terminated without reason", mutate: func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}},
				{Name: "side", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Signal: 9}}},
			}}
		}, want: []interface{}{"web", "0/2", "ExitCode:3", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "completed", mutate: func(p *corev1.Pod) {
			done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}
			p.Status = corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", State: done}, {Name: "side", State: done}}}
		}, want: []interface{}{"web", "0/2", "Completed", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "completed but one still running", mutate: func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning,
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
				ContainerStatuses: []corev1.ContainerStatus{
					{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}},
					{Name: "side", Ready: true, State: running}}}
		}, want: []interface{}{"web", "1/2", "NotReady", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "init progress", mutate: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i1"}, {Name: "i2"}, {Name: "i3"}}
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "i1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
				{Name: "i2", State: running},
				{Name: "i3", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}},
			}}
		}, want: []interface{}{"web", "0/2", "Init:1/3", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "init failing", mutate: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i1"}}
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "i1", RestartCount: 3, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
			}}
		}, want: []interface{}{"web", "0/2", "Init:CrashLoopBackOff", "3", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "init exit code", mutate: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i1"}}
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "i1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}}},
			}}
		}, want: []interface{}{"web", "0/2", "Init:ExitCode:2", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "started sidecar counts as ready", mutate: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
			p.Status = corev1.PodStatus{Phase: corev1.PodRunning,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "proxy", Ready: true, Started: ptr.To(true), State: running, RestartCount: 1}},
				ContainerStatuses: []corev1.ContainerStatus{
					{Name: "app", Ready: true, State: running}, {Name: "side", Ready: true, State: running}}}
		}, want: []interface{}{"web", "3/3", "Running", "1", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "terminating", mutate: func(p *corev1.Pod) {
			p.DeletionTimestamp = &created
			p.Status.Phase = corev1.PodRunning
		}, want: []interface{}{"web", "0/2", "Terminating", "0", "5m", "<none>", "<none>", "<none>", "<none>"}},
		{name: "pod reason and readiness gates", mutate: func(p *corev1.Pod) {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/a"}, {ConditionType: "example.com/b"}}
			p.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", NominatedNodeName: "node-2",
				Conditions: []corev1.PodCondition{{Type: "example.com/a", Status: corev1.ConditionTrue}}}
		}, want: []interface{}{"web", "0/2", "Evicted", "0", "5m", "<none>", "<none>", "node-2", "1/2"}},
	}
	cols := podColumns()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.mutate(p)
			got := podRow(p)
			if len(got) != len(cols) {
				t.Fatalf("%d cells for %d columns", len(got), len(cols))
			}
			if sprint(got) != sprint(tc.want) {
				t.Errorf("row\n got  %v\n want %v", got, tc.want)
			}
		})
	}
}

func TestPodFields(t *testing.T) {
	p := newTestPod()
	p.Spec.NodeName = "node-1"
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.42.0.5"}}
	f := coreResource(t, "pods").Fields(p)
	want := map[string]string{
		"spec.nodeName": "node-1", "spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler",
		"spec.serviceAccountName": "default", "spec.hostNetwork": "false", "status.phase": "Running",
		"status.podIP": "10.42.0.5", "status.nominatedNodeName": "",
	}
	for k, v := range want {
		if got, ok := f[k]; !ok || got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestDefaultTolerationSeconds(t *testing.T) {
	tests := []struct {
		name        string
		tolerations []corev1.Toleration
		want        int // tolerations after create
	}{
		{"none", nil, 2},
		{"tolerates not-ready already", []corev1.Toleration{{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, 2},
		{"tolerates everything", []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, 1},
		{"NoSchedule only", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: tt.tolerations}}
			preparePodForCreate(pod)
			if len(pod.Spec.Tolerations) != tt.want {
				t.Fatalf("tolerations = %+v, want %d", pod.Spec.Tolerations, tt.want)
			}
			for _, tol := range pod.Spec.Tolerations[len(tt.tolerations):] {
				if tol.TolerationSeconds == nil || *tol.TolerationSeconds != 300 || tol.Effect != corev1.TaintEffectNoExecute {
					t.Fatalf("added toleration %+v", tol)
				}
			}
		})
	}
}
