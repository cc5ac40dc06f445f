package main

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/cache"
)

// Batch is the number of operations per timed iteration of the single-object cases, as on the
// Rust side, so that the timer's own cost is negligible.
const Batch = 1024

// Result is one measured figure, one line of the harness' JSON output. The Rust side writes the
// same lines, so the comparison reads both alike.
type Result struct {
	Side  string  `json:"side"`
	Case  string  `json:"case"`
	N     int     `json:"n"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	// Fingerprint of the workload, when the case has one: both sides must agree.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Case is one measured case of the indexer at one size.
type Case struct {
	Name string
	Unit string
	// Run measures the case on d and checks that its results are right.
	Run func(d *Data, s Settings) (float64, error)
}

// sink keeps results alive, so that no call is optimized away.
var sink any

// newIndexer is client-go's indexer with its usual key function (namespace/name) and the
// workload's two indexes.
func newIndexer() cache.Indexer {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{
		cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
		"node":               func(obj any) ([]string, error) { return []string{obj.(*Obj).Node}, nil },
	})
}

func items(objs []*Obj) []any {
	out := make([]any, len(objs))
	for i, o := range objs {
		out[i] = o
	}
	return out
}

func (d *Data) rv() string { return fmt.Sprint(d.N) }

func (d *Data) filled() (cache.Indexer, error) {
	idx := newIndexer()
	if err := idx.Replace(items(d.Base), d.rv()); err != nil {
		return nil, err
	}
	return idx, nil
}

// distinct is the number of distinct values of f over the base objects.
func (d *Data) distinct(f func(*Obj) string) int {
	seen := map[string]bool{}
	for _, o := range d.Base {
		seen[f(o)] = true
	}
	return len(seen)
}

// checkIndexed checks, for a sample of the objects, that the indexer holds one of the allowed
// versions of each and finds it by its node and its namespace.
func checkIndexed(idx cache.Indexer, d *Data, allowed ...[]*Obj) error {
	if n := len(idx.ListKeys()); n != d.N {
		return fmt.Errorf("%d objects, want %d", n, d.N)
	}
	step := d.N/1000 + 1
	for i := 0; i < d.N; i += step {
		item, ok, err := idx.GetByKey(d.Keys[i])
		if err != nil || !ok {
			return fmt.Errorf("%s: missing (%v)", d.Keys[i], err)
		}
		o := item.(*Obj)
		known := false
		for _, a := range allowed {
			known = known || o == a[i]
		}
		if !known {
			return fmt.Errorf("%s: unexpected version %s", d.Keys[i], o.RV)
		}
		for _, q := range [][2]string{{"node", o.Node}, {"namespace", o.Namespace}} {
			found := false
			list, err := idx.ByIndex(q[0], q[1])
			if err != nil {
				return err
			}
			for _, x := range list {
				if x.(*Obj) == o {
					found = true
				}
				if v := map[string]string{"node": x.(*Obj).Node, "namespace": x.(*Obj).Namespace}[q[0]]; v != q[1] {
					return fmt.Errorf("ByIndex(%s, %s) returned %s with %s", q[0], q[1], x.(*Obj).Key(), v)
				}
			}
			if !found {
				return fmt.Errorf("ByIndex(%s, %s) misses %s", q[0], q[1], d.Keys[i])
			}
		}
	}
	return nil
}

// Cases are the indexer's cases, in the table's order. Values are nanoseconds per operation
// (per object for list, replace and by_index; per call for index_values).
var Cases = []Case{
	{"get_by_key", "ns/op", getByKey},
	{"update_same", "ns/op", func(d *Data, s Settings) (float64, error) { return update(d, s, d.Same) }},
	{"update_move", "ns/op", func(d *Data, s Settings) (float64, error) { return update(d, s, d.Moved) }},
	{"add_delete", "ns/pair", addDelete},
	{"replace", "ns/object", replace},
	{"list", "ns/object", list},
	{"by_index_namespace", "ns/object", func(d *Data, s Settings) (float64, error) {
		return byIndex(d, s, "namespace", d.NamespaceValues, func(o *Obj) string { return o.Namespace })
	}},
	{"by_index_node", "ns/object", func(d *Data, s Settings) (float64, error) {
		return byIndex(d, s, "node", d.NodeValues, func(o *Obj) string { return o.Node })
	}},
	{"index_values_namespace", "ns/call", func(d *Data, s Settings) (float64, error) {
		return indexValues(d, s, "namespace", d.distinct(func(o *Obj) string { return o.Namespace }))
	}},
	{"index_values_node", "ns/call", func(d *Data, s Settings) (float64, error) {
		return indexValues(d, s, "node", d.distinct(func(o *Obj) string { return o.Node }))
	}},
	{"reader_get_idle", "ns/op", func(d *Data, s Settings) (float64, error) { return readerGet(d, s, false) }},
	{"reader_get_busy", "ns/op", func(d *Data, s Settings) (float64, error) { return readerGet(d, s, true) }},
}

func getByKey(d *Data, s Settings) (float64, error) {
	idx, err := d.filled()
	if err != nil {
		return 0, err
	}
	pos, missing := 0, 0
	ns := measure(s, timed(func() {
		for j := 0; j < Batch; j++ {
			pos = (pos + 1) % d.N
			item, ok, _ := idx.GetByKey(d.Keys[d.Order[pos]])
			if !ok {
				missing++
			}
			sink = item
		}
	}))
	if missing > 0 {
		return 0, fmt.Errorf("GetByKey missed %d keys", missing)
	}
	return ns / Batch, checkIndexed(idx, d, d.Base)
}

// update flips each object, visited in random order, between its base version and other.
func update(d *Data, s Settings, other []*Obj) (float64, error) {
	idx, err := d.filled()
	if err != nil {
		return 0, err
	}
	flip := make([]bool, d.N)
	pos := 0
	var failed error
	ns := measure(s, timed(func() {
		for j := 0; j < Batch; j++ {
			pos = (pos + 1) % d.N
			i := d.Order[pos]
			flip[i] = !flip[i]
			o := d.Base[i]
			if flip[i] {
				o = other[i]
			}
			if err := idx.Update(o); err != nil {
				failed = err
			}
		}
	}))
	if failed != nil {
		return 0, failed
	}
	return ns / Batch, checkIndexed(idx, d, d.Base, other)
}

// addDelete deletes an object and adds it back, visited in random order.
func addDelete(d *Data, s Settings) (float64, error) {
	idx, err := d.filled()
	if err != nil {
		return 0, err
	}
	pos := 0
	var failed error
	ns := measure(s, timed(func() {
		for j := 0; j < Batch; j++ {
			pos = (pos + 1) % d.N
			o := d.Base[d.Order[pos]]
			if err := idx.Delete(o); err != nil {
				failed = err
			}
			if err := idx.Add(o); err != nil {
				failed = err
			}
		}
	}))
	if failed != nil {
		return 0, failed
	}
	return ns / Batch, checkIndexed(idx, d, d.Base)
}

// replace is a relist of every object in one call.
func replace(d *Data, s Settings) (float64, error) {
	idx, err := d.filled()
	if err != nil {
		return 0, err
	}
	list := items(d.Base)
	rv := d.rv()
	var failed error
	ns := measure(s.withSamples(10), timed(func() {
		if err := idx.Replace(list, rv); err != nil {
			failed = err
		}
	}))
	if failed != nil {
		return 0, failed
	}
	return ns / float64(d.N), checkIndexed(idx, d, d.Base)
}

func list(d *Data, s Settings) (float64, error) {
	idx, err := d.filled()
	if err != nil {
		return 0, err
	}
	got := 0
	ns := measure(s, timed(func() {
		l := idx.List()
		got = len(l)
		sink = l
	}))
	if got != d.N {
		return 0, fmt.Errorf("List returned %d objects, want %d", got, d.N)
	}
	return ns / float64(d.N), nil
}

// byIndex asks for every value of the index once, so that each object is returned once per
// iteration.
func byIndex(d *Data, s Settings, name string, values []string, field func(*Obj) string) (float64, error) {
	idx, err := d.filled()
	if err != nil {
		return 0, err
	}
	returned := 0
	var failed error
	ns := measure(s, timed(func() {
		returned = 0
		for _, v := range values {
			l, err := idx.ByIndex(name, v)
			if err != nil {
				failed = err
			}
			returned += len(l)
			sink = l
		}
	}))
	if failed != nil {
		return 0, failed
	}
	if returned != d.N {
		return 0, fmt.Errorf("ByIndex(%s) over every value returned %d objects, want %d", name, returned, d.N)
	}
	want := 0
	for _, o := range d.Base {
		if field(o) == values[0] {
			want++
		}
	}
	l, _ := idx.ByIndex(name, values[0])
	for _, x := range l {
		if field(x.(*Obj)) != values[0] {
			return 0, fmt.Errorf("ByIndex(%s, %s) returned %s", name, values[0], x.(*Obj).Key())
		}
	}
	if len(l) != want {
		return 0, fmt.Errorf("ByIndex(%s, %s) returned %d objects, want %d", name, values[0], len(l), want)
	}
	return ns / float64(d.N), nil
}

func indexValues(d *Data, s Settings, name string, want int) (float64, error) {
	idx, err := d.filled()
	if err != nil {
		return 0, err
	}
	got := 0
	ns := measure(s, timed(func() {
		v := idx.ListIndexFuncValues(name)
		got = len(v)
		sink = v
	}))
	if got != want {
		return 0, fmt.Errorf("ListIndexFuncValues(%s) returned %d values, want %d", name, got, want)
	}
	return ns, nil
}

// readerGet measures gets at a stride through the random order, with or without one writer
// updating flat out (moving objects between nodes) on another core.
func readerGet(d *Data, s Settings, busy bool) (float64, error) {
	idx, err := d.filled()
	if err != nil {
		return 0, err
	}
	missing := 0
	reads := func(iters int) time.Duration {
		start := time.Now()
		pos := 0
		for k := 0; k < iters; k++ {
			for j := 0; j < Batch; j++ {
				pos = (pos + 7919) % d.N
				item, ok, _ := idx.GetByKey(d.Keys[d.Order[pos]])
				if !ok {
					missing++
				}
				sink = item
			}
		}
		return time.Since(start)
	}
	var writes atomic.Uint64
	run := reads
	if busy {
		run = func(iters int) time.Duration {
			return withWriter(d, idx, &writes, func() time.Duration { return reads(iters) })
		}
	}
	ns := measure(s, run)
	if missing > 0 {
		return 0, fmt.Errorf("GetByKey missed %d keys", missing)
	}
	if busy && writes.Load() == 0 {
		return 0, fmt.Errorf("the writer wrote nothing")
	}
	return ns / Batch, checkIndexed(idx, d, d.Base)
}

// withWriter runs read while another goroutine updates flat out, then puts every object back at
// its base version.
func withWriter(d *Data, idx cache.Indexer, writes *atomic.Uint64, read func() time.Duration) time.Duration {
	var stop, started atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		flip := make([]bool, d.N)
		pos, count := 0, uint64(0)
		started.Store(true)
		for !stop.Load() {
			pos = (pos + 1) % d.N
			i := d.Order[pos]
			flip[i] = !flip[i]
			o := d.Base[i]
			if flip[i] {
				o = d.Moved[i]
			}
			_ = idx.Update(o)
			count++
		}
		for i, f := range flip {
			if f {
				_ = idx.Update(d.Base[i])
			}
		}
		writes.Add(count)
	}()
	for !started.Load() {
		runtime.Gosched()
	}
	time.Sleep(2 * time.Millisecond)
	out := read()
	stop.Store(true)
	wg.Wait()
	return out
}
