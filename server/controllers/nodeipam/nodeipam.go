// Package nodeipam is the node IPAM controller: it gives every Node a pod
// subnet (spec.podCIDR and spec.podCIDRs) cut from the cluster CIDR, as
// Kubernetes' range allocator (pkg/controller/nodeipam, --allocate-node-
// cidrs) does. The subnet is stored on the Node, so it survives server
// restarts; it returns to the pool when the Node is deleted.
//
// Only IPv4 single-stack (one cluster CIDR) is handled today; the
// allocator is per family so dual-stack is a second cidrSet. The package
// writes only Node specs, through the API it is given.
package nodeipam

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/events"
)

// ComponentName is the controller's name in events.
const ComponentName = "cidrAllocator"

// DefaultNodeMaskSize is the prefix length of a node's pod subnet for
// IPv4 (Kubernetes' --node-cidr-mask-size-ipv4 default).
const DefaultNodeMaskSize = 24

var nodesGVR = corev1.SchemeGroupVersion.WithResource("nodes")

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
}

// Options configure the controller.
type Options struct {
	// ClusterCIDR is the pod network nodes' subnets are cut from.
	ClusterCIDR netip.Prefix
	// NodeMaskSize is the prefix length of each node's subnet; default
	// DefaultNodeMaskSize.
	NodeMaskSize int
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the node IPAM controller.
type Controller struct {
	api      API
	recorder events.Recorder
	nodes    *informer.Informer
	lister   informer.Lister[*corev1.Node]
	queue    *queue.Queue
	opts     Options
	log      *slog.Logger

	// mu guards the allocator and owners. A node's subnet is remembered
	// from the moment it is allocated, before the informer shows the
	// write, so that two nodes never get the same one.
	mu     sync.Mutex
	cidrs  *cidrSet
	owners map[string]netip.Prefix // node name → subnet
}

// New builds the controller and registers its informer with factory.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) (*Controller, error) {
	if opts.NodeMaskSize == 0 {
		opts.NodeMaskSize = DefaultNodeMaskSize
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-node-ipam-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cidrs, err := newCIDRSet(opts.ClusterCIDR, opts.NodeMaskSize)
	if err != nil {
		return nil, fmt.Errorf("node ipam: %w", err)
	}
	nodes := factory.For(nodesGVR)
	c := &Controller{
		api:      api,
		recorder: recorder,
		nodes:    nodes,
		lister:   informer.NewLister[*corev1.Node](nodes),
		queue:    queue.New(queue.NewExponentialRateLimiter(5*time.Millisecond, 60*time.Second)),
		opts:     opts,
		log:      opts.Logger.With("controller", "nodeipam"),
		cidrs:    cidrs,
		owners:   map[string]netip.Prefix{},
	}
	nodes.AddHandler(informer.OnAny(c.enqueue))
	return c, nil
}

func (c *Controller) enqueue(obj runtime.Object) {
	if m, err := meta.Accessor(obj); err == nil {
		c.queue.Add(m.GetName())
	}
}

// Run allocates subnets until ctx ends. Before the first allocation it
// marks every subnet that existing Nodes hold as used, so that a node
// without one never gets another node's.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.nodes) {
		return nil
	}
	c.mu.Lock()
	for _, n := range c.lister.List("", nil) {
		c.occupyLocked(n)
	}
	c.mu.Unlock()
	c.log.Info("started", "clusterCIDR", c.opts.ClusterCIDR, "nodeMaskSize", c.opts.NodeMaskSize)
	// One worker, as the allocator is one shared bitmap anyway.
	queue.RunWorkers(ctx, c.queue, 1, c.log, c.sync)
	return nil
}

// nodeSubnet returns the node's subnet in our family, if it has one.
func nodeSubnet(n *corev1.Node) (netip.Prefix, bool, error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false, fmt.Errorf("node %s has a bad podCIDR %q: %w", n.Name, s, err)
		}
		if p.Addr().Is4() {
			return p, true, nil
		}
	}
	return netip.Prefix{}, false, nil
}

// occupyLocked records the subnet n already has.
func (c *Controller) occupyLocked(n *corev1.Node) {
	p, ok, err := nodeSubnet(n)
	if err != nil {
		c.log.Warn("ignoring podCIDR", "err", err)
		return
	}
	if !ok {
		return
	}
	if old, had := c.owners[n.Name]; had && old != p {
		// We reserved a subnet for the node but it got another one
		// (someone set it by hand): ours goes back to the pool.
		_ = c.cidrs.release(old)
		delete(c.owners, n.Name)
	}
	if err := c.cidrs.occupy(p); err != nil {
		// A subnet outside our range (the cluster CIDR changed, or it was
		// set by hand) is the node's business; we just do not hand it out.
		c.log.Warn("node podCIDR is outside the cluster CIDR", "node", n.Name, "podCIDR", p, "err", err)
		return
	}
	c.owners[n.Name] = p
}

// sync converges one node: a deleted node's subnet is released, a node
// without a subnet gets one.
func (c *Controller) sync(ctx context.Context, name string) error {
	node, ok := c.lister.Get("", name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		if p, had := c.owners[name]; had {
			delete(c.owners, name)
			if err := c.cidrs.release(p); err == nil {
				c.log.Info("released pod subnet of deleted node", "node", name, "podCIDR", p)
			}
		}
		return nil
	}
	if _, has, err := nodeSubnet(node); err != nil || has {
		c.occupyLocked(node)
		return nil
	}
	if node.DeletionTimestamp != nil {
		return nil
	}
	p, had := c.owners[name]
	if !had {
		var err error
		p, err = c.cidrs.allocate()
		if err != nil {
			c.recorder.Eventf(node, corev1.EventTypeNormal, "CIDRNotAvailable", "Node %s status is now: CIDRNotAvailable", name)
			return fmt.Errorf("allocate pod subnet for node %s: %w", name, err)
		}
		c.owners[name] = p
	}
	updated := node.DeepCopy()
	updated.Spec.PodCIDR = p.String()
	updated.Spec.PodCIDRs = []string{p.String()}
	_, err := c.api.Update(ctx, nodesGVR, updated, "", c.opts.FieldManager)
	switch {
	case err == nil:
		c.log.Info("assigned pod subnet", "node", name, "podCIDR", p)
		return nil
	case apierrors.IsNotFound(err):
		// Gone meanwhile: the delete event releases the subnet.
		return nil
	case apierrors.IsConflict(err):
		// Our cache is behind; keep the subnet reserved for this node and
		// try again with the newer object.
		return fmt.Errorf("assign pod subnet %s to node %s: %w", p, name, err)
	default:
		if !had {
			// Give it back: the next attempt may be for a node that got a
			// subnet another way meanwhile.
			delete(c.owners, name)
			_ = c.cidrs.release(p)
		}
		c.recorder.Eventf(node, corev1.EventTypeNormal, "CIDRAssignmentFailed", "Node %s status is now: CIDRAssignmentFailed", name)
		return fmt.Errorf("assign pod subnet %s to node %s: %w", p, name, err)
	}
}
