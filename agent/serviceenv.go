package agent

import (
	"errors"
	"net"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// errServicesNotRead is the kubelet's answer, as a container config
// error, when a pod would start before the node has listed services:
// the pod would miss KUBERNETES_SERVICE_HOST, which in-cluster clients
// need.
var errServicesNotRead = errors.New("services have not yet been read at least once, cannot construct envvars")

// masterService is the API server's Service, in namespace default, whose
// variables every pod gets, whatever its enableServiceLinks.
const masterService = "kubernetes"

// serviceEnv is the service environment of pod's containers, as the
// kubelet builds it: the variables of the "kubernetes" Service of
// namespace default always, and those of the Services of the pod's own
// namespace unless spec.enableServiceLinks is false. A node without the
// service proxy (no pod network of its own) has none to give.
func (a *Agent) serviceEnv(pod *v1.Pod) (map[string]string, error) {
	if a.cfg.Network == nil || a.cfg.PodNetwork != nil {
		return nil, nil
	}
	var (
		svcs   []*v1.Service
		listed bool
	)
	if src := a.services.Load(); src != nil {
		links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
		svcs, listed = src.envServices(pod.Namespace, links)
	}
	// Static pods may start before the API server answers (it may be one
	// of them), as the kubelet lets them.
	if !listed && !isStaticPod(pod) {
		return nil, errServicesNotRead
	}
	return serviceEnvVars(svcs), nil
}

// envServices returns the Services whose variables a pod of namespace
// ns gets (serviceEnv), and whether Services were listed yet.
func (s *serviceState) envServices(ns string, links bool) ([]*v1.Service, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.services.Listed() {
		return nil, false
	}
	var out []*v1.Service
	if m, ok := s.services.Get(metav1.NamespaceDefault, masterService); ok {
		out = append(out, m)
	}
	if links {
		for _, svc := range s.services.Values(0) {
			if svc.Namespace == ns && (ns != metav1.NamespaceDefault || svc.Name != masterService) {
				out = append(out, svc)
			}
		}
	}
	return out, true
}

// serviceEnvVars are the variables of services with a cluster IP, as
// Kubernetes names them: NAME_SERVICE_HOST, NAME_SERVICE_PORT (first
// port), NAME_SERVICE_PORT_PORTNAME for named ports, and Docker's link
// variables (NAME_PORT, NAME_PORT_80_TCP, ..._PROTO, ..._PORT, ..._ADDR).
func serviceEnvVars(svcs []*v1.Service) map[string]string {
	env := map[string]string{}
	for _, svc := range svcs {
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == v1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
			continue
		}
		prefix := envVarName(svc.Name)
		env[prefix+"_SERVICE_HOST"] = ip
		env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(svc.Spec.Ports[0].Port))
		for i, p := range svc.Spec.Ports {
			port := strconv.Itoa(int(p.Port))
			if p.Name != "" {
				env[prefix+"_SERVICE_PORT_"+envVarName(p.Name)] = port
			}
			proto := strings.ToLower(string(v1.ProtocolTCP))
			if p.Protocol != "" {
				proto = strings.ToLower(string(p.Protocol))
			}
			url := proto + "://" + net.JoinHostPort(ip, port)
			if i == 0 {
				env[prefix+"_PORT"] = url // Docker special-cases the first port
			}
			portPrefix := prefix + "_PORT_" + port + "_" + strings.ToUpper(proto)
			env[portPrefix] = url
			env[portPrefix+"_PROTO"] = proto
			env[portPrefix+"_PORT"] = port
			env[portPrefix+"_ADDR"] = ip
		}
	}
	return env
}

// envVarName turns a Service or port name (a DNS label) into the stem of
// its variables.
func envVarName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}
