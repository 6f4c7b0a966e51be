package ipalloc

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		str     string
		wantErr string
	}{
		{in: "30000-32767", want: PortRange{Base: 30000, Size: 2768}, str: "30000-32767"},
		{in: " 30000 - 30009 ", want: PortRange{Base: 30000, Size: 10}, str: "30000-30009"},
		{in: "30000+2767", want: PortRange{Base: 30000, Size: 2768}, str: "30000-32767"},
		{in: "8080", want: PortRange{Base: 8080, Size: 1}, str: "8080-8080"},
		{in: "1-65535", want: PortRange{Base: 1, Size: 65535}, str: "1-65535"},
		{in: "", wantErr: "port range is empty"},
		{in: "32767-30000", wantErr: "last port 30000 is below first port 32767"},
		{in: "0-100", wantErr: `"0" is not a port number`},
		{in: "30000-70000", wantErr: `"70000" is not a port number`},
		{in: "abc", wantErr: `"abc" is not a port number`},
		{in: "30000-", wantErr: `"" is not a port number`},
		{in: "-5", wantErr: `"" is not a port number`},
		{in: "65000+1000", wantErr: "offset"},
		{in: "30000+x", wantErr: "offset"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePortRange(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePortRange(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || got.String() != tt.str {
				t.Fatalf("ParsePortRange(%q) = %v (%s), %v; want %v (%s)", tt.in, got, got, err, tt.want, tt.str)
			}
		})
	}
}

func TestPortAllocator(t *testing.T) {
	r, _ := ParsePortRange("30000-30099")
	a, err := NewPortAllocator(r)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		port    int
		wantErr string
	}{
		{port: 30000},
		{port: 30099},
		{port: 30000, wantErr: "provided port is already allocated"},
		{port: 29999, wantErr: "provided port is not in the valid range. The range of valid ports is 30000-30099"},
		{port: 30100, wantErr: "provided port is not in the valid range. The range of valid ports is 30000-30099"},
		{port: 80, wantErr: "provided port is not in the valid range. The range of valid ports is 30000-30099"},
	}
	for _, s := range steps {
		err := a.Allocate(s.port)
		if s.wantErr == "" && err != nil || s.wantErr != "" && (err == nil || err.Error() != s.wantErr) {
			t.Errorf("Allocate(%d) = %v, want %q", s.port, err, s.wantErr)
		}
	}
	if a.Free() != 98 {
		t.Fatalf("free = %d, want 98", a.Free())
	}
	seen := map[int]bool{30000: true, 30099: true}
	for a.Free() > 0 {
		p, err := a.AllocateNext()
		if err != nil || seen[p] || !r.Contains(p) || !a.Has(p) {
			t.Fatalf("AllocateNext = %d, %v (seen %v)", p, err, seen[p])
		}
		seen[p] = true
	}
	if _, err := a.AllocateNext(); !errors.Is(err, ErrFull) {
		t.Fatalf("AllocateNext on a full range: %v", err)
	}
	a.Release(30050)
	a.Release(12345) // outside: ignored
	if a.Has(30050) || a.Free() != 1 {
		t.Fatalf("after release: has=%v free=%d", a.Has(30050), a.Free())
	}
	if p, err := a.AllocateNext(); p != 30050 || err != nil {
		t.Fatalf("AllocateNext = %d, %v; want 30050", p, err)
	}
}

func TestNewPortAllocatorRejectsBadRanges(t *testing.T) {
	for _, r := range []PortRange{{Base: 0, Size: 10}, {Base: 30000, Size: 0}, {Base: 65000, Size: 1000}} {
		if _, err := NewPortAllocator(r); err == nil {
			t.Errorf("NewPortAllocator(%+v) succeeded", r)
		}
	}
}
