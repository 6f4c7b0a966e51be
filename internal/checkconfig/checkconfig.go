// Package checkconfig answers "can this machine run orch?" the way k3s'
// check-config does: a list of the kernel and system features a node needs
// (cgroups with the memory, cpu and pids controllers, overlayfs, nf_tables,
// veth and bridge, vxlan for multi-node networking, root, IP forwarding, a
// writable data directory with free space), each OK or MISSING with what
// to do about it.
//
// Every check is a pure function of a Host: the root file system as an
// fs.FS (so tests hand in a fake /proc, /sys, /lib/modules and /boot) and
// a few functions for what a file cannot tell (user id, access, free
// space). The package changes nothing on the machine: it does not load
// modules or create directories.
package checkconfig

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Status is the outcome of one check.
type Status int

// Outcomes, worst last.
const (
	OK Status = iota
	// Warning: orch runs, but something is degraded or will be changed
	// at start (e.g. IP forwarding, which the agent turns on).
	Warning
	// Missing: a required feature is absent; orch will not work.
	Missing
)

func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warning:
		return "WARN"
	}
	return "MISSING"
}

// Result is one line of the report.
type Result struct {
	Group  string // "System", "Cgroups", "Kernel"
	Name   string // what was checked, e.g. "overlayfs"
	Status Status
	Detail string // how it was found, e.g. "built in", or what is wrong
	Fix    string // what to do when Status is not OK
}

// Host is the machine as the checks see it.
type Host struct {
	// Root is the root file system; paths are relative ("proc/modules").
	Root fs.FS
	// EUID is the effective user id.
	EUID int
	// DataDir is orch's data directory (absolute).
	DataDir string
	// Writable reports whether the process may create files in dir, an
	// existing directory.
	Writable func(dir string) error
	// FreeBytes is the space available to the process on dir's file system.
	FreeBytes func(dir string) (uint64, error)
}

// Disk space thresholds for the data directory: images and pod logs need
// room; below minFree pulls fail, below lowFree they soon will.
const (
	minFree = 512 << 20
	lowFree = 2 << 30
)

// Check runs every check, in report order.
func Check(h Host) []Result {
	var out []Result
	out = append(out, checkRoot(h), checkIPForward(h.Root))
	out = append(out, checkDataDir(h)...)
	out = append(out, checkCgroups(h.Root)...)
	out = append(out, checkKernel(h.Root)...)
	return out
}

// Failed reports whether any result is Missing.
func Failed(results []Result) bool {
	return slices.ContainsFunc(results, func(r Result) bool { return r.Status == Missing })
}

// Write prints the report: a section per group, one line per check, the
// fix under each line that is not OK, and a summary.
func Write(w io.Writer, results []Result) error {
	bw := bufio.NewWriter(w)
	group := ""
	missing, warnings := 0, 0
	for _, r := range results {
		if r.Group != group {
			if group != "" {
				fmt.Fprintln(bw)
			}
			group = r.Group
			fmt.Fprintf(bw, "%s:\n", group)
		}
		line := r.Name
		if r.Detail != "" {
			line += " (" + r.Detail + ")"
		}
		fmt.Fprintf(bw, "  %-8s %s\n", r.Status, line)
		if r.Status != OK && r.Fix != "" {
			fmt.Fprintf(bw, "           fix: %s\n", r.Fix)
		}
		switch r.Status {
		case Missing:
			missing++
		case Warning:
			warnings++
		}
	}
	fmt.Fprintln(bw)
	switch {
	case missing > 0:
		fmt.Fprintf(bw, "%d required feature(s) missing, %d warning(s): orch cannot run on this machine until the MISSING lines are fixed.\n", missing, warnings)
	case warnings > 0:
		fmt.Fprintf(bw, "All required features are present; %d warning(s).\n", warnings)
	default:
		fmt.Fprintln(bw, "All required features are present.")
	}
	return bw.Flush()
}

func checkRoot(h Host) Result {
	r := Result{Group: "System", Name: "running as root"}
	if h.EUID != 0 {
		r.Status, r.Detail = Missing, fmt.Sprintf("uid %d", h.EUID)
		r.Fix = "orch server and orch agent manage containers, mounts and network devices: run them as root (sudo)"
	}
	return r
}

// cgroupControllers are the controllers a node needs and why.
var cgroupControllers = []struct{ name, why string }{
	{"memory", "memory limits and the node's memory capacity"},
	{"cpu", "CPU requests and limits"},
	{"pids", "limits on processes per pod"},
}

// checkCgroups finds the cgroup version in use and the controllers it
// offers. With cgroup v2 mounted at /sys/fs/cgroup its cgroup.controllers
// lists them; otherwise (v1, or hybrid with v2 under unified/) the enabled
// column of /proc/cgroups does.
func checkCgroups(root fs.FS) []Result {
	version := Result{Group: "Cgroups", Name: "cgroup file system"}
	var available map[string]bool
	if data, err := fs.ReadFile(root, "sys/fs/cgroup/cgroup.controllers"); err == nil {
		version.Detail = "v2"
		available = map[string]bool{}
		for _, c := range strings.Fields(string(data)) {
			available[c] = true
		}
	} else if data, err := fs.ReadFile(root, "proc/cgroups"); err == nil && isDir(root, "sys/fs/cgroup") {
		version.Detail = "v1"
		if isDir(root, "sys/fs/cgroup/unified") {
			version.Detail = "v1, hybrid"
		}
		available = v1Controllers(string(data))
	} else {
		version.Status, version.Detail = Missing, "nothing mounted at /sys/fs/cgroup"
		version.Fix = "mount cgroup2 at /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup), or boot with systemd or OpenRC, which mount it"
		return []Result{version}
	}
	out := []Result{version}
	for _, c := range cgroupControllers {
		r := Result{Group: "Cgroups", Name: c.name + " controller", Detail: c.why}
		if !available[c.name] {
			r.Status = Missing
			r.Detail = "disabled or not built in; needed for " + c.why
			r.Fix = cgroupFix(root, c.name)
		}
		out = append(out, r)
	}
	return out
}

// v1Controllers reads /proc/cgroups: subsys_name hierarchy num_cgroups enabled.
func v1Controllers(data string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && !strings.HasPrefix(f[0], "#") && f[3] == "1" {
			out[f[0]] = true
		}
	}
	return out
}

// cgroupFix explains how to turn a controller on. Raspberry Pi OS
// disables the memory controller by default; its kernel command line is
// in cmdline.txt on the boot partition.
func cgroupFix(root fs.FS, controller string) string {
	if controller != "memory" {
		return fmt.Sprintf("use a kernel with the %s cgroup controller (CONFIG_CGROUP_%s) and remove any cgroup_disable=%s from the kernel command line",
			controller, strings.ToUpper(controller), controller)
	}
	for _, f := range []string{"boot/firmware/cmdline.txt", "boot/cmdline.txt"} {
		if fileExists(root, f) {
			return "add 'cgroup_enable=memory cgroup_memory=1' to the single line of /" + f + " and reboot"
		}
	}
	return "add 'cgroup_enable=memory cgroup_memory=1' to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboot"
}

// feature is a kernel feature that may be built in or a module.
type feature struct {
	name     string // in the report
	module   string // module name, e.g. nf_tables
	config   string // kernel config symbol, e.g. CONFIG_NF_TABLES
	fs       string // file system name in /proc/filesystems, if any
	required bool
	why      string // what it is for, in the fix
}

var kernelFeatures = []feature{
	{name: "overlayfs", module: "overlay", config: "CONFIG_OVERLAY_FS", fs: "overlay", required: true,
		why: "container root file systems are overlay mounts"},
	{name: "nf_tables", module: "nf_tables", config: "CONFIG_NF_TABLES", required: true,
		why: "Services are nftables rules"},
	{name: "veth", module: "veth", config: "CONFIG_VETH", required: true,
		why: "each pod is wired to the node by a veth pair"},
	{name: "bridge", module: "bridge", config: "CONFIG_BRIDGE", required: true,
		why: "pods of a node share a bridge"},
	{name: "vxlan", module: "vxlan", config: "CONFIG_VXLAN",
		why: "pods on different nodes reach each other over VXLAN when the nodes are not on one L2 network; a single node works without it"},
	{name: "br_netfilter", module: "br_netfilter", config: "CONFIG_BRIDGE_NETFILTER",
		why: "Service rules see traffic between pods on the same bridge"},
}

func checkKernel(root fs.FS) []Result {
	release := kernelRelease(root)
	out := make([]Result, 0, len(kernelFeatures))
	for _, f := range kernelFeatures {
		r := Result{Group: "Kernel", Name: f.name}
		how, ok := findFeature(root, release, f)
		if ok {
			r.Detail = how
			out = append(out, r)
			continue
		}
		r.Status, r.Detail = Warning, "not found; "+f.why
		if f.required {
			r.Status, r.Detail = Missing, "not found; needed because "+f.why
		}
		r.Fix = fmt.Sprintf("'modprobe %s' shows why it does not load; install your distribution's extra kernel modules (Ubuntu on a Raspberry Pi: linux-modules-extra-raspi) or use a kernel with %s",
			f.module, f.config)
		out = append(out, r)
	}
	return out
}

// kernelRelease is uname -r, read from /proc so tests can fake it.
func kernelRelease(root fs.FS) string {
	b, err := fs.ReadFile(root, "proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// findFeature looks for f where the kernel tells: a file system already
// registered, a module loaded (/sys/module, /proc/modules), built in
// (modules.builtin, the kernel config) or loadable (modules.dep).
func findFeature(root fs.FS, release string, f feature) (how string, ok bool) {
	if f.fs != "" && hasFilesystem(root, f.fs) {
		return "registered file system", true
	}
	if isDir(root, "sys/module/"+f.module) {
		return "loaded", true
	}
	if listsModule(root, "proc/modules", f.module, func(line string) string { return firstField(line) }) {
		return "loaded", true
	}
	modDir := "lib/modules/" + release
	if release != "" && listsModule(root, modDir+"/modules.builtin", f.module, moduleFromPath) {
		return "built in", true
	}
	if kernelConfig(root, release, f.config) == "y" {
		return "built in", true
	}
	if release != "" && listsModule(root, modDir+"/modules.dep", f.module, moduleFromPath) {
		return "loadable module", true
	}
	return "", false
}

func hasFilesystem(root fs.FS, name string) bool {
	data, err := fs.ReadFile(root, "proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

// listsModule reports whether a line of file names module, as extracted
// by name. Module names treat - and _ alike.
func listsModule(root fs.FS, file, module string, name func(line string) string) bool {
	f, err := root.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	want := normalizeModule(module)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if normalizeModule(name(sc.Text())) == want {
			return true
		}
	}
	return false
}

// moduleFromPath turns "kernel/net/bridge/bridge.ko.zst: deps..." into
// "bridge".
func moduleFromPath(line string) string {
	p, _, _ := strings.Cut(line, ":")
	base := path.Base(strings.TrimSpace(p))
	base, _, _ = strings.Cut(base, ".ko")
	return base
}

func firstField(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func normalizeModule(s string) string { return strings.ReplaceAll(s, "-", "_") }

// kernelConfig returns "y", "m" or "" for symbol in the kernel's config:
// /boot/config-RELEASE (Debian, Ubuntu, Raspberry Pi OS) or, failing that,
// /proc/config.gz (kernels built with IKCONFIG_PROC, common on minimal
// and VM kernels whose features are built in and absent from /sys/module).
func kernelConfig(root fs.FS, release, symbol string) string {
	var r io.Reader
	if f, err := root.Open("boot/config-" + release); err == nil {
		defer f.Close()
		r = f
	} else if f, err := root.Open("proc/config.gz"); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return ""
		}
		r = zr
	} else {
		return ""
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), symbol+"="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// checkIPForward: the agent turns forwarding on at start (netproxy/podnet),
// so off is only a warning that something else may turn it off again.
func checkIPForward(root fs.FS) Result {
	r := Result{Group: "System", Name: "IPv4 forwarding"}
	b, err := fs.ReadFile(root, "proc/sys/net/ipv4/ip_forward")
	switch {
	case err != nil:
		r.Status, r.Detail = Missing, "cannot read /proc/sys/net/ipv4/ip_forward"
		r.Fix = "mount /proc; pods need IPv4 forwarding"
	case strings.TrimSpace(string(b)) != "1":
		r.Status, r.Detail = Warning, "off; orch turns it on when the node starts"
		r.Fix = "to keep it on for good: echo net.ipv4.ip_forward=1 >/etc/sysctl.d/90-orch.conf"
	}
	return r
}

// checkDataDir checks the nearest existing directory of DataDir (orch
// creates the rest): writable, with free space.
func checkDataDir(h Host) []Result {
	dir := existingAncestor(h.Root, h.DataDir)
	w := Result{Group: "System", Name: "data directory " + h.DataDir + " writable"}
	if dir != h.DataDir {
		w.Detail = "will be created in " + dir
	}
	if err := h.Writable(dir); err != nil {
		w.Status, w.Detail = Missing, fmt.Sprintf("%s: %v", dir, err)
		w.Fix = "run as root, or choose another --data-dir; a read-only root file system needs a writable mount there"
	}
	space := Result{Group: "System", Name: "free space for " + h.DataDir}
	free, err := h.FreeBytes(dir)
	switch {
	case err != nil:
		space.Status, space.Detail = Warning, fmt.Sprintf("cannot tell: %v", err)
	case free < minFree:
		space.Status, space.Detail = Missing, humanBytes(free)+" free"
		space.Fix = fmt.Sprintf("free at least %s on the file system of %s (images and logs live there) or choose another --data-dir", humanBytes(lowFree), dir)
	case free < lowFree:
		space.Status, space.Detail = Warning, humanBytes(free)+" free"
		space.Fix = fmt.Sprintf("image pulls may fail soon: keep at least %s free on the file system of %s", humanBytes(lowFree), dir)
	default:
		space.Detail = humanBytes(free) + " free"
	}
	return []Result{w, space}
}

// existingAncestor is dir or its nearest parent that exists.
func existingAncestor(root fs.FS, dir string) string {
	p := path.Clean(dir)
	for p != "/" && !isDir(root, strings.TrimPrefix(p, "/")) {
		p = path.Dir(p)
	}
	return p
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

func isDir(root fs.FS, name string) bool {
	st, err := fs.Stat(root, name)
	return err == nil && st.IsDir()
}

func fileExists(root fs.FS, name string) bool {
	_, err := fs.Stat(root, name)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
