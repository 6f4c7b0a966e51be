// Package bolt is orch's embedded datastore: store.Store on go.etcd.io/bbolt.
//
// # Model
//
// One global revision counter orders every write; it is the Kubernetes
// resourceVersion. The file keeps only the latest value of each key (no
// tombstones, no old versions): history lives in memory, in a bounded ring
// of recent events that serves watches and reads at recent revisions. A
// request older than the ring gets store.ErrCompacted (HTTP 410), exactly
// like a compacted etcd. After a restart the ring is empty and the
// compaction point is the current revision, so clients relist once.
//
// # Writes
//
// Writers hand their operation to a single committer goroutine, which takes
// every operation waiting at that moment, checks each one's precondition in
// order, gives it the next revision and writes the whole group in one bbolt
// transaction: one fsync for many writers (group commit). Only when the
// transaction is on disk are the revisions published to readers and
// watchers, and the writers answered.
//
// Volatile writes (store.WriteOptions.Volatile: node leases, node
// heartbeats) go to an in-memory overlay that shadows the file; they cost
// no disk write. To keep revisions monotonic across restarts although
// volatile revisions are never written, the file records a revision
// ceiling: revisions are handed out only below it, and it is raised by
// ReserveBlock at a time, one small write per block. On open the current
// revision is the ceiling. A clean Close writes the overlay to the file.
//
// Which keys are volatile is the API server's decision, per write (see
// registry.Resource.Volatile): Lease objects in kube-node-lease (and
// leader-election renewals), and Node updates that only move
// status.conditions[*].lastHeartbeatTime.
//
// # File layout (schema version 1)
//
//	bucket "meta"
//	    "schema"   → decimal schema version ("1")
//	    "ceiling"  → 8-byte big-endian revision ceiling
//	bucket "kv"
//	    key        → 8-byte create revision | 8-byte mod revision | value
//
// A file with another schema version is refused, never rewritten. A corrupt
// or truncated file is reported with the path and bbolt's reason; the file
// is left as it is.
package bolt
