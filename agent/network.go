package agent

import (
	"context"
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
)

// PodNetwork wires a pod's network namespace to the node's pod network
// (netproxy implements it). Setup returns the pod's IP; it is called
// again for the same namespace after an agent restart and must then
// return the address it gave before. Teardown undoes Setup and tolerates
// being called twice or after a failed Setup.
type PodNetwork interface {
	Setup(ctx context.Context, pod *v1.Pod, netnsPath string) (ip string, err error)
	Teardown(ctx context.Context, pod *v1.Pod, netnsPath string) error
}

// loopbackNetwork is the default until a pod network exists: pods get
// only their loopback interface and no IP.
type loopbackNetwork struct{}

func (loopbackNetwork) Setup(context.Context, *v1.Pod, string) (string, error) { return "", nil }
func (loopbackNetwork) Teardown(context.Context, *v1.Pod, string) error        { return nil }

// setupPodNetwork brings up lo in the pod's namespace (the pause process
// leaves it down) and asks the pod network for an address. hostNetwork
// pods report the node's IP.
func (a *Agent) setupPodNetwork(ctx context.Context, pod *v1.Pod, netns string) (string, error) {
	if err := inNetNS(netns, setLoopbackUp); err != nil {
		return "", fmt.Errorf("bring up loopback in %s: %w", netns, err)
	}
	if pod.Spec.HostNetwork {
		return a.hostIP, nil
	}
	ip, err := a.net.Setup(ctx, pod, netns)
	if err != nil {
		return "", fmt.Errorf("set up pod network: %w", err)
	}
	return ip, nil
}

// NetworkConfig turns on orch's own networking on the node: the pod
// network (netproxy/podnet) once the server has given the Node a
// podCIDR, the nftables service proxy and the node-local cluster DNS
// (services.go). Without it pods get only loopback (loopbackNetwork).
type NetworkConfig struct {
	// ClusterCIDR is the whole pod network (--cluster-cidr).
	ClusterCIDR netip.Prefix
	// ServiceCIDR is the cluster IP range (--service-cidr); the kube-dns
	// address, its 10th, is where pods find DNS.
	ServiceCIDR netip.Prefix
	// Backend is how pods reach other nodes' pods (--flannel-backend):
	// podnet.BackendHostGW, BackendVXLAN or BackendAuto (the default).
	Backend string
	// IngressHTTPPort and IngressHTTPSPort are where the node's ingress
	// proxy listens on all its addresses (80 and 443 for orch server and
	// orch agent unless --disable ingress; see ingress.go); 0 is off.
	IngressHTTPPort, IngressHTTPSPort int
}
