package backends

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestFindPort(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080},
			{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
		}}},
		InitContainers: []corev1.Container{
			{Ports: []corev1.ContainerPort{{Name: "init", ContainerPort: 7000}}},
			{RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "sidecar", ContainerPort: 7001}}},
		},
	}}
	tests := []struct {
		name    string
		port    corev1.ServicePort
		want    int32
		wantErr bool
	}{
		{name: "number", port: corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(9000)}, want: 9000},
		{name: "zero means the service port", port: corev1.ServicePort{Port: 80}, want: 80},
		{name: "name, TCP by default", port: corev1.ServicePort{TargetPort: intstr.FromString("http")}, want: 8080},
		{name: "name and protocol", port: corev1.ServicePort{TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolUDP}, want: 5353},
		{name: "name with another protocol", port: corev1.ServicePort{TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolTCP}, wantErr: true},
		{name: "sidecar port", port: corev1.ServicePort{TargetPort: intstr.FromString("sidecar")}, want: 7001},
		{name: "plain init container port", port: corev1.ServicePort{TargetPort: intstr.FromString("init")}, wantErr: true},
		{name: "unknown name", port: corev1.ServicePort{TargetPort: intstr.FromString("nope")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindPort(pod, &tt.port)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("FindPort = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestPodIPAndFamilies(t *testing.T) {
	dual := &corev1.Pod{Status: corev1.PodStatus{PodIP: "10.42.0.1", PodIPs: []corev1.PodIP{{IP: "10.42.0.1"}, {IP: "fd00::1"}}}}
	onlyPodIP := &corev1.Pod{Status: corev1.PodStatus{PodIP: "10.42.0.2"}}
	if got := PodIP(dual, corev1.IPv6Protocol); got != "fd00::1" {
		t.Errorf("IPv6 of dual-stack pod = %q", got)
	}
	if got := PodIP(dual, corev1.IPv4Protocol); got != "10.42.0.1" {
		t.Errorf("IPv4 of dual-stack pod = %q", got)
	}
	if got := PodIP(onlyPodIP, corev1.IPv4Protocol); got != "10.42.0.2" {
		t.Errorf("IPv4 of a pod with status.podIP only = %q", got)
	}
	if got := PodIP(onlyPodIP, corev1.IPv6Protocol); got != "" {
		t.Errorf("IPv6 of an IPv4 pod = %q", got)
	}
	v6svc := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "fd00:43::10"}}
	if got := IPFamilies(v6svc); len(got) != 1 || got[0] != corev1.IPv6Protocol {
		t.Errorf("families of an IPv6 service without ipFamilies = %v", got)
	}
}

func TestPodChanged(t *testing.T) {
	base := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "1"}},
			Status:     corev1.PodStatus{PodIP: "10.42.0.1", Phase: corev1.PodRunning},
		}
	}
	tests := []struct {
		name                       string
		edit                       func(*corev1.Pod)
		wantChanged, wantRelabeled bool
	}{
		{name: "annotation only", edit: func(p *corev1.Pod) { p.Annotations["a"] = "2" }},
		{name: "labels", edit: func(p *corev1.Pod) { p.Labels["app"] = "db" }, wantChanged: true, wantRelabeled: true},
		{name: "ready", edit: func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}, wantChanged: true},
		{name: "ip", edit: func(p *corev1.Pod) { p.Status.PodIP = "10.42.0.2" }, wantChanged: true},
		{name: "terminating", edit: func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }, wantChanged: true},
		{name: "hostname", edit: func(p *corev1.Pod) { p.Spec.Hostname = "h" }, wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := base()
			tt.edit(cur)
			changed, relabeled := PodChanged(base(), cur)
			if changed != tt.wantChanged || relabeled != tt.wantRelabeled {
				t.Errorf("PodChanged = %v, %v; want %v, %v", changed, relabeled, tt.wantChanged, tt.wantRelabeled)
			}
		})
	}
}
