package container

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/capability"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// makePrivileged turns c into what Kubernetes calls a privileged
// container: every capability orch itself may hold (its bounding set, as
// containerd's WithAllCurrentCapabilities: in a restricted host the
// kernel's full list would be refused), every device (the device
// cgroup allows all, and the host's /dev nodes are created in the
// container), /sys mounted without MS_RDONLY (it still shows read-only
// in a pod's joined network namespace here), and nothing of /proc masked
// or read-only.
// Its namespaces stay the pod's: privileged is not hostNetwork.
func makePrivileged(c *configs.Config) error {
	names, err := boundingCapabilities()
	if err != nil {
		return fmt.Errorf("privileged: %w", err)
	}
	c.Capabilities = &configs.Capabilities{Bounding: names, Effective: names, Permitted: names}
	c.Cgroups.Resources.Devices = []*devices.Rule{{
		Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard,
		Permissions: "rwm", Allow: true,
	}}
	host, err := hostDevices("/dev")
	if err != nil {
		return fmt.Errorf("privileged: %w", err)
	}
	c.Devices = host
	for _, m := range c.Mounts {
		if m.Destination == "/sys" {
			m.Flags &^= unix.MS_RDONLY
		}
	}
	c.MaskPaths, c.ReadonlyPaths = nil, nil
	return nil
}

// boundingCapabilities names the capabilities in this process' bounding
// set.
func boundingCapabilities() ([]string, error) {
	supported, err := capability.ListSupported()
	if err != nil {
		return nil, fmt.Errorf("list capabilities: %w", err)
	}
	self, err := capability.NewPid2(0)
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	if err := self.Load(); err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	var names []string
	for _, c := range supported {
		if self.Get(capability.BOUNDING, c) {
			names = append(names, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return names, nil
}

// hostDevices lists the character and block devices under dir (not in
// /dev/pts or /dev/shm, which the container mounts itself), as
// libcontainer creates them in the container's /dev.
func hostDevices(dir string) ([]*devices.Device, error) {
	var out []*devices.Device
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && os.IsPermission(err) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			switch filepath.Base(p) {
			case "pts", "shm", "mqueue":
				if p != dir {
					return fs.SkipDir
				}
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil // gone meanwhile
		}
		var typ devices.Type
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = devices.CharDevice
		case unix.S_IFBLK:
			typ = devices.BlockDevice
		default:
			return nil
		}
		out = append(out, &devices.Device{
			Rule: devices.Rule{Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
				Permissions: "rwm", Allow: true},
			Path: p, FileMode: fs.FileMode(st.Mode &^ unix.S_IFMT), Uid: st.Uid, Gid: st.Gid,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list host devices in %s: %w", dir, err)
	}
	return out, nil
}
