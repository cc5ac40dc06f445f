package main

import (
	"fmt"
	"math/bits"
	"strconv"
)

// The workload of the Rust cache benchmark (cache-core/benches/support/workload.rs), object for
// object: the same namespaces, nodes, names, resource versions, labels and payload sizes, in the
// same random order. The pseudo-random numbers are those of the Rust side's generator (rand's
// SmallRng, xoshiro256++ seeded through SplitMix64) drawn the way rand draws them, so both
// sides build identical data; TestWorkloadMatchesRust pins a fingerprint printed by the Rust
// benchmark.

const (
	// Namespaces is the number of distinct namespaces.
	Namespaces = 100
	// Nodes is the number of distinct nodes.
	Nodes = 1000
	// Payload is the opaque payload per object, in bytes.
	Payload = 120
)

// Label is one label of an object.
type Label struct {
	Key, Value string
}

// Obj is the pod-like object of the cache benchmark: about 500 bytes with its strings.
type Obj struct {
	Namespace string
	Name      string
	Node      string
	RV        string
	Labels    []Label
	Payload   []byte
}

// Key is client-go's namespace/name key.
func (o *Obj) Key() string { return o.Namespace + "/" + o.Name }

// next is a copy with a new resource version and, when node >= 0, a new node.
func (o *Obj) next(rv uint64, node int) *Obj {
	c := *o
	c.RV = strconv.FormatUint(rv, 10)
	if node >= 0 {
		c.Node = nodeName(node)
	}
	return &c
}

func namespaceName(i int) string { return fmt.Sprintf("ns-%03d", i) }
func nodeName(i int) string      { return fmt.Sprintf("node-%04d", i) }

// smallRng is rand's SmallRng on 64-bit targets: xoshiro256++.
type smallRng struct{ s [4]uint64 }

// newSmallRng is SmallRng::seed_from_u64: SplitMix64 fills the state.
func newSmallRng(state uint64) *smallRng {
	const phi = 0x9e3779b97f4a7c15
	r := &smallRng{}
	for i := range r.s {
		state += phi
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		r.s[i] = z ^ (z >> 31)
	}
	return r
}

func (r *smallRng) nextU64() uint64 {
	s := &r.s
	res := bits.RotateLeft64(s[0]+s[3], 23) + s[0]
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = bits.RotateLeft64(s[3], 45)
	return res
}

func (r *smallRng) nextU32() uint32 { return uint32(r.nextU64() >> 32) }

// fillBytes draws one 64-bit word per 8 bytes, little-endian, as rand_core does.
func (r *smallRng) fillBytes(dst []byte) {
	for len(dst) > 0 {
		w := r.nextU64()
		for i := 0; i < 8 && len(dst) > 0; i++ {
			dst[0] = byte(w >> (8 * i))
			dst = dst[1:]
		}
	}
}

// below is rand's u32 random_range(0..n) (Canon's method, the default, biased variant).
func (r *smallRng) below(n uint32) uint32 {
	rng := n
	hi, lo := bits.Mul32(r.nextU32(), rng)
	if lo > -rng {
		newHi, _ := bits.Mul32(r.nextU32(), rng)
		if _, carry := bits.Add32(lo, newHi, 0); carry != 0 {
			hi++
		}
	}
	return hi
}

// shuffle is rand's SliceRandom::shuffle: Fisher-Yates, drawing indexes in chunks
// (IncreasingUniform).
func shuffle[T any](v []T, r *smallRng) {
	if len(v) <= 1 {
		return
	}
	// A full shuffle starts at index 0, with one index (0) that needs no draw.
	var n, chunk uint32
	remaining := uint8(1)
	for i := range v {
		next := n + 1
		var nextRemaining uint8
		if remaining == 0 {
			bound, count := chunkBound(next)
			chunk = r.below(bound)
			nextRemaining = count - 1
		} else {
			nextRemaining = remaining - 1
		}
		var index uint32
		if nextRemaining == 0 {
			index = chunk
		} else {
			index = chunk % next
			chunk /= next
		}
		remaining = nextRemaining
		n = next
		v[i], v[index] = v[index], v[i]
	}
}

// chunkBound is the product m*(m+1)*... that still fits in 32 bits, and how many factors it has.
func chunkBound(m uint32) (uint32, uint8) {
	product, current := m, m+1
	for {
		hi, lo := bits.Mul32(product, current)
		if hi != 0 {
			return product, uint8(current - m)
		}
		product = lo
		current++
	}
}

// objects is the workload's n objects, in random key order, deterministic for a given n.
func objects(n int) []*Obj {
	r := newSmallRng(0x5eed ^ uint64(n))
	tiers := [3]string{"web", "db", "cache"}
	out := make([]*Obj, n)
	for i := range out {
		payload := make([]byte, Payload)
		r.fillBytes(payload)
		ns := namespaceName(int(r.below(Namespaces)))
		node := nodeName(int(r.below(Nodes)))
		out[i] = &Obj{
			Namespace: ns,
			Name:      fmt.Sprintf("object-name-%08d", i),
			Node:      node,
			RV:        strconv.Itoa(i + 1),
			Labels: []Label{
				{"app", fmt.Sprintf("app-%d", i%50)},
				{"tier", tiers[i%3]},
				{"team", fmt.Sprintf("team-%d", i%20)},
			},
			Payload: payload,
		}
	}
	shuffle(out, r)
	return out
}

// order is a random permutation of 0..n, to visit objects in an order unrelated to insertion.
func order(n int, seed uint64) []int {
	v := make([]int, n)
	for i := range v {
		v[i] = i
	}
	shuffle(v, newSmallRng(seed))
	return v
}

// Data is one size's data, shared by every case, as the Rust benchmark's.
type Data struct {
	N     int
	Base  []*Obj
	Same  []*Obj // same index values as Base, new resource version
	Moved []*Obj // another node than Base, new resource version
	Keys  []string
	Order []int
	// NodeValues and NamespaceValues are every value of each index, in random order.
	NodeValues      []string
	NamespaceValues []string
}

func newData(n int) *Data {
	d := &Data{N: n, Base: objects(n)}
	d.Same = make([]*Obj, n)
	d.Moved = make([]*Obj, n)
	d.Keys = make([]string, n)
	for i, o := range d.Base {
		d.Same[i] = o.next(uint64(2*n+i), -1)
		node, _ := strconv.Atoi(o.Node[len("node-"):])
		d.Moved[i] = o.next(uint64(4*n+i), (node+1+i%7)%Nodes)
		d.Keys[i] = o.Key()
	}
	for _, i := range order(Nodes, 1) {
		d.NodeValues = append(d.NodeValues, nodeName(i))
	}
	for _, i := range order(Namespaces, 2) {
		d.NamespaceValues = append(d.NamespaceValues, namespaceName(i))
	}
	d.Order = order(n, 3)
	return d
}

// fingerprint summarizes the data, to check that both sides built the same workload.
func (d *Data) fingerprint() string {
	h := uint64(0xcbf29ce484222325)
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 0x100000001b3
		}
		h ^= 0xff
		h *= 0x100000001b3
	}
	for _, o := range d.Base {
		mix(o.Namespace)
		mix(o.Name)
		mix(o.Node)
		mix(o.RV)
		mix(string(o.Payload))
	}
	for _, i := range d.Order {
		mix(strconv.Itoa(i))
	}
	for _, v := range d.NodeValues {
		mix(v)
	}
	for _, v := range d.NamespaceValues {
		mix(v)
	}
	return fmt.Sprintf("%016x", h)
}
