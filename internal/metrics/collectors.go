package metrics

import (
	"bytes"
	"os"
	"runtime"
	runtimemetrics "runtime/metrics"
	"strconv"
	"syscall"
)

// RegisterProcess defines the usual process and Go runtime gauges, read at
// scrape time without stopping the world (runtime/metrics, not
// runtime.ReadMemStats): goroutines, heap and total memory from the Go
// runtime, and the resident set size and CPU time the kernel reports.
func RegisterProcess(reg *Registry) {
	reg.NewGaugeFunc("go_goroutines", "Number of goroutines that currently exist.",
		func() float64 { return float64(runtime.NumGoroutine()) })
	reg.NewGaugeFunc("go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects.",
		runtimeValue("/memory/classes/heap/objects:bytes"))
	reg.NewGaugeFunc("go_memstats_sys_bytes", "Bytes of memory obtained from the OS by the Go runtime.",
		runtimeValue("/memory/classes/total:bytes"))
	reg.NewGaugeFunc("process_resident_memory_bytes", "Resident memory size in bytes.", residentBytes)
	reg.NewCallback("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", CounterType, nil,
		func(emit func(float64, ...string)) {
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
				emit(float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9)
			}
		})
}

func runtimeValue(name string) func() float64 {
	return func() float64 {
		s := []runtimemetrics.Sample{{Name: name}}
		runtimemetrics.Read(s)
		if s[0].Value.Kind() != runtimemetrics.KindUint64 {
			return 0
		}
		return float64(s[0].Value.Uint64())
	}
}

// residentBytes reads the second field of /proc/self/statm (pages).
func residentBytes() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0
	}
	return float64(pages) * float64(os.Getpagesize())
}

// StoreStats is what the store gauges read; store.Store satisfies it.
type StoreStats interface {
	Revision() int64
	CompactRevision() int64
}

// RegisterStore defines the store gauges: the current and compacted
// revisions of st and the size of its file at dbPath (empty for a store
// without a local file).
func RegisterStore(reg *Registry, st StoreStats, dbPath string) {
	reg.NewGaugeFunc("orch_store_revision", "Current revision of the store (the newest resourceVersion).",
		func() float64 { return float64(st.Revision()) })
	reg.NewGaugeFunc("orch_store_compact_revision", "Revision below which the store no longer serves history.",
		func() float64 { return float64(st.CompactRevision()) })
	if dbPath == "" {
		return
	}
	reg.NewCallback("orch_store_db_size_bytes", "Size of the store's database file in bytes.", GaugeType, nil,
		func(emit func(float64, ...string)) {
			if fi, err := os.Stat(dbPath); err == nil {
				emit(float64(fi.Size()))
			}
		})
}
