package main

import (
	"fmt"
	"runtime"
)

// heap is the live heap after a full collection.
func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// MemoryCases are the memory figures: bytes per object that the indexer holds beyond the
// objects themselves (the objects exist before and are not counted), read from runtime.MemStats
// after a collection, as the Rust side counts what its cache retains.
var MemoryCases = []Case{
	{"memory_replace", "bytes/object", func(d *Data, _ Settings) (float64, error) {
		return memoryBeyond(d, func() (any, error) {
			idx := newIndexer()
			return idx, idx.Replace(items(d.Base), d.rv())
		})
	}},
	{"memory_adds", "bytes/object", func(d *Data, _ Settings) (float64, error) {
		return memoryBeyond(d, func() (any, error) {
			idx := newIndexer()
			for _, o := range d.Base {
				if err := idx.Add(o); err != nil {
					return nil, err
				}
			}
			return idx, nil
		})
	}},
}

func memoryBeyond(d *Data, build func() (any, error)) (float64, error) {
	before := heap()
	idx, err := build()
	if err != nil {
		return 0, err
	}
	after := heap()
	if n := len(idx.(interface{ ListKeys() []string }).ListKeys()); n != d.N {
		return 0, fmt.Errorf("%d objects, want %d", n, d.N)
	}
	runtime.KeepAlive(idx)
	runtime.KeepAlive(d)
	return float64(after-before) / float64(d.N), nil
}

// objectBytes is the heap taken by the workload's objects themselves, per object.
func objectBytes(n int) float64 {
	before := heap()
	objs := objects(n)
	after := heap()
	runtime.KeepAlive(objs)
	return float64(after-before-int64(8*cap(objs))) / float64(n)
}
