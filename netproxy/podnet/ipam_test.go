package podnet

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestIPAMAllocateRelease(t *testing.T) {
	dir := t.TempDir()
	m, err := openIPAM(dir, netip.MustParsePrefix("10.42.3.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.allocate("pod-a")
	if err != nil || a.String() != "10.42.3.2" {
		t.Fatalf("first address = %v, %v; want 10.42.3.2 (.1 is the bridge)", a, err)
	}
	again, _ := m.allocate("pod-a")
	if again != a {
		t.Errorf("second allocate for the same owner = %s, want %s", again, a)
	}
	b, _ := m.allocate("pod-b")
	if b.String() != "10.42.3.3" {
		t.Errorf("second owner got %s", b)
	}
	if err := m.release("pod-a"); err != nil {
		t.Fatal(err)
	}
	if err := m.release("pod-a"); err != nil {
		t.Errorf("double release: %v", err)
	}
	if _, ok := m.lookup("pod-a"); ok {
		t.Error("released owner still has an address")
	}
	// A freed address is not handed out again at once.
	c, _ := m.allocate("pod-c")
	if c == a {
		t.Errorf("freed %s reused immediately", a)
	}
	files, _ := os.ReadDir(m.dir)
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	want := []string{"10.42.3.3", "10.42.3.4", lastReservedFile}
	if !slices.Equal(names, want) {
		t.Errorf("state files = %v, want %v (no leak of the released address)", names, want)
	}

	for _, bad := range []string{"", "a/b", "a\nb"} {
		if _, err := m.allocate(bad); err == nil {
			t.Errorf("allocate(%q) succeeded", bad)
		}
	}
}

func TestIPAMSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	subnet := netip.MustParsePrefix("10.42.7.0/24")
	m, _ := openIPAM(dir, subnet)
	got := map[string]netip.Addr{}
	for i := range 5 {
		owner := fmt.Sprintf("pod-%d", i)
		a, err := m.allocate(owner)
		if err != nil {
			t.Fatal(err)
		}
		got[owner] = a
	}
	_ = m.release("pod-4")
	// An interrupted write leaves an empty file: it is nobody's.
	if err := os.WriteFile(filepath.Join(m.dir, "10.42.7.100"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	m2, err := openIPAM(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		owner := fmt.Sprintf("pod-%d", i)
		if a, _ := m2.allocate(owner); a != got[owner] {
			t.Errorf("after restart %s got %s, had %s", owner, a, got[owner])
		}
	}
	if owners := m2.ownerList(); len(owners) != 4 {
		t.Errorf("owners after restart = %v", owners)
	}
	// Rotation continues where it stopped: pod-4's address is not next.
	if a, _ := m2.allocate("new"); a == got["pod-4"] || a.String() != "10.42.7.7" {
		t.Errorf("first address after restart = %s, want 10.42.7.7", a)
	}
	if _, err := os.Stat(filepath.Join(m.dir, "10.42.7.100")); !os.IsNotExist(err) {
		t.Errorf("empty state file kept: %v", err)
	}
}

func TestIPAMExhaustion(t *testing.T) {
	m, err := openIPAM(t.TempDir(), netip.MustParsePrefix("10.42.0.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	// 8 addresses: network, gateway, broadcast are not for pods.
	var got []string
	for i := range 5 {
		a, err := m.allocate(fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.String())
	}
	want := []string{"10.42.0.2", "10.42.0.3", "10.42.0.4", "10.42.0.5", "10.42.0.6"}
	if !slices.Equal(got, want) {
		t.Errorf("addresses = %v, want %v", got, want)
	}
	if _, err := m.allocate("one-too-many"); !errors.Is(err, ErrNoAddresses) {
		t.Fatalf("allocate on a full subnet: %v, want ErrNoAddresses", err)
	}
	_ = m.release("2")
	if a, err := m.allocate("late"); err != nil || a.String() != "10.42.0.4" {
		t.Errorf("after a release: %v, %v; want 10.42.0.4", a, err)
	}
}

func TestOpenIPAMRejectsBadSubnets(t *testing.T) {
	for _, s := range []string{"10.42.0.0/31", "fd00::/64"} {
		if _, err := openIPAM(t.TempDir(), netip.MustParsePrefix(s)); err == nil {
			t.Errorf("openIPAM(%s) succeeded", s)
		}
	}
}
