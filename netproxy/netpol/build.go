package netpol

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/netproxy/proxy"
)

// DefaultTable is the nftables table ("ip" family) of the policies.
const DefaultTable = "orch-netpol"

// Names of the table's fixed objects.
const (
	forwardChain = "forward"
	ingressMap   = "ingress-pods"
	egressMap    = "egress-pods"
)

// namespaceNameLabel is the label the API server gives every Namespace;
// set here too so a Namespace not seen yet still matches selectors on its
// name.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// Config describes the node whose pods the rules protect.
type Config struct {
	// NodeName selects the pods to enforce policies for: those bound to
	// this node. Every pod's IP still counts as a peer.
	NodeName string
	// Table is the nftables table name; DefaultTable if empty.
	Table string
}

func (c Config) table() string {
	if c.Table == "" {
		return DefaultTable
	}
	return c.Table
}

// State is what the rules are built from.
type State struct {
	Policies   []*networkingv1.NetworkPolicy
	Pods       []*v1.Pod
	Namespaces []*v1.Namespace
}

// pod is what the rules need of a Pod.
type pod struct {
	namespace, name string
	labels          labels.Set
	ips             []netip.Addr
	node            string
	spec            *v1.PodSpec
}

// podIPs returns the pod's IPv4 addresses, or nil for pods that must not
// count: host-network pods (their address is the node's) and finished
// pods (their address may already belong to another pod).
func podIPs(p *v1.Pod) []netip.Addr {
	if p.Spec.HostNetwork || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		return nil
	}
	ips := make([]netip.Addr, 0, 1)
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !slices.Contains(ips, a) {
			ips = append(ips, a)
		}
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	return ips
}

// namedPort resolves a named port on the pod's containers; ok is false if
// no container has a port of that name and protocol.
func (p *pod) namedPort(name string, proto v1.Protocol) (uint16, bool) {
	for _, c := range p.spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name && cmp.Or(cp.Protocol, v1.ProtocolTCP) == proto {
				return uint16(cp.ContainerPort), true
			}
		}
	}
	return 0, false
}

// Warning is a policy the rules ignore, with the reason.
type Warning struct {
	Namespace, Name string
	Err             error
}

// Build computes the ruleset of cfg's node. It is a pure function of its
// input. Warnings name policies with selectors or blocks that cannot be
// read (the API server's validation should have refused them): a policy
// whose podSelector cannot be read is left out, a peer that cannot be
// read matches nothing.
func Build(cfg Config, st State) (*proxy.Ruleset, []Warning) {
	b := &builder{rs: &proxy.Ruleset{Table: cfg.table()}}
	for _, p := range st.Pods {
		ips := podIPs(p)
		if len(ips) == 0 {
			continue
		}
		b.pods = append(b.pods, &pod{namespace: p.Namespace, name: p.Name, labels: p.Labels, ips: ips, node: p.Spec.NodeName, spec: &p.Spec})
	}
	// Stable output: equal input gives equal rules, so the writer's diff
	// stays small.
	slices.SortFunc(b.pods, func(x, y *pod) int {
		return cmp.Or(cmp.Compare(x.namespace, y.namespace), cmp.Compare(x.name, y.name))
	})
	b.indexNamespaces(st.Namespaces)
	policies := slices.Clone(st.Policies)
	slices.SortFunc(policies, func(x, y *networkingv1.NetworkPolicy) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})

	ingress := map[*pod][]ruleSource{}
	egress := map[*pod][]ruleSource{}
	for _, np := range policies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			b.warn(np, fmt.Errorf("spec.podSelector: %w", err))
			continue
		}
		var local []*pod
		for _, p := range b.byNS[np.Namespace] {
			if p.node == cfg.NodeName && sel.Matches(p.labels) {
				local = append(local, p)
			}
		}
		if len(local) == 0 {
			continue // other nodes enforce it
		}
		// Peer sets are made once per policy and shared by the pods it
		// selects.
		in, eg := policyTypes(np)
		var inRules, egRules []ruleSource
		if in {
			inRules = b.policyRules(np, false)
		}
		if eg {
			egRules = b.policyRules(np, true)
		}
		for _, p := range local {
			if in {
				ingress[p] = append(ingress[p], inRules...)
			}
			if eg {
				egress[p] = append(egress[p], egRules...)
			}
		}
	}

	inMap := &proxy.Set{Name: ingressMap, Key: proxy.KeyAddr, Verdicts: true}
	egMap := &proxy.Set{Name: egressMap, Key: proxy.KeyAddr, Verdicts: true}
	fwd := &proxy.Chain{
		Name: forwardChain,
		Hook: &proxy.Hook{Type: proxy.ChainTypeFilter, Point: proxy.HookForward, Priority: 0},
		Rules: []proxy.Rule{
			{proxy.MatchCtState{States: proxy.CtStateEstablished | proxy.CtStateRelated}, accept},
			{proxy.AddrVmap{Field: proxy.SourceAddr, Map: egressMap}},
			{proxy.AddrVmap{Field: proxy.DestAddr, Map: ingressMap}},
		},
	}
	b.rs.Chains = []*proxy.Chain{fwd}
	for _, p := range b.pods { // in order
		// Egress jumps (an allowed packet returns to the ingress check),
		// ingress has the last word.
		b.isolate(p, egress, egMap, proxy.VerdictJump, true)
		b.isolate(p, ingress, inMap, proxy.VerdictGoto, false)
	}
	b.rs.Sets = append([]*proxy.Set{egMap, inMap}, b.rs.Sets...)
	return b.rs, b.warnings
}

var (
	accept = proxy.VerdictStmt{Verdict: proxy.Verdict{Kind: proxy.VerdictAccept}}
	ret    = proxy.VerdictStmt{Verdict: proxy.Verdict{Kind: proxy.VerdictReturn}}
	drop   = proxy.VerdictStmt{Verdict: proxy.Verdict{Kind: proxy.VerdictDrop}}
)

// policyTypes says which directions a policy isolates. The API server
// defaults spec.policyTypes; an object without them is read the way that
// defaulting would fill them.
func policyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress),
		slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
}

type builder struct {
	rs *proxy.Ruleset
	// byNS holds the pods of each namespace in order, namespaces their
	// names in order and nsLabels their labels (with the name label).
	byNS       map[string][]*pod
	namespaces []string
	nsLabels   map[string]labels.Set
	pods       []*pod
	warnings   []Warning
}

// ruleSource is one ingress or egress rule of a policy, with its peers
// already resolved to sets and address matches.
type ruleSource struct {
	// peers are the alternatives for the remote address; one empty
	// alternative matches any address.
	peers [][]proxy.Stmt
	// selected are the pods the rule's selector peers select (for named
	// ports of egress rules); allPods is true when the rule has no peers.
	selected []*pod
	allPods  bool
	ports    []networkingv1.NetworkPolicyPort
	// named is the map of egress named ports, if the rule has any.
	named string
}

// policyRules resolves the peers of np's ingress (egress false) or egress
// rules, adding their sets to the ruleset. A peer that cannot be read
// matches nothing (with a warning): the pods stay isolated rather than
// open.
func (b *builder) policyRules(np *networkingv1.NetworkPolicy, egress bool) []ruleSource {
	dir, field := "ingress", proxy.SourceAddr
	n := len(np.Spec.Ingress)
	if egress {
		dir, field, n = "egress", proxy.DestAddr, len(np.Spec.Egress)
	}
	out := make([]ruleSource, 0, n)
	for i := 0; i < n; i++ {
		var peers []networkingv1.NetworkPolicyPeer
		var ports []networkingv1.NetworkPolicyPort
		if egress {
			peers, ports = np.Spec.Egress[i].To, np.Spec.Egress[i].Ports
		} else {
			peers, ports = np.Spec.Ingress[i].From, np.Spec.Ingress[i].Ports
		}
		path := fmt.Sprintf("spec.%s[%d]", dir, i)
		src := ruleSource{ports: ports, allPods: len(peers) == 0}
		if len(peers) == 0 {
			src.peers = [][]proxy.Stmt{nil}
		}
		var selected []*pod
		seen := map[*pod]bool{}
		hasSelector := false
		for j, peer := range peers {
			if peer.IPBlock != nil {
				m, err := ipBlockMatch(field, peer.IPBlock)
				if err != nil {
					b.warn(np, fmt.Errorf("%s.peers[%d].ipBlock: %w", path, j, err))
					continue
				}
				src.peers = append(src.peers, m)
				continue
			}
			pods, err := b.selectPeers(np.Namespace, peer)
			if err != nil {
				b.warn(np, fmt.Errorf("%s.peers[%d]: %w", path, j, err))
				continue
			}
			hasSelector = true
			for _, p := range pods {
				if !seen[p] {
					seen[p] = true
					selected = append(selected, p)
				}
			}
		}
		if hasSelector {
			set := &proxy.Set{Name: objectName(fmt.Sprintf("%s/%s/%s/%d", np.Namespace, np.Name, dir, i)), Key: proxy.KeyAddr}
			for _, p := range selected {
				for _, ip := range p.ips {
					set.Elements = append(set.Elements, proxy.Element{Key: proxy.Key{Addr: ip}})
				}
			}
			b.rs.Sets = append(b.rs.Sets, set)
			src.peers = append(src.peers, []proxy.Stmt{proxy.MatchAddrSet{Field: field, Set: set.Name}})
			src.selected = selected
		}
		if egress && hasNamedPort(ports) {
			src.named = objectName(fmt.Sprintf("%s/%s/%s/%d/named", np.Namespace, np.Name, dir, i))
			b.rs.Sets = append(b.rs.Sets, b.namedPortMap(src))
		}
		out = append(out, src)
	}
	return out
}

func (b *builder) warn(np *networkingv1.NetworkPolicy, err error) {
	b.warnings = append(b.warnings, Warning{Namespace: np.Namespace, Name: np.Name, Err: err})
}

func hasNamedPort(ports []networkingv1.NetworkPolicyPort) bool {
	for _, p := range ports {
		if p.Port != nil && p.Port.Type == intstr.String {
			return true
		}
	}
	return false
}

// namedPortMap maps destination pod . protocol . port to "return" for
// every named port of an egress rule, resolved on each pod the rule
// allows (every pod when it has no peers). IP blocks never match named
// ports: an address outside the pod network has no container ports.
func (b *builder) namedPortMap(src ruleSource) *proxy.Set {
	m := &proxy.Set{Name: src.named, Key: proxy.KeyAddrProtoPort, Verdicts: true}
	pods := src.selected
	if src.allPods {
		pods = b.pods
	}
	seen := map[proxy.Key]bool{}
	for _, np := range src.ports {
		if np.Port == nil || np.Port.Type != intstr.String {
			continue
		}
		proto := ptr.Deref(np.Protocol, v1.ProtocolTCP)
		for _, p := range pods {
			port, ok := p.namedPort(np.Port.StrVal, proto)
			if !ok {
				continue
			}
			for _, ip := range p.ips {
				k := proxy.Key{Addr: ip, Proto: protocol(proto), Port: port}
				if !seen[k] {
					seen[k] = true
					m.Elements = append(m.Elements, proxy.Element{Key: k, Verdict: proxy.Verdict{Kind: proxy.VerdictReturn}})
				}
			}
		}
	}
	return m
}

// selectPeers returns the pods a selector peer selects: by podSelector in
// the policy's namespace, by namespaceSelector in every matching
// namespace, or by both (pods matching podSelector in the matching
// namespaces).
func (b *builder) selectPeers(policyNS string, peer networkingv1.NetworkPolicyPeer) ([]*pod, error) {
	podSel, nsSel := labels.Everything(), labels.Selector(nil)
	var err error
	if peer.PodSelector != nil {
		if podSel, err = metav1.LabelSelectorAsSelector(peer.PodSelector); err != nil {
			return nil, fmt.Errorf("podSelector: %w", err)
		}
	}
	if peer.NamespaceSelector != nil {
		if nsSel, err = metav1.LabelSelectorAsSelector(peer.NamespaceSelector); err != nil {
			return nil, fmt.Errorf("namespaceSelector: %w", err)
		}
	}
	var out []*pod
	match := func(ns string) {
		for _, p := range b.byNS[ns] {
			if podSel.Matches(p.labels) {
				out = append(out, p)
			}
		}
	}
	if nsSel == nil {
		match(policyNS)
		return out, nil
	}
	for _, ns := range b.namespaces {
		if nsSel.Matches(b.nsLabels[ns]) {
			match(ns)
		}
	}
	return out, nil
}

// indexNamespaces groups the (sorted) pods by namespace and gives every
// namespace that holds pods its labels, selectors being evaluated once
// per namespace rather than per pod.
func (b *builder) indexNamespaces(namespaces []*v1.Namespace) {
	known := make(map[string]labels.Set, len(namespaces))
	for _, ns := range namespaces {
		known[ns.Name] = ns.Labels
	}
	b.byNS = map[string][]*pod{}
	b.nsLabels = map[string]labels.Set{}
	for _, p := range b.pods {
		if _, ok := b.byNS[p.namespace]; !ok {
			b.namespaces = append(b.namespaces, p.namespace)
			l := known[p.namespace]
			if !l.Has(namespaceNameLabel) {
				withName := make(labels.Set, len(l)+1)
				maps.Copy(withName, l)
				withName[namespaceNameLabel] = p.namespace
				l = withName
			}
			b.nsLabels[p.namespace] = l
		}
		b.byNS[p.namespace] = append(b.byNS[p.namespace], p)
	}
}

// ipBlockMatch matches an ipBlock: inside CIDR and outside every except.
func ipBlockMatch(field proxy.AddrField, blk *networkingv1.IPBlock) ([]proxy.Stmt, error) {
	cidr, err := netip.ParsePrefix(blk.CIDR)
	if err != nil {
		return nil, fmt.Errorf("cidr: %w", err)
	}
	if !cidr.Addr().Is4() {
		// IPv6 blocks cannot match in an ip family table; a rule that
		// never matches keeps the rest of the policy in force.
		return []proxy.Stmt{proxy.MatchAddr{Field: field, Prefix: netip.MustParsePrefix("0.0.0.0/32")}}, nil
	}
	out := []proxy.Stmt{proxy.MatchAddr{Field: field, Prefix: cidr.Masked()}}
	if cidr.Bits() == 0 {
		out = nil // 0.0.0.0/0: any address
	}
	for i, e := range blk.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("except[%d]: %w", i, err)
		}
		if ex.Addr().Is4() {
			out = append(out, proxy.MatchAddr{Field: field, Negate: true, Prefix: ex.Masked()})
		}
	}
	return out, nil
}

// isolate adds p's chain for one direction, reached from m by its
// addresses, if any policy selected p for that direction (p is in
// selected, maybe with no rules: then it allows nothing).
func (b *builder) isolate(p *pod, selected map[*pod][]ruleSource, m *proxy.Set, kind proxy.VerdictKind, egress bool) {
	srcs, ok := selected[p]
	if !ok {
		return
	}
	prefix := "ingress-"
	if egress {
		prefix = "egress-"
	}
	ch := b.podChain(prefix, p, srcs, egress)
	b.rs.Chains = append(b.rs.Chains, ch)
	for _, ip := range p.ips {
		m.Elements = append(m.Elements, proxy.Element{Key: proxy.Key{Addr: ip}, Verdict: proxy.Verdict{Kind: kind, Chain: ch.Name}})
	}
}

// podChain is the chain of one pod and direction: the pod's own traffic
// and each allowed peer and port end in allow (return for egress, accept
// for ingress); everything else is dropped.
func (b *builder) podChain(prefix string, p *pod, srcs []ruleSource, egress bool) *proxy.Chain {
	allow, self := accept, proxy.SourceAddr
	if egress {
		allow, self = ret, proxy.DestAddr
	}
	ch := &proxy.Chain{Name: objectName(prefix + p.namespace + "/" + p.name)}
	// A pod cannot block access to itself (Kubernetes' NetworkPolicy
	// docs): its packets to its own Services' addresses come back to it
	// through forward after the DNAT.
	for _, ip := range p.ips {
		ch.Rules = append(ch.Rules, proxy.Rule{proxy.MatchAddr{Field: self, Prefix: netip.PrefixFrom(ip, ip.BitLen())}, allow})
	}
	for _, src := range srcs {
		ports := portMatches(src.ports, p, egress)
		for _, peer := range src.peers {
			for _, port := range ports {
				r := slices.Concat(peer, port, proxy.Rule{allow})
				if !slices.ContainsFunc(ch.Rules, func(o proxy.Rule) bool { return o.String() == r.String() }) {
					ch.Rules = append(ch.Rules, r)
				}
			}
		}
		if src.named != "" {
			ch.Rules = append(ch.Rules, proxy.Rule{proxy.VmapLookup{Key: proxy.KeyAddrProtoPort, Map: src.named}})
		}
	}
	ch.Rules = append(ch.Rules, proxy.Rule{drop})
	return ch
}

// portMatches returns the alternatives for a rule's ports: one empty
// alternative when it has none (any port), else one match per port.
// Named ports resolve on p for ingress; for egress they go to the rule's
// named port map instead.
func portMatches(ports []networkingv1.NetworkPolicyPort, p *pod, egress bool) [][]proxy.Stmt {
	if len(ports) == 0 {
		return [][]proxy.Stmt{nil}
	}
	var out [][]proxy.Stmt
	for _, np := range ports {
		proto := ptr.Deref(np.Protocol, v1.ProtocolTCP)
		m := proxy.MatchDestPort{Proto: protocol(proto)}
		switch {
		case np.Port == nil:
		case np.Port.Type == intstr.String:
			if egress {
				continue
			}
			port, ok := p.namedPort(np.Port.StrVal, proto)
			if !ok {
				continue
			}
			m.Port = port
		default:
			m.Port = uint16(np.Port.IntVal)
			if np.EndPort != nil && *np.EndPort > np.Port.IntVal {
				m.EndPort = uint16(*np.EndPort)
			}
		}
		out = append(out, []proxy.Stmt{m})
	}
	return out
}

func protocol(p v1.Protocol) proxy.Protocol {
	switch p {
	case v1.ProtocolUDP:
		return proxy.ProtoUDP
	case v1.ProtocolSCTP:
		return proxy.ProtoSCTP
	default:
		return proxy.ProtoTCP
	}
}

// maxNameLen keeps chain and set names well inside nftables' 256-byte
// limit; longer names are shortened with a hash to stay unique.
const maxNameLen = 200

func objectName(s string) string {
	if len(s) <= maxNameLen {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return s[:maxNameLen-17] + "-" + hex.EncodeToString(sum[:8])
}
