package proxy

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NFTables writes rulesets into the kernel over netlink, in the network
// namespace given by NetNSFd (the caller's namespace when it is 0).
//
// It remembers the last ruleset it wrote and afterwards sends only the
// difference (see rulesetDiff), still as one transaction. It writes the
// whole table instead when it has no record of the kernel's copy: at the
// first Apply, after a failed write, after Exists found the table gone,
// when a diff cannot express the change, and every FullRewriteInterval,
// which also repairs hand edits that leave the table in place.
type NFTables struct {
	// NetNSFd, if non-zero, is an open fd of the target network namespace.
	NetNSFd int
	// FullRewriteInterval is the longest time between two whole-table
	// writes; one hour (kube-proxy's sync period) when zero.
	FullRewriteInterval time.Duration

	mu         sync.Mutex
	written    *Ruleset // the kernel's copy as last written; nil if unknown
	fullSince  time.Time
	fullWrites int // for tests
}

const defaultFullRewriteInterval = time.Hour

var _ RuleWriter = (*NFTables)(nil)

// socketBuffer is the netlink buffer size forced on the socket. The whole
// ruleset goes out in one sendmsg (one transaction) and every message is
// acknowledged, so the default 208 KiB buffers overflow (EMSGSIZE,
// ENOBUFS) at a few thousand endpoints. The kernel charges only what is
// queued, so a large limit costs nothing while idle.
const socketBuffer = 64 << 20

// elementBytesPerMessage bounds the encoded elements of one message. All
// elements of a message sit in one netlink attribute, whose length field
// is 16 bits: past 64 KiB it wraps and the kernel misparses the batch
// (seen as ENOENT at ~900 services).
const elementBytesPerMessage = 32 << 10

// chunkElements splits elements into groups that fit one message. It
// always returns at least one (possibly empty) group.
func chunkElements(elems []nftables.SetElement) [][]nftables.SetElement {
	chunks := [][]nftables.SetElement{nil}
	size := 0
	for _, e := range elems {
		// Generous per-element estimate: nested attribute headers, the
		// key, and the verdict's chain name.
		n := 64 + len(e.Key) + len(e.Val)
		if e.VerdictData != nil {
			n += len(e.VerdictData.Chain)
		}
		if size+n > elementBytesPerMessage && len(chunks[len(chunks)-1]) > 0 {
			chunks = append(chunks, nil)
			size = 0
		}
		chunks[len(chunks)-1] = append(chunks[len(chunks)-1], e)
		size += n
	}
	return chunks
}

func (w *NFTables) conn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(forceBuffers)}
	if w.NetNSFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(w.NetNSFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink connection: %w", err)
	}
	return c, nil
}

func forceBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, socketBuffer); e != nil {
				serr = errors.Join(serr, e)
			}
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		// Without CAP_NET_ADMIN the FORCE options fail; fall back to
		// what the sysctl limits allow and let big rulesets fail loudly.
		_ = c.SetWriteBuffer(socketBuffer)
		_ = c.SetReadBuffer(socketBuffer)
	}
	return nil
}

// Exists reports whether the table is present.
func (w *NFTables) Exists(table string) (bool, error) {
	c, err := w.conn()
	if err != nil {
		return false, err
	}
	_, err = c.ListTableOfFamily(table, nftables.TableFamilyIPv4)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		// The next Apply has nothing to diff against.
		w.Forget(table)
		return false, nil
	}
	return false, fmt.Errorf("look up nftables table ip %s: %w", table, err)
}

// Delete removes the table if it exists.
func (w *NFTables) Delete(table string) error {
	c, err := w.conn()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: table}
	// add+delete in one batch succeeds whether or not the table exists.
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table ip %s: %w", table, err)
	}
	w.Forget(table)
	return nil
}

// Forget drops the record of the kernel's copy of table, so the next
// Apply writes it whole: another program changed it (see SyncLoop), or
// it is gone.
func (w *NFTables) Forget(table string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.written != nil && w.written.Table == table {
		w.written = nil
	}
}

// Apply makes the table equal to rs in one netlink transaction: packets
// see either the old table or the new one, never a half-written one. It
// sends only what changed since the last Apply when it can (see
// NFTables); a failed partial write is retried at once as a whole-table
// write.
func (w *NFTables) Apply(rs *Ruleset) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	interval := w.FullRewriteInterval
	if interval <= 0 {
		interval = defaultFullRewriteInterval
	}
	if w.written != nil && time.Since(w.fullSince) < interval {
		if d, ok := diffRulesets(w.written, rs); ok {
			err := w.applyDiff(rs, d)
			if err == nil {
				w.written = rs
				return nil
			}
			// The kernel's copy is not what we thought (edited by hand,
			// or the write was refused): start from scratch.
		}
	}
	w.written = nil
	if err := w.applyFull(rs); err != nil {
		return err
	}
	w.written, w.fullSince = rs, time.Now()
	w.fullWrites++
	return nil
}

// applyFull replaces the whole table. Elements of dynamic sets (session
// affinity) that survive in the new ruleset are carried over with their
// remaining timeout, so a rewrite does not move clients to other
// endpoints.
func (w *NFTables) applyFull(rs *Ruleset) error {
	c, err := w.conn()
	if err != nil {
		return err
	}
	carried := w.dynamicElements(c, rs)

	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: rs.Table}
	// Adding before deleting makes the delete succeed on a fresh node;
	// the kernel applies the whole batch or nothing.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)

	b := &exprBuilder{conn: c, table: t, sets: make(map[string]*nftables.Set, len(rs.Sets))}
	for _, ch := range rs.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: t}
		if ch.Hook != nil {
			nc.Type = nftables.ChainType(ch.Hook.Type)
			nc.Hooknum = hookNum(ch.Hook.Point)
			nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(ch.Hook.Priority))
			accept := nftables.ChainPolicyAccept
			nc.Policy = &accept
		}
		c.AddChain(nc)
	}
	for _, s := range rs.Sets {
		ns, err := b.addSet(s, carried[s.Name])
		if err != nil {
			return fmt.Errorf("nftables set %s: %w", s.Name, err)
		}
		b.sets[s.Name] = ns
	}
	for _, ch := range rs.Chains {
		if err := b.addRules(ch); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table ip %s: %w", rs.Table, err)
	}
	return nil
}

// applyDiff turns the kernel's copy of w.written into rs with the changes
// in d, in one transaction. The order keeps every reference valid while
// the kernel checks the batch: new chains exist before set elements and
// rules jump to them; old chains and sets go only after the elements and
// rules that used them.
func (w *NFTables) applyDiff(rs *Ruleset, d *rulesetDiff) error {
	if d.empty() {
		return nil
	}
	c, err := w.conn()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: rs.Table}
	b := &exprBuilder{conn: c, table: t, sets: make(map[string]*nftables.Set, len(rs.Sets))}
	for _, ch := range d.newChains {
		c.AddChain(&nftables.Chain{Name: ch.Name, Table: t})
	}
	newSets := make(map[string]bool, len(d.newSets))
	for _, s := range d.newSets {
		ns, err := b.addSet(s, nil)
		if err != nil {
			return fmt.Errorf("nftables set %s: %w", s.Name, err)
		}
		b.sets[s.Name] = ns
		newSets[s.Name] = true
	}
	for _, s := range rs.Sets {
		if newSets[s.Name] {
			continue
		}
		ns := b.setRef(s)
		b.sets[s.Name] = ns
		if del := d.delElements[s.Name]; len(del) > 0 {
			if err := b.setElements(ns, s, del, c.SetDeleteElements); err != nil {
				return err
			}
		}
		if add := d.addElements[s.Name]; len(add) > 0 {
			if err := b.setElements(ns, s, add, c.SetAddElements); err != nil {
				return err
			}
		}
	}
	for _, ch := range d.changedChains {
		c.FlushChain(&nftables.Chain{Name: ch.Name, Table: t})
		if err := b.addRules(ch); err != nil {
			return err
		}
	}
	for _, ch := range d.newChains {
		if err := b.addRules(ch); err != nil {
			return err
		}
	}
	// Flush every old chain before deleting any: they may jump to each
	// other.
	for _, name := range d.oldChains {
		c.FlushChain(&nftables.Chain{Name: name, Table: t})
	}
	for _, name := range d.oldChains {
		c.DelChain(&nftables.Chain{Name: name, Table: t})
	}
	for _, name := range d.oldSets {
		c.DelSet(&nftables.Set{Name: name, Table: t})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("update nftables table ip %s: %w", rs.Table, err)
	}
	return nil
}

// dynamicElements reads the current elements of rs's dynamic sets from
// the kernel. Failures only cost affinity, so they are ignored.
func (w *NFTables) dynamicElements(c *nftables.Conn, rs *Ruleset) map[string][]nftables.SetElement {
	out := map[string][]nftables.SetElement{}
	want := map[string]bool{}
	for _, s := range rs.Sets {
		if s.Timeout > 0 {
			want[s.Name] = true
		}
	}
	if len(want) == 0 {
		return out
	}
	// One dump of all sets, then elements only of the dynamic ones that
	// the new ruleset keeps.
	cur, err := c.GetSets(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: rs.Table})
	if err != nil {
		return out
	}
	for _, s := range cur {
		if !want[s.Name] {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			continue
		}
		for _, e := range elems {
			if e.Expires > 0 {
				out[s.Name] = append(out[s.Name], nftables.SetElement{Key: e.Key, Timeout: e.Expires})
			}
		}
	}
	return out
}

func hookNum(p HookPoint) *nftables.ChainHook {
	switch p {
	case HookPrerouting:
		return nftables.ChainHookPrerouting
	case HookInput:
		return nftables.ChainHookInput
	case HookForward:
		return nftables.ChainHookForward
	case HookOutput:
		return nftables.ChainHookOutput
	default:
		return nftables.ChainHookPostrouting
	}
}

// exprBuilder carries what statements need to become expressions: the
// connection (for anonymous sets) and the sets added so far.
type exprBuilder struct {
	conn  *nftables.Conn
	table *nftables.Table
	sets  map[string]*nftables.Set
}

func (b *exprBuilder) set(name string) (*nftables.Set, error) {
	s, ok := b.sets[name]
	if !ok {
		return nil, fmt.Errorf("set %q is not defined", name)
	}
	return s, nil
}

func keyType(k KeyType) nftables.SetDatatype {
	switch k {
	case KeyProtoPort:
		return nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	case KeyAddrProtoPort:
		return nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	case KeyAddrPair:
		return nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
	default:
		return nftables.TypeIPAddr
	}
}

// keyBytes encodes a key as the registers hold it: each concatenated
// field padded to 4 bytes.
func keyBytes(t KeyType, k Key) []byte {
	var a [4]byte
	if k.Addr.Is4() {
		a = k.Addr.As4()
	}
	port := []byte{byte(k.Port >> 8), byte(k.Port), 0, 0}
	proto := []byte{byte(k.Proto), 0, 0, 0}
	switch t {
	case KeyProtoPort:
		return append(proto, port...)
	case KeyAddrProtoPort:
		return append(append(a[:], proto...), port...)
	case KeyAddrPair:
		return append(a[:], a[:]...)
	default:
		return a[:]
	}
}

// setRef describes s as the kernel has it, to refer to by name.
func (b *exprBuilder) setRef(s *Set) *nftables.Set {
	ns := &nftables.Set{Table: b.table, Name: s.Name, KeyType: keyType(s.Key)}
	if s.Verdicts {
		ns.IsMap = true
		ns.DataType = nftables.TypeVerdict
	}
	if s.Timeout > 0 {
		ns.HasTimeout = true
		ns.Dynamic = true
		ns.Timeout = s.Timeout
	}
	return ns
}

// netlinkElements encodes elements of s.
func netlinkElements(s *Set, elements []Element) ([]nftables.SetElement, error) {
	elems := make([]nftables.SetElement, 0, len(elements))
	for _, e := range elements {
		if s.Key != KeyProtoPort && !e.Key.Addr.Is4() {
			return nil, fmt.Errorf("element %s: only IPv4 is supported", e.Key.format(s.Key))
		}
		el := nftables.SetElement{Key: keyBytes(s.Key, e.Key)}
		if s.Verdicts {
			el.VerdictData = e.Verdict.expr()
		}
		elems = append(elems, el)
	}
	return elems, nil
}

// setElements adds or deletes (op) elements of the existing set ns, in
// messages of bounded size.
func (b *exprBuilder) setElements(ns *nftables.Set, s *Set, elements []Element, op func(*nftables.Set, []nftables.SetElement) error) error {
	elems, err := netlinkElements(s, elements)
	if err != nil {
		return fmt.Errorf("nftables set %s: %w", s.Name, err)
	}
	for _, c := range chunkElements(elems) {
		if len(c) == 0 {
			continue
		}
		if err := op(ns, c); err != nil {
			return fmt.Errorf("nftables set %s: %w", s.Name, err)
		}
	}
	return nil
}

func (b *exprBuilder) addSet(s *Set, carried []nftables.SetElement) (*nftables.Set, error) {
	ns := b.setRef(s)
	elems, err := netlinkElements(s, s.Elements)
	if err != nil {
		return nil, err
	}
	elems = append(elems, carried...)
	chunks := chunkElements(elems)
	if err := b.conn.AddSet(ns, chunks[0]); err != nil {
		return nil, err
	}
	for _, c := range chunks[1:] {
		if err := b.conn.SetAddElements(ns, c); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// addRules appends ch's rules to the (empty or flushed) kernel chain.
func (b *exprBuilder) addRules(ch *Chain) error {
	nc := &nftables.Chain{Name: ch.Name, Table: b.table}
	for i, r := range ch.Rules {
		var exprs []expr.Any
		for _, st := range r {
			e, err := st.exprs(b)
			if err != nil {
				return fmt.Errorf("chain %s rule %d (%s): %w", ch.Name, i, r, err)
			}
			exprs = append(exprs, e...)
		}
		b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: nc, Exprs: exprs})
	}
	return nil
}

// numgenLookup adds the constant map "{ 0 : v0, 1 : v1, ... }" of
// elems' values (the keys are set here) and returns the expressions that
// pick one at random: numgen into reg 1, then a lookup of the map that
// writes the value to dreg (0 for a verdict map).
func (b *exprBuilder) numgenLookup(data nftables.SetDatatype, elems []nftables.SetElement, dreg uint32) ([]expr.Any, error) {
	s := &nftables.Set{
		Table: b.table, Anonymous: true, Constant: true, IsMap: true,
		KeyType: nftables.TypeInteger, DataType: data,
		KeyByteOrder: binaryutil.NativeEndian,
	}
	for i := range elems {
		elems[i].Key = nativeUint32(uint32(i))
	}
	if err := b.conn.AddSet(s, elems); err != nil {
		return nil, err
	}
	return []expr.Any{
		&expr.Numgen{Register: reg1, Type: unix.NFT_NG_RANDOM, Modulus: uint32(len(elems))},
		&expr.Lookup{SourceRegister: reg1, DestRegister: dreg, IsDestRegSet: true, SetName: s.Name, SetID: s.ID},
	}, nil
}
