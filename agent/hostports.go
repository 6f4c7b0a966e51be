package agent

import (
	"context"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/netproxy/proxy"
)

// hostPortRules is what hostPortNetwork needs of the service proxy
// (*proxy.Syncer), which DNATs the mappings in orch's table.
type hostPortRules interface {
	SetPodHostPorts(uid types.UID, hps []proxy.HostPort)
}

// hostPortNetwork is the pod network plus its pods' ports[].hostPort, the
// part of CNI's portmap plugin a kubelet's network would do: a pod's
// mappings go into effect once it has its address and go with its
// network. After an agent restart the pod workers set every pod up again,
// which restores the mappings of running pods.
type hostPortNetwork struct {
	PodNetwork
	rules hostPortRules
}

var _ PodNetwork = hostPortNetwork{}

// Setup implements PodNetwork.
func (n hostPortNetwork) Setup(ctx context.Context, pod *v1.Pod, netnsPath string) (string, error) {
	ip, err := n.PodNetwork.Setup(ctx, pod, netnsPath)
	if err != nil {
		return ip, err
	}
	if addr, perr := netip.ParseAddr(ip); perr == nil {
		n.rules.SetPodHostPorts(pod.UID, proxy.PodHostPorts(pod, addr))
	}
	return ip, nil
}

// Teardown implements PodNetwork; the mappings go first, so nothing is
// DNATed to an address about to be given to another pod.
func (n hostPortNetwork) Teardown(ctx context.Context, pod *v1.Pod, netnsPath string) error {
	n.rules.SetPodHostPorts(pod.UID, nil)
	return n.PodNetwork.Teardown(ctx, pod, netnsPath)
}

// restoreHostPorts gives rules the mappings of the node's running pods
// from the API before the proxy first writes its table, so that an agent
// restart does not drop them until each pod's worker has set its pod up
// again (new connections to a hostPort would be refused meanwhile).
func (a *Agent) restoreHostPorts(ctx context.Context, rules hostPortRules) {
	var list v1.PodList
	if err := a.api.List(ctx, apiclient.Pods, "", apiclient.ListOptions{FieldSelector: "spec.nodeName=" + a.nodeName}, &list); err != nil {
		a.log.Warn("cannot list pods to restore their hostPorts; they return as the pods are set up", "err", err)
		return
	}
	for i := range list.Items {
		pod := &list.Items[i]
		if pod.DeletionTimestamp != nil || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
			continue
		}
		if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
			if hps := proxy.PodHostPorts(pod, ip); len(hps) > 0 {
				rules.SetPodHostPorts(pod.UID, hps)
			}
		}
	}
}
