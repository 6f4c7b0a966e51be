// Package backends holds the rules, shared by the Endpoints and
// EndpointSlice controllers, that decide which pods back a Service and at
// which address and port: Kubernetes' pkg/controller/util/endpoint and
// pkg/api/v1/pod helpers, rewritten for orch.
//
// It is pure logic over typed objects: no I/O, no state.
package backends

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Selects reports whether svc selects pods by label (services without a
// selector get their endpoints from someone else) and matches pod.
func Selects(svc *corev1.Service, pod *corev1.Pod) bool {
	if svc.Spec.Selector == nil || svc.Namespace != pod.Namespace {
		return false
	}
	return labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels))
}

// Managed reports whether the endpoint controllers compute svc's
// endpoints: it has a selector and is not an ExternalName service.
func Managed(svc *corev1.Service) bool {
	return svc.Spec.Selector != nil && svc.Spec.Type != corev1.ServiceTypeExternalName
}

// ShouldPodBeInEndpoints: pods that finished (Succeeded, Failed) or have no
// IP are never endpoints; terminating pods only when includeTerminating.
func ShouldPodBeInEndpoints(pod *corev1.Pod, includeTerminating bool) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
		return false
	}
	if !includeTerminating && pod.DeletionTimestamp != nil {
		return false
	}
	return true
}

// IsPodReady reports whether the pod's Ready condition is True.
func IsPodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ShouldSetHostname: a pod with spec.hostname whose subdomain names the
// service gets its hostname in the service's endpoints (DNS records
// hostname.service.ns.svc).
func ShouldSetHostname(pod *corev1.Pod, svc *corev1.Service) bool {
	return pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && svc.Namespace == pod.Namespace
}

// IsHeadless reports whether svc has no cluster IP.
func IsHeadless(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone
}

// FindPort resolves svcPort's targetPort on pod: a number is taken as is
// (0 means the service port), a name is looked up among the ports of the
// pod's containers (and restartable init containers, i.e. sidecars) with
// the service port's protocol.
func FindPort(pod *corev1.Pod, svcPort *corev1.ServicePort) (int32, error) {
	target := svcPort.TargetPort
	if target.Type == intstr.Int {
		if target.IntVal == 0 {
			return svcPort.Port, nil
		}
		return target.IntVal, nil
	}
	name := target.StrVal
	proto := svcPort.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	match := func(containers []corev1.Container, sidecarsOnly bool) (int32, bool) {
		for _, c := range containers {
			if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, p := range c.Ports {
				pp := p.Protocol
				if pp == "" {
					pp = corev1.ProtocolTCP
				}
				if p.Name == name && pp == proto {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	}
	if port, ok := match(pod.Spec.Containers, false); ok {
		return port, nil
	}
	if port, ok := match(pod.Spec.InitContainers, true); ok {
		return port, nil
	}
	return 0, fmt.Errorf("pod %s/%s has no %s port named %q", pod.Namespace, pod.Name, proto, name)
}

// IPFamilies are the address families svc is served on, primary first:
// spec.ipFamilies, or guessed from the cluster IP (IPv4 when headless
// without families).
func IPFamilies(svc *corev1.Service) []corev1.IPFamily {
	if len(svc.Spec.IPFamilies) > 0 {
		return svc.Spec.IPFamilies
	}
	if !IsHeadless(svc) {
		if addr, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && addr.Is6() && !addr.Is4In6() {
			return []corev1.IPFamily{corev1.IPv6Protocol}
		}
	}
	return []corev1.IPFamily{corev1.IPv4Protocol}
}

// PodIP returns the pod's IP of family, "" if it has none.
func PodIP(pod *corev1.Pod, family corev1.IPFamily) string {
	ips := make([]string, 0, len(pod.Status.PodIPs)+1)
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 {
		// Writers that set only status.podIP.
		ips = append(ips, pod.Status.PodIP)
	}
	for _, ip := range ips {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			continue
		}
		if isV6 := addr.Is6() && !addr.Is4In6(); isV6 == (family == corev1.IPv6Protocol) {
			return ip
		}
	}
	return ""
}

// PodChanged reports whether a pod update can change the endpoints of the
// services selecting it; labelsChanged tells whether those services may
// differ.
func PodChanged(old, cur *corev1.Pod) (changed, labelsChanged bool) {
	labelsChanged = !labels.Equals(old.Labels, cur.Labels)
	if labelsChanged || old.UID != cur.UID {
		return true, labelsChanged
	}
	if (old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) ||
		IsPodReady(old) != IsPodReady(cur) ||
		old.Status.Phase != cur.Status.Phase ||
		old.Status.PodIP != cur.Status.PodIP ||
		len(old.Status.PodIPs) != len(cur.Status.PodIPs) ||
		old.Spec.NodeName != cur.Spec.NodeName ||
		old.Spec.Hostname != cur.Spec.Hostname ||
		old.Spec.Subdomain != cur.Spec.Subdomain {
		return true, false
	}
	for i := range old.Status.PodIPs {
		if old.Status.PodIPs[i] != cur.Status.PodIPs[i] {
			return true, false
		}
	}
	return false, false
}
