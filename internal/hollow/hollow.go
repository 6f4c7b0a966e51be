// Package hollow simulates nodes for tests and benchmarks: it registers
// Node objects, renews their Leases, and acts like a kubelet without
// containers: pods bound to its nodes become Running and Ready (or fail,
// crash-loop or never become ready, as a pod's annotation asks), and pods
// being deleted are finished off once their grace period is over. Each node
// reports simulated resource usage on the kubelet's /metrics/resource
// (see CPUAnnotation and Transport).
//
// It talks to the API server over the wire with client-go, like a real
// agent would; it is never linked into the orch binary.
package hollow

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/server/controllers/queue"
)

// BehaviourAnnotation on a pod tells the hollow kubelet how the pod behaves:
// "run" (default: Running and Ready), "notready" (Running, never Ready),
// "fail" (Failed at once), "crash" (restarts, CrashLoopBackOff),
// "complete" (Succeeded at once, like a finished Job pod).
const BehaviourAnnotation = "hollow.orch.dev/behaviour"

// Options describe the simulated nodes.
type Options struct {
	Nodes      int
	NamePrefix string // default "hollow-"
	CPU        string // allocatable cpu per node, default "4"
	Memory     string // default "8Gi"
	Pods       int    // default 110
	// Labels adds labels to node i (e.g. zones).
	Labels func(i int) map[string]string
	// LeaseDuration, default 40 s; leases are renewed every quarter of it.
	LeaseDuration time.Duration
}

// Cluster is a set of running hollow nodes.
type Cluster struct {
	cs   kubernetes.Interface
	opts Options

	mu      sync.Mutex
	nodes   map[string]*nodeState
	stopped map[string]bool // nodes whose heartbeats are stopped
	usage   map[types.UID]*podUsage
	leases  map[string]*coordinationv1.Lease // last written, by node
	wg      sync.WaitGroup
	cancel  context.CancelFunc

	// Pod watch counters (WatchStats).
	lists, expired, rewatches atomic.Int64
}

type nodeState struct {
	name  string
	ip    net.IP
	pods  int
	usage nodeUsage
}

// Start registers the nodes and runs them until ctx ends or Stop is called.
func Start(ctx context.Context, cs kubernetes.Interface, opts Options) (*Cluster, error) {
	if opts.NamePrefix == "" {
		opts.NamePrefix = "hollow-"
	}
	if opts.CPU == "" {
		opts.CPU = "4"
	}
	if opts.Memory == "" {
		opts.Memory = "8Gi"
	}
	if opts.Pods == 0 {
		opts.Pods = 110
	}
	if opts.LeaseDuration == 0 {
		opts.LeaseDuration = 40 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &Cluster{cs: cs, opts: opts, nodes: map[string]*nodeState{}, stopped: map[string]bool{},
		leases: map[string]*coordinationv1.Lease{}, cancel: cancel}
	for i := 0; i < opts.Nodes; i++ {
		if err := c.AddNode(ctx, i); err != nil {
			cancel()
			return nil, err
		}
	}
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.heartbeat(ctx) }()
	go func() { defer c.wg.Done(); c.runPods(ctx) }()
	return c, nil
}

// Stop ends the simulation and waits for its goroutines.
func (c *Cluster) Stop() {
	c.cancel()
	c.wg.Wait()
}

// NodeName is the name of node i.
func (c *Cluster) NodeName(i int) string { return fmt.Sprintf("%s%d", c.opts.NamePrefix, i) }

// AddNode registers node i (also after Start, to add a node).
func (c *Cluster) AddNode(ctx context.Context, i int) error {
	name := c.NodeName(i)
	// Test node addresses come from the benchmarking range 198.18.0.0/15.
	ip := net.IPv4(198, 18, byte(i/250), byte(1+i%250))
	labels := map[string]string{
		corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
	}
	if c.opts.Labels != nil {
		for k, v := range c.opts.Labels(i) {
			labels[k] = v
		}
	}
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(c.opts.CPU),
		corev1.ResourceMemory: resource.MustParse(c.opts.Memory),
		corev1.ResourcePods:   *resource.NewQuantity(int64(c.opts.Pods), resource.DecimalSI),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.42.%d.0/24", i%256)},
	}
	created, err := c.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node %s: %w", name, err)
	}
	if err == nil {
		now := metav1.Now()
		created.Status = corev1.NodeStatus{
			Capacity: alloc, Allocatable: alloc, Phase: corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "hollow kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
			},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: name}},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.33.1+orch", ContainerRuntimeVersion: "hollow://1", OperatingSystem: "linux",
				Architecture: "amd64", OSImage: "hollow", KernelVersion: "hollow"},
		}
		if _, err := c.cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node %s status: %w", name, err)
		}
	}
	c.mu.Lock()
	c.nodes[name] = &nodeState{name: name, ip: ip, usage: nodeUsage{since: time.Now()}}
	c.mu.Unlock()
	return c.renewLease(ctx, name)
}

// StopHeartbeats makes node i go silent (its lease is no longer renewed), as
// a node that lost power.
func (c *Cluster) StopHeartbeats(i int) {
	c.mu.Lock()
	c.stopped[c.NodeName(i)] = true
	c.mu.Unlock()
}

// leaseRenewers is how many leases are renewed at once. Real kubelets
// renew their own lease each, in parallel; one loop renewing a thousand
// leases in turn took longer than the lease duration on a loaded machine,
// and healthy simulated nodes went NotReady.
const leaseRenewers = 16

func (c *Cluster) heartbeat(ctx context.Context) {
	t := time.NewTicker(c.opts.LeaseDuration / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		var names []string
		for name := range c.nodes {
			if !c.stopped[name] {
				names = append(names, name)
			}
		}
		c.mu.Unlock()
		next := make(chan string)
		var wg sync.WaitGroup
		for range min(leaseRenewers, len(names)) {
			wg.Go(func() {
				for name := range next {
					_ = c.renewLease(ctx, name)
				}
			})
		}
		for _, name := range names {
			next <- name
		}
		close(next)
		wg.Wait()
	}
}

// renewLease renews node's lease as the kubelet's lease controller does:
// an update of the lease it last wrote, a fresh read only when that fails
// (first renewal, conflict).
func (c *Cluster) renewLease(ctx context.Context, node string) error {
	leases := c.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	c.mu.Lock()
	l := c.leases[node]
	c.mu.Unlock()
	if l != nil {
		l = l.DeepCopy()
		l.Spec.RenewTime = &now
		if out, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err == nil {
			c.rememberLease(out)
			return nil
		}
	}
	l, err := leases.Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node),
				LeaseDurationSeconds: ptr.To(int32(c.opts.LeaseDuration / time.Second)), RenewTime: &now},
		}, metav1.CreateOptions{})
		if err == nil {
			c.rememberLease(l)
		}
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &now
	l, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	if err == nil {
		c.rememberLease(l)
	}
	return err
}

func (c *Cluster) rememberLease(l *coordinationv1.Lease) {
	c.mu.Lock()
	c.leases[l.Name] = l
	c.mu.Unlock()
}

// podSyncers is how many pods the simulated kubelets bring up at once.
// Real kubelets work in parallel, one per node; a single loop would make
// the simulation, not the control plane, the bottleneck of a benchmark.
const podSyncers = 16

// podEvent is a pod to sync, or one that is gone.
type podEvent struct {
	pod     *corev1.Pod
	deleted bool
}

// podWork holds the latest event of each pod waiting for a syncer, keyed
// by UID. The watch only records events here and queues the UID: like
// client-go's reflector feeding a work queue, reading the watch never waits
// for the syncers, so the server never has to cut this watcher off for
// falling behind, and a relist's thousands of pods do not delay the watch
// that follows it until the list's revision has left the server's history.
// A pod that changes again before a syncer takes it is synced once, in its
// latest state; the queue never hands one UID to two syncers at once.
type podWork struct {
	q *queue.Queue

	mu     sync.Mutex
	latest map[types.UID]podEvent
}

func newPodWork() *podWork {
	return &podWork{q: queue.New(nil), latest: map[types.UID]podEvent{}}
}

// add records ev as its pod's latest state and queues the pod; it never
// blocks.
func (w *podWork) add(ev podEvent) {
	w.mu.Lock()
	w.latest[ev.pod.UID] = ev
	w.mu.Unlock()
	w.q.Add(string(ev.pod.UID))
}

// take returns (and forgets) the latest event of uid.
func (w *podWork) take(uid types.UID) (podEvent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev, ok := w.latest[uid]
	delete(w.latest, uid)
	return ev, ok
}

// WatchStats counts how the simulated kubelets' pod watch went: a
// benchmark that stalls shows here whether the watch kept being expired.
type WatchStats struct {
	// Lists is how many times the pods were listed (the first list and
	// every relist).
	Lists int64
	// Expired counts watches the server refused or ended with 410 (the
	// revision left its history, or the watcher was cut off): each one
	// costs a relist.
	Expired int64
	// Rewatches counts watches that ended cleanly and were resumed from
	// the last revision seen, without a list.
	Rewatches int64
}

// WatchStats reports the pod watch's counters so far.
func (c *Cluster) WatchStats() WatchStats {
	return WatchStats{Lists: c.lists.Load(), Expired: c.expired.Load(), Rewatches: c.rewatches.Load()}
}

// runPods watches pods on any node and plays kubelet for those on ours. It
// works like client-go's reflector: list, then watch from the list's
// revision at once (the syncers work through the list meanwhile); resume a
// watch that ends from the last revision seen; relist only when the server
// says that revision is gone (410).
func (c *Cluster) runPods(ctx context.Context) {
	work := newPodWork()
	var wg sync.WaitGroup
	wg.Go(func() {
		queue.RunWorkers(ctx, work.q, podSyncers, nil, func(ctx context.Context, key string) error {
			if ev, ok := work.take(types.UID(key)); ok {
				if ev.deleted {
					c.forgetUsage(ev.pod.UID, time.Now())
				} else {
					c.syncPod(ctx, ev.pod)
				}
			}
			return nil
		})
	})
	defer wg.Wait()

	onNode := fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	rv := "" // "" means list first
	for ctx.Err() == nil {
		if rv == "" {
			c.lists.Add(1)
			list, err := c.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: onNode})
			if err != nil {
				sleep(ctx, time.Second)
				continue
			}
			live := map[types.UID]bool{}
			for i := range list.Items {
				live[list.Items[i].UID] = true
				work.add(podEvent{pod: &list.Items[i]})
			}
			c.forgetUsageExcept(live, time.Now())
			rv = list.ResourceVersion
		}
		w, err := c.cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{ResourceVersion: rv, FieldSelector: onNode,
			AllowWatchBookmarks: true})
		switch {
		case isExpired(err):
			c.expired.Add(1)
			rv = ""
			continue
		case err != nil:
			sleep(ctx, time.Second)
			continue
		}
		var werr error
		rv, werr = c.consumeWatch(ctx, w, work, rv)
		w.Stop()
		switch {
		case ctx.Err() != nil:
		case isExpired(werr):
			c.expired.Add(1)
			rv = ""
		case werr != nil:
			// Resume from rv, but not in a busy loop.
			c.rewatches.Add(1)
			sleep(ctx, time.Second)
		default:
			c.rewatches.Add(1)
		}
	}
}

// consumeWatch hands w's events to work until the watch or ctx ends. It
// returns the last revision seen, and the error the watch ended with (nil
// when it just closed).
func (c *Cluster) consumeWatch(ctx context.Context, w watch.Interface, work *podWork, rv string) (string, error) {
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-ctx.Done():
			return rv, ctx.Err()
		case ev, ok = <-w.ResultChan():
		}
		if !ok {
			return rv, nil
		}
		if ev.Type == watch.Error {
			return rv, apierrors.FromObject(ev.Object)
		}
		pod, isPod := ev.Object.(*corev1.Pod)
		if !isPod {
			continue
		}
		if pod.ResourceVersion != "" {
			rv = pod.ResourceVersion
		}
		if ev.Type != watch.Bookmark {
			work.add(podEvent{pod: pod, deleted: ev.Type == watch.Deleted})
		}
	}
}

// isExpired reports whether err means the requested revision is no longer
// in the server's history (410 Gone / Expired): the watcher must relist.
func isExpired(err error) bool {
	return err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err))
}

func (c *Cluster) syncPod(ctx context.Context, pod *corev1.Pod) {
	c.mu.Lock()
	node, ours := c.nodes[pod.Spec.NodeName]
	silent := c.stopped[pod.Spec.NodeName]
	c.mu.Unlock()
	if !ours || silent {
		return
	}
	pods := c.cs.CoreV1().Pods(pod.Namespace)
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		c.forgetUsage(pod.UID, time.Now())
	} else {
		c.trackUsage(pod, time.Now())
	}
	if pod.DeletionTimestamp != nil {
		// The containers "stop" at once: finish the deletion.
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0)),
			Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return
		}
		return
	}
	if pod.Status.Phase != corev1.PodPending && pod.Annotations[BehaviourAnnotation] != "crash" {
		return
	}
	status := c.podStatus(pod, node)
	if status == nil {
		return
	}
	pod = pod.DeepCopy()
	pod.Status = *status
	_, _ = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

// podStatus is the status a kubelet would report for pod's behaviour, or nil
// when nothing changes.
func (c *Cluster) podStatus(pod *corev1.Pod, node *nodeState) *corev1.PodStatus {
	now := metav1.Now()
	behaviour := pod.Annotations[BehaviourAnnotation]
	st := pod.Status.DeepCopy()
	if st.StartTime == nil {
		st.StartTime = &now
	}
	st.HostIP = node.ip.String()
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	if st.PodIP == "" {
		c.mu.Lock()
		node.pods++
		n := node.pods
		c.mu.Unlock()
		st.PodIP = fmt.Sprintf("10.42.%s.%d", strconv.Itoa(int(node.ip[14])%256), 2+n%250)
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	ready := corev1.ConditionTrue
	st.Phase = corev1.PodRunning
	var containers []corev1.ContainerStatus
	for _, ctr := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: ctr.Name, Image: ctr.Image, ImageID: "hollow://" + ctr.Image,
			ContainerID: "hollow://" + string(pod.UID) + "/" + ctr.Name, Started: ptr.To(true)}
		switch behaviour {
		case "fail":
			st.Phase = corev1.PodFailed
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", StartedAt: now, FinishedAt: now}
		case "complete":
			st.Phase = corev1.PodSucceeded
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}
		case "crash":
			restarts := int32(0)
			for _, old := range pod.Status.ContainerStatuses {
				if old.Name == ctr.Name {
					restarts = old.RestartCount
				}
			}
			if restarts >= 5 {
				return nil
			}
			cs.RestartCount = restarts + 1
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off 10s restarting failed container=%s pod=%s_%s(%s)", ctr.Name, pod.Name, pod.Namespace, pod.UID)}
			cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", StartedAt: now, FinishedAt: now}
			cs.Started = ptr.To(false)
		default:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		}
		cs.Ready = cs.State.Running != nil && behaviour != "notready"
		if !cs.Ready {
			ready = corev1.ConditionFalse
		}
		containers = append(containers, cs)
	}
	st.ContainerStatuses = containers
	st.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: ready, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: ready, LastTransitionTime: now},
	}
	return st
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
