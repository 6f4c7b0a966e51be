package registry

import (
	"strings"
	"testing"

	"github.com/orch-dev/orch/runtime/image"
)

func TestCPUInfoVariant(t *testing.T) {
	tests := []struct{ name, cpuinfo, want string }{
		{"raspberry pi 2 (armv7)", "processor\t: 0\nmodel name\t: ARMv7 Processor rev 5 (v7l)\nCPU architecture: 7\nCPU variant\t: 0x0\n", "v7"},
		{"pi zero (armv6)", "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n", "v7"},
		{"armv5 TEJ", "CPU architecture: 5TEJ\n", "v5"},
		{"aarch64 cpu, 32-bit userland", "CPU architecture: 8\n", "v8"},
		{"x86", "processor\t: 0\nvendor_id\t: GenuineIntel\n", ""},
		{"garbage", "CPU architecture: ?\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuInfoVariant(strings.NewReader(tt.cpuinfo)); got != tt.want {
				t.Errorf("cpuInfoVariant = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPickManifest(t *testing.T) {
	d := func(digest, os, arch, variant string) image.Descriptor {
		return image.Descriptor{Digest: digest, Platform: &image.Platform{OS: os, Architecture: arch, Variant: variant}}
	}
	index := []image.Descriptor{
		{Digest: "attestation"}, // no platform: skipped
		d("unknown", "unknown", "unknown", ""),
		d("amd64", "linux", "amd64", ""),
		d("arm64", "linux", "arm64", "v8"),
		d("armv6", "linux", "arm", "v6"),
		d("armv7", "linux", "arm", "v7"),
		d("win", "windows", "amd64", ""),
	}
	tests := []struct {
		node  image.Platform
		index []image.Descriptor
		want  string
		err   string
	}{
		{node: image.Platform{OS: "linux", Architecture: "amd64"}, index: index, want: "amd64"},
		{node: image.Platform{OS: "linux", Architecture: "amd64"}, index: []image.Descriptor{d("v3", "linux", "amd64", "v3"), d("v1", "linux", "amd64", "v1")}, want: "v1"},
		{node: image.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, index: index, want: "arm64"},
		{node: image.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, index: []image.Descriptor{d("a", "linux", "arm64", "")}, want: "a"},
		{node: image.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, index: index, want: "armv7"},
		{node: image.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, index: index, want: "armv6"},
		// An ARMv8 CPU with a 32-bit userland runs v7 images.
		{node: image.Platform{OS: "linux", Architecture: "arm", Variant: "v8"}, index: index, want: "armv7"},
		// v7 prefers its own variant over an older one listed first.
		{node: image.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, index: []image.Descriptor{d("v5", "linux", "arm", "v5"), d("v7", "linux", "arm", "v7")}, want: "v7"},
		{node: image.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, index: []image.Descriptor{d("v7", "linux", "arm", "v7")},
			err: "no matching manifest for linux/arm/v6 in the manifest list entries (has linux/arm/v7)"},
		{node: image.Platform{OS: "linux", Architecture: "riscv64"}, index: index, err: "no matching manifest for linux/riscv64"},
	}
	for _, tt := range tests {
		t.Run(platformName(tt.node)+"/"+tt.want, func(t *testing.T) {
			got, err := pickManifest(newPlatformMatcher(tt.node), tt.index)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("pickManifest = %v, %v; want error %q", got.Digest, err, tt.err)
				}
				return
			}
			if err != nil || got.Digest != tt.want {
				t.Fatalf("pickManifest = %q, %v; want %q", got.Digest, err, tt.want)
			}
		})
	}
}

func TestNodePlatform(t *testing.T) {
	p := NodePlatform()
	if p.OS == "" || p.Architecture == "" {
		t.Fatalf("NodePlatform() = %+v", p)
	}
	if (p.Architecture == "arm64" || p.Architecture == "arm") != (p.Variant != "") {
		t.Errorf("NodePlatform() = %+v: arm wants a variant, others none", p)
	}
}
