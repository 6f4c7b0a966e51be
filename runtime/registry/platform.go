package registry

import (
	"bufio"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/orch-dev/orch/runtime/image"
)

// NodePlatform is the platform images are picked for on this machine:
// the binary's OS and architecture, with the CPU variant arm needs.
//
// arm64 is v8. For 32-bit arm the variant comes from /proc/cpuinfo's "CPU
// architecture" line (as containerd does: an ARMv8 CPU running a 32-bit
// userland is v8, and can run v7 images); without it from the GOARM the
// binary was built with, and v7 when that is unknown too.
func NodePlatform() image.Platform {
	p := image.Platform{OS: goruntime.GOOS, Architecture: goruntime.GOARCH}
	switch p.Architecture {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = armVariantFromCPUInfo()
		if p.Variant == "" {
			p.Variant = armVariantFromBuild()
		}
	}
	return p
}

func armVariantFromCPUInfo() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	return cpuInfoVariant(f)
}

// cpuInfoVariant reads the first "CPU architecture: N" line of a
// /proc/cpuinfo and returns "vN" (ARMv5..ARMv8), or "" when absent.
func cpuInfoVariant(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "CPU architecture") {
			continue
		}
		v = strings.TrimSpace(v)
		// Old kernels print e.g. "5TEJ" or "7"; AArch64 ones "8".
		n := 0
		for n < len(v) && v[n] >= '0' && v[n] <= '9' {
			n++
		}
		if arch, err := strconv.Atoi(v[:n]); err == nil && arch >= 5 && arch <= 8 {
			return "v" + strconv.Itoa(arch)
		}
		return ""
	}
	return ""
}

func armVariantFromBuild() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" {
				// GOARM may carry a ",softfloat" suffix.
				n, _, _ := strings.Cut(s.Value, ",")
				if _, err := strconv.Atoi(n); err == nil {
					return "v" + n
				}
			}
		}
	}
	return "v7"
}

// platformMatcher ranks an index's entries for a node: lower is better,
// -1 means the node cannot run it.
type platformMatcher struct {
	os, arch string
	variants []string // acceptable variants, best first; "" matches an entry without one
}

func newPlatformMatcher(p image.Platform) platformMatcher {
	m := platformMatcher{os: p.OS, arch: p.Architecture}
	switch p.Architecture {
	case "arm64":
		// Images rarely say v8; both forms are the same thing.
		m.variants = []string{"v8", ""}
	case "arm":
		// An ARMv7 CPU runs v6 and v5 code too, the other way round not.
		n, err := strconv.Atoi(strings.TrimPrefix(p.Variant, "v"))
		if err != nil {
			n = 7
		}
		for ; n >= 5; n-- {
			m.variants = append(m.variants, "v"+strconv.Itoa(n))
		}
		m.variants = append(m.variants, "")
	case "amd64":
		// v1 is the baseline every amd64 CPU runs; images rarely say it.
		m.variants = []string{"", "v1"}
	default:
		m.variants = []string{p.Variant}
		if p.Variant != "" {
			m.variants = append(m.variants, "")
		}
	}
	return m
}

func (m platformMatcher) rank(p image.Platform) int {
	if p.OS != m.os || p.Architecture != m.arch {
		return -1
	}
	for i, v := range m.variants {
		if p.Variant == v {
			return i
		}
	}
	return -1
}

func (m platformMatcher) String() string {
	s := m.os + "/" + m.arch
	if len(m.variants) > 0 && m.variants[0] != "" {
		s += "/" + m.variants[0]
	}
	return s
}

// pickManifest chooses the best entry of an index for m.
func pickManifest(m platformMatcher, list []image.Descriptor) (image.Descriptor, error) {
	best, bestRank := -1, -1
	var have []string
	for i, d := range list {
		if d.Platform == nil {
			continue
		}
		have = append(have, platformName(*d.Platform))
		if r := m.rank(*d.Platform); r >= 0 && (best < 0 || r < bestRank) {
			best, bestRank = i, r
		}
	}
	if best < 0 {
		return image.Descriptor{}, fmt.Errorf("no matching manifest for %s in the manifest list entries (has %s)", m, strings.Join(have, ", "))
	}
	return list[best], nil
}

func platformName(p image.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
