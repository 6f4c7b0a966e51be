package scheduler

import (
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Well-known labels and taints the scheduler reads.
const (
	labelHostname = "kubernetes.io/hostname"
	labelZone     = "topology.kubernetes.io/zone"

	taintNotReady      = "node.kubernetes.io/not-ready"
	taintUnreachable   = "node.kubernetes.io/unreachable"
	taintUnschedulable = "node.kubernetes.io/unschedulable"
)

// hostPort is one host port a pod uses. An empty or 0.0.0.0 ip means
// every address of the node.
type hostPort struct {
	ip       string
	protocol corev1.Protocol
	port     int32
}

func (p hostPort) conflicts(o hostPort) bool {
	if p.port != o.port || p.protocol != o.protocol {
		return false
	}
	return p.ip == o.ip || isWildcardIP(p.ip) || isWildcardIP(o.ip)
}

func isWildcardIP(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }

// podInfo is what the scheduler derives once from a pod: its requests,
// ports, controller and anti-affinity. The pod itself is the informer's
// shared object and is never modified.
type podInfo struct {
	pod           *corev1.Pod
	node          string
	req           resources
	nonZeroCPU    int64
	nonZeroMemory int64
	ports         []hostPort
	owner         types.UID // controller's uid, "" if none
	// antiAffinity holds the required anti-affinity terms, which existing
	// pods impose on newcomers; nil for most pods.
	antiAffinity []affinityTerm
	assumed      bool
}

func newPodInfo(pod *corev1.Pod) *podInfo {
	pi := &podInfo{pod: pod, node: pod.Spec.NodeName}
	pi.req, pi.nonZeroCPU, pi.nonZeroMemory = podRequests(pod)
	pi.ports = podHostPorts(pod)
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		pi.owner = ref.UID
	}
	if a := pod.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		pi.antiAffinity = parseAffinityTerms(pod, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution)
	}
	return pi
}

func podHostPorts(pod *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(cs []corev1.Container, sidecarsOnly bool) {
		for i := range cs {
			if sidecarsOnly && (cs[i].RestartPolicy == nil || *cs[i].RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, p := range cs[i].Ports {
				if p.HostPort <= 0 {
					continue
				}
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				out = append(out, hostPort{ip: p.HostIP, protocol: proto, port: p.HostPort})
			}
		}
	}
	add(pod.Spec.InitContainers, true)
	add(pod.Spec.Containers, false)
	return out
}

// nodeInfo aggregates one node and the pods bound or assumed on it, so that
// filters and scores read a handful of numbers instead of walking pods.
type nodeInfo struct {
	name string
	// node is nil while pods still name a node that is gone (or not yet
	// seen); such a node is never a candidate.
	node        *corev1.Node
	allocatable resources
	allowedPods int64
	zone        string
	// notReadyTaint is the taint the node lifecycle controller puts on a
	// node in this condition, when the node does not carry it yet: the
	// scheduler then acts as if it did, so that pods tolerating it (daemon
	// sets) still land and the message reads as Kubernetes'.
	notReadyTaint *corev1.Taint

	requested     resources
	nonZeroCPU    int64
	nonZeroMemory int64
	pods          map[types.UID]*podInfo
	ports         map[hostPort]int
	// owners counts the pods of each controller, for spreading.
	owners map[types.UID]int32
}

func newNodeInfo(name string) *nodeInfo {
	return &nodeInfo{name: name, pods: map[types.UID]*podInfo{}}
}

func (n *nodeInfo) setNode(node *corev1.Node) {
	n.node = node
	n.allocatable = listOf(node.Status.Allocatable)
	n.allowedPods = 0
	n.zone = node.Labels[labelZone]
	if q, ok := node.Status.Allocatable[corev1.ResourcePods]; ok {
		n.allowedPods = q.Value()
	}
	n.notReadyTaint = nil
	key := taintNotReady
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
			if c.Status == corev1.ConditionUnknown {
				key = taintUnreachable
			}
		}
	}
	if !ready && !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool {
		return t.Key == taintNotReady || t.Key == taintUnreachable
	}) {
		n.notReadyTaint = &corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule}
	}
}

func (n *nodeInfo) labels() map[string]string {
	if n.node == nil {
		return nil
	}
	return n.node.Labels
}

func (n *nodeInfo) addPod(pi *podInfo) {
	n.pods[pi.pod.UID] = pi
	n.requested.add(pi.req)
	n.nonZeroCPU += pi.nonZeroCPU
	n.nonZeroMemory += pi.nonZeroMemory
	for _, p := range pi.ports {
		if n.ports == nil {
			n.ports = map[hostPort]int{}
		}
		n.ports[p]++
	}
	if pi.owner != "" {
		if n.owners == nil {
			n.owners = map[types.UID]int32{}
		}
		n.owners[pi.owner]++
	}
}

func (n *nodeInfo) removePod(pi *podInfo) {
	if _, ok := n.pods[pi.pod.UID]; !ok {
		return
	}
	delete(n.pods, pi.pod.UID)
	n.requested.sub(pi.req)
	n.nonZeroCPU -= pi.nonZeroCPU
	n.nonZeroMemory -= pi.nonZeroMemory
	for _, p := range pi.ports {
		if n.ports[p]--; n.ports[p] <= 0 {
			delete(n.ports, p)
		}
	}
	if pi.owner != "" {
		if n.owners[pi.owner]--; n.owners[pi.owner] <= 0 {
			delete(n.owners, pi.owner)
		}
	}
}

// cache holds the nodes and the pods placed on them, including pods the
// scheduler has assumed onto a node while their binding is in flight.
// Informer handlers write it; the scheduling loop reads it under mu.
type cache struct {
	mu    sync.RWMutex
	nodes map[string]*nodeInfo
	// list holds the known nodes sorted by name; nil when it must be rebuilt.
	list []*nodeInfo
	pods map[types.UID]*podInfo
	// antiAffinityPods are the placed pods with required anti-affinity.
	antiAffinityPods map[types.UID]*podInfo
}

func newCache() *cache {
	return &cache{
		nodes:            map[string]*nodeInfo{},
		pods:             map[types.UID]*podInfo{},
		antiAffinityPods: map[types.UID]*podInfo{},
	}
}

func (c *cache) setNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[node.Name]
	if n == nil {
		n = newNodeInfo(node.Name)
		c.nodes[node.Name] = n
	}
	if n.node == nil {
		c.list = nil
	}
	n.setNode(node)
}

func (c *cache) removeNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[name]
	if n == nil {
		return
	}
	n.node = nil
	c.list = nil
	if len(n.pods) == 0 {
		delete(c.nodes, name)
	}
}

// nodeListLocked returns the known nodes sorted by name, rebuilding the
// list after nodes came or went. Call with mu held for writing.
func (c *cache) nodeListLocked() []*nodeInfo {
	if c.list != nil {
		return c.list
	}
	list := make([]*nodeInfo, 0, len(c.nodes))
	for _, n := range c.nodes {
		if n.node != nil {
			list = append(list, n)
		}
	}
	slices.SortFunc(list, func(a, b *nodeInfo) int { return strings.Compare(a.name, b.name) })
	c.list = list
	return list
}

// addPod records a pod placed on its node (spec.nodeName), replacing any
// earlier state of it, assumed or not.
func (c *cache) addPod(pi *podInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removePodLocked(pi.pod.UID)
	c.addPodLocked(pi)
}

func (c *cache) addPodLocked(pi *podInfo) {
	n := c.nodes[pi.node]
	if n == nil {
		n = newNodeInfo(pi.node)
		c.nodes[pi.node] = n
	}
	n.addPod(pi)
	c.pods[pi.pod.UID] = pi
	if len(pi.antiAffinity) > 0 {
		c.antiAffinityPods[pi.pod.UID] = pi
	}
}

func (c *cache) removePod(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removePodLocked(uid)
}

func (c *cache) removePodLocked(uid types.UID) {
	pi := c.pods[uid]
	if pi == nil {
		return
	}
	delete(c.pods, uid)
	delete(c.antiAffinityPods, uid)
	n := c.nodes[pi.node]
	if n == nil {
		return
	}
	n.removePod(pi)
	if n.node == nil && len(n.pods) == 0 {
		delete(c.nodes, pi.node)
	}
}

// assumeLocked places pi on node before the binding is written, so that
// the next scheduling cycle sees its resources taken.
func (c *cache) assumeLocked(pi *podInfo, node string) {
	pi.node = node
	pi.assumed = true
	c.removePodLocked(pi.pod.UID)
	c.addPodLocked(pi)
}

// forget undoes assume after a failed binding, unless the informer has
// meanwhile reported the pod bound.
func (c *cache) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pi := c.pods[uid]; pi != nil && pi.assumed {
		c.removePodLocked(uid)
	}
}

func (c *cache) isAssumed(uid types.UID) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	pi := c.pods[uid]
	return pi != nil && pi.assumed
}
