package container

import "testing"

func TestCPUConversions(t *testing.T) {
	tests := []struct {
		milli    int64
		shares   uint64
		quota    int64
		period   uint64
		v2Weight uint64 // runc's quadratic shares→weight mapping (1024 → 100)
	}{
		{milli: 0, shares: 2, quota: 0, period: 0, v2Weight: 1},
		{milli: 1, shares: 2, quota: 1000, period: 100000, v2Weight: 1},
		{milli: 100, shares: 102, quota: 10000, period: 100000, v2Weight: 17},
		{milli: 1000, shares: 1024, quota: 100000, period: 100000, v2Weight: 100},
		{milli: 2500, shares: 2560, quota: 250000, period: 100000, v2Weight: 208},
	}
	for _, tt := range tests {
		if got := MilliCPUToShares(tt.milli); got != tt.shares {
			t.Errorf("MilliCPUToShares(%d) = %d, want %d", tt.milli, got, tt.shares)
		}
		q, p := MilliCPUToQuota(tt.milli)
		if q != tt.quota || p != tt.period {
			t.Errorf("MilliCPUToQuota(%d) = %d/%d, want %d/%d", tt.milli, q, p, tt.quota, tt.period)
		}
		r := Resources{CPUShares: tt.shares, CPUQuota: q, CPUPeriod: p}
		v1 := r.cgroupResources(false)
		if v1.CpuShares != tt.shares || v1.CpuWeight != 0 || v1.CpuQuota != q {
			t.Errorf("v1 resources for %dm = %+v", tt.milli, v1)
		}
		v2 := r.cgroupResources(true)
		if v2.CpuShares != 0 || v2.CpuWeight != tt.v2Weight || v2.CpuQuota != q || v2.CpuPeriod != p {
			t.Errorf("v2 resources for %dm: weight %d, want %d (%+v)", tt.milli, v2.CpuWeight, tt.v2Weight, v2)
		}
	}
}

func TestMemoryMapping(t *testing.T) {
	v2 := Resources{MemoryLimit: 64 << 20, PidsLimit: 100}.cgroupResources(true)
	if v2.Memory != 64<<20 || v2.MemorySwap != 64<<20 || v2.PidsLimit == nil || *v2.PidsLimit != 100 {
		t.Errorf("v2 = %+v", v2)
	}
	if none := (Resources{}).cgroupResources(true); none.Memory != 0 || none.MemorySwap != 0 || none.PidsLimit != nil {
		t.Errorf("unlimited = %+v", none)
	}
}
