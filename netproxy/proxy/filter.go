package proxy

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
)

// Statements of filtering tables (the NetworkPolicy table, netproxy/netpol)
// that the service proxy itself does not use.

// CtState is a set of conntrack states.
type CtState uint32

// Conntrack states, as nft names them.
const (
	CtStateNew         CtState = CtState(expr.CtStateBitNEW)
	CtStateEstablished CtState = CtState(expr.CtStateBitESTABLISHED)
	CtStateRelated     CtState = CtState(expr.CtStateBitRELATED)
	CtStateInvalid     CtState = CtState(expr.CtStateBitINVALID)
)

func (s CtState) String() string {
	var names []string
	for _, n := range []struct {
		bit  CtState
		name string
	}{{CtStateInvalid, "invalid"}, {CtStateEstablished, "established"}, {CtStateRelated, "related"}, {CtStateNew, "new"}} {
		if s&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// MatchCtState matches packets whose conntrack state is any of States:
// "ct state established,related".
type MatchCtState struct{ States CtState }

func (m MatchCtState) String() string { return "ct state " + m.States.String() }

func (m MatchCtState) exprs(*exprBuilder) ([]expr.Any, error) {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: nativeUint32(uint32(m.States)), Xor: nativeUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: nativeUint32(0)},
	}, nil
}

// MatchDestPort matches a protocol and, if Port is non-zero, a
// destination port or (EndPort above Port) an inclusive port range:
// "meta l4proto tcp th dport 80-90".
type MatchDestPort struct {
	Proto   Protocol
	Port    uint16
	EndPort uint16
}

func (m MatchDestPort) String() string {
	s := MatchProto{Proto: m.Proto}.String()
	switch {
	case m.Port == 0:
		return s
	case m.EndPort > m.Port:
		return fmt.Sprintf("%s th dport %d-%d", s, m.Port, m.EndPort)
	default:
		return fmt.Sprintf("%s th dport %d", s, m.Port)
	}
}

func (m MatchDestPort) exprs(b *exprBuilder) ([]expr.Any, error) {
	out, _ := MatchProto{Proto: m.Proto}.exprs(b)
	if m.Port == 0 {
		return out, nil
	}
	out = append(out, &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg1,
		Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	from := binary.BigEndian.AppendUint16(nil, m.Port)
	if m.EndPort > m.Port {
		return append(out, &expr.Range{Op: expr.CmpOpEq, Register: reg1,
			FromData: from, ToData: binary.BigEndian.AppendUint16(nil, m.EndPort)}), nil
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: from}), nil
}

// AddrVmap looks an address up in a verdict map keyed by KeyAddr:
// "ip daddr vmap @map". Packets whose address is not in the map go on
// with the next rule.
type AddrVmap struct {
	Field AddrField
	Map   string
}

func (v AddrVmap) String() string { return fmt.Sprintf("%s vmap @%s", v.Field, v.Map) }

func (v AddrVmap) exprs(b *exprBuilder) ([]expr.Any, error) {
	s, err := b.set(v.Map)
	if err != nil {
		return nil, err
	}
	return []expr.Any{
		v.Field.load(reg1),
		&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: s.Name, SetID: s.ID},
	}, nil
}
