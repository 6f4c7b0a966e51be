package checkconfig

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"maps"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

const release = "6.1.0-test"

// debian is a healthy amd64 host: cgroup v1 hybrid, overlay registered,
// nf_tables loaded, the rest loadable modules.
func debian() fstest.MapFS {
	return fstest.MapFS{
		"proc/sys/kernel/osrelease":    {Data: []byte(release + "\n")},
		"proc/sys/net/ipv4/ip_forward": {Data: []byte("1\n")},
		"proc/filesystems":             {Data: []byte("nodev\tsysfs\nnodev\tproc\nnodev\toverlay\n\text4\n")},
		"proc/cgroups":                 {Data: []byte("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t3\t90\t1\nmemory\t5\t120\t1\npids\t4\t100\t1\n")},
		"sys/fs/cgroup/unified":        {Mode: 0o555 | fs.ModeDir},
		"sys/fs/cgroup/memory":         {Mode: 0o555 | fs.ModeDir},
		"sys/module/nf_tables/refcnt":  {Data: []byte("0\n")},
		"proc/modules":                 {Data: []byte("veth 40960 0 - Live 0x0000000000000000\n")},
		"lib/modules/" + release + "/modules.dep": {Data: []byte(
			"kernel/drivers/net/vxlan/vxlan.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz\n" +
				"kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz\n" +
				"kernel/net/bridge/br_netfilter.ko.xz: kernel/net/bridge/bridge.ko.xz\n")},
	}
}

func host(root fstest.MapFS) Host {
	return Host{
		Root:      root,
		DataDir:   "/var/lib/orch",
		Writable:  func(string) error { return nil },
		FreeBytes: func(string) (uint64, error) { return 20 << 30, nil },
	}
}

func with(base fstest.MapFS, changes map[string]string) fstest.MapFS {
	out := maps.Clone(base)
	for k, v := range changes {
		if v == "-" {
			delete(out, k)
			continue
		}
		out[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return out
}

func find(t *testing.T, results []Result, name string) Result {
	t.Helper()
	for _, r := range results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no result %q in %+v", name, results)
	return Result{}
}

func TestHealthyHost(t *testing.T) {
	results := Check(host(debian()))
	for _, r := range results {
		if r.Status != OK {
			t.Errorf("%s: %s (%s), want OK", r.Name, r.Status, r.Detail)
		}
	}
	if Failed(results) {
		t.Error("Failed on a healthy host")
	}
	for name, detail := range map[string]string{
		"cgroup file system":           "v1, hybrid",
		"overlayfs":                    "registered file system",
		"nf_tables":                    "loaded",
		"veth":                         "loaded",
		"bridge":                       "loadable module",
		"vxlan":                        "loadable module",
		"free space for /var/lib/orch": "20.0 GiB free",
	} {
		if got := find(t, results, name).Detail; got != detail {
			t.Errorf("%s detail = %q, want %q", name, got, detail)
		}
	}
}

func TestCgroups(t *testing.T) {
	v2 := func(controllers string, extra map[string]string) fstest.MapFS {
		fs := with(debian(), map[string]string{"proc/cgroups": "-", "sys/fs/cgroup/unified": "-",
			"sys/fs/cgroup/cgroup.controllers": controllers + "\n"})
		return with(fs, extra)
	}
	tests := []struct {
		name        string
		root        fstest.MapFS
		version     string
		missing     []string
		fixContains string
	}{
		{name: "v2 complete", root: v2("cpuset cpu io memory hugetlb pids rdma misc", nil), version: "v2"},
		{name: "raspberry pi os bookworm: v2 without memory", version: "v2",
			root:        v2("cpuset cpu io pids", map[string]string{"boot/firmware/cmdline.txt": "console=serial0,115200 root=PARTUUID=1 rootwait\n"}),
			missing:     []string{"memory controller"},
			fixContains: "add 'cgroup_enable=memory cgroup_memory=1' to the single line of /boot/firmware/cmdline.txt and reboot"},
		{name: "older raspberry pi os: v1 with memory disabled", version: "v1, hybrid",
			root: with(debian(), map[string]string{"boot/cmdline.txt": "console=tty1\n",
				"proc/cgroups": "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t3\t90\t1\nmemory\t0\t1\t0\npids\t4\t100\t1\n"}),
			missing:     []string{"memory controller"},
			fixContains: "/boot/cmdline.txt"},
		{name: "pc without memory cgroup", version: "v2", root: v2("cpu pids", nil),
			missing: []string{"memory controller"}, fixContains: "GRUB_CMDLINE_LINUX"},
		{name: "v1 without pids", version: "v1",
			root: with(debian(), map[string]string{"sys/fs/cgroup/unified": "-",
				"proc/cgroups": "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t3\t90\t1\nmemory\t5\t120\t1\n"}),
			missing: []string{"pids controller"}, fixContains: "CONFIG_CGROUP_PIDS"},
		{name: "nothing mounted", root: with(debian(), map[string]string{"proc/cgroups": "-", "sys/fs/cgroup/unified": "-", "sys/fs/cgroup/memory": "-"}),
			missing: []string{"cgroup file system"}, fixContains: "mount -t cgroup2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results := checkCgroups(tt.root)
			var missing []string
			for _, r := range results {
				if r.Status == Missing {
					missing = append(missing, r.Name)
					if !strings.Contains(r.Fix, tt.fixContains) {
						t.Errorf("%s fix = %q, want it to contain %q", r.Name, r.Fix, tt.fixContains)
					}
				}
			}
			if strings.Join(missing, ",") != strings.Join(tt.missing, ",") {
				t.Errorf("missing %q, want %q", missing, tt.missing)
			}
			if tt.version != "" && results[0].Detail != tt.version {
				t.Errorf("version %q, want %q", results[0].Detail, tt.version)
			}
		})
	}
}

func TestKernelFeatures(t *testing.T) {
	bare := with(debian(), map[string]string{"proc/filesystems": "nodev\tproc\n", "proc/modules": "",
		"sys/module/nf_tables/refcnt": "-", "lib/modules/" + release + "/modules.dep": ""})
	tests := []struct {
		name    string
		root    fstest.MapFS
		feature string
		status  Status
		detail  string
	}{
		{name: "nothing anywhere", root: bare, feature: "nf_tables", status: Missing,
			detail: "not found; needed because Services are nftables rules"},
		{name: "optional vxlan missing is a warning", root: bare, feature: "vxlan", status: Warning},
		{name: "built in per modules.builtin", feature: "overlayfs", status: OK, detail: "built in",
			root: with(bare, map[string]string{"lib/modules/" + release + "/modules.builtin": "kernel/fs/overlayfs/overlay.ko\n"})},
		{name: "built in per the kernel config", feature: "bridge", status: OK, detail: "built in",
			root: with(bare, map[string]string{"boot/config-" + release: "# comment\nCONFIG_BRIDGE=y\nCONFIG_VETH=m\n"})},
		{name: "module in the config but not installed", feature: "veth", status: Missing,
			root: with(bare, map[string]string{"boot/config-" + release: "CONFIG_VETH=m\n"})},
		{name: "config of another release ignored", feature: "bridge", status: Missing,
			root: with(bare, map[string]string{"boot/config-5.10.0": "CONFIG_BRIDGE=y\n"})},
		{name: "loaded per /proc/modules, dash and underscore alike", feature: "br_netfilter", status: OK, detail: "loaded",
			root: with(bare, map[string]string{"proc/modules": "br-netfilter 32768 0 - Live 0x0\n"})},
		{name: "compressed module file", feature: "nf_tables", status: OK, detail: "loadable module",
			root: with(bare, map[string]string{"lib/modules/" + release + "/modules.dep": "kernel/net/netfilter/nf_tables.ko.zst: kernel/lib/x.ko.zst\n"})},
		{name: "similar name is not the module", feature: "bridge", status: Missing,
			root: with(bare, map[string]string{"lib/modules/" + release + "/modules.dep": "kernel/net/bridge/bridge_extra.ko:\n"})},
		{name: "built in per /proc/config.gz", feature: "veth", status: OK, detail: "built in",
			root: with(bare, map[string]string{"proc/sys/kernel/osrelease": "-", "proc/config.gz": gzipped("CONFIG_VETH=y\n")})},
		{name: "/boot/config wins over /proc/config.gz", feature: "veth", status: Missing,
			root: with(bare, map[string]string{"boot/config-" + release: "CONFIG_VETH=m\n", "proc/config.gz": gzipped("CONFIG_VETH=y\n")})},
		{name: "corrupt /proc/config.gz", feature: "veth", status: Missing,
			root: with(bare, map[string]string{"proc/config.gz": "CONFIG_VETH=y\n"})},
		{name: "unknown kernel release", feature: "overlayfs", status: Missing,
			root: with(bare, map[string]string{"proc/sys/kernel/osrelease": "-",
				"lib/modules/" + release + "/modules.builtin": "kernel/fs/overlayfs/overlay.ko\n"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := find(t, checkKernel(tt.root), tt.feature)
			if r.Status != tt.status || (tt.detail != "" && r.Detail != tt.detail) {
				t.Errorf("%s = %s (%s), want %s (%s)", tt.feature, r.Status, r.Detail, tt.status, tt.detail)
			}
			if r.Status != OK && !strings.Contains(r.Fix, "modprobe") {
				t.Errorf("fix %q does not say how to find out more", r.Fix)
			}
		})
	}
}

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.String()
}

func TestSystem(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Host)
		check  string
		status Status
		detail string
	}{
		{name: "not root", change: func(h *Host) { h.EUID = 1000 }, check: "running as root", status: Missing, detail: "uid 1000"},
		{name: "ip_forward off", change: func(h *Host) {
			h.Root = with(h.Root.(fstest.MapFS), map[string]string{"proc/sys/net/ipv4/ip_forward": "0\n"})
		}, check: "IPv4 forwarding", status: Warning},
		{name: "data dir not writable", change: func(h *Host) {
			h.Writable = func(dir string) error { return errors.New("read-only file system") }
		}, check: "data directory /var/lib/orch writable", status: Missing, detail: "/: read-only file system"},
		{name: "data dir parent exists", change: func(h *Host) {
			h.Root = with(h.Root.(fstest.MapFS), map[string]string{"var/lib/dpkg": "x"})
			h.Writable = func(dir string) error {
				if dir != "/var/lib" {
					return errors.New("asked about " + dir)
				}
				return nil
			}
		}, check: "data directory /var/lib/orch writable", status: OK, detail: "will be created in /var/lib"},
		{name: "disk nearly full", change: func(h *Host) {
			h.FreeBytes = func(string) (uint64, error) { return 100 << 20, nil }
		}, check: "free space for /var/lib/orch", status: Missing, detail: "100 MiB free"},
		{name: "disk low", change: func(h *Host) {
			h.FreeBytes = func(string) (uint64, error) { return 1 << 30, nil }
		}, check: "free space for /var/lib/orch", status: Warning, detail: "1.0 GiB free"},
		{name: "statfs fails", change: func(h *Host) {
			h.FreeBytes = func(string) (uint64, error) { return 0, os.ErrPermission }
		}, check: "free space for /var/lib/orch", status: Warning, detail: "cannot tell: permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := host(debian())
			tt.change(&h)
			results := Check(h)
			r := find(t, results, tt.check)
			if r.Status != tt.status || (tt.detail != "" && r.Detail != tt.detail) {
				t.Errorf("%s = %s (%s), want %s (%s)", tt.check, r.Status, r.Detail, tt.status, tt.detail)
			}
			if Failed(results) != (tt.status == Missing) {
				t.Errorf("Failed = %v with %s %s", Failed(results), tt.check, r.Status)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	results := []Result{
		{Group: "System", Name: "running as root"},
		{Group: "System", Name: "IPv4 forwarding", Status: Warning, Detail: "off", Fix: "sysctl"},
		{Group: "Kernel", Name: "overlayfs", Status: Missing, Detail: "not found", Fix: "modprobe overlay"},
	}
	var b strings.Builder
	if err := Write(&b, results); err != nil {
		t.Fatal(err)
	}
	want := `System:
  OK       running as root
  WARN     IPv4 forwarding (off)
           fix: sysctl

Kernel:
  MISSING  overlayfs (not found)
           fix: modprobe overlay

1 required feature(s) missing, 1 warning(s): orch cannot run on this machine until the MISSING lines are fixed.
`
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := Write(&b, results[:1]); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(b.String(), "\nAll required features are present.\n") {
		t.Errorf("report:\n%s", b.String())
	}
}

// TestLocalHost runs the checks on this machine: they must not fail to
// run, whatever the machine lacks, and the parts the test controls must
// come out as expected.
func TestLocalHost(t *testing.T) {
	dir := t.TempDir()
	results := Check(LocalHost(dir + "/orch"))
	var b strings.Builder
	if err := Write(&b, results); err != nil {
		t.Fatal(err)
	}
	t.Logf("this machine:\n%s", b.String())
	if r := find(t, results, "data directory "+dir+"/orch writable"); r.Status != OK || r.Detail != "will be created in "+dir {
		t.Errorf("temp data dir: %s (%s)", r.Status, r.Detail)
	}
	if r := find(t, results, "running as root"); (r.Status == OK) != (os.Geteuid() == 0) {
		t.Errorf("root check %s with euid %d", r.Status, os.Geteuid())
	}
	if r := find(t, results, "free space for "+dir+"/orch"); !strings.HasSuffix(r.Detail, " free") {
		t.Errorf("free space: %s (%s)", r.Status, r.Detail)
	}
	if r := find(t, results, "cgroup file system"); r.Status != OK {
		t.Errorf("no cgroups found on this machine: %s", r.Detail)
	}
}
