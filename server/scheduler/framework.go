package scheduler

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/orch-dev/orch/server/scheduling"
)

// Filter failure reasons, worded exactly as kube-scheduler's plugins word
// them: users and tools grep for these.
const (
	reasonUnschedulable       = "node(s) were unschedulable"
	reasonNodeAffinity        = "node(s) didn't match Pod's node affinity/selector"
	reasonTaintFormat         = "node(s) had untolerated taint {%s: %s}"
	reasonPorts               = "node(s) didn't have free ports for the requested pod ports"
	reasonTooManyPods         = "Too many pods"
	reasonInsufficientFormat  = "Insufficient %s"
	reasonExistingAntiAffnity = "node(s) didn't satisfy existing pods anti-affinity rules"
	reasonPodAffinity         = "node(s) didn't match pod affinity rules"
	reasonPodAntiAffinity     = "node(s) didn't match pod anti-affinity rules"
	reasonVolumeNodeAffinity  = "node(s) had volume node affinity conflict"

	reasonUnboundImmediatePVC = "pod has unbound immediate PersistentVolumeClaims"
)

// Annotation the scheduler puts on an unbound WaitForFirstConsumer claim
// to tell the provisioner which node the pod goes to.
const annSelectedNode = "volume.kubernetes.io/selected-node"

// maxNodeScore is the top score of one scoring function.
const maxNodeScore int64 = 100

// Weights of the scoring functions in kube-scheduler's default profile.
const (
	weightLeastAllocated  = 1
	weightBalanced        = 1
	weightNodeAffinity    = 2
	weightSpread          = 2
	weightTaintToleration = 3
)

// status says why a node cannot take a pod.
type status struct {
	reasons []string
	// unresolvable: evicting pods from the node would not help (upstream's
	// UnschedulableAndUnresolvable), which decides the preemption message.
	unresolvable bool
}

func unresolvable(reason string) *status {
	return &status{reasons: []string{reason}, unresolvable: true}
}

func unschedulable(reason string) *status { return &status{reasons: []string{reason}} }

// lookups reads the objects the filters need beyond nodes and pods.
type lookups interface {
	namespaceLabels(ns string) labels.Set
	claim(ns, name string) (*corev1.PersistentVolumeClaim, bool)
	volume(name string) (*corev1.PersistentVolume, bool)
	storageClass(name string) (*storagev1.StorageClass, bool)
}

// podState is everything derived from the pod being scheduled, computed
// once per attempt so that the per-node filters are map lookups and
// arithmetic.
type podState struct {
	pod      *corev1.Pod
	info     *podInfo
	nsLabels func(string) labels.Set

	affinity     []affinityTerm
	antiAffinity []affinityTerm
	// Topology pairs (label key and value) holding pods that matter:
	// existing pods whose anti-affinity rejects this pod, pods matching all
	// of this pod's affinity terms, pods matching its anti-affinity terms.
	existingAnti   map[topologyPair]int
	affinityCounts map[topologyPair]int
	antiCounts     map[topologyPair]int

	// volumeTerms are the node affinities of the bound volumes; every one
	// must match.
	volumeTerms [][]corev1.NodeSelectorTerm
	// waitingClaims are unbound WaitForFirstConsumer claims, annotated with
	// the chosen node before the pod is bound.
	waitingClaims []*corev1.PersistentVolumeClaim

	preferNoSchedule []corev1.Toleration
}

// preFilter builds the pod's state. A non-empty message means no node can
// take the pod, whatever the node (upstream's PreFilter rejection).
// Call with the cache locked.
func preFilter(c *cache, pod *corev1.Pod, lk lookups) (*podState, string) {
	s := &podState{pod: pod, info: newPodInfo(pod), nsLabels: lk.namespaceLabels}
	if msg := s.preFilterVolumes(lk); msg != "" {
		return s, msg
	}
	for _, t := range pod.Spec.Tolerations {
		if t.Effect == "" || t.Effect == corev1.TaintEffectPreferNoSchedule {
			s.preferNoSchedule = append(s.preferNoSchedule, t)
		}
	}
	if a := pod.Spec.Affinity; a != nil {
		if a.PodAffinity != nil {
			s.affinity = parseAffinityTerms(pod, a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution)
		}
		s.antiAffinity = s.info.antiAffinity
	}
	s.countPodAffinity(c)
	return s, ""
}

func (s *podState) preFilterVolumes(lk lookups) string {
	pod := s.pod
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		var name string
		ephemeral := false
		switch {
		case v.PersistentVolumeClaim != nil:
			name = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			name = pod.Name + "-" + v.Name
			ephemeral = true
		default:
			continue
		}
		pvc, ok := lk.claim(pod.Namespace, name)
		if !ok {
			if ephemeral {
				return fmt.Sprintf("waiting for ephemeral volume controller to create the persistentvolumeclaim %q", name)
			}
			return fmt.Sprintf("persistentvolumeclaim %q not found", name)
		}
		if pvc.DeletionTimestamp != nil {
			return fmt.Sprintf("persistentvolumeclaim %q is being deleted", name)
		}
		if pvc.Spec.VolumeName == "" {
			if !waitsForConsumer(pvc, lk) {
				return reasonUnboundImmediatePVC
			}
			s.waitingClaims = append(s.waitingClaims, pvc)
			continue
		}
		pv, ok := lk.volume(pvc.Spec.VolumeName)
		if !ok {
			return fmt.Sprintf("pvc %s/%s bound to non-existent pv %s", pvc.Namespace, pvc.Name, pvc.Spec.VolumeName)
		}
		if na := pv.Spec.NodeAffinity; na != nil && na.Required != nil {
			s.volumeTerms = append(s.volumeTerms, na.Required.NodeSelectorTerms)
		}
	}
	return ""
}

func waitsForConsumer(pvc *corev1.PersistentVolumeClaim, lk lookups) bool {
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName == "" {
		return false
	}
	sc, ok := lk.storageClass(*pvc.Spec.StorageClassName)
	return ok && sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}

// countPodAffinity walks the placed pods once, as upstream's
// InterPodAffinity PreFilter does, so that its Filter is lookups.
func (s *podState) countPodAffinity(c *cache) {
	for _, pi := range c.antiAffinityPods {
		n := c.nodes[pi.node]
		if n == nil || n.node == nil {
			continue
		}
		for i := range pi.antiAffinity {
			t := &pi.antiAffinity[i]
			if v, ok := n.node.Labels[t.topologyKey]; ok && t.matches(s.pod, s.nsLabels) {
				if s.existingAnti == nil {
					s.existingAnti = map[topologyPair]int{}
				}
				s.existingAnti[topologyPair{t.topologyKey, v}]++
			}
		}
	}
	if len(s.affinity) == 0 && len(s.antiAffinity) == 0 {
		return
	}
	s.affinityCounts = map[topologyPair]int{}
	s.antiCounts = map[topologyPair]int{}
	for _, pi := range c.pods {
		n := c.nodes[pi.node]
		if n == nil || n.node == nil {
			continue
		}
		if matchesAllTerms(s.affinity, pi.pod, s.nsLabels) {
			for i := range s.affinity {
				if v, ok := n.node.Labels[s.affinity[i].topologyKey]; ok {
					s.affinityCounts[topologyPair{s.affinity[i].topologyKey, v}]++
				}
			}
		}
		for i := range s.antiAffinity {
			t := &s.antiAffinity[i]
			if v, ok := n.node.Labels[t.topologyKey]; ok && t.matches(pi.pod, s.nsLabels) {
				s.antiCounts[topologyPair{t.topologyKey, v}]++
			}
		}
	}
}

// filter runs the filters in kube-scheduler's order and returns the first
// failure, or nil when the node fits.
func (s *podState) filter(n *nodeInfo) *status {
	if st := s.filterUnschedulable(n); st != nil {
		return st
	}
	if st := s.filterTaints(n); st != nil {
		return st
	}
	if st := s.filterNodeAffinity(n); st != nil {
		return st
	}
	if st := s.filterPorts(n); st != nil {
		return st
	}
	if st := s.filterResources(n); st != nil {
		return st
	}
	if st := s.filterVolumes(n); st != nil {
		return st
	}
	return s.filterPodAffinity(n)
}

// filterUnschedulable is NodeUnschedulable: a cordoned node takes only
// pods tolerating the unschedulable taint.
func (s *podState) filterUnschedulable(n *nodeInfo) *status {
	if !n.node.Spec.Unschedulable {
		return nil
	}
	taint := corev1.Taint{Key: taintUnschedulable, Effect: corev1.TaintEffectNoSchedule}
	if scheduling.ToleratesTaint(s.pod.Spec.Tolerations, &taint) {
		return nil
	}
	return unresolvable(reasonUnschedulable)
}

// filterTaints is TaintToleration: NoSchedule and NoExecute taints must be
// tolerated; PreferNoSchedule only affects scoring.
func (s *podState) filterTaints(n *nodeInfo) *status {
	t, ok := untoleratedTaint(n, s.pod.Spec.Tolerations)
	if !ok {
		return nil
	}
	return unresolvable(fmt.Sprintf(reasonTaintFormat, t.Key, t.Value))
}

// filterNodeAffinity is NodeAffinity: nodeSelector and required node
// affinity.
func (s *podState) filterNodeAffinity(n *nodeInfo) *status {
	if scheduling.MatchesNodeSelectorAndAffinity(&s.pod.Spec, n.node) {
		return nil
	}
	return unresolvable(reasonNodeAffinity)
}

// filterPorts is NodePorts: a host port (protocol, port, address) may be
// used once per node.
func (s *podState) filterPorts(n *nodeInfo) *status {
	for _, want := range s.info.ports {
		for used := range n.ports {
			if want.conflicts(used) {
				return unschedulable(reasonPorts)
			}
		}
	}
	return nil
}

// filterResources is NodeResourcesFit: requests against allocatable minus
// what the node's pods (bound and assumed) request, and the pod count.
func (s *podState) filterResources(n *nodeInfo) *status {
	var st *status
	fail := func(reason string, unres bool) {
		if st == nil {
			st = &status{}
		}
		st.reasons = append(st.reasons, reason)
		st.unresolvable = st.unresolvable || unres
	}
	if int64(len(n.pods))+1 > n.allowedPods {
		fail(reasonTooManyPods, false)
	}
	req, alloc, used := &s.info.req, &n.allocatable, &n.requested
	check := func(name corev1.ResourceName, want, have, inUse int64) {
		if want > 0 && want > have-inUse {
			// More than the whole node: no eviction can make room.
			fail(fmt.Sprintf(reasonInsufficientFormat, name), want > have)
		}
	}
	check(corev1.ResourceCPU, req.milliCPU, alloc.milliCPU, used.milliCPU)
	check(corev1.ResourceMemory, req.memory, alloc.memory, used.memory)
	check(corev1.ResourceEphemeralStorage, req.ephemeral, alloc.ephemeral, used.ephemeral)
	for name, want := range req.scalar {
		check(name, want, alloc.scalar[name], used.scalar[name])
	}
	return st
}

// filterVolumes is VolumeBinding's node check for bound volumes: their
// node affinity (local PVs) must match the node.
func (s *podState) filterVolumes(n *nodeInfo) *status {
	for _, terms := range s.volumeTerms {
		if !scheduling.MatchesNodeSelectorTerms(terms, n.node) {
			return unresolvable(reasonVolumeNodeAffinity)
		}
	}
	return nil
}

// filterPodAffinity is InterPodAffinity's Filter on the counts preFilter
// made.
func (s *podState) filterPodAffinity(n *nodeInfo) *status {
	lbls := n.node.Labels
	for tp, count := range s.existingAnti {
		if v, ok := lbls[tp.key]; ok && v == tp.value && count > 0 {
			return unschedulable(reasonExistingAntiAffnity)
		}
	}
	if len(s.affinity) > 0 {
		podsExist := true
		for i := range s.affinity {
			v, ok := lbls[s.affinity[i].topologyKey]
			if !ok {
				return unresolvable(reasonPodAffinity)
			}
			if s.affinityCounts[topologyPair{s.affinity[i].topologyKey, v}] <= 0 {
				podsExist = false
			}
		}
		// The first pod of a group with affinity to itself must be able to
		// land somewhere.
		if !podsExist && !(len(s.affinityCounts) == 0 && matchesAllTerms(s.affinity, s.pod, s.nsLabels)) {
			return unresolvable(reasonPodAffinity)
		}
	}
	for i := range s.antiAffinity {
		t := &s.antiAffinity[i]
		if v, ok := lbls[t.topologyKey]; ok && s.antiCounts[topologyPair{t.topologyKey, v}] > 0 {
			return unschedulable(reasonPodAntiAffinity)
		}
	}
	return nil
}

// score returns the weighted total of the default profile's scores of each
// feasible node.
func (s *podState) score(nodes []*nodeInfo) []int64 {
	total := make([]int64, len(nodes))
	raw := make([]int64, len(nodes))
	for i, n := range nodes {
		total[i] = weightLeastAllocated*s.leastAllocated(n) + weightBalanced*s.balancedAllocation(n)
	}

	// Preferred node affinity: the sum of matching terms' weights,
	// normalized to the best node.
	var preferred []corev1.PreferredSchedulingTerm
	if a := s.pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		preferred = a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	}
	for i, n := range nodes {
		raw[i] = preferredNodeAffinity(preferred, n.node)
	}
	addNormalized(total, raw, weightNodeAffinity, false)

	// TaintToleration: fewer untolerated PreferNoSchedule taints is better.
	for i, n := range nodes {
		raw[i] = s.intolerablePreferNoSchedule(n)
	}
	addNormalized(total, raw, weightTaintToleration, true)

	s.addSpread(total, nodes)
	return total
}

// addNormalized adds weight × raw scaled so that the largest raw value
// scores maxNodeScore (reversed: scores 0), as upstream's
// DefaultNormalizeScore.
func addNormalized(total, raw []int64, weight int64, reverse bool) {
	var top int64
	for _, v := range raw {
		top = max(top, v)
	}
	for i, v := range raw {
		var sc int64
		switch {
		case top == 0 && reverse:
			sc = maxNodeScore
		case top == 0:
			sc = 0
		default:
			sc = v * maxNodeScore / top
			if reverse {
				sc = maxNodeScore - sc
			}
		}
		total[i] += weight * sc
	}
}

// leastAllocated is NodeResourcesFit's LeastAllocated strategy on CPU and
// memory (weight 1 each), with non-zero requests.
func (s *podState) leastAllocated(n *nodeInfo) int64 {
	var sum, weights int64
	score := func(requested, capacity int64) {
		if capacity == 0 {
			return
		}
		weights++
		if requested > capacity {
			return
		}
		sum += (capacity - requested) * maxNodeScore / capacity
	}
	score(n.nonZeroCPU+s.info.nonZeroCPU, n.allocatable.milliCPU)
	score(n.nonZeroMemory+s.info.nonZeroMemory, n.allocatable.memory)
	if weights == 0 {
		return 0
	}
	return sum / weights
}

// balancedAllocation is NodeResourcesBalancedAllocation: nodes whose CPU and
// memory would be used in equal fractions score higher.
func (s *podState) balancedAllocation(n *nodeInfo) int64 {
	var fractions [2]float64
	k := 0
	frac := func(requested, capacity int64) {
		if capacity == 0 {
			return
		}
		fractions[k] = math.Min(float64(requested)/float64(capacity), 1)
		k++
	}
	frac(n.requested.milliCPU+s.info.req.milliCPU, n.allocatable.milliCPU)
	frac(n.requested.memory+s.info.req.memory, n.allocatable.memory)
	std := 0.0
	if k == 2 {
		std = math.Abs((fractions[0] - fractions[1]) / 2)
	}
	return int64((1 - std) * float64(maxNodeScore))
}

func preferredNodeAffinity(terms []corev1.PreferredSchedulingTerm, node *corev1.Node) int64 {
	var sum int64
	for i := range terms {
		if terms[i].Weight != 0 && scheduling.MatchesNodeSelectorTerm(&terms[i].Preference, node) {
			sum += int64(terms[i].Weight)
		}
	}
	return sum
}

func (s *podState) intolerablePreferNoSchedule(n *nodeInfo) int64 {
	var count int64
	for i := range n.node.Spec.Taints {
		t := &n.node.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule && !scheduling.ToleratesTaint(s.preferNoSchedule, t) {
			count++
		}
	}
	return count
}

// addSpread is SelectorSpread by controller: fewer pods of the same
// controller on the node, and in its zone (weighted 2/3 when nodes have
// zones), score higher.
func (s *podState) addSpread(total []int64, nodes []*nodeInfo) {
	owner := s.info.owner
	if owner == "" {
		// Nothing to spread against: every node scores the maximum.
		for i := range total {
			total[i] += weightSpread * maxNodeScore
		}
		return
	}
	var maxNode int64
	var zones map[string]int64
	for _, n := range nodes {
		c := int64(n.owners[owner])
		maxNode = max(maxNode, c)
		if z := n.zone; z != "" {
			if zones == nil {
				zones = map[string]int64{}
			}
			zones[z] += c
		}
	}
	var maxZone int64
	for _, c := range zones {
		maxZone = max(maxZone, c)
	}
	for i, n := range nodes {
		sc := float64(maxNodeScore)
		if maxNode > 0 {
			sc = float64(maxNodeScore) * float64(maxNode-int64(n.owners[owner])) / float64(maxNode)
		}
		if z := n.zone; zones != nil && z != "" {
			zoneScore := float64(maxNodeScore)
			if maxZone > 0 {
				zoneScore = float64(maxNodeScore) * float64(maxZone-zones[z]) / float64(maxZone)
			}
			sc = sc/3 + zoneScore*2/3
		}
		total[i] += weightSpread * int64(sc)
	}
}
