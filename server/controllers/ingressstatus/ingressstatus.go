// Package ingressstatus fills status.loadBalancer.ingress of the Ingresses
// orch's built-in ingress controller serves (internal/ingressclass) with
// the addresses of the nodes whose ingress proxies answer for them, as
// k3s does for Traefik's: each Ready node that advertises a serving proxy
// (ingressclass.ProxyAnnotation, set by its agent once the proxy listens
// and routes; absent on nodes started with --disable ingress or whose
// ports 80 and 443 were taken), its ExternalIP if it has one
// (--node-external-ip), else its InternalIP, sorted. Nodes labelled
// node.kubernetes.io/exclude-from-external-load-balancers are left out,
// as upstream's service controller leaves them out of load balancers.
//
// Ingresses of other controllers are left alone. An Ingress that stops
// being orch's (its class changed) keeps its status for its new
// controller to overwrite, as ingress-nginx leaves it.
//
// The controller writes only Ingress status, through the API it is given.
package ingressstatus

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/internal/ingressclass"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/controllers/servicelb"
)

// ComponentName names the controller in logs and managedFields.
const ComponentName = "ingress-status-controller"

var (
	ingressesGVR      = networkingv1.SchemeGroupVersion.WithResource("ingresses")
	ingressClassesGVR = networkingv1.SchemeGroupVersion.WithResource("ingressclasses")
	nodesGVR          = corev1.SchemeGroupVersion.WithResource("nodes")
)

// API is the part of the in-process API the controller writes through.
type API interface {
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
}

// Options configure the controller.
type Options struct {
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller keeps the status of served Ingresses.
type Controller struct {
	api       API
	ingresses informer.Lister[*networkingv1.Ingress]
	classes   informer.Lister[*networkingv1.IngressClass]
	nodes     informer.Lister[*corev1.Node]
	informers []*informer.Informer
	queue     *queue.Queue
	opts      Options
	log       *slog.Logger
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, opts Options) *Controller {
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-" + ComponentName
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ingInf, classInf, nodeInf := factory.For(ingressesGVR), factory.For(ingressClassesGVR), factory.For(nodesGVR)
	c := &Controller{
		api:       api,
		ingresses: informer.NewLister[*networkingv1.Ingress](ingInf),
		classes:   informer.NewLister[*networkingv1.IngressClass](classInf),
		nodes:     informer.NewLister[*corev1.Node](nodeInf),
		informers: []*informer.Informer{ingInf, classInf, nodeInf},
		queue:     queue.New(queue.DefaultRateLimiter()),
		opts:      opts,
		log:       opts.Logger.With("controller", ComponentName),
	}
	ingInf.AddHandler(informer.OnAddOrUpdate(c.enqueue))
	all := func(runtime.Object) { c.enqueueAll() }
	classInf.AddHandler(informer.OnAny(all))
	nodeInf.AddHandler(informer.HandlerFuncs{
		AddFunc: all,
		UpdateFunc: func(old, obj runtime.Object) {
			if servicelb.NodeChanged(old, obj) || proxyChanged(old, obj) {
				c.enqueueAll()
			}
		},
		DeleteFunc: all,
	})
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

func (c *Controller) enqueue(obj runtime.Object) {
	if ing, ok := obj.(*networkingv1.Ingress); ok {
		c.queue.Add(informer.Key(ing.Namespace, ing.Name))
	}
}

func (c *Controller) enqueueAll() {
	for _, ing := range c.ingresses.List("", labels.Everything()) {
		c.queue.Add(informer.Key(ing.Namespace, ing.Name))
	}
}

// sync converges one Ingress's status.loadBalancer.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	ing, ok := c.ingresses.Get(ns, name)
	if !ok || ing.DeletionTimestamp != nil {
		return nil
	}
	if !ingressclass.NewSelector(c.classes.List("", labels.Everything())).Serves(ing) {
		return nil
	}
	var want networkingv1.IngressLoadBalancerStatus
	for _, ip := range c.addresses() {
		want.Ingress = append(want.Ingress, networkingv1.IngressLoadBalancerIngress{IP: ip.String()})
	}
	if apiequality.Semantic.DeepEqual(ing.Status.LoadBalancer, want) {
		return nil
	}
	updated := ing.DeepCopy()
	updated.Status.LoadBalancer = want
	_, err := c.api.Update(ctx, ingressesGVR, updated, "status", c.opts.FieldManager)
	switch {
	case err == nil:
		c.log.Info("ingress status updated", "ingress", key, "addresses", want.Ingress)
		return nil
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		// The cache is behind a write that beat us; its event queues the
		// Ingress again, the retry covers a lost race.
		return queue.RequeueAfter(50 * time.Millisecond)
	}
	return fmt.Errorf("update status of ingress %s: %w", key, err)
}

// proxyChanged reports whether a Node update started or ended the
// advertisement of its ingress proxy.
func proxyChanged(oldObj, obj runtime.Object) bool {
	old, ok1 := oldObj.(*corev1.Node)
	n, ok2 := obj.(*corev1.Node)
	return !ok1 || !ok2 || ingressclass.NodeServes(old) != ingressclass.NodeServes(n)
}

// serves reports whether n's address belongs in the status: its proxy
// serves, and it takes load balancer traffic as the service LB picks
// nodes (Ready, not excluded).
func serves(n *corev1.Node) bool { return ingressclass.NodeServes(n) && servicelb.Eligible(n) }

// addresses are the serving nodes' addresses, sorted and unique
// (ExternalIP, else InternalIP, per IP family, as the service LB's).
func (c *Controller) addresses() []netip.Addr {
	var out []netip.Addr
	for _, n := range c.nodes.List("", labels.Everything()) {
		if !serves(n) {
			continue
		}
		for _, ip := range servicelb.NodeAddresses(n) {
			if ip.IsValid() {
				out = append(out, ip)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}
