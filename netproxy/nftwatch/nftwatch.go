// Package nftwatch tells the owners of nftables tables (the service proxy,
// the NetworkPolicy syncer, the pod masquerade table) when another program
// changed or removed one of their tables, so that they write it again
// without polling.
//
// A Watcher holds one netlink socket subscribed to the kernel's nftables
// event group (NFNLGRP_NFTABLES, what `nft monitor` reads) in one network
// namespace. The kernel sends a message for every table, chain, rule, set
// and element a transaction adds or deletes, followed by a NEWGEN message
// that closes the transaction and names the thread that committed it. The
// Watcher reads only the headers and the table name of each message, and
// at NEWGEN decides:
//
//   - a transaction committed by a thread of this process is ignored: the
//     owners' own writes (which delete and add chains, rules and elements
//     all the time) must not make them write again;
//   - for any other transaction, every table it added, deleted or changed
//     a table, chain, rule or set of is reported as Changed to its
//     subscribers (`nft flush ruleset` and `nft delete table` delete the
//     table, `nft flush table` deletes its rules, `nft add rule` adds
//     one). Set elements are not watched: the packet path adds and expires
//     session-affinity elements itself, and an element edited by hand is
//     repaired at the writer's periodic whole-table write.
//
// Events can be lost: when the socket's receive buffer overflows (a large
// transaction of thousands of elements) the kernel drops messages and the
// next read fails with ENOBUFS. The Watcher then reports Lost to every
// subscriber, which checks whether its table still exists. It does the
// same whenever the subscription (re)starts, and Watch reports Lost to a
// new subscriber, since nothing was seen before. If the subscription cannot be made (no nf_tables, no
// CAP_NET_ADMIN) it reports Lost every RetryInterval and tries again: the
// old periodic check, kept only for that case. An idle node therefore has
// no periodic nftables wake-up at all.
package nftwatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Table names an nftables table.
type Table struct {
	Family nftables.TableFamily
	Name   string
}

func (t Table) String() string { return familyName(t.Family) + " " + t.Name }

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return "family" + strconv.Itoa(int(f))
}

// Reason says why a subscriber is told about its table.
type Reason int

const (
	// Lost means events may have been missed (the watch just started,
	// or the socket overflowed), so the table may have changed unseen:
	// check whether it is still there.
	Lost Reason = iota + 1
	// Changed means another program added, deleted or changed the
	// table or a chain, rule or set of it: write it again in full.
	Changed
)

func (r Reason) String() string {
	switch r {
	case Lost:
		return "events lost"
	case Changed:
		return "changed by another program"
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Options configure a Watcher. Zero values pick the defaults.
type Options struct {
	// NetNSFd, if non-zero, is an open fd of the network namespace to
	// watch; the caller's namespace when zero.
	NetNSFd int
	// RetryInterval is the wait before subscribing again after the
	// subscription failed. Default 30s (kube-proxy's sync period).
	RetryInterval time.Duration
	// Logger receives the Watcher's few messages; slog.Default() if nil.
	Logger *slog.Logger
}

// Watcher reports changes of nftables tables to their subscribers; see
// the package documentation. The zero value is not usable: call New.
type Watcher struct {
	opts Options
	// ownThread reports whether a thread ID belongs to this process.
	ownThread func(tid uint32) bool
	// receiveBuffer is the socket's receive buffer size (tests shrink it).
	receiveBuffer int

	mu   sync.Mutex
	subs map[Table]map[*subscription]struct{}
}

type subscription struct{ notify func(Reason) }

// New returns a Watcher; it watches once Run is called.
func New(opts Options) *Watcher {
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Watcher{opts: opts, ownThread: isOwnThread, receiveBuffer: defaultReceiveBuffer, subs: map[Table]map[*subscription]struct{}{}}
}

// Watch calls notify whenever table t may have been changed by another
// program, until the returned cancel function is called. notify runs on
// the Watcher's goroutine (and once on the caller's, below) and must not
// block: mark work and return.
//
// Watch itself reports Lost at once: whatever happened to t before the
// call went unseen by this subscriber.
func (w *Watcher) Watch(t Table, notify func(Reason)) (cancel func()) {
	s := &subscription{notify: notify}
	w.mu.Lock()
	if w.subs[t] == nil {
		w.subs[t] = map[*subscription]struct{}{}
	}
	w.subs[t][s] = struct{}{}
	w.mu.Unlock()
	notify(Lost)
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.subs[t], s)
		if len(w.subs[t]) == 0 {
			delete(w.subs, t)
		}
	}
}

// Run watches until ctx ends and returns ctx.Err().
func (w *Watcher) Run(ctx context.Context) error {
	for failures := 0; ; failures++ {
		err := w.watch(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Tables may change unseen until the next subscription, and
		// may have changed already: check them all now.
		w.notifyAll(Lost)
		// Said once: a kernel without nf_tables fails the same way
		// every time.
		level := slog.LevelWarn
		if failures > 0 {
			level = slog.LevelDebug
		}
		w.opts.Logger.Log(ctx, level, "cannot watch nftables changes; tables are checked periodically instead",
			"err", err, "retry", w.opts.RetryInterval)
		t := time.NewTimer(w.opts.RetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// defaultReceiveBuffer is the socket's receive buffer. The owners' own large
// writes queue one message per element; overflowing costs only a Lost
// round (one existence check per table), so this need not hold the
// largest transaction. The kernel charges only what is queued.
const defaultReceiveBuffer = 4 << 20

// watch subscribes and reads events until ctx ends or reading fails.
func (w *Watcher) watch(ctx context.Context) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: w.opts.NetNSFd})
	if err != nil {
		return fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	defer conn.Close()
	if err := conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("subscribe to nftables events: %w", err)
	}
	// Best effort: a smaller buffer only overflows (Lost) sooner.
	_ = conn.SetReadBuffer(w.receiveBuffer)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	// Anything before the subscription went unseen.
	w.notifyAll(Lost)
	var b batch
	for {
		msgs, err := conn.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, unix.ENOBUFS) {
				// The kernel dropped messages; the socket stays usable.
				b.reset()
				w.notifyAll(Lost)
				continue
			}
			return fmt.Errorf("read nftables events: %w", err)
		}
		for _, m := range msgs {
			if tid, done := b.add(m); done {
				w.commit(&b, tid)
			}
		}
	}
}

// commit ends a transaction: it reports the tables it touched unless one
// of this process's threads made it.
func (w *Watcher) commit(b *batch, tid uint32) {
	defer b.reset()
	if b.unparsed {
		if !w.ownThread(tid) {
			w.notifyAll(Lost)
		}
		return
	}
	if len(b.tables) == 0 || w.ownThread(tid) {
		return
	}
	for t := range b.tables {
		w.notify(t, Changed)
	}
}

func (w *Watcher) notify(t Table, r Reason) {
	for _, s := range w.subscribers(&t) {
		s.notify(r)
	}
}

func (w *Watcher) notifyAll(r Reason) {
	for _, s := range w.subscribers(nil) {
		s.notify(r)
	}
}

// subscribers returns the subscriptions of t, or all with t nil, so that
// notify functions run without w.mu held.
func (w *Watcher) subscribers(t *Table) []*subscription {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*subscription
	for k, m := range w.subs {
		if t != nil && k != *t {
			continue
		}
		for s := range m {
			out = append(out, s)
		}
	}
	return out
}

// batch collects the tables one transaction touches until its NEWGEN.
type batch struct {
	tables map[Table]struct{}
	// unparsed is set when a message of a watched kind had no readable
	// table name: the transaction may have touched any table.
	unparsed bool
}

func (b *batch) reset() {
	clear(b.tables)
	b.unparsed = false
}

// watchedMessages are the message types whose table the Watcher records:
// tables, chains, rules and sets, added or deleted. Elements and stateful
// objects are left out (see the package documentation).
var watchedMessages = map[uint8]bool{
	unix.NFT_MSG_NEWTABLE: true, unix.NFT_MSG_DELTABLE: true,
	unix.NFT_MSG_NEWCHAIN: true, unix.NFT_MSG_DELCHAIN: true,
	unix.NFT_MSG_NEWRULE: true, unix.NFT_MSG_DELRULE: true,
	unix.NFT_MSG_NEWSET: true, unix.NFT_MSG_DELSET: true,
}

// tableNameAttr is the attribute holding the table's name in every
// watched message: NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE and
// NFTA_SET_TABLE are all 1.
const tableNameAttr = 1

// add records one message. At a NEWGEN it returns the committing thread's
// ID and done=true.
func (b *batch) add(m netlink.Message) (tid uint32, done bool) {
	if uint16(m.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return 0, false
	}
	typ := uint8(m.Header.Type)
	if typ == unix.NFT_MSG_NEWGEN {
		return genThread(m.Data), true
	}
	if !watchedMessages[typ] {
		return 0, false
	}
	t, ok := tableOf(m.Data)
	if !ok {
		b.unparsed = true
		return 0, false
	}
	if b.tables == nil {
		b.tables = map[Table]struct{}{}
	}
	b.tables[t] = struct{}{}
	return 0, false
}

// tableOf reads the family (the nfgenmsg header's first byte) and the
// table name of a table, chain, rule or set message.
func tableOf(data []byte) (Table, bool) {
	if len(data) < 4 {
		return Table{}, false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return Table{}, false
	}
	for ad.Next() {
		if ad.Type() == tableNameAttr {
			name := ad.String()
			return Table{Family: nftables.TableFamily(data[0]), Name: name}, name != ""
		}
	}
	return Table{}, false
}

// genThread reads NFTA_GEN_PROC_PID of a NEWGEN message: the kernel's
// task_pid_nr(current), i.e. the ID of the thread that committed. Zero
// when absent, which no thread of this process has.
func genThread(data []byte) uint32 {
	if len(data) < 4 {
		return 0
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return 0
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_PROC_PID {
			return ad.Uint32()
		}
	}
	return 0
}

// isOwnThread reports whether tid is a thread of this process. Go writes
// from whichever thread runs the goroutine, so the process ID alone does
// not tell; every live thread has an entry under /proc/self/task. A
// thread that has exited since counts as foreign, which costs one
// unneeded rewrite at worst.
func isOwnThread(tid uint32) bool {
	if tid == 0 {
		return false
	}
	_, err := os.Stat("/proc/self/task/" + strconv.FormatUint(uint64(tid), 10))
	return err == nil
}
