// Package endpointslice is the EndpointSlice controller: for every Service
// with a selector it keeps discovery.k8s.io/v1 EndpointSlices listing the
// pods the selector matches, as Kubernetes' pkg/controller/endpointslice
// does. kubectl describe service and service proxies read them.
//
// Slices are labelled kubernetes.io/service-name and
// endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io,
// owned by their service (the garbage collector deletes them with it), hold
// one address family and one set of ports each (named target ports may
// resolve differently per pod) and at most MaxEndpointsPerSlice endpoints.
// Endpoints carry the ready, serving and terminating conditions, nodeName,
// the node's zone, hostname (for pods whose subdomain names the service)
// and a targetRef to the pod. Terminating pods stay listed (terminating
// true, ready false unless publishNotReadyAddresses) so proxies can drain
// them. A service without endpoints keeps one empty placeholder slice.
//
// Endpoints stay in the slice they are in when they change, new ones fill
// slices with room before new slices are made, so that a change to one pod
// rewrites one slice. The controller reads its slices from the API when it
// syncs, not from its cache: it names new slices itself and must never
// create one twice because its cache is behind its own writes.
//
// It writes only through the API it is given.
package endpointslice

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/orch-dev/orch/server/controllers/endpoints/backends"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/registry"
)

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	List(ctx context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) ([]runtime.Object, int64, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
	Resources() []*registry.Resource
}

// Recorder records events about objects (events.Recorder).
type Recorder interface {
	Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...interface{})
}

var (
	servicesGVR = corev1.SchemeGroupVersion.WithResource("services")
	podsGVR     = corev1.SchemeGroupVersion.WithResource("pods")
	nodesGVR    = corev1.SchemeGroupVersion.WithResource("nodes")
	slicesGVR   = discoveryv1.SchemeGroupVersion.WithResource("endpointslices")
)

const (
	// ControllerName is the value of discoveryv1.LabelManagedBy on the
	// slices this controller manages.
	ControllerName = "endpointslice-controller.k8s.io"
	// MaxEndpointsPerSlice is Kubernetes' default
	// --max-endpoints-per-slice.
	MaxEndpointsPerSlice = 100
)

// Options configure the controller.
type Options struct {
	// Workers syncing services concurrently (default 5, Kubernetes'
	// --concurrent-service-endpoint-syncs).
	Workers int
	// MaxEndpointsPerSlice (default 100).
	MaxEndpointsPerSlice int
	// BatchPeriod delays the sync a pod change triggers, so that the changes
	// of many pods are written at once (default 100 ms; negative: none).
	BatchPeriod time.Duration
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the EndpointSlice controller.
type Controller struct {
	api       API
	recorder  Recorder
	served    bool
	services  informer.Lister[*corev1.Service]
	pods      informer.Lister[*corev1.Pod]
	nodes     informer.Lister[*corev1.Node]
	informers []*informer.Informer
	queue     *queue.Queue
	opts      Options
	log       *slog.Logger
}

// New builds the controller and registers its informers with factory. If
// the API does not serve EndpointSlices the controller stays idle.
func New(api API, factory *informer.Factory, recorder Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 5
	}
	if opts.MaxEndpointsPerSlice <= 0 {
		opts.MaxEndpointsPerSlice = MaxEndpointsPerSlice
	}
	switch {
	case opts.BatchPeriod == 0:
		opts.BatchPeriod = 100 * time.Millisecond
	case opts.BatchPeriod < 0:
		opts.BatchPeriod = 0
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-endpointslice-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:      api,
		recorder: recorder,
		queue:    queue.New(queue.NewExponentialRateLimiter(5*time.Millisecond, 1000*time.Second)),
		opts:     opts,
		log:      opts.Logger.With("controller", "endpointslice"),
	}
	for _, res := range api.Resources() {
		if res.GroupVersionResource() == slicesGVR {
			c.served = true
		}
	}
	if !c.served {
		return c
	}
	svcInf, podInf := factory.For(servicesGVR), factory.For(podsGVR)
	nodeInf, sliceInf := factory.For(nodesGVR), factory.For(slicesGVR)
	c.services = informer.NewLister[*corev1.Service](svcInf)
	c.pods = informer.NewLister[*corev1.Pod](podInf)
	c.nodes = informer.NewLister[*corev1.Node](nodeInf)
	c.informers = []*informer.Informer{svcInf, podInf, nodeInf, sliceInf}

	enqueue := func(obj runtime.Object) {
		if key, err := informer.KeyOf(obj); err == nil {
			c.queue.Add(key)
		}
	}
	svcInf.AddHandler(informer.OnAddOrUpdate(enqueue))
	podInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.podAdded,
		UpdateFunc: c.podUpdated,
		DeleteFunc: c.podAdded,
	})
	nodeInf.AddHandler(informer.HandlerFuncs{UpdateFunc: c.nodeUpdated})
	// Our own writes come back here too; the resulting sync is a no-op.
	// It also repairs slices someone else changed or deleted.
	sliceHandler := func(obj runtime.Object) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[discoveryv1.LabelManagedBy] != ControllerName || s.Labels[discoveryv1.LabelServiceName] == "" {
			return
		}
		c.queue.AddAfter(informer.Key(s.Namespace, s.Labels[discoveryv1.LabelServiceName]), c.opts.BatchPeriod)
	}
	sliceInf.AddHandler(informer.HandlerFuncs{
		UpdateFunc: func(_, obj runtime.Object) { sliceHandler(obj) },
		DeleteFunc: sliceHandler,
	})
	return c
}

// Run syncs services until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !c.served {
		c.log.Warn("the API does not serve endpointslices; controller idle", "resource", slicesGVR.String())
		<-ctx.Done()
		return nil
	}
	if !informer.WaitForSync(ctx, c.informers...) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.sync)
	return nil
}

func (c *Controller) podAdded(obj runtime.Object) {
	if pod, ok := obj.(*corev1.Pod); ok {
		c.enqueueServicesOf(pod)
	}
}

func (c *Controller) podUpdated(oldObj, obj runtime.Object) {
	old, ok1 := oldObj.(*corev1.Pod)
	pod, ok2 := obj.(*corev1.Pod)
	if !ok1 || !ok2 || old.ResourceVersion == pod.ResourceVersion {
		return
	}
	changed, labelsChanged := backends.PodChanged(old, pod)
	if !changed {
		return
	}
	c.enqueueServicesOf(pod)
	if labelsChanged {
		c.enqueueServicesOf(old)
	}
}

func (c *Controller) enqueueServicesOf(pod *corev1.Pod) {
	for _, svc := range c.services.List(pod.Namespace, nil) {
		if backends.Selects(svc, pod) {
			c.queue.AddAfter(informer.Key(svc.Namespace, svc.Name), c.opts.BatchPeriod)
		}
	}
}

// nodeUpdated resyncs every service when a node's zone changes: endpoints
// carry it. Rare enough not to index pods by node.
func (c *Controller) nodeUpdated(oldObj, obj runtime.Object) {
	old, ok1 := oldObj.(*corev1.Node)
	node, ok2 := obj.(*corev1.Node)
	if !ok1 || !ok2 || old.Labels[corev1.LabelTopologyZone] == node.Labels[corev1.LabelTopologyZone] {
		return
	}
	for _, svc := range c.services.List("", nil) {
		c.queue.AddAfter(informer.Key(svc.Namespace, svc.Name), c.opts.BatchPeriod)
	}
}

// sync converges the slices of the service key.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	svc, ok := c.services.Get(ns, name)
	if !ok || svc.DeletionTimestamp != nil || !backends.Managed(svc) {
		// A deleted service's slices go with it (owner references).
		// Services without selector get slices written by their users.
		return nil
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: ControllerName})
	objs, _, err := c.api.List(ctx, slicesGVR, ns, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("list endpoint slices of service %s: %w", key, err)
	}
	existing := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, obj := range objs {
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.DeletionTimestamp == nil {
			existing = append(existing, s)
		}
	}
	pods := c.pods.List(ns, labels.SelectorFromSet(svc.Spec.Selector))
	plan := c.plan(svc, pods, existing)
	return c.apply(ctx, svc, plan)
}

// endpointKey identifies an endpoint across syncs.
func endpointKey(ep *discoveryv1.Endpoint) string {
	var uid string
	if ep.TargetRef != nil {
		uid = string(ep.TargetRef.UID)
	}
	return strings.Join(ep.Addresses, ",") + "/" + uid
}

// portsKey identifies a set of ports, whatever their order.
func portsKey(ports []discoveryv1.EndpointPort) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		parts = append(parts, fmt.Sprintf("%s/%s/%d/%s", deref(p.Name), derefProto(p.Protocol), deref(p.Port), deref(p.AppProtocol)))
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func derefProto(p *corev1.Protocol) corev1.Protocol { return deref(p) }

// desiredGroup is the endpoints one address type and port set should list.
type desiredGroup struct {
	addressType discoveryv1.AddressType
	ports       []discoveryv1.EndpointPort
	endpoints   map[string]discoveryv1.Endpoint
}

// syncPlan is the writes that converge a service's slices.
type syncPlan struct {
	create, update, delete []*discoveryv1.EndpointSlice
}

// plan computes the writes turning existing into the slices svc needs.
func (c *Controller) plan(svc *corev1.Service, pods []*corev1.Pod, existing []*discoveryv1.EndpointSlice) syncPlan {
	var p syncPlan
	desired := c.desired(svc, pods)
	supported := map[discoveryv1.AddressType]bool{}
	for _, f := range backends.IPFamilies(svc) {
		supported[addressType(f)] = true
	}

	// Slices by group; slices of another service object of the same name,
	// or of an address type the service no longer has, go.
	byGroup := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		if !ownedBy(s, svc) || !supported[s.AddressType] {
			p.delete = append(p.delete, s)
			continue
		}
		k := string(s.AddressType) + "|" + portsKey(s.Ports)
		byGroup[k] = append(byGroup[k], s)
	}

	total := 0
	for _, g := range desired {
		total += len(g.endpoints)
	}
	if total == 0 {
		return c.planPlaceholder(svc, byGroup, p)
	}

	for k, g := range desired {
		c.planGroup(svc, g, byGroup[k], &p)
		delete(byGroup, k)
	}
	for _, group := range byGroup {
		p.delete = append(p.delete, group...)
	}
	return p
}

// planGroup places a group's endpoints into its existing slices, then into
// new ones.
func (c *Controller) planGroup(svc *corev1.Service, g *desiredGroup, existing []*discoveryv1.EndpointSlice, p *syncPlan) {
	slices.SortFunc(existing, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	remaining := maps.Clone(g.endpoints)
	var kept, changed []*discoveryv1.EndpointSlice
	for _, s := range existing {
		var eps []discoveryv1.Endpoint
		for i := range s.Endpoints {
			k := endpointKey(&s.Endpoints[i])
			if ep, ok := remaining[k]; ok {
				eps = append(eps, ep)
				delete(remaining, k)
			}
		}
		if len(eps) == 0 {
			p.delete = append(p.delete, s)
			continue
		}
		want := c.sliceFor(svc, s, g, eps)
		if sliceEqual(s, want) {
			kept = append(kept, want)
		} else {
			changed = append(changed, want)
		}
	}

	// New endpoints fill slices already being rewritten, then unchanged
	// ones, then new slices.
	keys := slices.Sorted(maps.Keys(remaining))
	fill := func(s *discoveryv1.EndpointSlice) {
		for len(keys) > 0 && len(s.Endpoints) < c.opts.MaxEndpointsPerSlice {
			s.Endpoints = append(s.Endpoints, remaining[keys[0]])
			keys = keys[1:]
		}
		sortEndpoints(s.Endpoints)
	}
	for _, s := range changed {
		fill(s)
	}
	for _, s := range kept {
		if len(keys) > 0 && len(s.Endpoints) < c.opts.MaxEndpointsPerSlice {
			fill(s)
			changed = append(changed, s)
		}
	}
	p.update = append(p.update, changed...)
	for len(keys) > 0 {
		s := c.sliceFor(svc, nil, g, nil)
		fill(s)
		p.create = append(p.create, s)
	}
}

// planPlaceholder keeps exactly one empty slice for a service without
// endpoints, as Kubernetes does, reusing an existing slice if possible.
func (c *Controller) planPlaceholder(svc *corev1.Service, byGroup map[string][]*discoveryv1.EndpointSlice, p syncPlan) syncPlan {
	g := &desiredGroup{addressType: addressType(backends.IPFamilies(svc)[0])}
	var all []*discoveryv1.EndpointSlice
	for _, group := range byGroup {
		all = append(all, group...)
	}
	slices.SortFunc(all, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	var placeholder *discoveryv1.EndpointSlice
	for _, s := range all {
		if placeholder == nil && s.AddressType == g.addressType {
			placeholder = s
			continue
		}
		p.delete = append(p.delete, s)
	}
	want := c.sliceFor(svc, placeholder, g, nil)
	switch {
	case placeholder == nil:
		p.create = append(p.create, want)
	case !sliceEqual(placeholder, want):
		p.update = append(p.update, want)
	}
	return p
}

// sliceFor returns the slice (a copy of current, or a new one) with the
// metadata and ports svc wants and endpoints eps.
func (c *Controller) sliceFor(svc *corev1.Service, current *discoveryv1.EndpointSlice, g *desiredGroup, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	var s *discoveryv1.EndpointSlice
	if current != nil {
		s = current.DeepCopy()
	} else {
		s = &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace:    svc.Namespace,
				GenerateName: svc.Name + "-",
				// Named here rather than by the API server so that a failed
				// create's retry cannot leave a second slice behind.
				Name: svc.Name + "-" + utilrand.String(5),
			},
			AddressType: g.addressType,
		}
	}
	s.Labels = sliceLabels(svc)
	s.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(svc, corev1.SchemeGroupVersion.WithKind("Service"))}
	s.Ports = g.ports
	s.Endpoints = eps
	sortEndpoints(s.Endpoints)
	return s
}

func sliceLabels(svc *corev1.Service) map[string]string {
	out := make(map[string]string, len(svc.Labels)+3)
	maps.Copy(out, svc.Labels)
	out[discoveryv1.LabelServiceName] = svc.Name
	out[discoveryv1.LabelManagedBy] = ControllerName
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		out[corev1.IsHeadlessService] = ""
	} else {
		delete(out, corev1.IsHeadlessService)
	}
	return out
}

func sliceEqual(a, b *discoveryv1.EndpointSlice) bool {
	return a.AddressType == b.AddressType &&
		apiequality.Semantic.DeepEqual(a.Labels, b.Labels) &&
		apiequality.Semantic.DeepEqual(a.OwnerReferences, b.OwnerReferences) &&
		portsKey(a.Ports) == portsKey(b.Ports) &&
		apiequality.Semantic.DeepEqual(a.Endpoints, b.Endpoints)
}

func sortEndpoints(eps []discoveryv1.Endpoint) {
	slices.SortFunc(eps, func(a, b discoveryv1.Endpoint) int { return cmp.Compare(endpointKey(&a), endpointKey(&b)) })
}

func ownedBy(s *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	for _, o := range s.OwnerReferences {
		if o.UID == svc.UID && o.Kind == "Service" && o.APIVersion == "v1" {
			return true
		}
	}
	return false
}

func addressType(f corev1.IPFamily) discoveryv1.AddressType {
	if f == corev1.IPv6Protocol {
		return discoveryv1.AddressTypeIPv6
	}
	return discoveryv1.AddressTypeIPv4
}

// desired groups the endpoints of svc's pods by address type and ports.
func (c *Controller) desired(svc *corev1.Service, pods []*corev1.Pod) map[string]*desiredGroup {
	groups := map[string]*desiredGroup{}
	for _, family := range backends.IPFamilies(svc) {
		at := addressType(family)
		for _, pod := range pods {
			// Terminating pods stay, marked terminating.
			if !backends.ShouldPodBeInEndpoints(pod, true) {
				continue
			}
			ip := backends.PodIP(pod, family)
			if ip == "" {
				continue
			}
			ports := endpointPorts(svc, pod)
			k := string(at) + "|" + portsKey(ports)
			g := groups[k]
			if g == nil {
				g = &desiredGroup{addressType: at, ports: ports, endpoints: map[string]discoveryv1.Endpoint{}}
				groups[k] = g
			}
			ep := c.endpoint(svc, pod, ip)
			g.endpoints[endpointKey(&ep)] = ep
		}
	}
	return groups
}

// endpointPorts resolves svc's ports on pod; ports the pod lacks are left
// out.
func endpointPorts(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	ports := []discoveryv1.EndpointPort{}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		num, err := backends.FindPort(pod, sp)
		if err != nil {
			continue
		}
		ports = append(ports, discoveryv1.EndpointPort{
			Name: new(sp.Name), Port: new(num), Protocol: new(sp.Protocol), AppProtocol: sp.AppProtocol,
		})
	}
	return ports
}

func (c *Controller) endpoint(svc *corev1.Service, pod *corev1.Pod, ip string) discoveryv1.Endpoint {
	podReady := backends.IsPodReady(pod)
	terminating := pod.DeletionTimestamp != nil
	// Ready stays false for terminating pods unless the service publishes
	// not-ready addresses: old clients read only Ready.
	ready := svc.Spec.PublishNotReadyAddresses || (podReady && !terminating)
	ep := discoveryv1.Endpoint{
		Addresses: []string{ip},
		Conditions: discoveryv1.EndpointConditions{
			Ready: new(ready), Serving: new(podReady), Terminating: new(terminating),
		},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if backends.ShouldSetHostname(pod, svc) {
		ep.Hostname = new(pod.Spec.Hostname)
	}
	if pod.Spec.NodeName != "" {
		ep.NodeName = new(pod.Spec.NodeName)
		if node, ok := c.nodes.Get("", pod.Spec.NodeName); ok {
			if zone, ok := node.Labels[corev1.LabelTopologyZone]; ok {
				ep.Zone = new(zone)
			}
		}
	}
	return ep
}

// apply writes the plan: creates and updates first, so that endpoints
// moving between slices are never missing, then deletes.
func (c *Controller) apply(ctx context.Context, svc *corev1.Service, p syncPlan) error {
	var errs []error
	for _, s := range p.create {
		if _, err := c.api.Create(ctx, slicesGVR, s, c.opts.FieldManager); err != nil {
			if apierrors.IsForbidden(err) {
				// The namespace is being deleted: nothing more to do.
				return nil
			}
			errs = append(errs, fmt.Errorf("create endpoint slice %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	for _, s := range p.update {
		if _, err := c.api.Update(ctx, slicesGVR, s, "", c.opts.FieldManager); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("update endpoint slice %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	for _, s := range p.delete {
		uid := s.UID
		_, err := c.api.Delete(ctx, slicesGVR, s.Namespace, s.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete endpoint slice %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	err := errors.Join(errs...)
	if err != nil && c.recorder != nil {
		c.recorder.Eventf(svc, corev1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
	return err
}
