package ipalloc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Errors of the allocators. Their texts are Kubernetes': clients and
// scripts match on them.
var (
	// ErrFull: no free value is left.
	ErrFull = errors.New("range is full")
	// ErrIPAllocated and ErrPortAllocated: a specific value is taken.
	ErrIPAllocated   = errors.New("provided IP is already allocated")
	ErrPortAllocated = errors.New("provided port is already allocated")
	// ErrNotInRange matches (errors.Is) every *NotInRangeError.
	ErrNotInRange = errors.New("not in the valid range")
)

// NotInRangeError is returned for a specific value outside the range.
type NotInRangeError struct {
	What       string // "IP" or "port"
	ValidRange string // "10.43.0.0/16", "30000-32767"
}

func (e *NotInRangeError) Error() string {
	return fmt.Sprintf("provided %s is not in the valid range. The range of valid %ss is %s", e.What, e.What, e.ValidRange)
}

// Is makes errors.Is(err, ErrNotInRange) true.
func (e *NotInRangeError) Is(target error) bool { return target == ErrNotInRange }

// Kubernetes refuses service CIDRs with more than 20 host bits
// (--service-cluster-ip-range must be /12 or longer for IPv4, /108 for
// IPv6) and uses at most the first 2^16 addresses of an IPv6 range.
const (
	maxHostBits = 20
	maxIPv6Size = 1 << 16
)

// IPRange allocates addresses of one CIDR. The network address is never
// handed out, nor the broadcast address of an IPv4 range.
type IPRange struct {
	prefix netip.Prefix
	base   netip.Addr // first usable address, bit 0
	bm     *bitmap
}

// NewIPRange returns an allocator for prefix, e.g. 10.43.0.0/16.
func NewIPRange(prefix netip.Prefix) (*IPRange, error) {
	if !prefix.IsValid() {
		return nil, fmt.Errorf("service CIDR %v is not a valid prefix", prefix)
	}
	prefix = prefix.Masked()
	hostBits := prefix.Addr().BitLen() - prefix.Bits()
	if hostBits > maxHostBits {
		return nil, fmt.Errorf("service CIDR %s is too large: at most %d host bits (a /%d) are allowed", prefix, maxHostBits, prefix.Addr().BitLen()-maxHostBits)
	}
	size := 1 << hostBits
	if prefix.Addr().Is4() {
		size-- // without the broadcast address
	} else {
		size = min(size, maxIPv6Size)
	}
	size-- // without the network address
	if size <= 0 {
		return nil, fmt.Errorf("service CIDR %s has no usable addresses", prefix)
	}
	// The lower band Kubernetes keeps for static addresses: 1/16 of the
	// range, at least 16 and at most 256.
	offset := min(max(16, size/16), 256)
	return &IPRange{prefix: prefix, base: prefix.Addr().Next(), bm: newBitmap(size, offset)}, nil
}

// Prefix is the CIDR of the range.
func (r *IPRange) Prefix() netip.Prefix { return r.prefix }

// Size is the number of addresses the range can hand out.
func (r *IPRange) Size() int { return r.bm.size }

// Free is the number of addresses still free.
func (r *IPRange) Free() int { return r.bm.free() }

// Allocate takes ip. It fails with ErrIPAllocated when ip is taken and
// with a *NotInRangeError when the range does not hand out ip.
func (r *IPRange) Allocate(ip netip.Addr) error {
	i, ok := r.index(ip)
	if !ok {
		return &NotInRangeError{What: "IP", ValidRange: r.prefix.String()}
	}
	if !r.bm.set(i) {
		return ErrIPAllocated
	}
	return nil
}

// AllocateNext takes a free address (see bitmap for which); ErrFull when
// none is left.
func (r *IPRange) AllocateNext() (netip.Addr, error) {
	i, ok := r.bm.next()
	if !ok {
		return netip.Addr{}, ErrFull
	}
	return r.addr(i), nil
}

// Release frees ip. Releasing a free address or one outside the range does
// nothing: after a change of --service-cidr stored Services may hold such.
func (r *IPRange) Release(ip netip.Addr) {
	if i, ok := r.index(ip); ok {
		r.bm.clear(i)
	}
}

// Has reports whether ip is allocated.
func (r *IPRange) Has(ip netip.Addr) bool {
	i, ok := r.index(ip)
	return ok && r.bm.has(i)
}

// Contains reports whether the range hands out ip (allocated or not).
func (r *IPRange) Contains(ip netip.Addr) bool {
	_, ok := r.index(ip)
	return ok
}

// index maps ip to its bit.
func (r *IPRange) index(ip netip.Addr) (int, bool) {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.Zone() != "" || !r.prefix.Contains(ip) {
		return 0, false
	}
	d, ok := diff(ip, r.base)
	if !ok || d >= uint64(r.bm.size) {
		return 0, false
	}
	return int(d), true
}

// addr maps a bit to its address.
func (r *IPRange) addr(i int) netip.Addr {
	hi, lo := split(r.base)
	lo2 := lo + uint64(i)
	if lo2 < lo {
		hi++
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo2)
	a := netip.AddrFrom16(b)
	if r.base.Is4() {
		a = a.Unmap()
	}
	return a
}

// diff is a-b for a >= b when it fits in 64 bits.
func diff(a, b netip.Addr) (uint64, bool) {
	ahi, alo := split(a)
	bhi, blo := split(b)
	d := alo - blo
	if alo < blo {
		ahi-- // borrow; ahi > bhi when a >= b and alo < blo
	}
	if ahi != bhi {
		return 0, false
	}
	return d, true
}

func split(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}
