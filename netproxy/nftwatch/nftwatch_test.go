package nftwatch

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/orch-dev/orch/internal/netnstest"
)

// message builds an nftables event as the kernel sends it: the nfgenmsg
// header (family first) and the attributes.
func message(typ uint8, family nftables.TableFamily, attrs func(*netlink.AttributeEncoder)) netlink.Message {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	attrs(ae)
	b, err := ae.Encode()
	if err != nil {
		panic(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | uint16(typ))},
		Data:   append([]byte{byte(family), unix.NFNETLINK_V0, 0, 0}, b...),
	}
}

func objectOf(typ uint8, t Table) netlink.Message {
	return message(typ, t.Family, func(ae *netlink.AttributeEncoder) { ae.String(tableNameAttr, t.Name) })
}

func gen(tid uint32) netlink.Message {
	return message(unix.NFT_MSG_NEWGEN, 0, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_GEN_ID, 7)
		ae.Uint32(unix.NFTA_GEN_PROC_PID, tid)
		ae.String(unix.NFTA_GEN_PROC_NAME, "nft")
	})
}

// recorder collects what a subscription was told.
type recorder struct {
	mu  sync.Mutex
	got []Reason
	ch  chan Reason
}

func newRecorder() *recorder { return &recorder{ch: make(chan Reason, 100)} }

func (r *recorder) notify(reason Reason) {
	r.mu.Lock()
	r.got = append(r.got, reason)
	r.mu.Unlock()
	r.ch <- reason
}

func (r *recorder) reasons() []Reason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func TestCommitReportsOtherProgramsChanges(t *testing.T) {
	const own, other = 100, 200
	proxyTable := Table{Family: nftables.TableFamilyIPv4, Name: "orch-proxy"}
	policyTable := Table{Family: nftables.TableFamilyIPv4, Name: "orch-netpol"}
	sameNameIPv6 := Table{Family: nftables.TableFamilyIPv6, Name: "orch-proxy"}
	for _, tc := range []struct {
		name       string
		msgs       []netlink.Message
		wantProxy  []Reason
		wantPolicy []Reason
	}{
		{
			name:      "nft delete table by another program",
			msgs:      []netlink.Message{objectOf(unix.NFT_MSG_DELRULE, proxyTable), objectOf(unix.NFT_MSG_DELCHAIN, proxyTable), objectOf(unix.NFT_MSG_DELTABLE, proxyTable), gen(other)},
			wantProxy: []Reason{Changed},
		},
		{
			name:       "nft flush ruleset touches every table",
			msgs:       []netlink.Message{objectOf(unix.NFT_MSG_DELTABLE, proxyTable), objectOf(unix.NFT_MSG_DELTABLE, policyTable), gen(other)},
			wantProxy:  []Reason{Changed},
			wantPolicy: []Reason{Changed},
		},
		{
			name:      "a rule added by hand",
			msgs:      []netlink.Message{objectOf(unix.NFT_MSG_NEWRULE, proxyTable), gen(other)},
			wantProxy: []Reason{Changed},
		},
		{
			name: "this process's own write",
			msgs: []netlink.Message{objectOf(unix.NFT_MSG_DELTABLE, proxyTable), objectOf(unix.NFT_MSG_NEWTABLE, proxyTable), objectOf(unix.NFT_MSG_NEWRULE, proxyTable), gen(own)},
		},
		{
			name: "set elements are not watched (the packet path changes them)",
			msgs: []netlink.Message{objectOf(unix.NFT_MSG_DELSETELEM, proxyTable), objectOf(unix.NFT_MSG_NEWSETELEM, proxyTable), gen(other)},
		},
		{
			name: "same name in another family",
			msgs: []netlink.Message{objectOf(unix.NFT_MSG_DELTABLE, sameNameIPv6), gen(other)},
		},
		{
			name: "messages of other netfilter subsystems",
			msgs: []netlink.Message{{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | unix.NFT_MSG_DELTABLE)}, Data: []byte{2, 0, 0, 0}}, gen(other)},
		},
		{
			name: "a message without a table name may be any table",
			msgs: []netlink.Message{
				message(unix.NFT_MSG_DELCHAIN, nftables.TableFamilyIPv4, func(ae *netlink.AttributeEncoder) { ae.String(3, "chain") }),
				gen(other),
			},
			wantProxy:  []Reason{Lost},
			wantPolicy: []Reason{Lost},
		},
		{
			name: "two transactions, only the other program's reported",
			msgs: []netlink.Message{
				objectOf(unix.NFT_MSG_DELTABLE, proxyTable), gen(own),
				objectOf(unix.NFT_MSG_DELTABLE, policyTable), gen(other),
			},
			wantPolicy: []Reason{Changed},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := New(Options{})
			w.ownThread = func(tid uint32) bool { return tid == own }
			proxyRec, policyRec := newRecorder(), newRecorder()
			w.Watch(proxyTable, proxyRec.notify)
			w.Watch(policyTable, policyRec.notify)
			var b batch
			for _, m := range tc.msgs {
				if tid, done := b.add(m); done {
					w.commit(&b, tid)
				}
			}
			// Each got Lost when it subscribed.
			if got, want := proxyRec.reasons(), append([]Reason{Lost}, tc.wantProxy...); !slices.Equal(got, want) {
				t.Errorf("proxy table told %v, want %v", got, want)
			}
			if got, want := policyRec.reasons(), append([]Reason{Lost}, tc.wantPolicy...); !slices.Equal(got, want) {
				t.Errorf("policy table told %v, want %v", got, want)
			}
		})
	}
}

func TestWatchCancel(t *testing.T) {
	w := New(Options{})
	w.ownThread = func(uint32) bool { return false }
	table := Table{Family: nftables.TableFamilyIPv4, Name: "t"}
	r := newRecorder()
	cancel := w.Watch(table, r.notify)
	cancel()
	var b batch
	b.add(objectOf(unix.NFT_MSG_DELTABLE, table))
	w.commit(&b, 1)
	w.notifyAll(Lost)
	if got := r.reasons(); !slices.Equal(got, []Reason{Lost}) {
		t.Fatalf("told %v after cancel, want only the Lost of Watch", got)
	}
	if len(w.subs) != 0 {
		t.Fatalf("%d tables still watched", len(w.subs))
	}
}

func TestIsOwnThread(t *testing.T) {
	if !isOwnThread(uint32(unix.Gettid())) {
		t.Error("this thread is not counted as the process's own")
	}
	if !isOwnThread(uint32(os.Getpid())) {
		t.Error("the main thread is not counted as the process's own")
	}
	if isOwnThread(1) && os.Getpid() != 1 {
		t.Error("init is counted as this process's thread")
	}
	if isOwnThread(0) {
		t.Error("thread 0 (no NFTA_GEN_PROC_PID) is counted as this process's")
	}
}

// startInNetns runs a Watcher made by New in a namespace of the test's own
// with mod applied, until the test ends, and returns it and the namespace
// with an open fd of it.
func startInNetns(t *testing.T, name string, mod func(*Watcher)) (*Watcher, *netnstest.NS, *os.File) {
	t.Helper()
	netnstest.Skip(t, "nft")
	ns := netnstest.New(t, name)
	fd, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	w := New(Options{NetNSFd: int(fd.Fd())})
	if mod != nil {
		mod(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, ns, fd
}

// next returns the next report r received.
func (r *recorder) next(t *testing.T, what string) Reason {
	t.Helper()
	select {
	case reason := <-r.ch:
		return reason
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not reported", what)
		return 0
	}
}

// drain forgets the reports received so far.
func (r *recorder) drain() {
	for len(r.ch) > 0 {
		<-r.ch
	}
}

// waitSubscribed returns once w is subscribed in ns: until then nft's
// changes go unreported. It changes a table of its own, so that no report
// about the test's tables is still on its way when it returns (reports
// are delivered in order): a test drains its recorders afterwards.
func waitSubscribed(t *testing.T, w *Watcher, ns *netnstest.NS) {
	t.Helper()
	const name = "subscribed"
	r := newRecorder()
	defer w.Watch(Table{Family: nftables.TableFamilyIPv4, Name: name}, r.notify)()
	deadline := time.Now().Add(10 * time.Second)
	for reported := false; !reported; {
		ns.MustRun(t, "nft", "add table ip "+name+"; delete table ip "+name)
		select {
		case reason := <-r.ch:
			reported = reason == Changed
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nft add/delete table never reported")
		}
	}
}

// watchSubscribed watches tables, each with a recorder, and returns the
// recorders once w is subscribed in ns, without the Lost reports of Watch
// and of the subscription.
func watchSubscribed(t *testing.T, w *Watcher, ns *netnstest.NS, tables ...Table) []*recorder {
	t.Helper()
	var recs []*recorder
	for _, tbl := range tables {
		r := newRecorder()
		w.Watch(tbl, r.notify)
		recs = append(recs, r)
	}
	waitSubscribed(t, w, ns)
	for _, r := range recs {
		r.drain()
	}
	return recs
}

// TestWatcherE2E subscribes in a namespace of its own: tables added and
// deleted by nft(8) are reported; this process's own writes are not.
func TestWatcherE2E(t *testing.T) {
	w, ns, fd := startInNetns(t, "nftwatch-e2e", nil)
	mine := Table{Family: nftables.TableFamilyIPv4, Name: "mine"}
	theirs := Table{Family: nftables.TableFamilyIPv4, Name: "theirs"}
	recs := watchSubscribed(t, w, ns, mine, theirs)
	mineRec, theirsRec := recs[0], recs[1]

	// This process writes and deletes its table; then nft changes the
	// other. Events arrive in order, so once the second is reported the
	// first would have been.
	c, err := nftables.New(nftables.WithNetNSFd(int(fd.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: mine.Name})
	c.AddChain(&nftables.Chain{Name: "c", Table: tbl})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	ns.MustRun(t, "nft", "add", "table", "ip", theirs.Name)
	if r := theirsRec.next(t, "nft add table"); r != Changed {
		t.Fatalf("nft add table reported as %v, want %v", r, Changed)
	}
	select {
	case r := <-mineRec.ch:
		t.Fatalf("this process's own writes reported as %v", r)
	default:
	}
	// And nft's change of the table this process wrote is reported.
	ns.MustRun(t, "nft", "add", "table", "ip", mine.Name)
	if r := mineRec.next(t, "nft add table (mine)"); r != Changed {
		t.Fatalf("nft add table reported as %v, want %v", r, Changed)
	}
}

// TestWatcherReportsLostEvents: a transaction larger than the socket's
// buffer overflows it (ENOBUFS); every subscriber is told Lost, and the
// socket goes on reporting afterwards.
func TestWatcherReportsLostEvents(t *testing.T) {
	w, ns, _ := startInNetns(t, "nftw-lost", func(w *Watcher) { w.receiveBuffer = 4096 })
	other := Table{Family: nftables.TableFamilyIPv4, Name: "other"}
	otherRec := watchSubscribed(t, w, ns, Table{Family: nftables.TableFamilyIPv4, Name: "big"}, other)[1]

	var rules strings.Builder
	rules.WriteString("table ip big {\n chain c {\n")
	for i := range 3000 {
		fmt.Fprintf(&rules, "  ip daddr 198.18.%d.%d accept\n", i/250, i%250+1)
	}
	rules.WriteString(" }\n}\n")
	file := filepath.Join(t.TempDir(), "big.nft")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.MustRun(t, "nft", "-f", file)
	// The table nothing changed about hears Lost: the overflow may have
	// hidden anything.
	if r := otherRec.next(t, "overflow"); r != Lost {
		t.Fatalf("overflow reported to an unrelated table as %v, want %v", r, Lost)
	}
	otherRec.drain()
	ns.MustRun(t, "nft", "add", "table", "ip", other.Name)
	for {
		if r := otherRec.next(t, "nft add table after the overflow"); r == Changed {
			break
		}
	}
}
