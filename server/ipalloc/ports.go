package ipalloc

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultNodePortRange is Kubernetes' --service-node-port-range default.
const DefaultNodePortRange = "30000-32767"

// PortRange is the inclusive range of ports [Base, Base+Size).
type PortRange struct {
	Base int
	Size int
}

// ParsePortRange parses "30000-32767" (first-last, inclusive), "30000+2767"
// (base and offset, as Kubernetes also accepts) or a single port.
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PortRange{}, fmt.Errorf("port range is empty, want e.g. %q", DefaultNodePortRange)
	}
	port := func(v string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("port range %q: %q is not a port number (1-65535)", s, v)
		}
		return n, nil
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		lo, err := port(first)
		if err != nil {
			return PortRange{}, err
		}
		hi, err := port(last)
		if err != nil {
			return PortRange{}, err
		}
		if hi < lo {
			return PortRange{}, fmt.Errorf("port range %q: last port %d is below first port %d", s, hi, lo)
		}
		return PortRange{Base: lo, Size: hi - lo + 1}, nil
	}
	if first, off, ok := strings.Cut(s, "+"); ok {
		lo, err := port(first)
		if err != nil {
			return PortRange{}, err
		}
		n, err := strconv.Atoi(strings.TrimSpace(off))
		if err != nil || n < 0 || lo+n > 65535 {
			return PortRange{}, fmt.Errorf("port range %q: offset %q must be a number that keeps the range within 1-65535", s, off)
		}
		return PortRange{Base: lo, Size: n + 1}, nil
	}
	p, err := port(s)
	if err != nil {
		return PortRange{}, err
	}
	return PortRange{Base: p, Size: 1}, nil
}

// String is the "first-last" form.
func (r PortRange) String() string {
	return fmt.Sprintf("%d-%d", r.Base, r.Base+r.Size-1)
}

// Contains reports whether p is in the range.
func (r PortRange) Contains(p int) bool { return p >= r.Base && p < r.Base+r.Size }

// PortAllocator allocates ports of a PortRange.
type PortAllocator struct {
	r  PortRange
	bm *bitmap
}

// NewPortAllocator returns an allocator for r.
func NewPortAllocator(r PortRange) (*PortAllocator, error) {
	if r.Size < 1 || r.Base < 1 || r.Base+r.Size-1 > 65535 {
		return nil, fmt.Errorf("port range %d+%d is not within 1-65535", r.Base, r.Size)
	}
	// The lower band Kubernetes keeps for static node ports: 1/32 of the
	// range, at least 16 and at most 128.
	offset := min(max(16, r.Size/32), 128)
	return &PortAllocator{r: r, bm: newBitmap(r.Size, offset)}, nil
}

// Range is the allocator's port range.
func (a *PortAllocator) Range() PortRange { return a.r }

// Free is the number of ports still free.
func (a *PortAllocator) Free() int { return a.bm.free() }

// Allocate takes port. It fails with ErrPortAllocated when port is taken
// and with a *NotInRangeError when it is outside the range.
func (a *PortAllocator) Allocate(port int) error {
	if !a.r.Contains(port) {
		return &NotInRangeError{What: "port", ValidRange: a.r.String()}
	}
	if !a.bm.set(port - a.r.Base) {
		return ErrPortAllocated
	}
	return nil
}

// AllocateNext takes a free port; ErrFull when none is left.
func (a *PortAllocator) AllocateNext() (int, error) {
	i, ok := a.bm.next()
	if !ok {
		return 0, ErrFull
	}
	return a.r.Base + i, nil
}

// Release frees port; a free port or one outside the range is ignored.
func (a *PortAllocator) Release(port int) {
	if a.r.Contains(port) {
		a.bm.clear(port - a.r.Base)
	}
}

// Has reports whether port is allocated.
func (a *PortAllocator) Has(port int) bool {
	return a.r.Contains(port) && a.bm.has(port-a.r.Base)
}
