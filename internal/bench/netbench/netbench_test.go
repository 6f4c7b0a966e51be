package main

import (
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestBackgroundAddr(t *testing.T) {
	// 1,000 Services of 10 endpoints: distinct addresses, all in the
	// cluster CIDR and above the first node's podCIDR.
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	firstPodCIDR := netip.MustParsePrefix("10.42.0.0/24")
	seen := map[netip.Addr]bool{}
	for i := range 10000 {
		a := backgroundAddr(i)
		if seen[a] {
			t.Fatalf("address %d (%s) repeats", i, a)
		}
		seen[a] = true
		if !cluster.Contains(a) || firstPodCIDR.Contains(a) || a.As4()[3] == 0 || a.As4()[3] == 255 {
			t.Fatalf("address %d is %s", i, a)
		}
	}
}

func TestBackgroundSizes(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []int
	}{
		{0, []int{0}},
		{5, []int{0, 5}},
		{1000, []int{0, 100, 1000}},
	} {
		if got := backgroundSizes(tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("backgroundSizes(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestRepeatReader(t *testing.T) {
	b, err := io.ReadAll(io.LimitReader(repeatReader("abc"), 7))
	if err != nil || string(b) != "abcabca" {
		t.Fatalf("got %q, %v", b, err)
	}
}

func TestEndpointSlice(t *testing.T) {
	sl := endpointSlice("web", "web-1", 8080, []netip.Addr{netip.MustParseAddr("10.42.128.1"), netip.MustParseAddr("10.42.128.2")})
	if sl.Labels["kubernetes.io/service-name"] != "web" || sl.Labels["endpointslice.kubernetes.io/managed-by"] != managedBy {
		t.Errorf("labels %v", sl.Labels)
	}
	if len(sl.Endpoints) != 2 || sl.Endpoints[1].Addresses[0] != "10.42.128.2" || !*sl.Endpoints[0].Conditions.Ready {
		t.Errorf("endpoints %+v", sl.Endpoints)
	}
	if *sl.Ports[0].Port != 8080 || *sl.Ports[0].Name != "http" {
		t.Errorf("ports %+v", sl.Ports)
	}
}

func TestRuleWriteDuration(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
		ok   bool
	}{
		{`time=2026-11-23T17:40:00.000Z level=DEBUG msg="service rules written" node=nb-node services=1005 chains=4040 took=23.5ms staleFlowsDeleted=0`, 23500 * time.Microsecond, true},
		{`time=2026-11-23T17:40:00.000Z level=DEBUG msg="service rules written" services=3 chains=12 took=912µs`, 912 * time.Microsecond, true},
		{`time=2026-11-23T17:40:00.000Z level=INFO msg="node networking started" took=1s`, 0, false},
		{`time=2026-11-23T17:40:00.000Z level=DEBUG msg="service rules written" took=soon`, 0, false},
	} {
		got, ok := ruleWriteDuration(tc.line)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ruleWriteDuration(%q) = %v, %v; want %v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}
