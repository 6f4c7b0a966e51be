package podnet

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrNoAddresses is returned when every address of the node's pod subnet
// is taken.
var ErrNoAddresses = errors.New("no free address in the pod subnet")

// lastReservedFile remembers where the last allocation ended, so that a
// released address is the last one handed out again (peers may still have
// it in their ARP and conntrack tables), across agent restarts too.
const lastReservedFile = "last_reserved_ip"

// ipam hands out the addresses of one pod subnet. Its state is one file
// per address in use, named by the address and holding the owner (the pod
// UID), like the CNI host-local plugin: creating the file with O_EXCL is
// the allocation, so state on disk is never ahead of or behind a decision,
// and a restarted agent reads back exactly what it gave out.
//
//	dir/<subnet with / as _>/10.42.0.5      content: pod UID
//	dir/<subnet with / as _>/last_reserved_ip
//
// Safe for concurrent use.
type ipam struct {
	dir     string
	subnet  netip.Prefix
	gateway netip.Addr

	mu     sync.Mutex
	owners map[string]netip.Addr // owner → address
	last   netip.Addr
}

// openIPAM loads (or starts) the state of subnet under dir. The subnet's
// first address is the gateway (the bridge) and is never handed out.
func openIPAM(dir string, subnet netip.Prefix) (*ipam, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return nil, fmt.Errorf("pod subnet %s: want an IPv4 prefix of at most /30", subnet)
	}
	d := filepath.Join(dir, strings.ReplaceAll(subnet.String(), "/", "_"))
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("ipam state: %w", err)
	}
	m := &ipam{dir: d, subnet: subnet, gateway: subnet.Addr().Next(), owners: map[string]netip.Addr{}}
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, fmt.Errorf("ipam state: %w", err)
	}
	for _, e := range entries {
		if e.Name() == lastReservedFile {
			if b, err := os.ReadFile(filepath.Join(d, e.Name())); err == nil {
				m.last, _ = netip.ParseAddr(strings.TrimSpace(string(b)))
			}
			continue
		}
		a, err := netip.ParseAddr(e.Name())
		if err != nil || !subnet.Contains(a) {
			continue // a temporary file of an interrupted write, or junk
		}
		b, err := os.ReadFile(filepath.Join(d, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("ipam state: %w", err)
		}
		owner := strings.TrimSpace(string(b))
		if owner == "" {
			// Crashed between create and write: nobody learnt the address.
			_ = os.Remove(filepath.Join(d, e.Name()))
			continue
		}
		m.owners[owner] = a
	}
	return m, nil
}

// usable reports whether a may be given to a pod.
func (m *ipam) usable(a netip.Addr) bool {
	if !m.subnet.Contains(a) || a == m.subnet.Addr() || a == m.gateway {
		return false
	}
	// The broadcast address is the last of the subnet.
	return m.subnet.Contains(a.Next())
}

// allocate returns owner's address, giving it a free one if it has none.
func (m *ipam) allocate(owner string) (netip.Addr, error) {
	if owner == "" || strings.ContainsAny(owner, "\n/") {
		return netip.Addr{}, fmt.Errorf("ipam: bad owner %q", owner)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.owners[owner]; ok {
		return a, nil
	}
	start := m.last
	if !m.usable(start) {
		start = m.gateway
	}
	size := 1 << (32 - m.subnet.Bits())
	a := start
	for range size {
		a = a.Next()
		if !m.subnet.Contains(a) {
			a = m.subnet.Addr()
		}
		if !m.usable(a) {
			continue
		}
		err := m.claim(a, owner)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		m.owners[owner] = a
		m.last = a
		// Only a hint: losing it costs the rotation, not correctness.
		_ = os.WriteFile(filepath.Join(m.dir, lastReservedFile), []byte(a.String()), 0o600)
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("pod subnet %s: %w", m.subnet, ErrNoAddresses)
}

// claim creates a's file holding owner, durably.
func (m *ipam) claim(a netip.Addr, owner string) error {
	p := filepath.Join(m.dir, a.String())
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(owner)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(p)
		return fmt.Errorf("ipam: record %s: %w", a, err)
	}
	return syncDir(m.dir)
}

// release frees owner's address; releasing nothing is not an error.
func (m *ipam) release(owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.owners[owner]
	if !ok {
		return nil
	}
	if err := os.Remove(filepath.Join(m.dir, a.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ipam: release %s: %w", a, err)
	}
	delete(m.owners, owner)
	return nil
}

// lookup returns owner's address.
func (m *ipam) lookup(owner string) (netip.Addr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.owners[owner]
	return a, ok
}

// ownerList returns every owner holding an address.
func (m *ipam) ownerList() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.owners))
	for o := range m.owners {
		out = append(out, o)
	}
	return out
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
