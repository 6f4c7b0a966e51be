package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	v1 "k8s.io/api/core/v1"

	"github.com/orch-dev/orch/netproxy/nftwatch"
	"github.com/orch-dev/orch/netproxy/nftwatch/nftwatchtest"
)

// fakeWriter records applied rulesets and can pretend the table vanished
// or that writes fail.
type fakeWriter struct {
	mu        sync.Mutex
	applied   []*Ruleset
	exists    bool
	failing   int // number of Apply calls still to fail
	forgotten int
}

func (f *fakeWriter) Apply(rs *Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing > 0 {
		f.failing--
		return errors.New("netlink: boom")
	}
	f.applied = append(f.applied, rs)
	f.exists = true
	return nil
}

func (f *fakeWriter) Exists(string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exists, nil
}

// Forget records that the Syncer dropped its copy of the table.
func (f *fakeWriter) Forget(string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgotten++
}

func (f *fakeWriter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

func (f *fakeWriter) last() *Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied[len(f.applied)-1]
}

func runSyncer(t *testing.T, s *Syncer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	})
}

func expectResult(t *testing.T, results <-chan SyncResult, wantErr bool) SyncResult {
	t.Helper()
	select {
	case r := <-results:
		if (r.Err != nil) != wantErr {
			t.Fatalf("sync error %v, want error: %v", r.Err, wantErr)
		}
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no sync within 5s")
	}
	return SyncResult{}
}

func TestSyncerWaitsForInitialState(t *testing.T) {
	w := &fakeWriter{}
	s := NewSyncer(unitConfig(), w, SyncerOptions{MinSyncInterval: time.Millisecond})
	results := s.Results()
	runSyncer(t, s)
	s.UpdateService(svc("web", "10.43.0.20", tcpPort("http", 80, 0)))
	time.Sleep(50 * time.Millisecond)
	if n := w.count(); n != 0 {
		t.Fatalf("%d writes before Replace, want 0", n)
	}
	s.Replace(nil, nil)
	r := expectResult(t, results, false)
	// Replace is the whole truth: the earlier update is superseded.
	if r.Services != 0 {
		t.Fatalf("synced %d services, want 0", r.Services)
	}
}

func TestSyncerBatchesChanges(t *testing.T) {
	w := &fakeWriter{}
	s := NewSyncer(unitConfig(), w, SyncerOptions{MinSyncInterval: 200 * time.Millisecond})
	results := s.Results()
	runSyncer(t, s)
	s.Replace(nil, nil)
	expectResult(t, results, false)
	// Within the minimum interval, 50 changes become one write.
	for i := 0; i < 50; i++ {
		s.UpdateService(svc(fmt.Sprintf("s%d", i), fmt.Sprintf("10.43.0.%d", i+1), tcpPort("http", 80, 0)))
	}
	r := expectResult(t, results, false)
	if r.Services != 50 {
		t.Fatalf("second write had %d services, want 50 (changes not batched)", r.Services)
	}
	if n := w.count(); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
	s.DeleteService("default", "s0")
	r = expectResult(t, results, false)
	if r.Services != 49 {
		t.Fatalf("after delete: %d services, want 49", r.Services)
	}
	if w.last().Set("cluster-ips").ElementStrings()[0] != "10.43.0.2" {
		t.Fatalf("deleted service still in cluster-ips: %v", w.last().Set("cluster-ips").ElementStrings())
	}
}

// TestSyncerAnswersTableWatcher: the watcher's reports, not a timer, make
// the Syncer look at its table. Lost asks the writer whether the table is
// still there and writes only if not; Changed (another program emptied
// it) makes the writer forget its copy and write the whole table.
func TestSyncerAnswersTableWatcher(t *testing.T) {
	table := nftwatch.Table{Family: nftables.TableFamilyIPv4, Name: unitConfig().table()}
	for _, tc := range []struct {
		name          string
		reason        nftwatch.Reason
		exists        bool
		wantWrite     bool
		wantForgotten int
	}{
		{name: "lost, table still there", reason: nftwatch.Lost, exists: true},
		{name: "lost, table gone", reason: nftwatch.Lost, wantWrite: true},
		{name: "changed, table still there", reason: nftwatch.Changed, exists: true, wantWrite: true, wantForgotten: 1},
		{name: "changed, table gone", reason: nftwatch.Changed, wantWrite: true, wantForgotten: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWriter{}
			tables := &nftwatchtest.Watcher{}
			s := NewSyncer(unitConfig(), w, SyncerOptions{MinSyncInterval: time.Millisecond, Tables: tables})
			results := s.Results()
			runSyncer(t, s)
			s.Replace([]*v1.Service{svc("web", "10.43.0.20", tcpPort("http", 80, 0))}, nil)
			expectResult(t, results, false)
			w.mu.Lock()
			w.exists = tc.exists
			w.mu.Unlock()
			if n := tables.Report(table, tc.reason); n != 1 {
				t.Fatalf("%d subscribers of %v, want 1", n, table)
			}
			if tc.wantWrite {
				expectResult(t, results, false)
			} else {
				// Nothing to wait for but the absence of a write: a
				// second report, handled in order, must not write either.
				tables.Report(table, tc.reason)
				s.UpdateService(svc("web2", "10.43.0.21", tcpPort("http", 80, 0)))
				if r := expectResult(t, results, false); r.Services != 2 {
					t.Fatalf("write after the report has %d services, want 2 (the report wrote on its own)", r.Services)
				}
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.forgotten != tc.wantForgotten {
				t.Errorf("writer forgot its copy %d times, want %d", w.forgotten, tc.wantForgotten)
			}
			if len(w.applied) != 2 {
				t.Errorf("%d writes, want 2", len(w.applied))
			}
		})
	}
}

func TestSyncerRetriesFailedWrites(t *testing.T) {
	w := &fakeWriter{failing: 2}
	s := NewSyncer(unitConfig(), w, SyncerOptions{MinSyncInterval: time.Millisecond, RetryInterval: 10 * time.Millisecond})
	results := s.Results()
	runSyncer(t, s)
	s.Replace(nil, nil)
	expectResult(t, results, true)
	expectResult(t, results, true)
	expectResult(t, results, false)
}

func TestSyncerHostPorts(t *testing.T) {
	w := &fakeWriter{}
	s := NewSyncer(unitConfig(), w, SyncerOptions{MinSyncInterval: time.Millisecond})
	results := s.Results()
	runSyncer(t, s)

	pod := hostPortPod("web", false, v1.ContainerPort{ContainerPort: 80, HostPort: 8081})
	hps := PodHostPorts(pod, netip.MustParseAddr("10.42.0.7"))
	// Before the services are listed nothing is written, host ports or not.
	s.SetPodHostPorts("uid-web", hps)
	s.Replace(nil, nil)
	expectResult(t, results, false)
	if got := w.last().Set("hostport-ports").ElementStrings(); len(got) != 1 || got[0] != "tcp . 8081 : goto hp-default/web/tcp/8081" {
		t.Fatalf("host ports after the first write: %q", got)
	}
	before := w.count()
	s.SetPodHostPorts("uid-web", slices.Clone(hps)) // the same again: nothing to write
	s.SetPodHostPorts("uid-web", nil)
	expectResult(t, results, false)
	if got := w.last().Set("hostport-ports").ElementStrings(); len(got) != 0 {
		t.Fatalf("host ports after the pod went: %q", got)
	}
	if w.count() != before+1 {
		t.Errorf("%d writes for one change", w.count()-before)
	}
}
