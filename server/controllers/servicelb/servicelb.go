// Package servicelb is orch's built-in service load balancer, as k3s'
// ServiceLB (klipper-lb) is: a Service of type LoadBalancer without a
// spec.loadBalancerClass is exposed on the nodes' own addresses, and this
// controller writes those addresses into status.loadBalancer.ingress.
//
// There are no per-service pods: every agent's service proxy
// (netproxy/proxy) DNATs the LoadBalancer ports on its node addresses once
// a Service has ingress addresses, which is what the svclb pods' hostPorts
// do in k3s. So the controller decides, for each Service:
//
//   - the nodes: Ready nodes, without the label
//     node.kubernetes.io/exclude-from-external-load-balancers; with
//     externalTrafficPolicy Local only those running a ready endpoint of
//     the Service (the others would drop the traffic);
//   - each node's address: its ExternalIP if it has one (orch
//     --node-external-ip), else its InternalIP, in the Service's IP
//     families;
//   - ports: a node port can carry one LoadBalancer Service per protocol,
//     and none on ports reserved for something else (Options.Reserved:
//     the built-in ingress proxy's 80 and 443).
//     The Service that claimed a port first (oldest, then by namespace and
//     name) keeps it; a later one stays Pending, with no ingress and a
//     warning event naming the Service that holds the port, as k3s' svclb
//     pods stay Pending on a taken hostPort. It gets its addresses once the
//     port is free.
//
// A Service that is no longer of type LoadBalancer loses its ingress
// (the API server clears it on such an update as well). Services with a
// loadBalancerClass belong to another implementation and are left alone.
//
// The controller writes only Service status, through the API it is given.
package servicelb

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

// ComponentName names the controller in events and logs.
const ComponentName = "service-lb-controller"

// LabelExcludeFromLB keeps a node out of every load balancer, as it does
// for upstream's service controller.
const LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"

// Event reasons, k3s' ServiceLB's.
const (
	ReasonUnavailable = "UnAvailableLoadBalancer"
	ReasonUpdated     = "UpdatedLoadBalancer"
)

var (
	servicesGVR = corev1.SchemeGroupVersion.WithResource("services")
	nodesGVR    = corev1.SchemeGroupVersion.WithResource("nodes")
	slicesGVR   = discoveryv1.SchemeGroupVersion.WithResource("endpointslices")
)

// API is the part of the in-process API the controller writes through.
type API interface {
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
}

// Recorder records events about objects (events.Recorder).
type Recorder interface {
	Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...interface{})
}

// Options configure the controller.
type Options struct {
	// Reserved are node ports held by something other than a
	// LoadBalancer Service, e.g. the built-in ingress proxy's 80 and 443
	// (in k3s Traefik's own LoadBalancer Service holds them).
	Reserved []ReservedPort
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// ReservedPort is a node port no LoadBalancer Service may have.
type ReservedPort struct {
	Port     int32
	Protocol corev1.Protocol // "" is TCP
	// By says who holds it, for the event: "the built-in ingress proxy".
	By string
}

// Controller keeps the status of LoadBalancer Services.
type Controller struct {
	api       API
	recorder  Recorder
	services  informer.Lister[*corev1.Service]
	nodes     informer.Lister[*corev1.Node]
	slices    informer.Lister[*discoveryv1.EndpointSlice]
	informers []*informer.Informer
	queue     *queue.Queue
	opts      Options
	log       *slog.Logger

	mu sync.Mutex
	// pending holds why a Service has no ingress, by key, so that the
	// warning is recorded when the reason changes, not on every sync.
	pending map[string]string
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder Recorder, opts Options) *Controller {
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-" + ComponentName
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	svcInf, nodeInf, sliceInf := factory.For(servicesGVR), factory.For(nodesGVR), factory.For(slicesGVR)
	c := &Controller{
		api:       api,
		recorder:  recorder,
		services:  informer.NewLister[*corev1.Service](svcInf),
		nodes:     informer.NewLister[*corev1.Node](nodeInf),
		slices:    informer.NewLister[*discoveryv1.EndpointSlice](sliceInf),
		informers: []*informer.Informer{svcInf, nodeInf, sliceInf},
		queue:     queue.New(queue.DefaultRateLimiter()),
		opts:      opts,
		log:       opts.Logger.With("controller", ComponentName),
		pending:   map[string]string{},
	}
	svcInf.AddHandler(informer.HandlerFuncs{
		AddFunc: c.serviceChanged,
		UpdateFunc: func(old, obj runtime.Object) {
			c.serviceChanged(obj)
			// No longer a LoadBalancer: its ports are free for the others.
			if svc, ok := old.(*corev1.Service); ok && isLoadBalancer(svc) {
				c.enqueueAll()
			}
		},
		DeleteFunc: c.serviceChanged,
	})
	nodeInf.AddHandler(informer.HandlerFuncs{
		AddFunc: func(runtime.Object) { c.enqueueAll() },
		UpdateFunc: func(old, obj runtime.Object) {
			if NodeChanged(old, obj) {
				c.enqueueAll()
			}
		},
		DeleteFunc: func(runtime.Object) { c.enqueueAll() },
	})
	sliceInf.AddHandler(informer.OnAny(c.sliceChanged))
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.informers...) {
		return nil
	}
	c.log.Info("started")
	queue.RunWorkers(ctx, c.queue, 1, c.log, c.sync)
	return nil
}

// serviceChanged queues the Service and, since one Service's ports decide
// whether others may have theirs, every other LoadBalancer Service too.
func (c *Controller) serviceChanged(obj runtime.Object) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	c.queue.Add(informer.Key(svc.Namespace, svc.Name))
	if isLoadBalancer(svc) {
		c.enqueueAll()
	}
}

func (c *Controller) sliceChanged(obj runtime.Object) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	name := sl.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return
	}
	// Only Services with the Local policy choose nodes by endpoints.
	if svc, ok := c.services.Get(sl.Namespace, name); ok && isOurs(svc) && localTraffic(svc) {
		c.queue.Add(informer.Key(sl.Namespace, name))
	}
}

func (c *Controller) enqueueAll() {
	for _, svc := range c.services.List("", labels.Everything()) {
		if isLoadBalancer(svc) {
			c.queue.Add(informer.Key(svc.Namespace, svc.Name))
		}
	}
}

// NodeChanged reports whether a Node update matters to what nodes a
// node-level load balancer lists (Eligible, NodeAddresses); the
// heartbeats that make most node updates do not.
func NodeChanged(oldObj, obj runtime.Object) bool {
	old, ok1 := oldObj.(*corev1.Node)
	n, ok2 := obj.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	return Eligible(old) != Eligible(n) || !slices.Equal(old.Status.Addresses, n.Status.Addresses)
}

// Eligible reports whether n takes load balancer traffic: it is Ready
// and not labelled LabelExcludeFromLB.
func Eligible(n *corev1.Node) bool { return nodeReady(n) && !isExcluded(n) }

func isExcluded(n *corev1.Node) bool {
	_, ok := n.Labels[LabelExcludeFromLB]
	return ok
}

// isLoadBalancer: of type LoadBalancer, whoever implements it.
func isLoadBalancer(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer
}

// isOurs: a LoadBalancer Service this controller implements.
func isOurs(svc *corev1.Service) bool {
	return isLoadBalancer(svc) && svc.Spec.LoadBalancerClass == nil
}

func localTraffic(svc *corev1.Service) bool {
	return svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// sync converges one Service's status.loadBalancer.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	svc, ok := c.services.Get(ns, name)
	if !ok {
		c.setPending(key, "")
		return nil
	}
	switch {
	case isOurs(svc) && svc.DeletionTimestamp == nil:
	case !isLoadBalancer(svc) && len(svc.Status.LoadBalancer.Ingress) > 0:
		c.setPending(key, "")
		return c.writeStatus(ctx, svc, corev1.LoadBalancerStatus{})
	default:
		// Another implementation's, being deleted, or nothing to clear.
		c.setPending(key, "")
		return nil
	}

	var want corev1.LoadBalancerStatus
	why := c.portTaken(svc)
	if why == "" {
		for _, ip := range c.addresses(svc) {
			want.Ingress = append(want.Ingress, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)})
		}
		if len(want.Ingress) == 0 {
			why = "There are no available nodes for LoadBalancer"
		}
	}
	changed := !apiequality.Semantic.DeepEqual(svc.Status.LoadBalancer, want)
	if changed {
		if err := c.writeStatus(ctx, svc, want); err != nil {
			return err
		}
	}
	if c.setPending(key, why) {
		c.recorder.Eventf(svc, corev1.EventTypeWarning, ReasonUnavailable, "%s", why)
	}
	if changed && why == "" {
		c.recorder.Eventf(svc, corev1.EventTypeNormal, ReasonUpdated, "Updated LoadBalancer with new IPs: %v -> %v",
			ingressIPs(svc.Status.LoadBalancer.Ingress), ingressIPs(want.Ingress))
	}
	return nil
}

// setPending records why key has no ingress ("" when it has) and reports
// whether that is a new reason to warn about.
func (c *Controller) setPending(key, why string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.pending[key]
	if why == "" {
		delete(c.pending, key)
	} else {
		c.pending[key] = why
	}
	return why != "" && why != old
}

func (c *Controller) writeStatus(ctx context.Context, svc *corev1.Service, st corev1.LoadBalancerStatus) error {
	updated := svc.DeepCopy()
	updated.Status.LoadBalancer = st
	_, err := c.api.Update(ctx, servicesGVR, updated, "status", c.opts.FieldManager)
	switch {
	case err == nil:
		c.log.Info("load balancer status updated", "service", svc.Namespace+"/"+svc.Name, "ingress", ingressIPs(st.Ingress))
		return nil
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		// The cache is behind the write that beat us; its event queues
		// the Service again, the retry covers a lost race.
		return queue.RequeueAfter(50 * time.Millisecond)
	}
	return fmt.Errorf("update load balancer status of service %s/%s: %w", svc.Namespace, svc.Name, err)
}

// portTaken says which of svc's ports is taken, and by whom: a reserved
// port, or one another LoadBalancer Service claimed first. "" when none
// is.
func (c *Controller) portTaken(svc *corev1.Service) string {
	for _, p := range svc.Spec.Ports {
		for _, r := range c.opts.Reserved {
			if samePort(p, corev1.ServicePort{Port: r.Port, Protocol: r.Protocol}) {
				return fmt.Sprintf("port %d/%s is already used by %s", p.Port, cmp.Or(p.Protocol, corev1.ProtocolTCP), r.By)
			}
		}
	}
	var holder *corev1.Service
	var heldPort corev1.ServicePort
	for _, other := range c.services.List("", labels.Everything()) {
		if other.UID == svc.UID || !isOurs(other) || other.DeletionTimestamp != nil || !claimsFirst(other, svc) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if slices.ContainsFunc(other.Spec.Ports, func(q corev1.ServicePort) bool { return samePort(p, q) }) {
				// The first claimant of all, so the message is stable.
				if holder == nil || claimsFirst(other, holder) {
					holder, heldPort = other, p
				}
				break
			}
		}
	}
	if holder == nil {
		return ""
	}
	return fmt.Sprintf("port %d/%s is already used by LoadBalancer service %s/%s",
		heldPort.Port, cmp.Or(heldPort.Protocol, corev1.ProtocolTCP), holder.Namespace, holder.Name)
}

func samePort(a, b corev1.ServicePort) bool {
	return a.Port == b.Port && cmp.Or(a.Protocol, corev1.ProtocolTCP) == cmp.Or(b.Protocol, corev1.ProtocolTCP)
}

// claimsFirst orders Services by age, so every sync agrees on who holds a
// port. Creation times have one-second resolution: between Services of
// the same second, the one that has ingress holds the port (so a new one
// never takes it away), then namespace and name decide.
func claimsFirst(a, b *corev1.Service) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if ha, hb := len(a.Status.LoadBalancer.Ingress) > 0, len(b.Status.LoadBalancer.Ingress) > 0; ha != hb {
		return ha
	}
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name)) < 0
}

// addresses are the ingress addresses of svc: one a node and family, the
// node's external address if it has one, in the Service's family order.
func (c *Controller) addresses(svc *corev1.Service) []netip.Addr {
	var withEndpoints map[string]bool
	if localTraffic(svc) {
		withEndpoints = c.nodesWithEndpoints(svc)
	}
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	var byFamily [2][]netip.Addr // IPv4, IPv6
	for _, n := range c.nodes.List("", labels.Everything()) {
		if !Eligible(n) || withEndpoints != nil && !withEndpoints[n.Name] {
			continue
		}
		for i, ip := range NodeAddresses(n) {
			if ip.IsValid() {
				byFamily[i] = append(byFamily[i], ip)
			}
		}
	}
	var out []netip.Addr
	for _, f := range families {
		i := 0
		if f == corev1.IPv6Protocol {
			i = 1
		}
		ips := byFamily[i]
		slices.SortFunc(ips, netip.Addr.Compare)
		out = append(out, slices.Compact(ips)...)
	}
	return out
}

// NodeAddresses returns the address a node-level load balancer lists for
// n in each family, IPv4 and IPv6 (invalid when it has none): its first
// ExternalIP (--node-external-ip), else its first InternalIP.
func NodeAddresses(n *corev1.Node) [2]netip.Addr {
	var out [2]netip.Addr
	for _, t := range []corev1.NodeAddressType{corev1.NodeExternalIP, corev1.NodeInternalIP} {
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if a.Type != t || err != nil {
				continue
			}
			i := 0
			if ip.Unmap().Is6() {
				i = 1
			}
			if !out[i].IsValid() {
				out[i] = ip.Unmap()
			}
		}
	}
	return out
}

// nodesWithEndpoints are the nodes that run a ready endpoint of svc.
func (c *Controller) nodesWithEndpoints(svc *corev1.Service) map[string]bool {
	out := map[string]bool{}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	for _, sl := range c.slices.List(svc.Namespace, sel) {
		for _, ep := range sl.Endpoints {
			// A nil ready condition means ready (the EndpointSlice contract).
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if ready && ep.NodeName != nil {
				out[*ep.NodeName] = true
			}
		}
	}
	return out
}

func ingressIPs(ing []corev1.LoadBalancerIngress) []string {
	out := make([]string, 0, len(ing))
	for _, i := range ing {
		out = append(out, cmp.Or(i.IP, i.Hostname))
	}
	return out
}
