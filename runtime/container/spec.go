package container

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"
)

func isV2() bool { return cgroups.IsCgroup2UnifiedMode() }

// defaultCaps is the capability set containerd and Docker give a
// non-privileged container.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// capabilities applies adds and drops (with or without the CAP_ prefix,
// "ALL" allowed, as in a pod spec) to the default set.
func capabilities(add, drop []string) *configs.Capabilities {
	norm := func(c string) string {
		c = strings.ToUpper(c)
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		return c
	}
	set := map[string]bool{}
	for _, c := range defaultCaps {
		set[c] = true
	}
	for _, c := range drop {
		if norm(c) == "ALL" {
			set = map[string]bool{}
			continue
		}
		delete(set, norm(c))
	}
	for _, c := range add {
		set[norm(c)] = true
	}
	var list []string
	for c := range set {
		if c != "ALL" {
			list = append(list, c)
		}
	}
	return &configs.Capabilities{Bounding: list, Effective: list, Permitted: list}
}

// libcontainerConfig builds the container's libcontainer configuration.
func libcontainerConfig(s *sandboxState, cfg *ContainerConfig, rootfs, cgroupPath string) (*configs.Config, error) {
	const roFlags = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	var rules []*devices.Rule
	var nodes []*devices.Device
	for _, d := range specconv.AllowedDevices {
		rules = append(rules, &d.Rule)
		if d.Path != "" {
			nodes = append(nodes, d)
		}
	}
	res := cfg.Resources.cgroupResources(isV2())
	res.Devices = rules

	ns := configs.Namespaces{
		{Type: configs.NEWNS},
		{Type: configs.NEWIPC, Path: s.nsPath("ipc")},
	}
	if !s.HostNetwork {
		// A host-network pod's containers stay in the node's network and
		// UTS namespaces, which its pause process did not leave.
		ns = append(ns, configs.Namespace{Type: configs.NEWNET, Path: s.nsPath("net")},
			configs.Namespace{Type: configs.NEWUTS, Path: s.nsPath("uts")})
	}
	if s.SharePID {
		ns = append(ns, configs.Namespace{Type: configs.NEWPID, Path: s.nsPath("pid")})
	} else {
		ns = append(ns, configs.Namespace{Type: configs.NEWPID})
	}

	mounts := []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: roFlags},
		{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: roFlags, Data: "mode=1777,size=65536k"},
		{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: roFlags},
		{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: roFlags | unix.MS_RDONLY},
	}
	binds := []Mount{}
	if cfg.HostsPath != "" {
		binds = append(binds, Mount{Source: cfg.HostsPath, Destination: "/etc/hosts"})
	}
	if cfg.ResolvConfPath != "" {
		binds = append(binds, Mount{Source: cfg.ResolvConfPath, Destination: "/etc/resolv.conf"})
	}
	if cfg.HostnamePath != "" {
		binds = append(binds, Mount{Source: cfg.HostnamePath, Destination: "/etc/hostname"})
	}
	binds = append(binds, cfg.Mounts...)
	for _, m := range binds {
		if !filepath.IsAbs(m.Source) || !path.IsAbs(m.Destination) {
			return nil, fmt.Errorf("mount %s on %s: paths must be absolute", m.Source, m.Destination)
		}
		flags := unix.MS_BIND | unix.MS_REC
		if m.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		mnt := &configs.Mount{Source: m.Source, Destination: m.Destination, Device: "bind", Flags: flags}
		mnt.PropagationFlags = []int{unix.MS_PRIVATE | unix.MS_REC}
		mounts = append(mounts, mnt)
	}

	c := &configs.Config{
		Rootfs:       rootfs,
		Readonlyfs:   cfg.ReadOnlyRootfs,
		Capabilities: capabilities(cfg.CapAdd, cfg.CapDrop),
		Namespaces:   ns,
		Cgroups:      &cgroups.Cgroup{Path: cgroupPath, Resources: res},
		Devices:      nodes,
		Mounts:       mounts,
		MaskPaths: []string{
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
			"/sys/devices/virtual/powercap",
		},
		ReadonlyPaths: []string{
			"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
		},
		RootPropagation: unix.MS_PRIVATE | unix.MS_REC,
		Labels:          []string{"orch-sandbox=" + s.ID},
	}
	if cfg.Privileged {
		if err := makePrivileged(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}
