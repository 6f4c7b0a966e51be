package proxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// DefaultTable is the name of the nftables table orch owns.
const DefaultTable = "orch"

// Names of the fixed chains and sets. Per-service chains are named
// "svc-", "svl-" (local endpoints only), "ext-" (external destinations),
// "fw-" (load balancer source ranges) and, with session affinity only,
// "ep-" (one per endpoint), followed by the service port's identity.
const (
	chainNatPrerouting    = "nat-prerouting"
	chainNatOutput        = "nat-output"
	chainNatPostrouting   = "nat-postrouting"
	chainFilterInput      = "filter-input"
	chainFilterForward    = "filter-forward"
	chainFilterOutput     = "filter-output"
	chainFilterOutputPost = "filter-output-post-dnat"
	chainServices         = "services"
	chainMasquerading     = "masquerading"
	chainMarkForMasq      = "mark-for-masquerade"
	chainServiceEPCheck   = "service-endpoints-check"
	chainNodePortEPCheck  = "nodeport-endpoints-check"
	chainClusterIPsCheck  = "cluster-ips-check"
	chainReject           = "reject-chain"

	setClusterIPs          = "cluster-ips"
	setNodePortIPs         = "nodeport-ips"
	mapServiceIPs          = "service-ips"
	mapServiceNodePorts    = "service-nodeports"
	mapNoEndpointServices  = "no-endpoint-services"
	mapNoEndpointNodePorts = "no-endpoint-nodeports"
	setHairpin             = "hairpin-endpoints"
)

// Hook priorities, the same as kube-proxy's nftables mode: the endpoint
// checks run just before DNAT, the cluster-IP check in the output path
// just after it (so that DNATed packets no longer carry a cluster IP).
const (
	priorityDstNAT       = -100
	prioritySrcNAT       = 100
	priorityFilterPre    = -110
	priorityFilterPostNA = -90
)

// defaultAffinityTimeout is Kubernetes' default
// sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).
const defaultAffinityTimeout = 10800 * time.Second

// Config describes the node the rules are built for.
type Config struct {
	// Table is the nftables table name; DefaultTable if empty.
	Table string
	// NodeName selects "local" endpoints for the Local traffic policies.
	NodeName string
	// NodeIPs are the addresses NodePorts answer on.
	NodeIPs []netip.Addr
	// LocalhostNodePorts also serves NodePorts on 127.0.0.1. It only works
	// with net.ipv4.conf.all.route_localnet=1, which the caller sets.
	LocalhostNodePorts bool
	// ClusterCIDRs are the pod networks. Traffic to a cluster IP from
	// outside them is masqueraded so replies come back through this node.
	ClusterCIDRs []netip.Prefix
	// ServiceCIDRs are the cluster IP ranges; packets to addresses in them
	// that no Service owns are dropped.
	ServiceCIDRs []netip.Prefix
}

func (c Config) table() string {
	if c.Table == "" {
		return DefaultTable
	}
	return c.Table
}

// Build computes the ruleset for the given Services and EndpointSlices. It
// is a pure function: the same input gives the same output, in a stable
// order, so a diff of two outputs shows exactly what changed.
func Build(cfg Config, services []*v1.Service, endpointSlices []*discoveryv1.EndpointSlice) *Ruleset {
	return NewBuilder(cfg).Build(services, endpointSlices)
}

// Builder is Build with a memory: it reuses the rules of every Service
// whose object and EndpointSlices are the very same (pointer-equal)
// objects as in its previous Build, so an endpoint change costs the
// rules of one Service rather than of all. Callers must therefore never
// modify an object they have passed in; a changed object is a new one,
// as informers and the agent's watches deliver them. Reused chains are
// shared between the rulesets, which is also what lets the nftables
// writer skip comparing them. A Builder is not safe for concurrent use.
type Builder struct {
	cfg   Config
	cache map[types.NamespacedName]*serviceRules
}

// serviceRules is the part of a ruleset that one Service contributes,
// with the objects it was built from.
type serviceRules struct {
	svc    *v1.Service
	slices []*discoveryv1.EndpointSlice

	clusterIPs    []netip.Addr
	serviceIPs    []Element
	nodePorts     []Element
	noEPServices  []Element
	noEPNodePorts []Element
	hairpin       []Element
	chains        []*Chain
	sets          []*Set
	udp           map[Key][]netip.Addr // see Ruleset.udpFrontends
}

// NewBuilder returns a Builder for cfg.
func NewBuilder(cfg Config) *Builder {
	return &Builder{cfg: cfg, cache: map[types.NamespacedName]*serviceRules{}}
}

// Build is like the package's Build, reusing unchanged Services' rules.
func (bb *Builder) Build(services []*v1.Service, endpointSlices []*discoveryv1.EndpointSlice) *Ruleset {
	return bb.BuildWithHostPorts(services, endpointSlices, nil)
}

// BuildWithHostPorts is Build plus the hostPort mappings of the node's
// pods (see PodHostPorts).
func (bb *Builder) BuildWithHostPorts(services []*v1.Service, endpointSlices []*discoveryv1.EndpointSlice, hostPorts []HostPort) *Ruleset {
	b := &builder{
		cfg:    bb.cfg,
		rs:     &Ruleset{Table: bb.cfg.table()},
		slices: indexSlices(endpointSlices),
	}
	b.fixed()
	svcs := slices.Clone(services)
	slices.SortFunc(svcs, func(a, c *v1.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, c.Namespace), cmp.Compare(a.Name, c.Name))
	})
	cache := make(map[types.NamespacedName]*serviceRules, len(svcs))
	for _, svc := range svcs {
		k := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		sls := b.slices[k.Namespace+"/"+k.Name]
		r := bb.cache[k]
		if r == nil || r.svc != svc || !slices.Equal(r.slices, sls) {
			r = b.service(svc)
			r.svc, r.slices = svc, sls
		}
		cache[k] = r
		b.add(r)
	}
	bb.cache = cache
	b.hostPorts(hostPorts)
	b.finish()
	return b.rs
}

type builder struct {
	cfg    Config
	rs     *Ruleset
	slices map[string][]*discoveryv1.EndpointSlice // by namespace/service, sorted by name

	clusterIPs     map[netip.Addr]bool
	serviceIPs     []Element
	nodePorts      []Element
	noEPServices   []Element
	noEPNodePorts  []Element
	hairpin        []Element
	serviceChains  []*Chain
	endpointChains map[string]bool // of the Service being built
}

// add merges one Service's rules into the ruleset.
func (b *builder) add(r *serviceRules) {
	for _, a := range r.clusterIPs {
		b.clusterIPs[a] = true
	}
	b.serviceIPs = append(b.serviceIPs, r.serviceIPs...)
	b.nodePorts = append(b.nodePorts, r.nodePorts...)
	b.noEPServices = append(b.noEPServices, r.noEPServices...)
	b.noEPNodePorts = append(b.noEPNodePorts, r.noEPNodePorts...)
	b.hairpin = append(b.hairpin, r.hairpin...)
	b.serviceChains = append(b.serviceChains, r.chains...)
	b.rs.Sets = append(b.rs.Sets, r.sets...)
	for k, eps := range r.udp {
		if b.rs.udpFrontends == nil {
			b.rs.udpFrontends = map[Key][]netip.Addr{}
		}
		b.rs.udpFrontends[k] = eps
	}
}

func indexSlices(all []*discoveryv1.EndpointSlice) map[string][]*discoveryv1.EndpointSlice {
	idx := make(map[string][]*discoveryv1.EndpointSlice)
	for _, s := range all {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := s.Namespace + "/" + name
		idx[k] = append(idx[k], s)
	}
	// A stable order, whatever the caller's: Builder compares these
	// lists with its previous ones.
	for _, sls := range idx {
		slices.SortFunc(sls, func(a, c *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, c.Name) })
	}
	return idx
}

func jump(chain string) Stmt     { return VerdictStmt{Verdict{Kind: VerdictJump, Chain: chain}} }
func goTo(chain string) Stmt     { return VerdictStmt{Verdict{Kind: VerdictGoto, Chain: chain}} }
func verdict(k VerdictKind) Stmt { return VerdictStmt{Verdict{Kind: k}} }

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// fixed adds the chains every node has, whatever its services.
func (b *builder) fixed() {
	b.clusterIPs = make(map[netip.Addr]bool)
	base := func(name string, t ChainType, p HookPoint, prio int32, rules ...Rule) *Chain {
		return &Chain{Name: name, Hook: &Hook{Type: t, Point: p, Priority: prio}, Rules: rules}
	}
	ctNew := MatchCtNew{}
	b.rs.Chains = append(b.rs.Chains,
		base(chainNatPrerouting, ChainTypeNAT, HookPrerouting, priorityDstNAT, Rule{jump(chainHostPorts)}, Rule{jump(chainServices)}),
		base(chainNatOutput, ChainTypeNAT, HookOutput, priorityDstNAT, Rule{jump(chainHostPorts)}, Rule{jump(chainServices)}),
		base(chainNatPostrouting, ChainTypeNAT, HookPostrouting, prioritySrcNAT, Rule{jump(chainMasquerading)}),
		base(chainFilterInput, ChainTypeFilter, HookInput, priorityFilterPre,
			Rule{ctNew, jump(chainNodePortEPCheck)},
			Rule{ctNew, jump(chainServiceEPCheck)}),
		base(chainFilterForward, ChainTypeFilter, HookForward, priorityFilterPre,
			Rule{ctNew, jump(chainServiceEPCheck)},
			Rule{ctNew, jump(chainClusterIPsCheck)}),
		base(chainFilterOutput, ChainTypeFilter, HookOutput, priorityFilterPre,
			Rule{ctNew, jump(chainNodePortEPCheck)},
			Rule{ctNew, jump(chainServiceEPCheck)}),
		base(chainFilterOutputPost, ChainTypeFilter, HookOutput, priorityFilterPostNA,
			Rule{ctNew, jump(chainClusterIPsCheck)}),
		&Chain{Name: chainServices, Rules: []Rule{
			{VmapLookup{Key: KeyAddrProtoPort, Map: mapServiceIPs}},
			{MatchAddrSet{Field: DestAddr, Set: setNodePortIPs}, VmapLookup{Key: KeyProtoPort, Map: mapServiceNodePorts}},
		}},
		&Chain{Name: chainMasquerading, Rules: []Rule{
			// Hairpin: a pod DNATed to itself must see the connection
			// come from elsewhere, or it would answer itself directly.
			{MatchSelfTraffic{Set: setHairpin}, jump(chainMarkForMasq)},
			{MatchMarkUnset{}, verdict(VerdictReturn)},
			{SetMark{Clear: true}},
			{Masquerade{}},
		}},
		&Chain{Name: chainMarkForMasq, Rules: []Rule{{SetMark{}}}},
		&Chain{Name: chainServiceEPCheck, Rules: []Rule{
			{VmapLookup{Key: KeyAddrProtoPort, Map: mapNoEndpointServices}},
		}},
		&Chain{Name: chainNodePortEPCheck, Rules: []Rule{
			{MatchAddrSet{Field: DestAddr, Set: setNodePortIPs}, VmapLookup{Key: KeyProtoPort, Map: mapNoEndpointNodePorts}},
		}},
		&Chain{Name: chainReject, Rules: []Rule{
			{MatchProto{ProtoTCP}, Reject{TCPReset: true}},
			{Reject{}},
		}},
	)
}

// finish adds the cluster-IP check and all sets, and appends the service
// chains after the fixed ones.
func (b *builder) finish() {
	check := &Chain{Name: chainClusterIPsCheck}
	// A cluster IP on a port the Service does not have is refused; an
	// address nobody owns is dropped, as kube-proxy does, so scanners
	// learn nothing.
	check.Rules = append(check.Rules, Rule{MatchAddrSet{Field: DestAddr, Set: setClusterIPs}, Reject{}})
	for _, p := range b.cfg.ServiceCIDRs {
		if p.Addr().Is4() {
			check.Rules = append(check.Rules, Rule{MatchAddr{Field: DestAddr, Prefix: p.Masked()}, verdict(VerdictDrop)})
		}
	}
	b.rs.Chains = append(b.rs.Chains, check)
	b.rs.Chains = append(b.rs.Chains, b.serviceChains...)

	var clusterIPs []Element
	for a := range b.clusterIPs {
		clusterIPs = append(clusterIPs, Element{Key: Key{Addr: a}})
	}
	var nodeIPs []Element
	seen := map[netip.Addr]bool{}
	addNodeIP := func(a netip.Addr) {
		if a.Is4() && !seen[a] {
			seen[a] = true
			nodeIPs = append(nodeIPs, Element{Key: Key{Addr: a}})
		}
	}
	for _, a := range b.cfg.NodeIPs {
		addNodeIP(a.Unmap())
	}
	if b.cfg.LocalhostNodePorts {
		addNodeIP(netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	}
	b.rs.Sets = append([]*Set{
		{Name: setClusterIPs, Key: KeyAddr, Elements: sortElements(clusterIPs)},
		{Name: setNodePortIPs, Key: KeyAddr, Elements: sortElements(nodeIPs)},
		{Name: mapServiceIPs, Key: KeyAddrProtoPort, Verdicts: true, Elements: sortElements(b.serviceIPs)},
		{Name: mapServiceNodePorts, Key: KeyProtoPort, Verdicts: true, Elements: sortElements(b.nodePorts)},
		{Name: mapNoEndpointServices, Key: KeyAddrProtoPort, Verdicts: true, Elements: sortElements(b.noEPServices)},
		{Name: mapNoEndpointNodePorts, Key: KeyProtoPort, Verdicts: true, Elements: sortElements(b.noEPNodePorts)},
		{Name: setHairpin, Key: KeyAddrPair, Elements: sortElements(b.hairpin)},
	}, b.rs.Sets...)
}

func sortElements(es []Element) []Element {
	slices.SortFunc(es, func(a, c Element) int {
		return cmp.Or(a.Key.Addr.Compare(c.Key.Addr), cmp.Compare(a.Key.Proto, c.Key.Proto), cmp.Compare(a.Key.Port, c.Key.Port))
	})
	// The API server rejects duplicate ports, but two Services may claim
	// the same external IP and port; nft would refuse the whole batch.
	return slices.CompactFunc(es, func(a, c Element) bool { return a.Key == c.Key })
}

// endpoint is one ready backend of a service port.
type endpoint struct {
	addr  netip.AddrPort
	local bool
	// mayBeLocal is local or on an unnamed node: the pod may be on this
	// node, so it may reach itself through its Service here.
	mayBeLocal bool
}

func protocolOf(p v1.Protocol) (Protocol, bool) {
	switch p {
	case v1.ProtocolTCP, "":
		return ProtoTCP, true
	case v1.ProtocolUDP:
		return ProtoUDP, true
	case v1.ProtocolSCTP:
		return ProtoSCTP, true
	}
	return 0, false
}

// endpointsFor collects the ready IPv4 endpoints of one service port from
// the service's EndpointSlices, matching ports by name and protocol as
// kube-proxy does.
func (b *builder) endpointsFor(svc *v1.Service, port v1.ServicePort) []endpoint {
	seen := map[netip.AddrPort]bool{}
	var out []endpoint
	for _, s := range b.slices[svc.Namespace+"/"+svc.Name] {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var target int32 = -1
		for _, sp := range s.Ports {
			name := ""
			if sp.Name != nil {
				name = *sp.Name
			}
			proto := v1.ProtocolTCP
			if sp.Protocol != nil {
				proto = *sp.Protocol
			}
			if name == port.Name && proto == cmp.Or(port.Protocol, v1.ProtocolTCP) && sp.Port != nil {
				target = *sp.Port
				break
			}
		}
		if target < 1 || target > 65535 {
			continue
		}
		for _, ep := range s.Endpoints {
			// A nil ready condition means ready (EndpointSlice API contract).
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			local := ep.NodeName != nil && *ep.NodeName == b.cfg.NodeName && b.cfg.NodeName != ""
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() {
					continue
				}
				ap := netip.AddrPortFrom(ip, uint16(target))
				if !seen[ap] {
					seen[ap] = true
					out = append(out, endpoint{addr: ap, local: local, mayBeLocal: local || ep.NodeName == nil})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, c endpoint) int { return a.addr.Compare(c.addr) })
	return out
}

// servedOnNodeAddresses reports whether svc is a LoadBalancer of orch's
// own service LB (no loadBalancerClass) that the controller has given
// addresses: its ports then answer on every node address, whichever node
// addresses the status lists (an ExternalIP may be a NAT's). A Service
// left Pending because its port is taken gets nothing.
func servedOnNodeAddresses(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil &&
		len(svc.Status.LoadBalancer.Ingress) > 0
}

func hasClusterIP(svc *v1.Service) bool {
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != v1.ClusterIPNone
}

// service returns the rules of one Service. Headless and ExternalName
// Services get none: DNS answers for them.
func (b *builder) service(svc *v1.Service) *serviceRules {
	r := &serviceRules{}
	b.endpointChains = map[string]bool{}
	if svc.Spec.Type == v1.ServiceTypeExternalName || !hasClusterIP(svc) {
		return r
	}
	var clusterIPs []netip.Addr
	for _, s := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !slices.Contains(clusterIPs, a) {
			clusterIPs = append(clusterIPs, a)
		}
	}
	if len(clusterIPs) == 0 {
		return r // IPv6-only: not handled by this IPv4 table.
	}
	var externalIPs []netip.Addr
	for _, s := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			externalIPs = append(externalIPs, a)
		}
	}
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(ing.IP); err == nil && a.Is4() {
				externalIPs = append(externalIPs, a)
			}
		}
	}
	r.clusterIPs = clusterIPs
	for _, port := range svc.Spec.Ports {
		b.servicePort(r, svc, port, clusterIPs, externalIPs)
	}
	return r
}

func (b *builder) servicePort(r *serviceRules, svc *v1.Service, port v1.ServicePort, clusterIPs, externalIPs []netip.Addr) {
	proto, ok := protocolOf(port.Protocol)
	if !ok || port.Port < 1 || port.Port > 65535 {
		return
	}
	portName := port.Name
	if portName == "" {
		portName = strconv.Itoa(int(port.Port))
	}
	id := fmt.Sprintf("%s/%s/%s/%s", svc.Namespace, svc.Name, proto, portName)
	svcPort := uint16(port.Port)
	// Ports served on every node address: the NodePort, and the port
	// itself for a LoadBalancer of orch's service LB (k3s' svclb pods
	// hostPort it on every node).
	var nodePorts []uint16
	if (svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer) && port.NodePort > 0 && port.NodePort <= 65535 {
		nodePorts = append(nodePorts, uint16(port.NodePort))
	}
	if servedOnNodeAddresses(svc) && !slices.Contains(nodePorts, svcPort) {
		nodePorts = append(nodePorts, svcPort)
	}
	addrKey := func(a netip.Addr) Key { return Key{Addr: a, Proto: proto, Port: svcPort} }
	gotoV := func(chain string) Verdict { return Verdict{Kind: VerdictGoto, Chain: chain} }

	all := b.endpointsFor(svc, port)
	internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal
	if proto == ProtoUDP {
		b.recordUDP(r, all, internalLocal, clusterIPs, externalIPs, addrKey, nodePorts)
	}
	if len(all) == 0 {
		// No endpoints anywhere: refuse at once rather than let the
		// client time out.
		rej := gotoV(chainReject)
		for _, a := range clusterIPs {
			r.noEPServices = append(r.noEPServices, Element{Key: addrKey(a), Verdict: rej})
		}
		for _, a := range externalIPs {
			r.noEPServices = append(r.noEPServices, Element{Key: addrKey(a), Verdict: rej})
		}
		for _, np := range nodePorts {
			r.noEPNodePorts = append(r.noEPNodePorts, Element{Key: Key{Proto: proto, Port: np}, Verdict: rej})
		}
		return
	}
	var local []endpoint
	for _, e := range all {
		if e.local {
			local = append(local, e)
		}
		if e.mayBeLocal {
			r.hairpin = append(r.hairpin, Element{Key: Key{Addr: e.addr.Addr()}})
		}
	}

	var affinity time.Duration
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		affinity = defaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
			affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}

	clusterChain := "svc-" + id
	localChain := "svl-" + id
	needCluster, needLocal := false, false

	// Cluster IPs.
	for _, a := range clusterIPs {
		switch {
		case !internalLocal:
			needCluster = true
			r.serviceIPs = append(r.serviceIPs, Element{Key: addrKey(a), Verdict: gotoV(clusterChain)})
		case len(local) > 0:
			needLocal = true
			r.serviceIPs = append(r.serviceIPs, Element{Key: addrKey(a), Verdict: gotoV(localChain)})
		default:
			// Endpoints exist, just not here: drop, as kube-proxy does,
			// since another node would answer.
			r.noEPServices = append(r.noEPServices, Element{Key: addrKey(a), Verdict: Verdict{Kind: VerdictDrop}})
		}
	}

	// External destinations: NodePorts, external IPs, load balancer IPs.
	if len(nodePorts) > 0 || len(externalIPs) > 0 {
		extChain := "ext-" + id
		ext := &Chain{Name: extChain}
		if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
			// Pods keep using every endpoint; traffic from this node
			// itself is masqueraded and may go anywhere; traffic from
			// outside only reaches local endpoints, with its source
			// address preserved, or is dropped.
			for _, c := range b.cfg.ClusterCIDRs {
				if c.Addr().Is4() {
					ext.Rules = append(ext.Rules, Rule{MatchAddr{Field: SourceAddr, Prefix: c.Masked()}, goTo(clusterChain)})
				}
			}
			ext.Rules = append(ext.Rules,
				Rule{MatchAddrSet{Field: SourceAddr, Set: setNodePortIPs}, jump(chainMarkForMasq)},
				Rule{MatchAddrSet{Field: SourceAddr, Set: setNodePortIPs}, goTo(clusterChain)})
			needCluster = true
			if len(local) > 0 {
				needLocal = true
				ext.Rules = append(ext.Rules, Rule{goTo(localChain)})
			} else {
				ext.Rules = append(ext.Rules, Rule{verdict(VerdictDrop)})
			}
		} else {
			// Replies must come back through this node to be un-NATed.
			ext.Rules = append(ext.Rules, Rule{jump(chainMarkForMasq)}, Rule{goTo(clusterChain)})
			needCluster = true
		}
		r.chains = append(r.chains, ext)
		// Load balancer traffic passes the Service's source ranges
		// first; NodePorts and spec.externalIPs do not, as in kube-proxy.
		lbEntry := extChain
		if fw := b.firewallChain(r, svc, id, extChain); fw != nil {
			lbEntry = fw.Name
		}
		for _, a := range externalIPs {
			v := extChain
			if isIngressIP(svc, a) {
				v = lbEntry
			}
			r.serviceIPs = append(r.serviceIPs, Element{Key: addrKey(a), Verdict: gotoV(v)})
		}
		for _, np := range nodePorts {
			v := extChain
			if np == svcPort && servedOnNodeAddresses(svc) {
				v = lbEntry
			}
			r.nodePorts = append(r.nodePorts, Element{Key: Key{Proto: proto, Port: np}, Verdict: gotoV(v)})
		}
	}

	if needCluster {
		b.balanceChain(r, clusterChain, id, all, proto, affinity)
	}
	if needLocal {
		b.balanceChain(r, localChain, id, local, proto, affinity)
	}
}

// firewallChain adds the chain that lets only spec.loadBalancerSourceRanges
// (and the node itself) reach a LoadBalancer Service's port, as
// kube-proxy's firewall chains and k3s' svclb do, or returns nil when the
// Service sets no ranges.
func (b *builder) firewallChain(r *serviceRules, svc *v1.Service, id, extChain string) *Chain {
	if svc.Spec.Type != v1.ServiceTypeLoadBalancer {
		return nil
	}
	fw := &Chain{Name: "fw-" + id}
	for _, s := range svc.Spec.LoadBalancerSourceRanges {
		// The API server validated the CIDRs; IPv6 ones do not apply to
		// this IPv4 table (and without IPv4 ones there is no firewall
		// for IPv4, as kube-proxy filters the ranges by family).
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && p.Addr().Is4() {
			fw.Rules = append(fw.Rules, Rule{MatchAddr{Field: SourceAddr, Prefix: p.Masked()}, goTo(extChain)})
		}
	}
	if len(fw.Rules) == 0 {
		return nil
	}
	fw.Rules = append(fw.Rules,
		Rule{MatchAddrSet{Field: SourceAddr, Set: setNodePortIPs}, goTo(extChain)},
		Rule{verdict(VerdictDrop)})
	r.chains = append(r.chains, fw)
	return fw
}

// isIngressIP reports whether a is one of svc's load balancer addresses.
func isIngressIP(svc *v1.Service, a netip.Addr) bool {
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil && ip.Unmap() == a {
			return true
		}
	}
	return false
}

// recordUDP notes where a UDP service port's frontends send traffic, so
// that the Syncer can delete the conntrack entries a change makes stale.
func (b *builder) recordUDP(r *serviceRules, eps []endpoint, internalLocal bool, clusterIPs, externalIPs []netip.Addr, addrKey func(netip.Addr) Key, nodePorts []uint16) {
	var all, local []netip.Addr
	for _, e := range eps {
		all = append(all, e.addr.Addr())
		if e.local {
			local = append(local, e.addr.Addr())
		}
	}
	if r.udp == nil {
		r.udp = map[Key][]netip.Addr{}
	}
	for _, a := range clusterIPs {
		if internalLocal {
			r.udp[addrKey(a)] = local
		} else {
			r.udp[addrKey(a)] = all
		}
	}
	for _, a := range externalIPs {
		r.udp[addrKey(a)] = all
	}
	for _, np := range nodePorts {
		r.udp[Key{Proto: ProtoUDP, Port: np}] = all
	}
}

// balanceChain adds a chain that spreads connections over eps (non-empty).
// It DNATs at once through a numgen map; only with session affinity does
// it go through one chain per endpoint, which records the client in the
// endpoint's affinity set.
func (b *builder) balanceChain(r *serviceRules, name, id string, eps []endpoint, proto Protocol, affinity time.Duration) {
	c := &Chain{Name: name}
	// Off-cluster clients (the node itself, other hosts) of a cluster IP
	// are masqueraded so replies return through this node's conntrack
	// entry. Only of a cluster IP: external destinations masquerade in
	// their ext- chain as their traffic policy says, and Local must keep
	// the client's address (kube-proxy matches the cluster IP here too).
	masq := Rule{MatchAddrSet{Field: DestAddr, Set: setClusterIPs}}
	for _, p := range b.cfg.ClusterCIDRs {
		if p.Addr().Is4() {
			masq = append(masq, MatchAddr{Field: SourceAddr, Negate: true, Prefix: p.Masked()})
		}
	}
	if len(masq) > 1 {
		c.Rules = append(c.Rules, append(masq, jump(chainMarkForMasq)))
	}
	if affinity == 0 {
		targets := make([]netip.AddrPort, len(eps))
		for i, e := range eps {
			targets[i] = e.addr
		}
		c.Rules = append(c.Rules, Rule{MatchProto{proto}, NumgenDNAT{Targets: targets}})
		r.chains = append(r.chains, c)
		return
	}
	targets := make([]string, len(eps))
	for i, e := range eps {
		targets[i] = b.endpointChain(r, id, e, proto, affinity)
	}
	for _, t := range targets {
		c.Rules = append(c.Rules, Rule{MatchAddrSet{Field: SourceAddr, Set: affinitySet(t)}, goTo(t)})
	}
	c.Rules = append(c.Rules, Rule{NumgenVmap{Targets: targets}})
	r.chains = append(r.chains, c)
}

func affinitySet(endpointChain string) string { return "aff-" + endpointChain[len("ep-"):] }

// endpointChain adds the chain of one endpoint of a port with session
// affinity: it records the client in the endpoint's affinity set, which
// the service chain checks first, and DNATs.
func (b *builder) endpointChain(r *serviceRules, id string, e endpoint, proto Protocol, affinity time.Duration) string {
	name := "ep-" + id + "/" + e.addr.String()
	// The cluster and local chains of a port share endpoint chains.
	if b.endpointChains[name] {
		return name
	}
	b.endpointChains[name] = true
	set := affinitySet(name)
	r.sets = append(r.sets, &Set{Name: set, Key: KeyAddr, Timeout: affinity})
	c := &Chain{Name: name, Rules: []Rule{
		{UpdateSourceSet{Set: set}},
		{MatchProto{proto}, DNAT{To: e.addr}},
	}}
	r.chains = append(r.chains, c)
	return name
}
