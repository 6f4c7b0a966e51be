package registry

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

func validPodSpec() corev1.PodSpec {
	spec := corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}},
	}
	defaultPodSpec(&spec)
	return spec
}

func TestValidatePodSpec(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.PodSpec)
		want   []string
	}{
		{name: "valid", mutate: func(*corev1.PodSpec) {}},
		{name: "no containers", mutate: func(s *corev1.PodSpec) { s.Containers = nil },
			want: []string{"spec.containers: FieldValueRequired"}},
		{name: "container name not a DNS label", mutate: func(s *corev1.PodSpec) { s.Containers[0].Name = "App_1" },
			want: []string{"spec.containers[0].name: FieldValueInvalid"}},
		{name: "container name missing", mutate: func(s *corev1.PodSpec) { s.Containers[0].Name = "" },
			want: []string{"spec.containers[0].name: FieldValueRequired"}},
		{name: "duplicate container names across init and app", mutate: func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "app", Image: "busybox", ImagePullPolicy: "Always", TerminationMessagePolicy: "File"}}
		}, want: []string{"spec.containers[0].name: FieldValueDuplicate"}},
		{name: "image required", mutate: func(s *corev1.PodSpec) { s.Containers[0].Image = "" },
			want: []string{"spec.containers[0].image: FieldValueRequired"}},
		{name: "bad pull policy", mutate: func(s *corev1.PodSpec) { s.Containers[0].ImagePullPolicy = "Sometimes" },
			want: []string{"spec.containers[0].imagePullPolicy: FieldValueNotSupported"}},
		{name: "ports", mutate: func(s *corev1.PodSpec) {
			s.Containers[0].Ports = []corev1.ContainerPort{
				{Name: "http", ContainerPort: 80, Protocol: "TCP"},
				{Name: "http", ContainerPort: 70000, Protocol: "TCP"},
				{Name: "UPPER_x", ContainerPort: 0, Protocol: "ICMP"},
			}
		}, want: []string{
			"spec.containers[0].ports[1].name: FieldValueDuplicate",
			"spec.containers[0].ports[1].containerPort: FieldValueInvalid",
			"spec.containers[0].ports[2].name: FieldValueInvalid",
			"spec.containers[0].ports[2].containerPort: FieldValueRequired",
			"spec.containers[0].ports[2].protocol: FieldValueNotSupported",
		}},
		{name: "host port conflict", mutate: func(s *corev1.PodSpec) {
			s.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: "TCP"}}
			s.Containers = append(s.Containers, s.Containers[0])
			s.Containers[1].Name = "second"
		}, want: []string{"spec.containers[1].ports[0].hostPort: FieldValueDuplicate"}},
		{name: "env names and valueFrom", mutate: func(s *corev1.PodSpec) {
			s.Containers[0].Env = []corev1.EnvVar{
				{Name: "GOOD", Value: "x"},
				{Name: ""},
				{Name: "A=B"},
				{Name: "BOTH", Value: "x", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
				{Name: "NONE", ValueFrom: &corev1.EnvVarSource{}},
				{Name: "BADFIELD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "spec.containers"}}},
				{Name: "LABEL", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.labels['app']"}}},
			}
		}, want: []string{
			"spec.containers[0].env[1].name: FieldValueRequired",
			"spec.containers[0].env[2].name: FieldValueInvalid",
			"spec.containers[0].env[3].valueFrom: FieldValueInvalid",
			"spec.containers[0].env[4].valueFrom: FieldValueInvalid",
			"spec.containers[0].env[5].valueFrom.fieldRef.fieldPath: FieldValueNotSupported",
		}},
		{name: "volumes: names unique, one source", mutate: func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "two", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}, HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}},
				{Name: "none"},
				{Name: "Bad_Name", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
			}
		}, want: []string{
			"spec.volumes[1].name: FieldValueDuplicate",
			"spec.volumes[2].emptyDir: FieldValueForbidden",
			"spec.volumes[3]: FieldValueRequired",
			"spec.volumes[4].name: FieldValueInvalid",
			"spec.volumes[4].configMap.name: FieldValueRequired",
		}},
		{name: "volume mounts reference volumes", mutate: func(s *corev1.PodSpec) {
			s.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			s.Containers[0].VolumeMounts = []corev1.VolumeMount{
				{Name: "data", MountPath: "/data"},
				{Name: "missing", MountPath: "/other"},
				{Name: "data", MountPath: "/data"},
				{Name: "data", MountPath: "/sub", SubPath: "../escape"},
			}
		}, want: []string{
			"spec.containers[0].volumeMounts[1].name: FieldValueNotFound",
			"spec.containers[0].volumeMounts[2].mountPath: FieldValueInvalid",
			"spec.containers[0].volumeMounts[3].subPath: FieldValueInvalid",
		}},
		{name: "resources", mutate: func(s *corev1.PodSpec) {
			s.Containers[0].Resources = corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{"cpu": resource.MustParse("500m"), "memory": resource.MustParse("-1")},
				Requests: corev1.ResourceList{"cpu": resource.MustParse("1"), "bogus": resource.MustParse("1")},
			}
		}, want: []string{
			"spec.containers[0].resources.limits[memory]: FieldValueInvalid",
			"spec.containers[0].resources.requests[cpu]: FieldValueInvalid",
			"spec.containers[0].resources.requests[bogus]: FieldValueInvalid",
		}},
		{name: "extended resource needs a limit", mutate: func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Requests = corev1.ResourceList{"example.com/gpu": resource.MustParse("1")}
		}, want: []string{"spec.containers[0].resources.limits: FieldValueRequired"}},
		{name: "restartPolicy and dnsPolicy", mutate: func(s *corev1.PodSpec) {
			s.RestartPolicy = "Sometimes"
			s.DNSPolicy = "Google"
		}, want: []string{"spec.restartPolicy: FieldValueNotSupported", "spec.dnsPolicy: FieldValueNotSupported"}},
		{name: "dnsPolicy None needs dnsConfig", mutate: func(s *corev1.PodSpec) { s.DNSPolicy = corev1.DNSNone },
			want: []string{"spec.dnsConfig: FieldValueRequired"}},
		{name: "nodeSelector labels", mutate: func(s *corev1.PodSpec) {
			s.NodeSelector = map[string]string{"kubernetes.io/os": "linux", "bad key!": "x", "ok": "bad value!"}
		}, want: []string{"spec.nodeSelector: FieldValueInvalid", "spec.nodeSelector: FieldValueInvalid"}},
		{name: "tolerations", mutate: func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{
				{Key: "a", Operator: "Equal", Value: "b", Effect: "NoSchedule"},
				{Operator: "Exists"},
				{Key: "a", Operator: "Exists", Value: "b"},
				{Key: "a", Operator: "Greater"},
				{Operator: "Equal"},
				{Key: "a", Operator: "Exists", Effect: "NoSchedule", TolerationSeconds: ptr.To(int64(5))},
				{Key: "a", Operator: "Exists", Effect: "Sometimes"},
			}
		}, want: []string{
			"spec.tolerations[2].operator: FieldValueInvalid",
			"spec.tolerations[3].operator: FieldValueNotSupported",
			"spec.tolerations[4].operator: FieldValueInvalid",
			"spec.tolerations[5].effect: FieldValueInvalid",
			"spec.tolerations[6].effect: FieldValueNotSupported",
		}},
		{name: "probes: one handler", mutate: func(s *corev1.PodSpec) {
			s.Containers[0].LivenessProbe = &corev1.Probe{SuccessThreshold: 1}
			s.Containers[0].ReadinessProbe = &corev1.Probe{SuccessThreshold: 3, ProbeHandler: corev1.ProbeHandler{
				Exec:      &corev1.ExecAction{Command: []string{"true"}},
				TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)},
			}}
			s.Containers[0].StartupProbe = &corev1.Probe{SuccessThreshold: 2, ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http"), Scheme: "HTTP"},
			}}
		}, want: []string{
			"spec.containers[0].livenessProbe: FieldValueRequired",
			"spec.containers[0].readinessProbe.tcpSocket: FieldValueForbidden",
			"spec.containers[0].startupProbe.successThreshold: FieldValueInvalid",
		}},
		{name: "init container probes need restartPolicy Always", mutate: func(s *corev1.PodSpec) {
			probe := &corev1.Probe{SuccessThreshold: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
			s.InitContainers = []corev1.Container{
				{Name: "init", Image: "busybox", ImagePullPolicy: "Always", TerminationMessagePolicy: "File", LivenessProbe: probe},
				{Name: "sidecar", Image: "busybox", ImagePullPolicy: "Always", TerminationMessagePolicy: "File", LivenessProbe: probe,
					RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)},
			}
		}, want: []string{"spec.initContainers[0].livenessProbe: FieldValueForbidden"}},
		{name: "names of references", mutate: func(s *corev1.PodSpec) {
			s.ServiceAccountName = "Not_Valid"
			s.NodeName = "node_1"
			s.Hostname = "a.b"
			s.ActiveDeadlineSeconds = ptr.To(int64(0))
		}, want: []string{
			"spec.serviceAccountName: FieldValueInvalid", "spec.nodeName: FieldValueInvalid",
			"spec.hostname: FieldValueInvalid", "spec.activeDeadlineSeconds: FieldValueInvalid",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := validPodSpec()
			tc.mutate(&spec)
			checkErrors(t, validatePodSpec(&spec, field.NewPath("spec")), tc.want...)
		})
	}
}

func TestValidatePodTemplateSpec(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       validPodSpec(),
	}
	checkErrors(t, validatePodTemplateSpec(tmpl, field.NewPath("spec", "template")))

	tmpl.Labels["bad key!"] = "x"
	tmpl.Spec.Containers[0].Image = ""
	tmpl.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "debug", Image: "busybox", ImagePullPolicy: "Always", TerminationMessagePolicy: "File"}}}
	checkErrors(t, validatePodTemplateSpec(tmpl, field.NewPath("spec", "template")),
		"spec.template.labels: FieldValueInvalid",
		"spec.template.spec.containers[0].image: FieldValueRequired",
		"spec.template.spec.ephemeralContainers: FieldValueForbidden")

	// A template may leave hostPort 0 with hostNetwork (Pods get it defaulted).
	tmpl = &corev1.PodTemplateSpec{Spec: validPodSpec()}
	tmpl.Spec.HostNetwork = true
	tmpl.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, Protocol: "TCP"}}
	checkErrors(t, validatePodTemplateSpec(tmpl, field.NewPath("spec", "template")))
}
