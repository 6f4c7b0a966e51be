// Package scheduler assigns pending pods to nodes as kube-scheduler's
// default profile does, inside orch server.
//
// It watches nodes, pods and the volume objects through the shared
// informers, keeps per-node aggregates (requested resources, host ports,
// pods per controller) in a cache, and runs one scheduling loop: pop the
// next pod, filter the nodes (readiness and cordon, taints, node selector
// and affinity, host ports, resources, local volumes' node affinity, pod
// affinity and anti-affinity), score the feasible ones (least allocated,
// balanced allocation, preferred node affinity, PreferNoSchedule taints,
// spreading a controller's pods), assume the pod onto the best node in the
// cache and bind it through pods/binding in the background. A pod no node
// fits gets the PodScheduled=False condition and a FailedScheduling event
// worded exactly as Kubernetes words it, and is retried when nodes or pods
// change.
//
// The package reads only through informers and writes only pod status,
// claim annotations and bindings; it never modifies a cached object.
// Preemption is not implemented.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/events"
)

// DefaultSchedulerName is the spec.schedulerName of the pods this scheduler
// places unless configured otherwise.
const DefaultSchedulerName = corev1.DefaultSchedulerName

// optionalSyncTimeout bounds the wait for the informers scheduling can do
// without.
const optionalSyncTimeout = 5 * time.Second

// Resources the scheduler reads and writes.
var (
	nodesGVR          = corev1.SchemeGroupVersion.WithResource("nodes")
	podsGVR           = corev1.SchemeGroupVersion.WithResource("pods")
	namespacesGVR     = corev1.SchemeGroupVersion.WithResource("namespaces")
	pvsGVR            = corev1.SchemeGroupVersion.WithResource("persistentvolumes")
	pvcsGVR           = corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")
	storageClassesGVR = storagev1.SchemeGroupVersion.WithResource("storageclasses")
)

// Writer updates objects: pod status (subresource "status") and claims.
// orch's in-process API (apiserver.Local) implements it.
type Writer interface {
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
}

// Binder assigns a pod to a node through the pods/binding subresource.
type Binder interface {
	Bind(ctx context.Context, binding *corev1.Binding) error
}

// BinderFunc adapts a function to Binder.
type BinderFunc func(ctx context.Context, binding *corev1.Binding) error

// Bind implements Binder.
func (f BinderFunc) Bind(ctx context.Context, binding *corev1.Binding) error { return f(ctx, binding) }

// SubresourceCreator creates through a subresource, as POST
// /api/v1/namespaces/NS/pods/NAME/binding does.
type SubresourceCreator interface {
	CreateSubresource(ctx context.Context, gvr schema.GroupVersionResource, ns, name, subresource string, obj runtime.Object, fieldManager string) (runtime.Object, error)
}

// NewBinder returns a Binder posting pods/binding through api.
func NewBinder(api SubresourceCreator, fieldManager string) Binder {
	return BinderFunc(func(ctx context.Context, b *corev1.Binding) error {
		_, err := api.CreateSubresource(ctx, podsGVR, b.Namespace, b.Name, "binding", b, fieldManager)
		return err
	})
}

// Config configures a Scheduler. Informers, Writer, Binder and Recorder are
// required.
type Config struct {
	// Informers is the process's shared informer factory; whoever owns it
	// runs it.
	Informers *informer.Factory
	Writer    Writer
	Binder    Binder
	// Recorder records Scheduled and FailedScheduling events.
	Recorder events.Recorder
	Logger   *slog.Logger

	// SchedulerName is the spec.schedulerName handled; default
	// "default-scheduler".
	SchedulerName string
	// PercentageOfNodesToScore bounds how many feasible nodes are looked
	// for in large clusters, as kube-scheduler's setting; 0 is adaptive
	// (50% less 1% per 125 nodes, at least 5%, at least 100 nodes).
	PercentageOfNodesToScore int
	// MaxBindsInFlight bounds the concurrent binding writes; default 16.
	MaxBindsInFlight int
	// InitialBackoff and MaxBackoff bound a pod's retry back-off after a
	// failed attempt; default 1 s and 10 s. MaxUnschedulable is how long a
	// pod waits for a cluster change before it is retried anyway; default
	// 5 min.
	InitialBackoff, MaxBackoff, MaxUnschedulable time.Duration
	// Rand breaks ties between equally scored nodes; nil seeds one.
	Rand *rand.Rand
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Scheduler places pending pods. Build it with New, run it with Run.
type Scheduler struct {
	cfg      Config
	name     string
	log      *slog.Logger
	writer   Writer
	binder   Binder
	recorder events.Recorder
	now      func() time.Time
	rnd      *rand.Rand

	nodeInf, podInf, nsInf, pvInf, pvcInf, scInf *informer.Informer
	pods                                         informer.Lister[*corev1.Pod]
	lookups                                      lookups

	cache *cache
	queue *schedulingQueue
	// nextStart rotates the node a search starts at, so that searches
	// stopping early do not always favour the first nodes.
	nextStart int

	binds        chan struct{}
	inflight     sync.WaitGroup
	optionalSync time.Duration
}

// New builds a scheduler and registers its informer handlers; pods already
// cached are queued at once.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Informers == nil || cfg.Writer == nil || cfg.Binder == nil || cfg.Recorder == nil {
		return nil, errors.New("scheduler: Informers, Writer, Binder and Recorder are required")
	}
	if cfg.SchedulerName == "" {
		cfg.SchedulerName = DefaultSchedulerName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBindsInFlight <= 0 {
		cfg.MaxBindsInFlight = 16
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.MaxUnschedulable <= 0 {
		cfg.MaxUnschedulable = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	s := &Scheduler{
		cfg:      cfg,
		name:     cfg.SchedulerName,
		log:      cfg.Logger.With("component", "scheduler"),
		writer:   cfg.Writer,
		binder:   cfg.Binder,
		recorder: cfg.Recorder,
		now:      cfg.Now,
		rnd:      cfg.Rand,
		nodeInf:  cfg.Informers.For(nodesGVR),
		podInf:   cfg.Informers.For(podsGVR),
		nsInf:    cfg.Informers.For(namespacesGVR),
		pvInf:    cfg.Informers.For(pvsGVR),
		pvcInf:   cfg.Informers.For(pvcsGVR),
		scInf:    cfg.Informers.For(storageClassesGVR),
		cache:    newCache(),
		queue:    newSchedulingQueue(cfg.Now, cfg.InitialBackoff, cfg.MaxBackoff, cfg.MaxUnschedulable),
		binds:    make(chan struct{}, cfg.MaxBindsInFlight),

		optionalSync: optionalSyncTimeout,
	}
	s.pods = informer.NewLister[*corev1.Pod](s.podInf)
	s.lookups = informerLookups{
		namespaces: informer.NewLister[*corev1.Namespace](s.nsInf),
		claims:     informer.NewLister[*corev1.PersistentVolumeClaim](s.pvcInf),
		volumes:    informer.NewLister[*corev1.PersistentVolume](s.pvInf),
		classes:    informer.NewLister[*storagev1.StorageClass](s.scInf),
	}
	s.nodeInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    func(obj runtime.Object) { s.onNode(nil, obj) },
		UpdateFunc: s.onNode,
		DeleteFunc: s.onNodeDelete,
	})
	s.podInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    func(obj runtime.Object) { s.onPod(nil, obj) },
		UpdateFunc: s.onPod,
		DeleteFunc: s.onPodDelete,
	})
	// A claim bound, a volume or class appearing may let a pod with
	// volumes fit.
	moveAll := func(runtime.Object) { s.queue.MoveAll() }
	volumeHandler := informer.HandlerFuncs{AddFunc: moveAll, UpdateFunc: func(_, obj runtime.Object) { moveAll(obj) }}
	s.pvInf.AddHandler(volumeHandler)
	s.pvcInf.AddHandler(volumeHandler)
	s.scInf.AddHandler(volumeHandler)
	return s, nil
}

// Run schedules pods until ctx ends, after the informers have synced, then
// waits for the bindings in flight. It returns nil when ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, s.queue.Close)
	defer stop()
	defer s.inflight.Wait()
	if !informer.WaitForSync(ctx, s.nodeInf, s.podInf) {
		return nil
	}
	// Namespaces and volume objects matter to few pods, and a resource the
	// server does not serve yet must not stop scheduling: wait for them a
	// little; a pod that needed one is retried when it arrives.
	optional, cancel := context.WithTimeout(ctx, s.optionalSync)
	informer.WaitForSync(optional, s.nsInf, s.pvInf, s.pvcInf, s.scInf)
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	s.log.Info("scheduler started", "schedulerName", s.name)
	for {
		key, cycle, ok := s.queue.Pop()
		if !ok {
			return nil
		}
		s.scheduleOne(ctx, key, cycle)
	}
}

// responsible reports whether the pod is pending and ours.
func (s *Scheduler) responsible(pod *corev1.Pod) bool {
	name := pod.Spec.SchedulerName
	if name == "" {
		name = DefaultSchedulerName
	}
	return name == s.name && pod.Spec.NodeName == "" && pod.DeletionTimestamp == nil && !terminal(pod)
}

func terminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

func priorityOf(pod *corev1.Pod) int32 {
	if pod.Spec.Priority != nil {
		return *pod.Spec.Priority
	}
	return 0
}

func hasPodAffinity(pod *corev1.Pod) bool {
	a := pod.Spec.Affinity
	return a != nil && a.PodAffinity != nil && len(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0
}

func (s *Scheduler) onPod(oldObj, obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	old, _ := oldObj.(*corev1.Pod)
	key := informer.Key(pod.Namespace, pod.Name)
	if pod.Spec.NodeName != "" {
		s.queue.Delete(key)
		if terminal(pod) {
			// A finished pod no longer holds its node's resources.
			s.cache.removePod(pod.UID)
			s.queue.MoveAll()
			return
		}
		s.cache.addPod(newPodInfo(pod))
		if old == nil || old.Spec.NodeName == "" || !labelsEqual(old.Labels, pod.Labels) {
			// A placed pod may be the one a pending pod's affinity waits for.
			s.queue.MoveAffinity()
		}
		return
	}
	if !s.responsible(pod) {
		s.queue.Delete(key)
		return
	}
	if s.cache.isAssumed(pod.UID) {
		return
	}
	changed := old == nil || !labelsEqual(old.Labels, pod.Labels) || !apiequality.Semantic.DeepEqual(&old.Spec, &pod.Spec)
	s.queue.Add(key, priorityOf(pod), hasPodAffinity(pod), changed)
}

func (s *Scheduler) onPodDelete(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s.queue.Delete(informer.Key(pod.Namespace, pod.Name))
	s.cache.removePod(pod.UID)
	if pod.Spec.NodeName != "" {
		s.queue.MoveAll()
	}
}

func labelsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (s *Scheduler) onNode(oldObj, obj runtime.Object) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	s.cache.setNode(node)
	if old, ok := oldObj.(*corev1.Node); ok && !nodeSchedulingChanged(old, node) {
		// Heartbeats and image lists do not make pods fit.
		return
	}
	s.queue.MoveAll()
}

func (s *Scheduler) onNodeDelete(obj runtime.Object) {
	if node, ok := obj.(*corev1.Node); ok {
		s.cache.removeNode(node.Name)
	}
}

// nodeSchedulingChanged reports whether a node update may change what fits
// on it.
func nodeSchedulingChanged(old, cur *corev1.Node) bool {
	if old.Spec.Unschedulable != cur.Spec.Unschedulable || !labelsEqual(old.Labels, cur.Labels) {
		return true
	}
	if !apiequality.Semantic.DeepEqual(old.Spec.Taints, cur.Spec.Taints) ||
		!apiequality.Semantic.DeepEqual(old.Status.Allocatable, cur.Status.Allocatable) {
		return true
	}
	return readyStatus(old) != readyStatus(cur)
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// scheduleOne runs one scheduling cycle for the pod under key.
func (s *Scheduler) scheduleOne(ctx context.Context, key string, cycle uint64) {
	ns, name := informer.SplitKey(key)
	pod, ok := s.pods.Get(ns, name)
	if !ok || !s.responsible(pod) || s.cache.isAssumed(pod.UID) {
		s.queue.Done(key)
		return
	}

	c := s.cache
	c.mu.Lock()
	nodes := c.nodeListLocked()
	if len(nodes) == 0 {
		c.mu.Unlock()
		s.queue.Retry(key)
		s.recordFailure(ctx, pod, corev1.PodReasonSchedulerError, "no nodes available to schedule pods")
		return
	}
	st, msg := preFilter(c, pod, s.lookups)
	d := &diagnosis{numAllNodes: len(nodes), preFilterMsg: msg}
	var chosen *nodeInfo
	if msg == "" {
		chosen = s.selectNode(st, nodes, d)
	}
	if chosen != nil {
		c.assumeLocked(st.info, chosen.name)
	}
	c.mu.Unlock()

	if chosen == nil {
		s.queue.Unschedulable(key, cycle)
		s.recordFailure(ctx, pod, corev1.PodReasonUnschedulable, d.message(pod))
		return
	}
	s.queue.Done(key)
	s.bindAsync(ctx, pod, chosen.name, st.waitingClaims)
}

// selectNode filters the nodes, starting where the last search stopped and
// stopping once enough feasible nodes are found, scores the feasible ones
// and returns the best (ties broken at random), or nil after recording
// every node's failure in d.
func (s *Scheduler) selectNode(st *podState, nodes []*nodeInfo, d *diagnosis) *nodeInfo {
	want := numFeasibleNodesToFind(len(nodes), s.cfg.PercentageOfNodesToScore)
	feasible := make([]*nodeInfo, 0, min(want, len(nodes)))
	start := s.nextStart % len(nodes)
	processed := 0
	for i := 0; i < len(nodes) && len(feasible) < want; i++ {
		n := nodes[(start+i)%len(nodes)]
		processed++
		if fail := st.filter(n); fail != nil {
			d.add(fail)
			continue
		}
		feasible = append(feasible, n)
	}
	s.nextStart = (start + processed) % len(nodes)
	switch len(feasible) {
	case 0:
		return nil
	case 1:
		return feasible[0]
	}
	scores := st.score(feasible)
	best, ties := 0, 1
	for i := 1; i < len(scores); i++ {
		switch {
		case scores[i] > scores[best]:
			best, ties = i, 1
		case scores[i] == scores[best]:
			// Reservoir sampling: each tied node wins with equal chance.
			ties++
			if s.rnd.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return feasible[best]
}

// numFeasibleNodesToFind is kube-scheduler's adaptive search bound.
func numFeasibleNodesToFind(numNodes, percentage int) int {
	const minNodes, minPercentage = 100, 5
	if numNodes < minNodes || percentage >= 100 {
		return numNodes
	}
	if percentage <= 0 {
		percentage = max(50-numNodes/125, minPercentage)
	}
	return max(numNodes*percentage/100, minNodes)
}

// bindAsync writes the binding in the background; the pod is already
// assumed on node. Waits while MaxBindsInFlight bindings are running.
func (s *Scheduler) bindAsync(ctx context.Context, pod *corev1.Pod, node string, claims []*corev1.PersistentVolumeClaim) {
	select {
	case s.binds <- struct{}{}:
	case <-ctx.Done():
		s.cache.forget(pod.UID)
		return
	}
	s.inflight.Go(func() {
		defer func() { <-s.binds }()
		if err := s.bind(ctx, pod, node, claims); err != nil {
			s.cache.forget(pod.UID)
			if ctx.Err() != nil {
				return
			}
			s.log.Debug("binding failed", "pod", informer.Key(pod.Namespace, pod.Name), "node", node, "err", err)
			s.queue.Retry(informer.Key(pod.Namespace, pod.Name))
			// What the pod held on node is free again.
			s.queue.MoveAll()
			s.recorder.Eventf(eventRef(pod), corev1.EventTypeWarning, "FailedScheduling", "Binding rejected: %v", err)
			return
		}
		s.recorder.Eventf(eventRef(pod), corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node)
	})
}

func (s *Scheduler) bind(ctx context.Context, pod *corev1.Pod, node string, claims []*corev1.PersistentVolumeClaim) error {
	for _, pvc := range claims {
		if pvc.Annotations[annSelectedNode] == node {
			continue
		}
		c := pvc.DeepCopy()
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[annSelectedNode] = node
		if _, err := s.writer.Update(ctx, pvcsGVR, c, "", s.name); err != nil {
			return fmt.Errorf("select node %s for persistentvolumeclaim %s/%s: %w", node, pvc.Namespace, pvc.Name, err)
		}
	}
	b := &corev1.Binding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Binding"},
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	if err := s.binder.Bind(ctx, b); err != nil {
		return fmt.Errorf("bind pod %s/%s to node %s: %w", pod.Namespace, pod.Name, node, err)
	}
	return nil
}

// recordFailure records the FailedScheduling event and, in the background,
// sets the PodScheduled=False condition unless the pod already has it.
func (s *Scheduler) recordFailure(ctx context.Context, pod *corev1.Pod, reason, msg string) {
	s.recorder.Eventf(eventRef(pod), corev1.EventTypeWarning, "FailedScheduling", "%s", msg)
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == reason && c.Message == msg {
			return
		}
	}
	select {
	case s.binds <- struct{}{}:
	case <-ctx.Done():
		return
	}
	s.inflight.Go(func() {
		defer func() { <-s.binds }()
		p := pod.DeepCopy()
		setCondition(&p.Status, corev1.PodCondition{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: reason, Message: msg,
			LastTransitionTime: metav1.NewTime(s.now()),
		})
		_, err := s.writer.Update(ctx, podsGVR, p, "status", s.name)
		switch {
		case err == nil, ctx.Err() != nil:
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			// The pod changed or went; the next attempt writes again.
		default:
			s.log.Warn("update pod status", "pod", informer.Key(pod.Namespace, pod.Name), "err", err)
		}
	})
}

func setCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status == c.Status {
				c.LastTransitionTime = st.Conditions[i].LastTransitionTime
			}
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// eventRef is a minimal copy of pod's identity for the event recorder, so
// that the shared cached pod is never touched (nor its type set).
func eventRef(pod *corev1.Pod) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
		},
	}
}

// informerLookups reads namespaces and volume objects from the informers.
type informerLookups struct {
	namespaces informer.Lister[*corev1.Namespace]
	claims     informer.Lister[*corev1.PersistentVolumeClaim]
	volumes    informer.Lister[*corev1.PersistentVolume]
	classes    informer.Lister[*storagev1.StorageClass]
}

func (l informerLookups) namespaceLabels(ns string) labels.Set {
	if n, ok := l.namespaces.Get("", ns); ok {
		return n.Labels
	}
	return nil
}

func (l informerLookups) claim(ns, name string) (*corev1.PersistentVolumeClaim, bool) {
	return l.claims.Get(ns, name)
}

func (l informerLookups) volume(name string) (*corev1.PersistentVolume, bool) {
	return l.volumes.Get("", name)
}

func (l informerLookups) storageClass(name string) (*storagev1.StorageClass, bool) {
	return l.classes.Get("", name)
}
