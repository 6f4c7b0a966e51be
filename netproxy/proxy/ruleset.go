package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Ruleset is the desired content of orch's nftables table. It is a small
// intermediate representation: Build produces it from Services and
// EndpointSlices without touching the kernel, String renders it in nft
// syntax (for tests and debugging) and the nftables writer translates it to
// netlink expressions. Keeping the two renderings on one representation is
// what lets the rule generation be unit-tested without root.
type Ruleset struct {
	// Table is the name of the "ip" family table the ruleset owns.
	Table  string
	Sets   []*Set
	Chains []*Chain

	// udpFrontends maps every UDP service frontend (address . udp .
	// port, or udp . node port) to the endpoint addresses its traffic
	// goes to (none: refused or dropped). Not part of the table: the
	// Syncer compares it across writes to find stale conntrack entries.
	udpFrontends map[Key][]netip.Addr
}

// Chain is a base chain (Hook set) or a regular chain.
type Chain struct {
	Name string
	// Hook is nil for regular chains that are only reached by jump/goto.
	Hook  *Hook
	Rules []Rule
}

// Hook attaches a base chain to a netfilter hook.
type Hook struct {
	Type     ChainType
	Point    HookPoint
	Priority int32
}

// ChainType is the nftables chain type of a base chain.
type ChainType string

// Chain types orch uses.
const (
	ChainTypeNAT    ChainType = "nat"
	ChainTypeFilter ChainType = "filter"
)

// HookPoint names a netfilter hook.
type HookPoint string

// Hooks orch attaches to.
const (
	HookPrerouting  HookPoint = "prerouting"
	HookInput       HookPoint = "input"
	HookForward     HookPoint = "forward"
	HookOutput      HookPoint = "output"
	HookPostrouting HookPoint = "postrouting"
)

// Rule is a sequence of statements evaluated left to right, as in nft.
type Rule []Stmt

func (r Rule) String() string {
	parts := make([]string, len(r))
	for i, s := range r {
		parts[i] = s.String()
	}
	return strings.Join(parts, " ")
}

// KeyType is the key layout of a set or map.
type KeyType int

// Key layouts used by the service proxy.
const (
	// KeyAddr is an IPv4 address ("ipv4_addr").
	KeyAddr KeyType = iota
	// KeyProtoPort is "inet_proto . inet_service".
	KeyProtoPort
	// KeyAddrProtoPort is "ipv4_addr . inet_proto . inet_service".
	KeyAddrProtoPort
	// KeyAddrPair is "ipv4_addr . ipv4_addr" holding one address twice:
	// "ip saddr . ip daddr" matches it when a packet goes from an address
	// to itself (a pod reaching itself through its Service).
	KeyAddrPair
)

func (k KeyType) String() string {
	switch k {
	case KeyAddr:
		return "ipv4_addr"
	case KeyProtoPort:
		return "inet_proto . inet_service"
	case KeyAddrProtoPort:
		return "ipv4_addr . inet_proto . inet_service"
	case KeyAddrPair:
		return "ipv4_addr . ipv4_addr"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// Set is a named set (Verdicts false) or verdict map (Verdicts true).
type Set struct {
	Name     string
	Key      KeyType
	Verdicts bool
	// Timeout, when non-zero, makes the set dynamic with this default
	// element timeout (used for session affinity).
	Timeout  time.Duration
	Elements []Element
}

// Element is one set element; Verdict is only used in verdict maps.
type Element struct {
	Key     Key
	Verdict Verdict
}

// Key is a set element key; which fields are used depends on the KeyType.
type Key struct {
	Addr  netip.Addr
	Proto Protocol
	Port  uint16
}

func (k Key) format(t KeyType) string {
	switch t {
	case KeyAddr:
		return k.Addr.String()
	case KeyProtoPort:
		return fmt.Sprintf("%s . %d", k.Proto, k.Port)
	case KeyAddrPair:
		return fmt.Sprintf("%s . %s", k.Addr, k.Addr)
	default:
		return fmt.Sprintf("%s . %s . %d", k.Addr, k.Proto, k.Port)
	}
}

// Protocol is an IP protocol number.
type Protocol uint8

// Protocols a Service port can use.
const (
	ProtoTCP  Protocol = 6
	ProtoUDP  Protocol = 17
	ProtoSCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return fmt.Sprintf("%d", uint8(p))
}

// VerdictKind is what a verdict does.
type VerdictKind int

// Verdict kinds.
const (
	VerdictAccept VerdictKind = iota
	VerdictDrop
	VerdictReturn
	VerdictJump
	VerdictGoto
)

// Verdict ends (or diverts) rule evaluation.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

func (v Verdict) String() string {
	switch v.Kind {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictReturn:
		return "return"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictGoto:
		return "goto " + v.Chain
	}
	return fmt.Sprintf("verdict(%d)", int(v.Kind))
}

// Chain returns the chain with the given name, or nil.
func (rs *Ruleset) Chain(name string) *Chain {
	for _, c := range rs.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Set returns the set with the given name, or nil.
func (rs *Ruleset) Set(name string) *Set {
	for _, s := range rs.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// String renders the ruleset in `nft list table` style. Names are quoted
// because service chain names contain slashes.
func (rs *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", rs.Table)
	for _, s := range rs.Sets {
		kind := "set"
		if s.Verdicts {
			kind = "map"
		}
		fmt.Fprintf(&b, "\t%s %q {\n", kind, s.Name)
		if s.Verdicts {
			fmt.Fprintf(&b, "\t\ttype %s : verdict\n", s.Key)
		} else {
			fmt.Fprintf(&b, "\t\ttype %s\n", s.Key)
		}
		if s.Timeout > 0 {
			fmt.Fprintf(&b, "\t\tflags dynamic,timeout\n\t\ttimeout %s\n", s.Timeout)
		}
		if len(s.Elements) > 0 {
			elems := make([]string, len(s.Elements))
			for i, e := range s.Elements {
				elems[i] = s.formatElement(e)
			}
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range rs.Chains {
		fmt.Fprintf(&b, "\tchain %q {\n", c.Name)
		if c.Hook != nil {
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %d; policy accept;\n", c.Hook.Type, c.Hook.Point, c.Hook.Priority)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func (s *Set) formatElement(e Element) string {
	if s.Verdicts {
		return e.Key.format(s.Key) + " : " + e.Verdict.String()
	}
	return e.Key.format(s.Key)
}

// ElementStrings renders the set's elements, for tests.
func (s *Set) ElementStrings() []string {
	out := make([]string, len(s.Elements))
	for i, e := range s.Elements {
		out[i] = s.formatElement(e)
	}
	return out
}

// RuleStrings renders the chain's rules, for tests.
func (c *Chain) RuleStrings() []string {
	out := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		out[i] = r.String()
	}
	return out
}
