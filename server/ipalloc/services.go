package ipalloc

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/orch-dev/orch/server/registry"
)

var serviceKind = schema.GroupKind{Kind: "Service"}

// Services allocates cluster IPs and node ports for Service objects. It
// owns one IP range (the service CIDR; the cluster is single-stack) and one
// node port range. It is safe for concurrent use.
type Services struct {
	ips   *IPRange
	ports *PortAllocator
	log   *slog.Logger
}

// Option configures Services.
type Option func(*Services)

// WithLogger sets where Restore reports inconsistent stored data.
func WithLogger(l *slog.Logger) Option { return func(s *Services) { s.log = l } }

// NewServices returns allocators for serviceCIDR (e.g. 10.43.0.0/16) and
// nodePorts (e.g. ParsePortRange(DefaultNodePortRange)). Nothing is
// allocated yet: call Restore with the stored Services before serving.
func NewServices(serviceCIDR netip.Prefix, nodePorts PortRange, opts ...Option) (*Services, error) {
	ips, err := NewIPRange(serviceCIDR)
	if err != nil {
		return nil, err
	}
	ports, err := NewPortAllocator(nodePorts)
	if err != nil {
		return nil, fmt.Errorf("node port range: %w", err)
	}
	s := &Services{ips: ips, ports: ports, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// IPs is the cluster IP allocator.
func (s *Services) IPs() *IPRange { return s.ips }

// NodePorts is the node port allocator.
func (s *Services) NodePorts() *PortAllocator { return s.ports }

// family is the IP family of the service CIDR.
func (s *Services) family() corev1.IPFamily {
	if s.ips.Prefix().Addr().Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// Attach installs the allocation hooks on the services resource entry.
func (s *Services) Attach(r *registry.Resource) {
	r.BeginCreate = s.BeginCreate
	r.BeginUpdate = s.BeginUpdate
	r.AfterDelete = s.AfterDelete
}

// AfterDelete releases what a deleted Service held.
func (s *Services) AfterDelete(_ context.Context, obj runtime.Object) {
	if svc, ok := obj.(*corev1.Service); ok {
		s.Release(svc)
	}
}

// FinishFunc is registry.FinishFunc.
type FinishFunc = registry.FinishFunc

// BeginCreate allocates for a new Service and reports the outcome
// of the store write through the returned FinishFunc. A dry run may call
// it and then finish(ctx, false) at once, so that its answer shows the
// values a real create would get.
func (s *Services) BeginCreate(_ context.Context, obj runtime.Object) (FinishFunc, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil, fmt.Errorf("allocate service addresses: got %T, want *v1.Service", obj)
	}
	a, err := s.AllocateCreate(svc)
	if err != nil {
		return nil, err
	}
	return a.Finish, nil
}

// BeginUpdate allocates for an updated Service and reports the outcome
// of the store write through the returned FinishFunc.
func (s *Services) BeginUpdate(_ context.Context, obj, old runtime.Object) (FinishFunc, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil, fmt.Errorf("allocate service addresses: got %T, want *v1.Service", obj)
	}
	oldSvc, ok := old.(*corev1.Service)
	if !ok {
		return nil, fmt.Errorf("allocate service addresses: old object is %T, want *v1.Service", old)
	}
	a, err := s.AllocateUpdate(svc, oldSvc)
	if err != nil {
		return nil, err
	}
	return a.Finish, nil
}

// AllocateCreate allocates for a new Service and fills in its fields. The
// returned Allocation must be committed or reverted. On error nothing stays
// allocated, but svc may be partly filled in and must not be stored.
func (s *Services) AllocateCreate(svc *corev1.Service) (*Allocation, error) {
	return s.allocate(svc, nil)
}

// AllocateUpdate allocates what svc needs beyond what old holds, and
// records what old holds that svc does not for release on Commit. Values
// the client left out (clusterIP, nodePorts by port name,
// healthCheckNodePort) are kept from old first, see PatchAllocatedValues.
func (s *Services) AllocateUpdate(svc, old *corev1.Service) (*Allocation, error) {
	PatchAllocatedValues(svc, old)
	return s.allocate(svc, old)
}

func (s *Services) allocate(svc, old *corev1.Service) (*Allocation, error) {
	syncClusterIPs(svc)
	if err := s.initIPFamilies(svc, old); err != nil {
		return nil, err
	}
	var heldIPs []netip.Addr
	var heldPorts []int32
	if old != nil {
		heldIPs, heldPorts = ipsHeld(old), portsHeld(old)
	}
	a := &Allocation{s: s}
	if err := a.clusterIPs(svc, old, heldIPs); err != nil {
		a.Revert()
		return nil, err
	}
	if err := a.nodePorts(svc, heldPorts); err != nil {
		a.Revert()
		return nil, err
	}
	return a, nil
}

// Release gives back everything svc holds.
func (s *Services) Release(svc *corev1.Service) {
	for _, ip := range ipsHeld(svc) {
		s.ips.Release(ip)
	}
	for _, p := range portsHeld(svc) {
		s.ports.Release(int(p))
	}
}

// Restore marks what the stored Services hold as allocated. It is called
// once at start, before the hooks run. Stored data that conflicts (two
// Services with one address, an address outside the current ranges after
// a flag change) is logged and skipped: the Services keep working, and
// the address stays with the first holder.
func (s *Services) Restore(services []corev1.Service) {
	for i := range services {
		svc := &services[i]
		for _, ip := range ipsHeld(svc) {
			if err := s.ips.Allocate(ip); err != nil {
				s.log.Warn("stored service holds a cluster IP that cannot be restored",
					"service", svc.Namespace+"/"+svc.Name, "ip", ip.String(), "err", err)
			}
		}
		for _, p := range portsHeld(svc) {
			if err := s.ports.Allocate(int(p)); err != nil {
				s.log.Warn("stored service holds a node port that cannot be restored",
					"service", svc.Namespace+"/"+svc.Name, "port", p, "err", err)
			}
		}
	}
}

// Allocation is what one create or update took from the ranges and what
// it gives back once the write is stored, so a failed write can be undone
// exactly. It is used by one goroutine.
type Allocation struct {
	s         *Services
	ips       []netip.Addr // allocated; released on Revert
	ports     []int32
	freeIPs   []netip.Addr // held by the old object; released on Commit
	freePorts []int32
	done      bool
}

// Commit ends a successful write: what the old object held and the new one
// does not is released.
func (a *Allocation) Commit() {
	if a.done {
		return
	}
	a.done = true
	for _, ip := range a.freeIPs {
		a.s.ips.Release(ip)
	}
	for _, p := range a.freePorts {
		a.s.ports.Release(int(p))
	}
}

// Revert ends a failed write: what this operation allocated is released and
// the old object keeps what it held.
func (a *Allocation) Revert() {
	if a.done {
		return
	}
	a.done = true
	for _, ip := range a.ips {
		a.s.ips.Release(ip)
	}
	for _, p := range a.ports {
		a.s.ports.Release(int(p))
	}
}

// Finish is Commit when success, else Revert (a FinishFunc).
func (a *Allocation) Finish(_ context.Context, success bool) {
	if success {
		a.Commit()
	} else {
		a.Revert()
	}
}

// clusterIPs allocates svc's cluster IP: the one asked for, or the next
// free one. held are the addresses old holds (none on create).
func (a *Allocation) clusterIPs(svc, old *corev1.Service, held []netip.Addr) error {
	if !holdsClusterIPs(svc) {
		a.freeIPs = append(a.freeIPs, held...)
		if svc.Spec.Type == corev1.ServiceTypeExternalName && old != nil && holdsClusterIPs(old) &&
			svc.Spec.ClusterIP == old.Spec.ClusterIP {
			// Switching to ExternalName drops the address the Service gave
			// back, as Kubernetes' update strategy does.
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
			svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = nil, nil
		}
		return nil
	}
	if svc.Spec.ClusterIP == "" {
		ip, err := a.s.ips.AllocateNext()
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: %w", err))
		}
		a.ips = append(a.ips, ip)
		svc.Spec.ClusterIP = ip.String()
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		a.freeIPs = append(a.freeIPs, held...)
		return nil
	}
	want := make([]netip.Addr, 0, len(svc.Spec.ClusterIPs))
	for i, str := range svc.Spec.ClusterIPs {
		ip, err := netip.ParseAddr(str)
		if err != nil {
			return invalid(svc, field.Invalid(field.NewPath("spec", "clusterIPs").Index(i), str, "must be a valid IP address"))
		}
		ip = ip.Unmap()
		want = append(want, ip)
		if slices.Contains(held, ip) {
			continue
		}
		if err := a.s.ips.Allocate(ip); err != nil {
			return invalid(svc, field.Invalid(field.NewPath("spec", "clusterIPs"), svc.Spec.ClusterIPs,
				fmt.Sprintf("failed to allocate IP %s: %v", str, err)))
		}
		a.ips = append(a.ips, ip)
	}
	for _, ip := range held {
		if !slices.Contains(want, ip) {
			a.freeIPs = append(a.freeIPs, ip)
		}
	}
	return nil
}

// nodePorts allocates spec.ports[*].nodePort and spec.healthCheckNodePort.
// held are the ports old holds (none on create); the new Service keeps
// those it still uses without allocating them again.
func (a *Allocation) nodePorts(svc *corev1.Service, held []int32) error {
	keep := map[int32]bool{} // ports svc holds after this operation
	claim := func(np int32, path *field.Path, hc bool) error {
		if keep[np] {
			if !hc {
				return nil // one nodePort for TCP and UDP of the same port
			}
			// A nodePort of this very Service.
			return invalid(svc, field.Invalid(path, np, fmt.Sprintf("failed to allocate requested HealthCheck NodePort %d: %v", np, ErrPortAllocated)))
		}
		if !slices.Contains(held, np) {
			if err := a.s.ports.Allocate(int(np)); err != nil {
				msg := err.Error()
				if hc {
					msg = fmt.Sprintf("failed to allocate requested HealthCheck NodePort %d: %v", np, err)
				}
				return invalid(svc, field.Invalid(path, np, msg))
			}
			a.ports = append(a.ports, np)
		}
		keep[np] = true
		return nil
	}
	next := func(what string) (int32, error) {
		p, err := a.s.ports.AllocateNext()
		if err != nil {
			return 0, apierrors.NewInternalError(fmt.Errorf("failed to allocate a %s: %w", what, err))
		}
		np := int32(p)
		a.ports = append(a.ports, np)
		keep[np] = true
		return np, nil
	}

	if needsNodePorts(svc) {
		allocateNew := shouldAllocateNodePorts(svc)
		byPort := map[int32]int32{} // service port → its nodePort
		type protoPort struct {
			proto corev1.Protocol
			np    int32
		}
		seen := map[protoPort]bool{}
		ports := svc.Spec.Ports
		for i := range ports {
			p := &ports[i]
			path := field.NewPath("spec", "ports").Index(i).Child("nodePort")
			if p.NodePort == 0 && !allocateNew {
				continue // keep requests, allocate nothing new
			}
			if p.NodePort == 0 {
				// TCP and UDP of one port share a nodePort; a later entry
				// may name the one to share.
				if np := byPort[p.Port]; np != 0 {
					p.NodePort = np
				} else {
					p.NodePort = requestedNodePort(p.Port, ports[i+1:])
				}
			}
			if p.NodePort != 0 {
				if err := claim(p.NodePort, path, false); err != nil {
					return err
				}
			} else {
				np, err := next("nodePort")
				if err != nil {
					return err
				}
				p.NodePort = np
			}
			k := protoPort{p.Protocol, p.NodePort}
			if seen[k] {
				return invalid(svc, field.Duplicate(path, p.NodePort))
			}
			seen[k] = true
			if byPort[p.Port] == 0 {
				byPort[p.Port] = p.NodePort
			}
		}
	}

	if needsHealthCheck(svc) {
		path := field.NewPath("spec", "healthCheckNodePort")
		if np := svc.Spec.HealthCheckNodePort; np != 0 {
			if err := claim(np, path, true); err != nil {
				return err
			}
		} else {
			np, err := next("HealthCheck NodePort")
			if err != nil {
				return err
			}
			svc.Spec.HealthCheckNodePort = np
		}
	}

	for _, np := range held {
		if !keep[np] {
			a.freePorts = append(a.freePorts, np)
		}
	}
	// Fields naming ports the Service gave back are cleared, as Kubernetes'
	// update strategy does on a type change (NodePort → ClusterIP).
	if !needsNodePorts(svc) {
		for i := range svc.Spec.Ports {
			if np := svc.Spec.Ports[i].NodePort; np != 0 && slices.Contains(held, np) && !keep[np] {
				svc.Spec.Ports[i].NodePort = 0
			}
		}
	}
	if np := svc.Spec.HealthCheckNodePort; !needsHealthCheck(svc) && np != 0 && slices.Contains(held, np) && !keep[np] {
		svc.Spec.HealthCheckNodePort = 0
	}
	return nil
}

// requestedNodePort is the nodePort a later entry for the same service port
// asks for, or 0.
func requestedNodePort(port int32, rest []corev1.ServicePort) int32 {
	for _, p := range rest {
		if p.Port == port && p.NodePort != 0 {
			return p.NodePort
		}
	}
	return 0
}

func invalid(svc *corev1.Service, errs ...*field.Error) error {
	return apierrors.NewInvalid(serviceKind, svc.Name, errs)
}
