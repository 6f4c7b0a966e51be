package proxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Stmt is one nft statement: a match, a modification or a verdict. Each
// statement knows its nft text form and its netlink expressions, so the
// two renderings cannot drift apart.
type Stmt interface {
	String() string
	exprs(b *exprBuilder) ([]expr.Any, error)
}

// masqueradeMark is the packet mark bit that asks the postrouting chain to
// masquerade. It is the bit kube-proxy uses, so tools that know it read
// orch's rules the same way.
const masqueradeMark = 0x4000

// Registers. A concatenated key is loaded into consecutive 32-bit
// registers starting at reg 1 (which aliases NFT_REG32_00).
const (
	reg1    = unix.NFT_REG_1
	reg2    = unix.NFT_REG_2
	reg32_1 = unix.NFT_REG32_01
	reg32_2 = unix.NFT_REG32_02
)

// AddrField selects the IPv4 source or destination address.
type AddrField int

// Address fields.
const (
	SourceAddr AddrField = iota
	DestAddr
)

func (f AddrField) String() string {
	if f == SourceAddr {
		return "ip saddr"
	}
	return "ip daddr"
}

func (f AddrField) load(dst uint32) *expr.Payload {
	off := uint32(16)
	if f == SourceAddr {
		off = 12
	}
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: dst, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}
}

// MatchAddr matches an address against a prefix (a /32 is one address).
type MatchAddr struct {
	Field  AddrField
	Negate bool
	Prefix netip.Prefix
}

func (m MatchAddr) String() string {
	op := ""
	if m.Negate {
		op = "!= "
	}
	v := m.Prefix.String()
	if m.Prefix.IsSingleIP() {
		v = m.Prefix.Addr().String()
	}
	return fmt.Sprintf("%s %s%s", m.Field, op, v)
}

func (m MatchAddr) exprs(*exprBuilder) ([]expr.Any, error) {
	p := m.Prefix.Masked()
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("address match %s: only IPv4 is supported", m.Prefix)
	}
	out := []expr.Any{m.Field.load(reg1)}
	if !p.IsSingleIP() {
		bits := uint32(0xffffffff) << (32 - p.Bits())
		out = append(out, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binary.BigEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)})
	}
	op := expr.CmpOpEq
	if m.Negate {
		op = expr.CmpOpNeq
	}
	a := p.Addr().As4()
	return append(out, &expr.Cmp{Op: op, Register: reg1, Data: a[:]}), nil
}

// MatchAddrSet matches an address against a named set ("ip daddr @set").
type MatchAddrSet struct {
	Field AddrField
	Set   string
}

func (m MatchAddrSet) String() string { return fmt.Sprintf("%s @%s", m.Field, m.Set) }

func (m MatchAddrSet) exprs(b *exprBuilder) ([]expr.Any, error) {
	s, err := b.set(m.Set)
	if err != nil {
		return nil, err
	}
	return []expr.Any{m.Field.load(reg1), &expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID}}, nil
}

// MatchSelfTraffic matches packets sent from an address to itself whose
// address is in a KeyAddrPair set: "ip saddr . ip daddr @set". After DNAT
// that is a pod that reached itself through a Service (hairpin).
type MatchSelfTraffic struct{ Set string }

func (m MatchSelfTraffic) String() string { return "ip saddr . ip daddr @" + m.Set }

func (m MatchSelfTraffic) exprs(b *exprBuilder) ([]expr.Any, error) {
	s, err := b.set(m.Set)
	if err != nil {
		return nil, err
	}
	return []expr.Any{
		SourceAddr.load(reg1),
		DestAddr.load(reg32_1),
		&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID},
	}, nil
}

// MatchProto matches the layer 4 protocol.
type MatchProto struct{ Proto Protocol }

func (m MatchProto) String() string { return "meta l4proto " + m.Proto.String() }

func (m MatchProto) exprs(*exprBuilder) ([]expr.Any, error) {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(m.Proto)}},
	}, nil
}

// MatchCtNew matches packets that open a new connection.
type MatchCtNew struct{}

func (MatchCtNew) String() string { return "ct state new" }

func (MatchCtNew) exprs(*exprBuilder) ([]expr.Any, error) {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: nativeUint32(expr.CtStateBitNEW), Xor: nativeUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: nativeUint32(0)},
	}, nil
}

// MatchMarkUnset matches packets without the masquerade mark bit.
type MatchMarkUnset struct{}

func (MatchMarkUnset) String() string { return fmt.Sprintf("meta mark & 0x%08x == 0", masqueradeMark) }

func (MatchMarkUnset) exprs(*exprBuilder) ([]expr.Any, error) {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: nativeUint32(masqueradeMark), Xor: nativeUint32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: nativeUint32(0)},
	}, nil
}

// SetMark sets (Clear false) or clears (Clear true) the masquerade bit.
// Clearing uses xor, which is correct because it only runs after the bit
// was tested to be set.
type SetMark struct{ Clear bool }

func (s SetMark) String() string {
	if s.Clear {
		return fmt.Sprintf("meta mark set meta mark ^ 0x%08x", masqueradeMark)
	}
	return fmt.Sprintf("meta mark set meta mark | 0x%08x", masqueradeMark)
}

func (s SetMark) exprs(*exprBuilder) ([]expr.Any, error) {
	mask := uint32(^uint32(masqueradeMark))
	if s.Clear {
		mask = 0xffffffff
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: nativeUint32(mask), Xor: nativeUint32(masqueradeMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}, nil
}

// VmapLookup looks the packet up in a verdict map keyed by KeyProtoPort
// or KeyAddrProtoPort (destination address, protocol, destination port).
type VmapLookup struct {
	Key KeyType
	Map string
}

func (v VmapLookup) String() string {
	if v.Key == KeyProtoPort {
		return "meta l4proto . th dport vmap @" + v.Map
	}
	return "ip daddr . meta l4proto . th dport vmap @" + v.Map
}

func (v VmapLookup) exprs(b *exprBuilder) ([]expr.Any, error) {
	s, err := b.set(v.Map)
	if err != nil {
		return nil, err
	}
	var out []expr.Any
	protoReg, portReg := uint32(reg1), uint32(reg32_1)
	if v.Key == KeyAddrProtoPort {
		out = append(out, DestAddr.load(reg1))
		protoReg, portReg = reg32_1, reg32_2
	}
	out = append(out,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: s.Name, SetID: s.ID},
	)
	return out, nil
}

// NumgenVmap picks one of Targets uniformly at random and jumps there with
// goto: "numgen random mod N vmap { 0 : goto a, ... }".
type NumgenVmap struct{ Targets []string }

func (n NumgenVmap) String() string {
	parts := make([]string, len(n.Targets))
	for i, t := range n.Targets {
		parts[i] = fmt.Sprintf("%d : goto %s", i, t)
	}
	return fmt.Sprintf("numgen random mod %d vmap { %s }", len(n.Targets), strings.Join(parts, ", "))
}

func (n NumgenVmap) exprs(b *exprBuilder) ([]expr.Any, error) {
	if len(n.Targets) == 0 {
		return nil, fmt.Errorf("numgen vmap without targets")
	}
	elems := make([]nftables.SetElement, len(n.Targets))
	for i, t := range n.Targets {
		elems[i].VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: t}
	}
	return b.numgenLookup(nftables.TypeVerdict, elems, 0)
}

// NumgenDNAT rewrites the destination to one of Targets picked uniformly
// at random: "dnat ip to numgen random mod N map { 0 : addr . port, ... }".
// It must follow a protocol match, as DNAT. Unlike NumgenVmap to one
// chain per endpoint, it adds no chains for the kernel to walk when it
// validates the table's jumps on every change, which with thousands of
// endpoints was most of the cost of an endpoint update.
type NumgenDNAT struct{ Targets []netip.AddrPort }

func (n NumgenDNAT) String() string {
	parts := make([]string, len(n.Targets))
	for i, t := range n.Targets {
		parts[i] = fmt.Sprintf("%d : %s . %d", i, t.Addr(), t.Port())
	}
	return fmt.Sprintf("dnat ip to numgen random mod %d map { %s }", len(n.Targets), strings.Join(parts, ", "))
}

func (n NumgenDNAT) exprs(b *exprBuilder) ([]expr.Any, error) {
	if len(n.Targets) == 0 {
		return nil, fmt.Errorf("numgen dnat without targets")
	}
	elems := make([]nftables.SetElement, len(n.Targets))
	for i, t := range n.Targets {
		if !t.Addr().Is4() {
			return nil, fmt.Errorf("dnat to %s: only IPv4 is supported", t)
		}
		a := t.Addr().As4()
		// Each concatenated field fills a 4-byte register.
		elems[i].Val = append(a[:], byte(t.Port()>>8), byte(t.Port()), 0, 0)
	}
	pick, err := b.numgenLookup(nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService), elems, reg1)
	if err != nil {
		return nil, err
	}
	// The map's value fills reg 1 (address) and the next 32-bit
	// register (port), where the nat expression reads them.
	return append(pick,
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg32_1, Specified: true}), nil
}

// DNAT rewrites the destination to an endpoint. It must follow a protocol
// match: the kernel needs one to rewrite a port.
type DNAT struct{ To netip.AddrPort }

func (d DNAT) String() string { return "dnat to " + d.To.String() }

func (d DNAT) exprs(*exprBuilder) ([]expr.Any, error) {
	if !d.To.Addr().Is4() {
		return nil, fmt.Errorf("dnat to %s: only IPv4 is supported", d.To)
	}
	a := d.To.Addr().As4()
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: a[:]},
		&expr.Immediate{Register: reg2, Data: binary.BigEndian.AppendUint16(nil, d.To.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg2, Specified: true},
	}, nil
}

// Masquerade source-NATs to the outgoing interface's address. Fully random
// port selection avoids the conntrack races of sequential allocation.
type Masquerade struct{}

func (Masquerade) String() string { return "masquerade fully-random" }

func (Masquerade) exprs(*exprBuilder) ([]expr.Any, error) {
	return []expr.Any{&expr.Masq{FullyRandom: true}}, nil
}

// Reject refuses a packet: a TCP reset, or ICMP port-unreachable, which
// TCP clients also report as "connection refused".
type Reject struct{ TCPReset bool }

func (r Reject) String() string {
	if r.TCPReset {
		return "reject with tcp reset"
	}
	return "reject"
}

func (r Reject) exprs(*exprBuilder) ([]expr.Any, error) {
	if r.TCPReset {
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}, nil
	}
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* port unreachable */}}, nil
}

// UpdateSourceSet adds (or refreshes) the packet's source address in a
// dynamic set: "update @set { ip saddr }".
type UpdateSourceSet struct {
	Set     string
	Timeout time.Duration
}

func (u UpdateSourceSet) String() string { return fmt.Sprintf("update @%s { ip saddr }", u.Set) }

func (u UpdateSourceSet) exprs(b *exprBuilder) ([]expr.Any, error) {
	s, err := b.set(u.Set)
	if err != nil {
		return nil, err
	}
	return []expr.Any{
		SourceAddr.load(reg1),
		&expr.Dynset{SrcRegKey: reg1, SetName: s.Name, SetID: s.ID, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: u.Timeout},
	}, nil
}

// VerdictStmt ends the rule with a verdict.
type VerdictStmt struct{ Verdict }

func (v VerdictStmt) exprs(*exprBuilder) ([]expr.Any, error) {
	return []expr.Any{v.Verdict.expr()}, nil
}

func (v Verdict) expr() *expr.Verdict {
	var k expr.VerdictKind
	switch v.Kind {
	case VerdictAccept:
		k = expr.VerdictAccept
	case VerdictDrop:
		k = expr.VerdictDrop
	case VerdictReturn:
		k = expr.VerdictReturn
	case VerdictJump:
		k = expr.VerdictJump
	case VerdictGoto:
		k = expr.VerdictGoto
	}
	return &expr.Verdict{Kind: k, Chain: v.Chain}
}

// nativeUint32 encodes host-order 32-bit values (marks, ct state, numgen
// results), which the kernel compares in host byte order.
func nativeUint32(v uint32) []byte {
	return binary.NativeEndian.AppendUint32(nil, v)
}
