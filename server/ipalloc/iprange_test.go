package ipalloc

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustRange(t *testing.T, cidr string) *IPRange {
	t.Helper()
	r, err := NewIPRange(netip.MustParsePrefix(cidr))
	if err != nil {
		t.Fatalf("NewIPRange(%s): %v", cidr, err)
	}
	return r
}

func TestNewIPRange(t *testing.T) {
	tests := []struct {
		cidr    string
		size    int
		first   string // lowest address handed out
		last    string // highest address handed out
		wantErr string
	}{
		{cidr: "10.43.0.0/16", size: 65534, first: "10.43.0.1", last: "10.43.255.254"},
		{cidr: "10.43.0.0/24", size: 254, first: "10.43.0.1", last: "10.43.0.254"},
		{cidr: "10.43.0.7/24", size: 254, first: "10.43.0.1", last: "10.43.0.254"}, // masked
		{cidr: "192.168.0.0/30", size: 2, first: "192.168.0.1", last: "192.168.0.2"},
		{cidr: "10.0.0.0/12", size: 1<<20 - 2, first: "10.0.0.1", last: "10.15.255.254"},
		{cidr: "fd00:43::/112", size: 65535, first: "fd00:43::1", last: "fd00:43::ffff"},
		{cidr: "fd00:43::/120", size: 255, first: "fd00:43::1", last: "fd00:43::ff"},
		{cidr: "fd00:43::/108", size: 65535, first: "fd00:43::1", last: "fd00:43::ffff"},
		{cidr: "10.0.0.0/31", wantErr: "no usable addresses"},
		{cidr: "10.0.0.0/32", wantErr: "no usable addresses"},
		{cidr: "fd00::/128", wantErr: "no usable addresses"},
		{cidr: "10.0.0.0/11", wantErr: "too large"},
		{cidr: "fd00::/64", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.cidr, func(t *testing.T) {
			r, err := NewIPRange(netip.MustParsePrefix(tt.cidr))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Size() != tt.size || r.Free() != tt.size {
				t.Errorf("size %d free %d, want %d", r.Size(), r.Free(), tt.size)
			}
			first, last := netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last)
			if !r.Contains(first) || !r.Contains(last) {
				t.Errorf("range does not contain %s or %s", first, last)
			}
			if r.Contains(first.Prev()) || r.Contains(last.Next()) {
				t.Errorf("range contains %s or %s", first.Prev(), last.Next())
			}
			if got := r.addr(0); got != first {
				t.Errorf("addr(0) = %s, want %s", got, first)
			}
			if got := r.addr(r.Size() - 1); got != last {
				t.Errorf("addr(size-1) = %s, want %s", got, last)
			}
		})
	}
}

// TestIPRangeExhaustion allocates every address of small ranges, checks
// each is handed out once, then that the range reports full.
func TestIPRangeExhaustion(t *testing.T) {
	for _, cidr := range []string{"10.43.0.0/24", "10.43.0.0/30", "fd00:43::/119", "10.43.0.0/20"} {
		t.Run(cidr, func(t *testing.T) {
			r := mustRange(t, cidr)
			seen := map[netip.Addr]bool{}
			for i := 0; i < r.Size(); i++ {
				ip, err := r.AllocateNext()
				if err != nil {
					t.Fatalf("allocation %d: %v", i, err)
				}
				if seen[ip] || !r.Contains(ip) || !r.Has(ip) {
					t.Fatalf("allocation %d: %s handed out twice, outside the range or not recorded", i, ip)
				}
				seen[ip] = true
			}
			if r.Free() != 0 {
				t.Fatalf("free = %d after exhaustion", r.Free())
			}
			if _, err := r.AllocateNext(); !errors.Is(err, ErrFull) || err.Error() != "range is full" {
				t.Fatalf("AllocateNext on a full range: %v, want ErrFull", err)
			}
			// A released address is the only one to hand out.
			ip := r.addr(r.Size() / 2)
			r.Release(ip)
			if r.Has(ip) || r.Free() != 1 {
				t.Fatalf("after Release(%s): has=%v free=%d", ip, r.Has(ip), r.Free())
			}
			got, err := r.AllocateNext()
			if err != nil || got != ip {
				t.Fatalf("AllocateNext = %s, %v; want %s", got, err, ip)
			}
		})
	}
}

func TestIPRangeAllocateSpecific(t *testing.T) {
	r := mustRange(t, "10.43.0.0/16")
	tests := []struct {
		ip      string
		wantErr string
	}{
		{ip: "10.43.0.1"},
		{ip: "10.43.0.1", wantErr: "provided IP is already allocated"},
		{ip: "10.43.255.254"},
		{ip: "::ffff:10.43.0.10"}, // 4-in-6 is the same address
		{ip: "10.43.0.10", wantErr: "provided IP is already allocated"},
		{ip: "10.43.0.0", wantErr: "provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16"},
		{ip: "10.43.255.255", wantErr: "provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16"},
		{ip: "10.44.0.1", wantErr: "provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16"},
		{ip: "fd00::1", wantErr: "provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16"},
	}
	for _, tt := range tests {
		err := r.Allocate(netip.MustParseAddr(tt.ip))
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("Allocate(%s): %v", tt.ip, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.wantErr {
			t.Errorf("Allocate(%s) = %v, want %q", tt.ip, err, tt.wantErr)
		}
	}
	if err := r.Allocate(netip.MustParseAddr("10.0.0.1")); !errors.Is(err, ErrNotInRange) {
		t.Errorf("errors.Is(%v, ErrNotInRange) = false", err)
	}
	if got := r.Free(); got != 65534-3 {
		t.Errorf("free = %d, want %d", got, 65534-3)
	}
	// Releasing free or foreign addresses is harmless.
	r.Release(netip.MustParseAddr("10.43.0.2"))
	r.Release(netip.MustParseAddr("192.168.0.1"))
	r.Release(netip.Addr{})
	if got := r.Free(); got != 65534-3 {
		t.Errorf("free = %d after no-op releases, want %d", got, 65534-3)
	}
}

// TestIPRangeDynamicAvoidsLowBand checks Kubernetes' allocation order:
// dynamic allocations take the low band (which holds 10.43.0.1 and
// 10.43.0.10) only once everything above it is taken.
func TestIPRangeDynamicAvoidsLowBand(t *testing.T) {
	r := mustRange(t, "10.43.0.0/24") // 254 addresses, low band of 16
	upper := r.Size() - 16
	for i := 0; i < upper; i++ {
		ip, err := r.AllocateNext()
		if err != nil {
			t.Fatal(err)
		}
		if ip.As4()[3] <= 16 {
			t.Fatalf("allocation %d got %s from the low band while the upper band has room", i, ip)
		}
	}
	ip, err := r.AllocateNext()
	if err != nil || ip.As4()[3] > 16 {
		t.Fatalf("allocation after the upper band is full = %s, %v; want the low band", ip, err)
	}
}

// TestIPRangeRandomStart checks that the scan starts where the random
// source says and wraps around, so a just-released address is not the
// next one handed out.
func TestIPRangeRandomStart(t *testing.T) {
	r := mustRange(t, "10.43.0.0/24")
	starts := []int{0, 100, 237}
	r.bm.intn = func(n int) int {
		s := starts[0]
		starts = starts[1:]
		return s
	}
	want := []string{"10.43.0.17", "10.43.0.117", "10.43.0.254"}
	for _, w := range want {
		ip, err := r.AllocateNext()
		if err != nil || ip.String() != w {
			t.Fatalf("AllocateNext = %s, %v; want %s", ip, err, w)
		}
	}
	// Start at the taken last address: wraps to the first free one.
	r.bm.intn = func(n int) int { return n - 1 }
	if ip, _ := r.AllocateNext(); ip.String() != "10.43.0.18" {
		t.Fatalf("wrapped allocation = %s, want 10.43.0.18", ip)
	}
}

func TestBitmapFirstFree(t *testing.T) {
	b := newBitmap(200, 0)
	for i := 0; i < 130; i++ {
		b.set(i)
	}
	b.clear(64)
	tests := []struct{ from, to, want int }{
		{0, 200, 64}, {65, 200, 130}, {65, 130, -1}, {131, 200, 131}, {199, 200, 199}, {0, 64, -1},
	}
	for _, tt := range tests {
		got, ok := b.firstFree(tt.from, tt.to)
		if !ok {
			got = -1
		}
		if got != tt.want {
			t.Errorf("firstFree(%d, %d) = %d, want %d", tt.from, tt.to, got, tt.want)
		}
	}
}
